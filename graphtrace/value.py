"""The :class:`Value` handle and its operators.

A Value is a thin handle on one node of the live store (:mod:`graphtrace.store`): ``data``, ``grad``,
``op``, ``label`` and ``role`` are that node's attributes. Each operator evaluates its rule from
:data:`graphtrace.rules.RULES` first (so a domain error records nothing), then adds one node and one
edge per distinct operand carrying ``local_grad``.
"""

from __future__ import annotations

import contextlib
import numbers
from typing import Any

from . import store
from .rules import RULES

__all__ = ["ROLES", "Value"]

#: Roles a user may give a leaf; op results get ``"intermediate"``.
ROLES = ("leaf", "parameter", "constant")

_NODE = store.NODE
_SUCC = store.SUCC
_PRED = store.PRED
_LOCK = store.LOCK
_acquire = _LOCK.acquire
_unlock = _LOCK.release
_pending = store._pending
_flush = store.flush
_release = store.release
_HANDLES = store.HANDLES
_new_id = store.new_id
_mode = store._mode

_ADD = RULES["+"].fn
_SUB = RULES["-"].fn
_MUL = RULES["*"].fn
_DIV = RULES["/"].fn
_POW = RULES["**"].fn
_NEG = RULES["neg"].fn
_EXP = RULES["exp"].fn
_LOG = RULES["log"].fn
_TANH = RULES["tanh"].fn
_SIGMOID = RULES["sigmoid"].fn
_RELU = RULES["relu"].fn

_DOMAIN_ERRORS = (ValueError, ArithmeticError)

# Flyweight edge-attribute dicts for the constant local derivatives of +, -, neg: about half the
# edges of a typical trace. The live store treats edge dicts as read-only (snapshots copy them),
# so sharing saves one dict (~190 bytes) and one allocation per such edge.
_SHARED_EDGES: dict[float, dict[str, float]] = {1.0: {"local_grad": 1.0}, -1.0: {"local_grad": -1.0}}
_shared_edge = _SHARED_EDGES.get


class _EdgeAttrs:
    """Its instances' ``__dict__`` are edge-attribute dicts sharing one key table (CPython's
    key-sharing instance dicts): about 96 bytes instead of 190 for a one-key dict literal."""


def _edge_attrs(local_grad: float) -> dict[str, float]:
    o = _EdgeAttrs()
    o.local_grad = local_grad  # type: ignore[attr-defined]
    return o.__dict__  # outlives o: an ordinary dict from here on


def _as_float(x: object) -> float | None:
    """``x`` as a Python float, or None when ``x`` is not a real number."""
    t = type(x)
    if t is float:
        return x  # type: ignore[return-value]
    if t is int or t is bool:
        return float(x)  # type: ignore[arg-type]
    if isinstance(x, (str, bytes, Value)):
        return None
    if isinstance(x, numbers.Complex) and not isinstance(x, numbers.Real):
        return None
    if getattr(t, "__float__", None) is None:
        return None
    return float(x)  # type: ignore[arg-type]


def _describe(x: object) -> str:
    if isinstance(x, Value):
        a = x._attrs
        name = a["label"] or f"node {x._id}"
        return f"{name} = {a['data']!r}"
    return repr(x)


def _domain_error(exc: Exception, op: str, *operands: object) -> Exception:
    """The same exception type, with the op and its operands named."""
    args = ", ".join(_describe(x) for x in operands)
    err = type(exc)(f"{op}: {exc} (operands: {args}); nothing was recorded")
    return err


def _handle(n: int, attrs: dict[str, Any]) -> Value:
    v = _new(Value)
    v._id = n
    v._attrs = attrs
    return v


def _leaf(data: float, label: str, role: str) -> Value:
    n = _new_id()
    attrs = {"data": data, "grad": 0.0, "op": "", "label": label, "role": role}
    v = _handle(n, attrs)
    _acquire()
    try:
        if _pending:
            _flush()
        _NODE[n] = attrs
        _SUCC[n] = {}
        _PRED[n] = {}
        _HANDLES[n] = 1
    finally:
        _unlock()
    return v


def _unary(op: str, fn: Any, x: Value) -> Value:
    xv = x._attrs["data"]
    try:
        out, dx = fn(xv)
    except _DOMAIN_ERRORS as exc:
        raise _domain_error(exc, op, x) from None
    if not _mode.enabled:
        return _leaf(out, "", "leaf")
    n = _new_id()
    attrs = {"data": out, "grad": 0.0, "op": op, "label": "", "role": "intermediate"}
    v = _handle(n, attrs)
    i = x._id
    e = _shared_edge(dx) or _edge_attrs(dx)
    _acquire()
    try:
        if _pending:
            _flush()
        _NODE[n] = attrs
        _SUCC[n] = {}
        _PRED[n] = {i: e}
        _SUCC[i][n] = e
        _HANDLES[n] = 1
    finally:
        _unlock()
    return v


def _constant(data: float) -> tuple[int, dict[str, Any]]:
    """Id and attributes of a constant leaf for a number operand (recorded with its result)."""
    return _new_id(), {"data": data, "grad": 0.0, "op": "", "label": "", "role": "constant"}


def _binary(op: str, fn: Any, x: Any, y: Any) -> Any:
    """``x op y`` where at least one of x, y is a Value; NotImplemented for a non-number."""
    if isinstance(x, Value):
        xv = x._attrs["data"]
    else:
        xv = _as_float(x)
        if xv is None:
            return NotImplemented
    if isinstance(y, Value):
        yv = y._attrs["data"]
    else:
        yv = _as_float(y)
        if yv is None:
            return NotImplemented
    try:
        out, dx, dy = fn(xv, yv)
    except _DOMAIN_ERRORS as exc:
        raise _domain_error(exc, op, x, y) from None
    if not _mode.enabled:
        return _leaf(out, "", "leaf")
    # a number operand becomes a constant leaf, created before the result so ids stay topological
    cx = None if isinstance(x, Value) else _constant(xv)
    cy = None if isinstance(y, Value) else _constant(yv)
    i = x._id if cx is None else cx[0]
    j = y._id if cy is None else cy[0]
    n = _new_id()
    attrs = {"data": out, "grad": 0.0, "op": op, "label": "", "role": "intermediate"}
    v = _handle(n, attrs)
    if i == j:
        dx += dy
        ex = _shared_edge(dx) or _edge_attrs(dx)
        preds = {i: ex}
    else:
        ex = _shared_edge(dx) or _edge_attrs(dx)
        ey = _shared_edge(dy) or _edge_attrs(dy)
        preds = {i: ex, j: ey}
    _acquire()
    try:
        if _pending:
            _flush()
        if cx is not None:
            _NODE[i] = cx[1]
            _SUCC[i] = {}
            _PRED[i] = {}
        if cy is not None:
            _NODE[j] = cy[1]
            _SUCC[j] = {}
            _PRED[j] = {}
        _NODE[n] = attrs
        _SUCC[n] = {}
        _PRED[n] = preds
        _SUCC[i][n] = ex
        if i != j:
            _SUCC[j][n] = ey
        _HANDLES[n] = 1
    finally:
        _unlock()
    return v


class Value:
    """A scalar recorded as one node of the live NetworkX graph store.

    Parameters
    ----------
    data : real number
        int, float, or any real number with ``__float__`` (numpy scalars too); stored as a Python float.
    label : str, optional
        A human-readable name shown in tables and pictures.
    role : {"leaf", "parameter", "constant"}, optional
        How exports colour the node; :mod:`graphtrace.nn` marks weights and biases ``"parameter"``.

    Raises
    ------
    TypeError
        If ``data`` is not a real number (a str, None, a complex, another Value, ...) or ``label`` is
        not a str.
    ValueError
        If ``role`` is not one of the roles above.

    Examples
    --------
    >>> from graphtrace import Value
    >>> a = Value(2.0, label="a"); b = Value(-3.0, label="b")
    >>> y = a * b + 10
    >>> y.backward()
    >>> y.data, a.grad, b.grad
    (4.0, -3.0, 2.0)
    """

    __slots__ = ("_attrs", "_id")
    # numpy scalars defer to our reflected operators instead of building object arrays
    __array_ufunc__ = None

    _id: int
    _attrs: dict[str, Any]

    def __init__(self, data: Any, label: str = "", *, role: str = "leaf") -> None:
        x = _as_float(data)
        if x is None:
            what = "another Value (use it directly, or its .data)" if isinstance(data, Value) else type(data).__name__
            raise TypeError(f"Value() takes a real number (int, float, numpy scalar), got {what}: {data!r}")
        if not isinstance(label, str):
            raise TypeError(f"Value label must be a str, got {type(label).__name__}: {label!r}")
        if role not in ROLES:
            raise ValueError(f"Value role must be one of {ROLES}, got {role!r}")
        n = _new_id()
        attrs = {"data": x, "grad": 0.0, "op": "", "label": label, "role": role}
        self._id = n
        self._attrs = attrs
        _acquire()
        try:
            if _pending:
                _flush()
            _NODE[n] = attrs
            _SUCC[n] = {}
            _PRED[n] = {}
            _HANDLES[n] = 1
        finally:
            _unlock()

    def __del__(self) -> None:
        try:
            n = self._id
        except AttributeError:  # __init__ raised before recording anything
            return
        with contextlib.suppress(Exception):  # at interpreter shutdown the store may already be gone
            _release(n)

    # -- node attributes -------------------------------------------------------------------
    @property
    def data(self) -> float:
        """The forward value (node attribute ``data``)."""
        return self._attrs["data"]  # type: ignore[no-any-return]

    @data.setter
    def data(self, value: Any) -> None:
        x = _as_float(value)
        if x is None:
            raise TypeError(f"Value.data must be a real number, got {type(value).__name__}: {value!r}")
        self._attrs["data"] = x

    @property
    def grad(self) -> float:
        """d(root)/d(this node) after ``backward`` (node attribute ``grad``)."""
        return self._attrs["grad"]  # type: ignore[no-any-return]

    @grad.setter
    def grad(self, value: Any) -> None:
        x = _as_float(value)
        if x is None:
            raise TypeError(f"Value.grad must be a real number, got {type(value).__name__}: {value!r}")
        self._attrs["grad"] = x

    @property
    def label(self) -> str:
        """The user's name for this node; ``""`` if none (snapshots fill in a short name)."""
        return self._attrs["label"]  # type: ignore[no-any-return]

    @label.setter
    def label(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Value label must be a str, got {type(value).__name__}: {value!r}")
        self._attrs["label"] = value

    @property
    def op(self) -> str:
        """The op that produced this node (``"+"``, ``"tanh"``, ...), ``""`` for a leaf."""
        return self._attrs["op"]  # type: ignore[no-any-return]

    @property
    def role(self) -> str:
        """``"leaf"``, ``"parameter"``, ``"constant"`` or ``"intermediate"``."""
        return self._attrs["role"]  # type: ignore[no-any-return]

    @property
    def node_id(self) -> int:
        """This Value's node id in the store and in every snapshot (an int)."""
        return self._id

    @property
    def operands(self) -> tuple[Value, ...]:
        """Handles on the distinct nodes this one was computed from (empty for a leaf).

        They are new handles on the operand nodes (compare ``node_id``, not identity): the Values
        that built an expression may long be gone while their nodes live on in the graph.
        """
        with store.graph_lock():
            ids = list(_PRED[self._id])
            for p in ids:
                _HANDLES[p] = _HANDLES.get(p, 0) + 1
        return tuple(_handle(p, _NODE[p]) for p in ids)

    def __repr__(self) -> str:
        a = self._attrs
        extra = f", label={a['label']!r}" if a["label"] else ""
        extra += f", op={a['op']!r}" if a["op"] else ""
        return f"Value(data={a['data']!r}, grad={a['grad']!r}{extra})"

    # -- operators -------------------------------------------------------------------------
    def __add__(self, other: Any) -> Value:
        return _binary("+", _ADD, self, other)  # type: ignore[no-any-return]

    def __radd__(self, other: Any) -> Value:
        return _binary("+", _ADD, other, self)  # type: ignore[no-any-return]

    def __sub__(self, other: Any) -> Value:
        return _binary("-", _SUB, self, other)  # type: ignore[no-any-return]

    def __rsub__(self, other: Any) -> Value:
        return _binary("-", _SUB, other, self)  # type: ignore[no-any-return]

    def __mul__(self, other: Any) -> Value:
        return _binary("*", _MUL, self, other)  # type: ignore[no-any-return]

    def __rmul__(self, other: Any) -> Value:
        return _binary("*", _MUL, other, self)  # type: ignore[no-any-return]

    def __truediv__(self, other: Any) -> Value:
        return _binary("/", _DIV, self, other)  # type: ignore[no-any-return]

    def __rtruediv__(self, other: Any) -> Value:
        return _binary("/", _DIV, other, self)  # type: ignore[no-any-return]

    def __pow__(self, other: Any) -> Value:
        return _binary("**", _POW, self, other)  # type: ignore[no-any-return]

    def __rpow__(self, other: Any) -> Value:
        return _binary("**", _POW, other, self)  # type: ignore[no-any-return]

    def __neg__(self) -> Value:
        return _unary("neg", _NEG, self)

    def exp(self) -> Value:
        """e ** self (OverflowError past ~709.78)."""
        return _unary("exp", _EXP, self)

    def log(self) -> Value:
        """Natural log (ValueError for data <= 0)."""
        return _unary("log", _LOG, self)

    def tanh(self) -> Value:
        """Hyperbolic tangent; saturates to +-1.0, never overflows."""
        return _unary("tanh", _TANH, self)

    def sigmoid(self) -> Value:
        """Logistic sigmoid 1 / (1 + e ** -x), computed without overflow."""
        return _unary("sigmoid", _SIGMOID, self)

    def relu(self) -> Value:
        """max(0, x); its gradient at exactly 0 is 0."""
        return _unary("relu", _RELU, self)

    # -- backward ----------------------------------------------------------------------------
    def backward(self, grad: float = 1.0) -> None:
        """Backpropagate from this Value: fill ``grad`` on it and every ancestor.

        Non-leaf nodes receive exactly d(self)/d(node) of this call; leaves accumulate (``+=``)
        until zeroed, as in PyTorch.

        Parameters
        ----------
        grad : float, optional
            The seed d(self)/d(self), 1.0 by default.

        Examples
        --------
        >>> from graphtrace import Value
        >>> x = Value(3.0)
        >>> y = x * x
        >>> y.backward()
        >>> x.grad
        6.0
        """
        from .backward import backward_value

        backward_value(self, grad)


_new = object.__new__
