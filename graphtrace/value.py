"""The :class:`Value` handle and its operators.

A Value is a thin handle on one node of the live store (:mod:`graphtrace.store`): ``data``, ``grad``,
``op``, ``label``, ``role`` and ``scope`` are that node's attributes. Each operator hands its rule from
:data:`graphtrace.rules.RULES` to the store (:func:`graphtrace.store.record_binary` /
:func:`~graphtrace.store.record_unary`), which evaluates it first (so a domain error records nothing),
then adds one node and one edge per distinct operand carrying ``local_grad``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from . import store
from ._real import as_float as _as_float
from .backward import backward_value
from .rules import RULES

__all__ = ["ROLES", "Value"]

#: Roles a user may give a leaf; op results get ``"intermediate"``.
ROLES = ("leaf", "parameter", "constant")

_NODE = store.NODE
_PRED = store.PRED

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

_unary = cast("Callable[[str, Any, Value], Value]", store.record_unary)
_binary = cast("Callable[[str, Any, Any, Any], Any]", store.record_binary)


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
    return store.record_leaf(d, label, role, g, scope)  # type: ignore[return-value]


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

    __slots__ = ()
    # numpy scalars defer to our reflected operators instead of building object arrays
    __array_ufunc__ = None

    def __init__(self, data: Any, label: str = "", *, role: str = "leaf") -> None:
        x = _as_float(data)
        if x is None:
            what = "another Value (use it directly, or its .data)" if isinstance(data, Value) else type(data).__name__
            raise TypeError(f"Value() takes a real number (int, float, numpy scalar), got {what}: {data!r}")
        if not isinstance(label, str):
            raise TypeError(f"Value label must be a str, got {type(label).__name__}: {label!r}")
        if role not in ROLES:
            raise ValueError(f"Value role must be one of {ROLES}, got {role!r}")
        store.init_leaf(self, x, label, role)

    # -- copies and pickles -------------------------------------------------------------------
    def __copy__(self) -> Value:
        """Another handle on the same node (it keeps the node alive like the original does)."""
        return store.new_handle(self._id)  # type: ignore[return-value]

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
        if x - x:  # NaN or ±inf: listed before it is written (see store.NONFINITE)
            store.NONFINITE.add(self._id)
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
        if x - x:
            store.NONFINITE.add(self._id)
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
        store.rescope(self, path)

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
        return tuple(store.new_handle(p) for p in ids)  # type: ignore[misc]  # self keeps them alive

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


store.set_handle_type(Value)
