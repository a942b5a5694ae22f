"""Coercing user numbers to Python floats, shared by the Value operators and the backward pass."""

from __future__ import annotations

import numbers

from ._handle import Handle

__all__ = ["as_float"]


def as_float(x: object) -> float | None:
    """``x`` as a Python float, or None when ``x`` is not a real number.

    Accepts int, float, and any real number with ``__float__`` (numpy scalars of every width);
    rejects bool-like strings, bytes, complex numbers and Values.

    Examples
    --------
    >>> import numpy as np
    >>> from graphtrace._real import as_float
    >>> as_float(3), as_float(np.float32(0.5)), as_float("1"), as_float(1j), as_float(np.array([0.5, 1.0]))
    (3.0, 0.5, None, None, None)
    >>> as_float(np.array(0.5)), as_float(np.array("1.5"))
    (0.5, None)
    """
    t = type(x)
    if t is float:
        return x  # type: ignore[return-value]
    if t is int or t is bool:
        return float(x)  # type: ignore[arg-type]
    if isinstance(x, (str, bytes, Handle)):
        return None
    if isinstance(x, numbers.Complex) and not isinstance(x, numbers.Real):
        return None
    if getattr(t, "__float__", None) is None:
        return None
    if t.__module__ == "numpy":
        if type(getattr(x, "ndim", 0)) is int and getattr(x, "ndim", 0) > 0:
            return None  # an array of one or more numbers (numpy warns, then raises, on float() of it)
        kind = getattr(getattr(x, "dtype", None), "kind", "f")
        if kind not in ("b", "i", "u", "f"):
            return None  # text, bytes, objects, dates, complex: float() of np.array("1.5") parses it
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, RuntimeError):  # a __float__ that refuses this value
        return None  # (RuntimeError: a complex or meta torch tensor)
