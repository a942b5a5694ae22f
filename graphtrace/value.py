"""The :class:`Value` handle and its operators.

A Value is a thin handle on one node of the live store (:mod:`graphtrace.store`): ``data``, ``grad``,
``op``, ``label`` and ``role`` are that node's attributes. Each operator evaluates its rule from
:data:`graphtrace.rules.RULES` first (so a domain error records nothing), then adds one node and one
edge per distinct operand carrying ``local_grad``.
"""

from __future__ import annotations

from typing import Any

from . import store
from ._real import as_float as _as_float
from .backward import backward_value
from .rules import RULES

__all__ = ["ROLES", "Value"]

#: Roles a user may give a leaf; op results get ``"intermediate"``.
ROLES = ("leaf", "parameter", "constant")

_NODE = store.NODE
_PRED = store.PRED
_Ref = store.Ref
_dead_append = store._dead_append
_add_node = store.add_node
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


class _NodeAttrs:
    """Its instances' ``__dict__`` are node-attribute dicts sharing one key table: ``data``, ``grad``,
    ``op``, ``label``, ``role``, ``scope`` (always set in this order) in about 136 bytes, where a
    six-key dict literal takes 272."""


def _node_attrs(data: float, grad: float, op: str, label: str, role: str, scope: str) -> dict[str, Any]:
    o = _NodeAttrs()
    o.data = data  # type: ignore[attr-defined]
    o.grad = grad  # type: ignore[attr-defined]
    o.op = op  # type: ignore[attr-defined]
    o.label = label  # type: ignore[attr-defined]
    o.role = role  # type: ignore[attr-defined]
    o.scope = scope  # type: ignore[attr-defined]
    return o.__dict__  # outlives o: an ordinary dict from here on


def _edge_attrs(local_grad: float) -> dict[str, float]:
    o = _EdgeAttrs()
    o.local_grad = local_grad  # type: ignore[attr-defined]
    return o.__dict__  # outlives o: an ordinary dict from here on


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
    """A new, not yet registered Value object on node ``n``."""
    v = _new(Value)
    v._id = n
    v._attrs = attrs
    return v


def _leaf(data: float, label: str, role: str, grad: float = 0.0) -> Value:
    n = _new_id()
    attrs = _node_attrs(data, grad, "", label, role, _mode.scope)
    v = _new(Value)
    v._id = n
    v._attrs = attrs
    r = _Ref(v, _dead_append)
    r.n = n
    _add_node(n, attrs, r)
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
    attrs = _node_attrs(out, 0.0, op, "", "intermediate", _mode.scope)
    v = _new(Value)
    v._id = n
    v._attrs = attrs
    r = _Ref(v, _dead_append)
    r.n = n
    _add_node(n, attrs, r, x._id, _shared_edge(dx) or _edge_attrs(dx))
    return v


def _constant(data: float) -> dict[str, Any]:
    """Attributes of a constant leaf for a number operand (recorded with its result)."""
    return _node_attrs(data, 0.0, "", "", "constant", _mode.scope)


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
    if isinstance(x, Value):
        i = x._id
        cx = None
    else:
        i = _new_id()
        cx = _constant(xv)
    if isinstance(y, Value):
        j = y._id
        cy = None
    else:
        j = _new_id()
        cy = _constant(yv)
    n = _new_id()
    attrs = _node_attrs(out, 0.0, op, "", "intermediate", _mode.scope)
    v = _new(Value)
    v._id = n
    v._attrs = attrs
    r = _Ref(v, _dead_append)
    r.n = n
    if i == j:
        dx += dy
        _add_node(n, attrs, r, i, _shared_edge(dx) or _edge_attrs(dx))
    else:
        _add_node(n, attrs, r, i, _shared_edge(dx) or _edge_attrs(dx), j, _shared_edge(dy) or _edge_attrs(dy), cx, cy)
    return v


def _restore(data: Any, grad: Any, label: Any, role: Any, scope: Any = "") -> Value:
    """A detached leaf with these attributes: what unpickling and ``copy.deepcopy`` give."""
    d, g = _as_float(data), _as_float(grad)
    if (
        d is None
        or g is None
        or not isinstance(label, str)
        or role not in (*ROLES, "intermediate")
        or not isinstance(scope, str)
    ):
        raise TypeError(
            f"cannot restore a Value from data={data!r}, grad={grad!r}, label={label!r}, role={role!r}, scope={scope!r}"
        )
    v = _leaf(d, label, role, g)
    v._attrs["scope"] = scope
    return v


class Value(store.Handle):
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

    __slots__ = ("__weakref__", "_attrs", "_id")
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
        attrs = _node_attrs(x, 0.0, "", label, role, _mode.scope)
        self._id = n
        self._attrs = attrs
        r = _Ref(self, _dead_append)
        r.n = n
        _add_node(n, attrs, r)

    # -- copies and pickles -------------------------------------------------------------------
    def __copy__(self) -> Value:
        """Another handle on the same node (it keeps the node alive like the original does)."""
        n = self._id
        v = _handle(n, self._attrs)
        store.add_handle(n, store.new_ref(v, n))
        return v

    def __deepcopy__(self, memo: dict[int, Any]) -> Value:
        """A detached leaf with the same ``data``, ``grad``, ``label`` and ``role`` (no history)."""
        a = self._attrs
        return _restore(a["data"], a["grad"], a["label"], a["role"], a["scope"])

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickles as its attributes, never its node id: unpickling makes a detached leaf."""
        a = self._attrs
        return _restore, (a["data"], a["grad"], a["label"], a["role"], a["scope"])

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
    def scope(self) -> str:
        """The scope path this node was recorded in (``"MLP[0]/Layer1/Neuron3"``), ``""`` outside any;
        a parameter's is its module's path without call indices (``"MLP/Layer1/Neuron3"``)."""
        return self._attrs["scope"]  # type: ignore[no-any-return]

    def _set_scope(self, path: str) -> None:
        self._attrs["scope"] = path

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
            nodes = [(p, _NODE[p]) for p in _PRED[self._id]]
        out = []
        for p, attrs in nodes:  # self keeps these nodes alive meanwhile
            v = _handle(p, attrs)
            store.add_handle(p, store.new_ref(v, p))
            out.append(v)
        return tuple(out)

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
        backward_value(self, grad)


_new = object.__new__
