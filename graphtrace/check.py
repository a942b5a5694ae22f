"""Finite-difference checks: :func:`numerical_grad` and :func:`gradcheck`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .store import enable_grad, no_grad
from .value import Value

__all__ = ["GradcheckError", "gradcheck", "numerical_grad"]


class GradcheckError(AssertionError):
    """Raised by :func:`gradcheck`; ``mismatches`` lists ``(index, label, analytic, numerical)``."""

    def __init__(self, message: str, mismatches: list[tuple[int, str, float, float]]) -> None:
        super().__init__(message)
        self.mismatches = mismatches


def _check_inputs(fname: str, f: Any, inputs: Any, eps: float) -> list[Value]:
    if not callable(f):
        raise TypeError(f"{fname}: f must be callable, got {type(f).__name__}")
    if isinstance(inputs, Value):
        raise TypeError(f"{fname}: inputs must be a sequence of Values, got a single Value (wrap it in a list)")
    items = list(inputs)
    for i, x in enumerate(items):
        if not isinstance(x, Value):
            raise TypeError(f"{fname}: inputs[{i}] must be a Value, got {type(x).__name__}")
    if not eps > 0:
        raise ValueError(f"{fname}: eps must be > 0, got {eps!r}")
    return items


def _evaluate(fname: str, f: Callable[..., Any], inputs: Sequence[Value]) -> float:
    with no_grad():
        out = f(*inputs)
    if not isinstance(out, Value):
        raise TypeError(f"{fname}: f must return a Value, got {type(out).__name__}")
    return out.data


def numerical_grad(f: Callable[..., Any], inputs: Sequence[Value], eps: float = 1e-6) -> list[float]:
    """Central differences ``(f(x+eps) - f(x-eps)) / (2 eps)`` for each input Value.

    ``f`` is called as ``f(*inputs)`` and must return a Value; it is evaluated under
    :func:`graphtrace.no_grad`, and each input's ``data`` is restored afterwards.

    Parameters
    ----------
    f : callable
        ``f(*inputs) -> Value``.
    inputs : sequence of Value
    eps : float, optional

    Returns
    -------
    list of float
        One estimate per input.

    Examples
    --------
    >>> import graphtrace as gt
    >>> x = gt.Value(4.0)
    >>> round(gt.numerical_grad(lambda x: 3 * x**2 - 4 * x + 5, [x])[0], 6)
    20.0
    """
    items = _check_inputs("numerical_grad", f, inputs, eps)
    grads = []
    for x in items:
        x0 = x.data
        try:
            x.data = x0 + eps
            hi = _evaluate("numerical_grad", f, items)
            x.data = x0 - eps
            lo = _evaluate("numerical_grad", f, items)
        finally:
            x.data = x0
        grads.append((hi - lo) / (2.0 * eps))
    return grads


def gradcheck(
    f: Callable[..., Any],
    inputs: Sequence[Value],
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-4,
) -> bool:
    """Compare backward's gradients of ``f(*inputs)`` with central differences.

    Input grads are zeroed first and left holding the analytic gradients. The analytic pass records
    its graph even when called inside :func:`graphtrace.no_grad`.

    Returns
    -------
    bool
        True when every ``|analytic - numerical| <= atol + rtol * |numerical|``.

    Raises
    ------
    GradcheckError
        Listing each mismatching input with both numbers.

    Examples
    --------
    >>> import graphtrace as gt
    >>> a, b = gt.Value(2.0), gt.Value(-3.0)
    >>> gt.gradcheck(lambda a, b: (a * b).tanh() + a / b, [a, b])
    True
    """
    items = _check_inputs("gradcheck", f, inputs, eps)
    numeric = numerical_grad(f, items, eps)
    for x in items:
        x.grad = 0.0
    with enable_grad():
        out = f(*items)
    if not isinstance(out, Value):
        raise TypeError(f"gradcheck: f must return a Value, got {type(out).__name__}")
    out.backward()
    bad = []
    for i, (x, n) in enumerate(zip(items, numeric, strict=True)):
        a = x.grad
        if not abs(a - n) <= atol + rtol * abs(n):
            bad.append((i, x.label or f"inputs[{i}]", a, n))
    if bad:
        lines = "\n".join(f"  {label}: analytic {a!r} vs numerical {n!r}" for _, label, a, n in bad)
        raise GradcheckError(f"gradcheck: {len(bad)} of {len(items)} gradients differ:\n{lines}", bad)
    return True
