"""The op table: one entry per op, holding its forward value, local derivatives and domain check.

Every rule is a plain function of floats. A unary rule ``f(x)`` returns ``(out, d_out/d_x)``; a
binary rule ``f(x, y)`` returns ``(out, d_out/d_x, d_out/d_y)``. A rule raises ``ValueError``,
``ZeroDivisionError`` or ``OverflowError`` *before* anything is recorded when its operands are
outside the op's domain; :mod:`graphtrace.value` adds the op name and operand labels to the message.

This is the only place where derivatives are written down: :func:`graphtrace.backward.backward`
never looks at an op, it only multiplies the ``local_grad`` stored on each edge.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["BINARY_OPS", "RULES", "UNARY_OPS", "Rule"]

_inf = math.inf
_exp = math.exp
_log = math.log
_tanh = math.tanh


def _add(x: float, y: float) -> tuple[float, float, float]:
    return x + y, 1.0, 1.0


def _sub(x: float, y: float) -> tuple[float, float, float]:
    return x - y, 1.0, -1.0


def _mul(x: float, y: float) -> tuple[float, float, float]:
    return x * y, y, x


def _div(x: float, y: float) -> tuple[float, float, float]:
    if y == 0.0:
        raise ZeroDivisionError("division by zero")
    out = x / y
    return out, 1.0 / y, -out / y


def _pow(x: float, y: float) -> tuple[float, float, float]:
    if x == 0.0 and y < 0.0:
        raise ZeroDivisionError("0 cannot be raised to a negative power")
    if x < 0.0 and not y.is_integer():
        raise ValueError("a negative base needs an integer exponent (the result would be complex)")
    out = x**y  # may raise OverflowError
    # d/dx = y * x**(y-1), with PyTorch's conventions at x == 0
    if y == 0.0:
        dx = 0.0
    elif x == 0.0:
        dx = 0.0 if y > 1.0 else (1.0 if y == 1.0 else _inf)
    else:
        try:
            dx = y * x ** (y - 1.0)
        except OverflowError:
            dx = math.copysign(_inf, y * (out / x if out != 0.0 else x))
    # d/dy = x**y * log(x): 0 at x == 0 (PyTorch, HIPS autograd); undefined (nan) for x < 0
    if x > 0.0:
        dy = out * _log(x)
    elif x == 0.0:
        dy = 0.0
    else:
        dy = math.nan
    return out, dx, dy


def _neg(x: float) -> tuple[float, float]:
    return -x, -1.0


def _exp_rule(x: float) -> tuple[float, float]:
    out = _exp(x)  # raises OverflowError past ~709.78
    return out, out


def _log_rule(x: float) -> tuple[float, float]:
    if not x > 0.0:
        raise ValueError("only defined for operands > 0")
    return _log(x), 1.0 / x


def _tanh_rule(x: float) -> tuple[float, float]:
    t = _tanh(x)  # saturates to +-1.0, never overflows
    return t, 1.0 - t * t


def _sigmoid_rule(x: float) -> tuple[float, float]:
    # z = exp(-|x|) never overflows; s(1 - s) = z / (1 + z)**2 avoids 1 - s cancelling for large x
    z = _exp(-x) if x >= 0.0 else _exp(x)
    d = 1.0 + z
    s = 1.0 / d if x >= 0.0 else z / d
    return s, z / (d * d)


def _relu_rule(x: float) -> tuple[float, float]:
    # gradient at exactly 0 is 0, and NaN stays NaN with the gradient passed through (torch's conventions)
    if x > 0.0:
        return x, 1.0
    if x != x:
        return x, 1.0
    return 0.0, 0.0


class Rule(NamedTuple):
    """One op of the table.

    Attributes
    ----------
    name : str
        The op name recorded as the result node's ``op`` attribute.
    arity : int
        Number of operands (1 or 2).
    fn : callable
        ``fn(*operand_floats) -> (out, *local_derivatives)``, raising on a domain error.
    formula : str
        The local derivatives in words, shown in docs and exports.
    node_name : str
        The name an unlabelled result of this op gets in a trace (torch.fx's: ``mul``, ``add``, ...;
        ``mul_1`` for the second in the same scope instance, see :mod:`graphtrace.naming`).
    """

    name: str
    arity: int
    fn: Callable[..., tuple[float, ...]]
    formula: str
    node_name: str


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("+", 2, _add, "d(x+y)/dx = 1, d(x+y)/dy = 1", "add"),
        Rule("-", 2, _sub, "d(x-y)/dx = 1, d(x-y)/dy = -1", "sub"),
        Rule("*", 2, _mul, "d(xy)/dx = y, d(xy)/dy = x", "mul"),
        Rule("/", 2, _div, "d(x/y)/dx = 1/y, d(x/y)/dy = -x/y**2", "div"),
        Rule("**", 2, _pow, "d(x**y)/dx = y*x**(y-1), d(x**y)/dy = x**y*log(x)", "pow"),
        Rule("neg", 1, _neg, "d(-x)/dx = -1", "neg"),
        Rule("exp", 1, _exp_rule, "d(exp x)/dx = exp x", "exp"),
        Rule("log", 1, _log_rule, "d(log x)/dx = 1/x", "log"),
        Rule("tanh", 1, _tanh_rule, "d(tanh x)/dx = 1 - tanh(x)**2", "tanh"),
        Rule("sigmoid", 1, _sigmoid_rule, "d(s(x))/dx = s(x)(1 - s(x))", "sigmoid"),
        Rule("relu", 1, _relu_rule, "d(relu x)/dx = 1 if x > 0 else 0 (relu(nan) = nan, derivative 1)", "relu"),
    )
}

BINARY_OPS = tuple(name for name, r in RULES.items() if r.arity == 2)
UNARY_OPS = tuple(name for name, r in RULES.items() if r.arity == 1)
