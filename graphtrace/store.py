"""The live graph store: one ``networkx.DiGraph`` holding every node that a live Value depends on.

This is the only module that writes the store. :mod:`graphtrace.value`'s operators record through
:func:`record_unary`, :func:`record_binary` and :func:`record_leaf` (each evaluates the op's rule from
:data:`graphtrace.rules.RULES`, then adds the node, its edges and its handle); :func:`new_handle` adds
a handle on an existing node. Everything else reads under :func:`graph_lock`.

Lifetime
--------
A node lives while a live :class:`~graphtrace.Value` depends on it: while a Value handle on it is
alive (``HANDLES`` holds a weak reference per handle) or while it has a child node, which itself
lives by the same rule. Values hold no references to other Values and the store holds no Values,
so the engine creates no reference cycles. When a Value dies, its weak reference's callback is
``list.append`` of the ``_dead`` queue: a C function, so a Value's death runs no Python code at all.
The next :func:`graph_lock` (``backward``, a snapshot, ``len(GRAPH)``), and every op once more than
``_BATCH`` deaths are queued, :func:`flush`\\ es that queue, removing every node left without
handles and children, iteratively.

Interrupt safety
----------------
A ``KeyboardInterrupt`` (or any exception a signal handler raises) can only surface where CPython
checks for pending calls: at function entry, at a backward jump, after a call. So:

* every write of a recorded op happens inside ``with LOCK:`` as a sequence of dict stores with no
  such check point in it (``with`` releases the lock on any exception, and CPython checks nothing
  between taking the lock and entering the block);
* ``_held`` (the flag other threads poll instead of sleeping on the lock) is set by each locked block's
  first statement and cleared by its ``finally``, with no check point between either and the lock;
* a Value's death is a C-level append (no Python frame to interrupt);
* :func:`flush` is a work queue processed step by step, each step either done completely or not at
  all, and redoing a step is harmless; an interrupted flush leaves its remaining work queued for the
  next one.

So the lock is never left held and no node becomes unfreeable, whatever bytecode an exception hits.
Signal handlers must not record ops themselves (the lock is not re-entrant).

For speed the writes go to the DiGraph's own dicts (``_node``, ``_succ``, ``_pred``) exactly as
``DiGraph.add_node`` / ``add_edge`` / ``remove_node`` would; ``tests/test_store.py`` fails loudly if
networkx changes that layout, and ``pyproject.toml`` pins the networkx range.
"""

from __future__ import annotations

import itertools
import math
import sys
import threading
import time
import weakref
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from itertools import compress, repeat
from operator import add
from typing import Any, TypeVar

import networkx as nx
from networkx.classes.reportviews import InDegreeView

from ._handle import Handle
from ._real import as_float
from .modes import _THREADS, CHECKING, _mode, enable_grad, grad_enabled, no_grad
from .scope_state import ROOT_SCOPE, SCOPE, ScopeFrame, _scope_get, current_scope_path

__all__ = [
    "CHECKING",
    "GRAPH",
    "HANDLES",
    "LOCK",
    "NONFINITE",
    "PICKED",
    "ROOT_SCOPE",
    "SCOPE",
    "SOURCES",
    "UNIT_OPS",
    "AdjacencyDict",
    "Handle",
    "Ref",
    "ScopeFrame",
    "SortableDiGraph",
    "current_scope_path",
    "enable_grad",
    "flush",
    "grad_enabled",
    "graph_lock",
    "init_leaf",
    "live_count",
    "new_handle",
    "new_id",
    "no_grad",
    "node_attrs",
    "only_sink",
    "read_trace",
    "record_binary",
    "record_leaf",
    "record_unary",
    "reset_shared_edges",
    "set_anomaly_check",
    "set_handle_type",
]

LOCK = threading.Lock()
T = TypeVar("T")


class _InDegreeView(InDegreeView):  # type: ignore[misc]
    """networkx's in-degree view, iterating all nodes in C: ``networkx.topological_sort`` (the
    backward pass's order) iterates it twice over every node it sorts."""

    def __iter__(self) -> Iterator[tuple[Any, int]]:
        if self._weight is None and self._nodes is self._succ:
            succ = self._succ
            return zip(succ, map(len, map(self._pred.__getitem__, succ)), strict=True)
        return super().__iter__()  # type: ignore[no-any-return]


class SortableDiGraph(nx.DiGraph):  # type: ignore[misc]
    """A DiGraph whose ``in_degree`` view iterates in C (see :class:`_InDegreeView`); otherwise the same."""

    @cached_property
    def in_degree(self) -> InDegreeView:
        return _InDegreeView(self)


class _LiveGraph(SortableDiGraph):
    """The store's DiGraph: counting its nodes or edges applies queued frees first (unless the lock
    is held, as inside a locked section), so ``len(GRAPH)`` is the number of nodes a live Value needs."""

    def _settle(self) -> None:
        global _held
        if (_dead or _free) and self is GRAPH and not _held:
            with LOCK:
                _held = True
                try:
                    flush()
                finally:
                    _held = False

    def __len__(self) -> int:
        self._settle()
        return len(self._node)

    def number_of_nodes(self) -> int:
        self._settle()
        return len(self._node)

    def number_of_edges(self, u: Any = None, v: Any = None) -> int:
        self._settle()
        return super().number_of_edges(u, v)  # type: ignore[no-any-return]


#: The live store. Read it under :data:`LOCK` (use :func:`graph_lock`); prefer
#: :func:`graphtrace.to_networkx`, which returns an independent snapshot.
GRAPH: nx.DiGraph = _LiveGraph(name="graphtrace live store")

NODE: dict[int, dict[str, Any]] = GRAPH._node
SUCC: dict[int, dict[int, dict[str, float]]] = GRAPH._succ
PRED: dict[int, dict[int, dict[str, float]]] = GRAPH._pred


class _LiveSortView(SortableDiGraph):
    """The live store's own dicts, as :func:`networkx.topological_sort` reads them when a backward pass
    sorts the whole store (a training step's): ``node in G`` and ``G.neighbors(node)``, asked once per
    node, are C calls on the dicts (``NODE.__contains__``, ``SUCC.__getitem__``) instead of Python
    methods, about a tenth of the sort. Only for sorting: it skips DiGraph's error wrapping."""

    __contains__ = NODE.__contains__  # type: ignore[assignment]
    neighbors = successors = SUCC.__getitem__  # type: ignore[assignment]


#: What the backward pass hands to ``networkx.topological_sort`` to sort the whole live store.
LIVE_SORT: nx.DiGraph = _LiveSortView(name="graphtrace live store (sort view)")
LIVE_SORT._node = NODE
LIVE_SORT._succ = LIVE_SORT._adj = SUCC
LIVE_SORT._pred = PRED


class Ref(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to one Value handle, carrying the node id ``n`` it is a handle on."""

    __slots__ = ("n",)
    n: int


#: node id -> the weak reference of its one live handle, or a tuple of them (copies, ``operands``).
#: Nodes kept only by children are absent.
HANDLES: dict[int, Ref | tuple[Ref, ...]] = {}

#: References of dead handles, appended by CPython itself (the weakref callback is ``list.append``).
_dead: list[Ref] = []
#: Node ids that may have lost their last keeper; removed by :func:`flush` if nothing keeps them.
_free: list[int] = []
_dead_append = _dead.append
_sleep = time.sleep
#: Number of nodes without children, kept exact by every write (each change is made in the same
#: uninterruptible step as the edge or node it counts; ``tests/test_interrupts.py`` checks it after
#: an interrupt storm): :func:`only_sink` and :func:`read_trace` rely on it.
_sinks = 0

#: Ids of nodes whose ``data`` or ``grad`` may be NaN or infinite. Every live node with such a value
#: is in it: each writer of ``data`` / ``grad`` adds the id *before* it writes (record, leaf, the Value
#: setters, the backward pass), and :func:`flush` drops an id when its node is removed. It may also
#: hold ids of nodes that are finite again (or, after an interrupt, were never published), so readers
#: check the values. ``graphtrace.analysis.by_scope`` counts non-finite values from it instead of
#: reading every node's floats.
NONFINITE: set[int] = set()
_nonfinite_add = NONFINITE.add

#: Ids of the nodes ``graphtrace.analysis.by_scope`` looks at one by one: the outputs of the units
#: (``relu`` and ``tanh`` ops, :data:`UNIT_OPS`) and the leaves recorded with role ``"parameter"``.
#: Every live such node is in it: the recorder appends the id inside its locked block, before it
#: publishes the node. It also holds ids of nodes removed since (or, after an interrupt, never
#: published), so readers look them up in ``NODE``; :func:`flush` drops those once the list has
#: grown past twice the live ones plus a quarter of the store (``_picked_limit``). An ``array`` of
#: 8-byte ints: it keeps no int objects of removed ids alive (they would scatter the heap's 32-byte
#: blocks, which floats use too). A training step's table then reads these few thousand nodes
#: instead of an ``op`` from each of its 66k.
PICKED = array("q")
_picked_append = PICKED.append
_picked_limit = 4096
UNIT_OPS = frozenset(("relu", "tanh"))

#: Where the scope of the recorded nodes changes, in id order: a recorder appends the id of its first
#: new node when that node's scope is not the same string object as the scope of the node published
#: just before it (``_log_scope``), inside its locked block, before publishing. In one thread ids are
#: published in the order they are handed out, so between two id-consecutive live nodes recorded in
#: different scopes lies an entry (after the first, at or before the second). Threads take their ids
#: before the lock, and can publish them out of order: once a second thread has used the store
#: (``_THREADS``), the log is not read any more. Nodes whose scope changed after they were recorded
#: are listed in :data:`RESCOPED`. ``graphtrace.analysis.by_scope`` reads the scope of a few thousand
#: nodes at these places (:func:`scope_starts`) instead of all 66k of a training step. Entries that no
#: live node needs any more are dropped by :func:`prune_scope_log` (each read, and :func:`flush` once
#: the log has grown past twice the live entries plus the store's size). An ``array`` like
#: :data:`PICKED`. The per-op cost is one identity test.
SCOPE_LOG = array("q")
_scope_log_append = SCOPE_LOG.append
_scope_log_limit = 4096
#: the scope of the node published last (None: log the next one)
_log_scope: Any = None
#: Ids of the nodes whose scope was set after they were recorded (:func:`rescope`).
RESCOPED: set[int] = set()


class AdjacencyDict(dict):  # type: ignore[type-arg]
    """The type of the live store's adjacency dicts (a node's successors, its predecessors): a plain
    dict in all but its type, which keeps it tracked by the cyclic garbage collector when empty.

    CPython's full collections untrack every *exact* dict that holds no container (gcmodule's
    ``untrack_dicts``; the test is ``PyDict_CheckExact``). An emptied dict waiting in ``_pool`` is
    such a dict: untracked by a full collection, it is tracked again when reused, as a new object of
    the youngest generation, and promoted to the oldest once more. A training step reuses ~2 per
    node, so on CPython 3.12 micrograd's demo step (W1) fell into one full collection per step for
    most steps (130k dicts untracked each time, then re-promoted: a quarter of the oldest generation,
    the trigger of the next one): 110-150 ms more per step. A subclass is never untracked, so reused
    dicts stay where the pool is meant to keep them, in the oldest generation. Snapshots copy the
    adjacency into plain dicts.
    """

    __slots__ = ()


#: Adjacency dicts of freed nodes, emptied, for new nodes to reuse (at most ``_POOL_MAX``). A node's
#: successor and predecessor dicts hold edge dicts, so the cyclic garbage collector tracks them, and a
#: training step's graph is ~2 tracked dicts per node: made new each step they are promoted to the
#: oldest generation and trigger its full collections (the CPython rule: once a quarter of its size
#: is new), which then walk the whole heap. Reused, they already are old: a training loop promotes
#: almost nothing, whatever its size. Only dicts nothing else refers to are reused. They are
#: :class:`AdjacencyDict` s, so that a full collection leaves the emptied ones tracked and old.
_pool: list[dict[Any, Any]] = []
_take = _pool.pop
_give = _pool.append
_POOL_MAX = 1 << 17
_refs = sys.getrefcount

#: How many handle deaths an op lets queue up before it flushes them (a graph_lock flushes all):
#: one flush per batch instead of one per dead temporary.
_BATCH = 32

_ids = itertools.count()
#: ``next(new_id)`` hands out node ids: increasing ints, so id order is a topological order.
new_id = _ids.__next__


#: True while a thread is inside one of this module's ``with LOCK:`` blocks: set by the block's first
#: statement, cleared by its ``finally`` just before the lock is released (no check point for an
#: asynchronous exception or a thread switch lies between either and the lock itself). Every block
#: is entered as ``while _held: _wait()`` then ``with LOCK:``, with no call between the last test and
#: the lock, so a thread never takes the lock while another holds it: it polls instead, and it never
#: sleeps on the lock. Sleeping on it is what made convoys: the woken thread owns the lock before it
#: has the GIL back, ``LOCK.locked()`` says False until then, and each op of the running thread then
#: blocks in its turn (8 threads ran 3-4x slower than the same work done serially).
_held = False


def _wait() -> None:
    """Wait for another thread's locked section (a backward pass, a snapshot, a big free, or an op it
    was switched out in) to end, polling with short sleeps instead of sleeping on the lock (see
    ``_held``)."""
    while _held:
        _sleep(0.0002)


class _NodeAttrs:
    """Its instances' ``__dict__`` are node-attribute dicts sharing one key table (CPython's
    key-sharing instance dicts): ``data``, ``grad``, ``op``, ``label``, ``role``, ``scope`` (always set
    in this order) in about 120 bytes, where a six-key dict literal takes 272."""


class _EdgeAttrs:
    """Its instances' ``__dict__`` are edge-attribute dicts sharing one key table: about 96 bytes
    instead of 190 for a one-key dict literal."""


def node_attrs(data: float, grad: float, op: str, label: str, role: str, scope: str) -> dict[str, Any]:
    """A node-attribute dict in the store's compact layout (see :class:`_NodeAttrs`)."""
    o = _NodeAttrs()
    o.data = data  # type: ignore[attr-defined]
    o.grad = grad  # type: ignore[attr-defined]
    o.op = op  # type: ignore[attr-defined]
    o.label = label  # type: ignore[attr-defined]
    o.role = role  # type: ignore[attr-defined]
    o.scope = scope  # type: ignore[attr-defined]
    return o.__dict__  # outlives o: an ordinary dict from here on


# Edge-attribute dicts shared by value. The live store treats edge dicts as read-only (snapshots copy
# them), so the edges whose local derivative has the same nonzero value share one dict: the constant
# derivatives of +, -, neg (about half the edges of a typical trace) and, for *, the other operand's
# data, which a layer's weights and inputs repeat across a batch (a W1 step: 126k edges, 15k edge
# dicts). Each op adds the values it is the first to use (zeros never: -0.0 == 0.0); the backward pass
# of the live store empties the table (see reset_shared_edges), so it holds one step's values.
_FLYWEIGHTS: dict[float, dict[str, float]] = {1.0: {"local_grad": 1.0}, -1.0: {"local_grad": -1.0}}
_SHARED_EDGES: dict[float, dict[str, float]] = dict(_FLYWEIGHTS)
_shared_edge = _SHARED_EDGES.get
#: flush empties the table beyond this many values (a long forward pass without a backward one)
_SHARED_MAX = 1 << 16


def reset_shared_edges() -> None:
    """Forget the shared edge dicts but the constant ones (edges keep theirs). Call with the lock held."""
    _SHARED_EDGES.clear()
    _SHARED_EDGES.update(_FLYWEIGHTS)


_DOMAIN_ERRORS = (ValueError, ArithmeticError)


def _no_check(op: str, operands: tuple[Any, ...], out: float) -> str:
    return ""


#: Called by every op recorded in anomaly mode, before anything is written: raises
#: ``graphtrace.AnomalyError`` for a non-finite result, else returns the user's source line
#: (:mod:`graphtrace.anomaly` installs it).
_check_op: Any = _no_check
#: node id -> the user's source line that recorded it, for ops recorded in anomaly mode only.
SOURCES: dict[int, str] = {}


#: Returns the user's source line (installed by :mod:`graphtrace.anomaly`); asked for a non-finite
#: leaf made in anomaly mode.
_user_line: Any = str


def set_anomaly_check(fn: Any, user_line: Any = str) -> None:
    """Install the function every op recorded in anomaly mode calls (see ``_check_op``), and the one
    that names the user's source line of a non-finite leaf made in anomaly mode."""
    global _check_op, _user_line
    _check_op = fn
    _user_line = user_line


#: The class of the handles ops return; :mod:`graphtrace.value` sets it to ``Value``.
_handle_type: type[Handle] = Handle
_new = object.__new__


def _adjacency() -> tuple[dict[Any, Any], dict[Any, Any]]:
    """Two empty adjacency dicts for a new node: reused ones if any (see ``_pool``)."""
    try:
        return _take(), _take()
    except IndexError:
        return AdjacencyDict(), AdjacencyDict()


def set_handle_type(cls: type[Handle]) -> None:
    """Make the recording functions below return instances of ``cls`` (``graphtrace.Value``)."""
    global _handle_type
    _handle_type = cls


def _describe(x: object) -> str:
    if isinstance(x, Handle):
        a = x._attrs
        return f"{a['label'] or f'node {x._id}'} = {a['data']!r}"
    return repr(x)


def _domain_error(exc: Exception, op: str, *operands: object) -> Exception:
    """The same exception type, with the op and its operands named."""
    args = ", ".join(_describe(x) for x in operands)
    return type(exc)(f"{op}: {exc} (operands: {args}); nothing was recorded")


# -- recording -------------------------------------------------------------------------------------
# Each function below builds everything first (attribute dicts, the handle, its weak reference), then
# writes the node, its edges and its handle in one ``with LOCK:`` block of dict stores (see
# "Interrupt safety" above). They are the hot path of every forward pass, so they are written out in
# full rather than shared through helpers: each helper call would cost a Python frame per op.


def record_leaf(data: float, label: str, role: str, grad: float = 0.0, scope: str | None = None) -> Handle:
    """A new leaf node and a handle on it. ``data``/``grad`` must be floats (checked by the caller)."""
    v = _new(_handle_type)
    init_leaf(v, data, label, role, grad, scope)
    return v


def init_leaf(v: Handle, data: float, label: str, role: str, grad: float = 0.0, scope: str | None = None) -> None:
    """Make the new, unregistered handle ``v`` the handle of a new leaf node (``Value.__init__``)."""
    global _sinks, _held, _log_scope
    n = new_id()
    _mode.enabled  # noqa: B018 (registers a new thread, see _THREADS)
    path: str | None = scope
    if path is None:
        f = _scope_get()
        path = f.path
        if path is None:
            path = f.resolve()
    attrs = node_attrs(data, grad, "", label, role, path)
    v._id = n
    v._attrs = attrs
    r = Ref(v, _dead_append)
    r.n = n
    src = None
    if data - data or grad - grad:  # NaN or ±inf (x - x is 0.0 for every finite x)
        _nonfinite_add(n)
        if _mode.anomaly:  # remember where it was made, for the anomaly message of the op that uses it
            src = _user_line()
    try:  # adjacency dicts: reused ones if any (see _pool)
        sd = _take()
        pd = _take()
    except IndexError:
        sd = AdjacencyDict()
        pd = AdjacencyDict()
    while _held:  # the last test before taking the lock: no call between them (see _held)
        _wait()
    with LOCK:
        _held = True
        try:
            if len(_dead) > _BATCH or _free:
                flush()
            if role == "parameter":  # listed before it is published (see PICKED)
                _picked_append(n)
            if path is not _log_scope:  # see SCOPE_LOG
                _scope_log_append(n)
                _log_scope = path
            NODE[n] = attrs
            SUCC[n] = sd
            PRED[n] = pd
            HANDLES[n] = r
            _sinks += 1
        finally:
            _held = False
    if src is not None:
        SOURCES[n] = src


def record_unary(op: str, fn: Any, x: Handle) -> Handle:
    """``fn(x)`` recorded as node ``op``: ``fn`` is the op's rule (:data:`graphtrace.rules.RULES`),
    returning the result and the local derivative. A domain error records nothing."""
    global _sinks, _held, _log_scope
    try:
        out, dx = fn(x._attrs["data"])
    except _DOMAIN_ERRORS as exc:
        raise _domain_error(exc, op, x) from None
    st = _mode
    en = st.enabled
    if not en:
        return record_leaf(out, "", "leaf")
    src = None if en is True else _check_op(op, (x,), out)
    n = new_id()
    if out - out:  # NaN or ±inf: listed before it is published
        _nonfinite_add(n)
    o = _NodeAttrs()  # node_attrs() written out
    o.data = out  # type: ignore[attr-defined]
    o.grad = 0.0  # type: ignore[attr-defined]
    o.op = op  # type: ignore[attr-defined]
    o.label = ""  # type: ignore[attr-defined]
    o.role = "intermediate"  # type: ignore[attr-defined]
    f = _scope_get()
    scope = f.path
    if scope is None:
        scope = f.resolve()
    o.scope = scope  # type: ignore[attr-defined]
    attrs = o.__dict__
    v = _new(_handle_type)
    v._id = n
    v._attrs = attrs
    r = Ref(v, _dead_append)
    r.n = n
    ex = _shared_edge(dx)
    if ex is None:
        e = _EdgeAttrs()
        e.local_grad = dx  # type: ignore[attr-defined]
        ex = e.__dict__
        if dx:
            _SHARED_EDGES[dx] = ex
    i = x._id
    try:  # adjacency dicts: reused ones if any (see _pool), filled before they are published
        sd = _take()
        pd = _take()
    except IndexError:
        sd = AdjacencyDict()
        pd = AdjacencyDict()
    pd[i] = ex
    while _held:  # the last test before taking the lock: no call between them (see _held)
        _wait()
    with LOCK:
        _held = True
        try:
            if len(_dead) > _BATCH or _free:
                flush()
            if op in UNIT_OPS:  # listed before it is published (see PICKED)
                _picked_append(n)
            if scope is not _log_scope:  # see SCOPE_LOG
                _scope_log_append(n)
                _log_scope = scope
            si = SUCC[i]
            if not si:
                _sinks -= 1
            NODE[n] = attrs
            SUCC[n] = sd
            PRED[n] = pd
            si[n] = ex
            HANDLES[n] = r
            _sinks += 1
        finally:
            _held = False
    if src is not None:
        SOURCES[n] = src
    return v


def record_binary(op: str, fn: Any, x: Any, y: Any) -> Any:
    """``x op y`` recorded, where at least one of x, y is a handle; NotImplemented when the other is
    not a real number. A number operand becomes a constant leaf recorded with the result, before it
    (ids stay topological). A domain error records nothing."""
    global _sinks, _held, _log_scope
    h = _handle_type
    xh = type(x) is h or isinstance(x, Handle)
    yh = type(y) is h or isinstance(y, Handle)
    if xh:
        xv = x._attrs["data"]
    else:
        xv = as_float(x)
        if xv is None:
            return NotImplemented
    if yh:
        yv = y._attrs["data"]
    else:
        yv = as_float(y)
        if yv is None:
            return NotImplemented
    try:
        out, dx, dy = fn(xv, yv)
    except _DOMAIN_ERRORS as exc:
        raise _domain_error(exc, op, x, y) from None
    st = _mode
    en = st.enabled
    if not en:
        return record_leaf(out, "", "leaf")
    src = None if en is True else _check_op(op, (x, y), out)
    f = _scope_get()
    scope = f.path
    if scope is None:
        scope = f.resolve()
    if xh:
        i = x._id
        cx = None
    else:
        i = new_id()
        cx = node_attrs(xv, 0.0, "", "", "constant", scope)
        if xv - xv:
            _nonfinite_add(i)
        cxs, cxp = _adjacency()
    if yh:
        j = y._id
        cy = None
    else:
        j = new_id()
        cy = node_attrs(yv, 0.0, "", "", "constant", scope)
        if yv - yv:
            _nonfinite_add(j)
        cys, cyp = _adjacency()
    n = new_id()
    if out - out:
        _nonfinite_add(n)
    o = _NodeAttrs()  # node_attrs() written out
    o.data = out  # type: ignore[attr-defined]
    o.grad = 0.0  # type: ignore[attr-defined]
    o.op = op  # type: ignore[attr-defined]
    o.label = ""  # type: ignore[attr-defined]
    o.role = "intermediate"  # type: ignore[attr-defined]
    o.scope = scope  # type: ignore[attr-defined]
    attrs = o.__dict__
    v = _new(h)
    v._id = n
    v._attrs = attrs
    r = Ref(v, _dead_append)
    r.n = n
    if i == j:  # x * x: one edge carrying both derivatives
        dx += dy
    ex = _shared_edge(dx)
    if ex is None:
        e = _EdgeAttrs()
        e.local_grad = dx  # type: ignore[attr-defined]
        ex = e.__dict__
        if dx:
            _SHARED_EDGES[dx] = ex
    ey: Any = _shared_edge(dy)
    if ey is None and i != j:
        e = _EdgeAttrs()
        e.local_grad = dy  # type: ignore[attr-defined]
        ey = e.__dict__
        if dy:
            _SHARED_EDGES[dy] = ey
    try:  # adjacency dicts: reused ones if any (see _pool), filled before they are published
        sd = _take()
        pd = _take()
    except IndexError:
        sd = AdjacencyDict()
        pd = AdjacencyDict()
    pd[i] = ex
    if i != j:
        pd[j] = ey
    while _held:  # the last test before taking the lock: no call between them (see _held)
        _wait()
    with LOCK:
        _held = True
        try:
            if len(_dead) > _BATCH or _free:
                flush()
            if scope is not _log_scope:  # see SCOPE_LOG: the first id published here
                _scope_log_append(i if cx is not None else j if cy is not None else n)
                _log_scope = scope
            sinks = 1  # n has no children yet
            if cx is not None:
                NODE[i] = cx
                SUCC[i] = cxs
                PRED[i] = cxp
                sinks += 1
            if cy is not None:
                NODE[j] = cy
                SUCC[j] = cys
                PRED[j] = cyp
                sinks += 1
            si = SUCC[i]
            if not si:
                sinks -= 1
            NODE[n] = attrs
            SUCC[n] = sd
            PRED[n] = pd
            si[n] = ex
            if i != j:
                sj = SUCC[j]
                if not sj:
                    sinks -= 1
                sj[n] = ey
            HANDLES[n] = r
            _sinks += sinks
        finally:
            _held = False
    if src is not None:
        SOURCES[n] = src
    return v


def new_handle(n: int) -> Handle:
    """One more handle on the existing node ``n`` (a copy, ``operands``); it keeps ``n`` alive.
    The caller must keep ``n`` alive meanwhile (hold a handle on it or on a descendant)."""
    global _held
    v = _new(_handle_type)
    v._id = n
    r = Ref(v, _dead_append)
    r.n = n
    while _held:  # the last test before taking the lock: no call between them (see _held)
        _wait()
    with LOCK:
        _held = True
        try:
            if len(_dead) > _BATCH or _free:
                flush()
            v._attrs = NODE[n]
            h = HANDLES.get(n)
            HANDLES[n] = r if h is None else ((*h, r) if isinstance(h, tuple) else (h, r))
        finally:
            _held = False
    return v


def flush() -> None:
    """Apply queued handle deaths and remove every node left unkept. Call with the lock held.

    Each step below is either applied entirely or not at all (no check point for an asynchronous
    exception between its writes), and applying a step twice changes nothing, so an interrupted
    flush is simply resumed by the next one.
    """
    global _sinks, _picked_limit, _scope_log_limit
    if len(_SHARED_EDGES) > _SHARED_MAX:
        reset_shared_edges()
    if len(PICKED) > _picked_limit:
        _picked_limit = 2 * prune_picked() + max(4096, len(NODE) >> 2)
    if len(SCOPE_LOG) > _scope_log_limit:
        _scope_log_limit = 2 * prune_scope_log(_live_ids()) + max(4096, len(NODE))
    dead, free, handles, pool, give = _dead, _free, HANDLES, _pool, _give
    node, succ, pred, nonfinite = NODE, SUCC, PRED, NONFINITE
    while dead or free:
        while dead:  # a handle died: forget it; a node left without handles and children is queued
            r = dead[-1]
            n = r.n
            h = handles.get(n)
            if h is r:
                del handles[n]
                if not succ[n]:
                    free.append(n)
            elif type(h) is tuple and any(x is r for x in h):
                rest = tuple(x for x in h if x is not r)
                handles[n] = rest[0] if len(rest) == 1 else rest
            # the top is still r unless the garbage collector queued a death meanwhile
            if dead[-1] is r:
                del dead[-1]
            else:
                dead.remove(r)
        room = _POOL_MAX - len(pool)
        while free:  # remove m, queueing (below m) each parent it leaves unkept
            m = free[-1]
            sm = succ.get(m)
            if sm or sm is None or m in handles:  # a child or a live handle keeps it (or it is gone)
                del free[-1]
                continue
            pm = pred[m]
            for p in pm:  # each parent: unlinked and, if left unkept, queued, as one step
                s = succ[p]  # a parent outlives its children
                if m in s:
                    del s[m]
                    if not s:
                        _sinks += 1
                        if p not in handles:
                            free.insert(-1, p)
            del pred[m]
            del succ[m]
            del node[m]
            _sinks -= 1
            del free[-1]
            if nonfinite:  # after the step: an interrupt here only leaves a stale id behind
                nonfinite.discard(m)
            # m is gone; keep its adjacency dicts for reuse if nothing else holds them (see _pool)
            if room > 0 and _refs(pm) == 2 and _refs(sm) == 2:
                pm.clear()
                sm.clear()  # empty already; this drops a table grown by children it once had
                give(pm)
                give(sm)
                room -= 2


def prune_picked() -> int:
    """Drop the ids of removed nodes from :data:`PICKED`; return how many stay. One C-level slice
    assignment: interrupted, the list is as it was. Call with the lock held."""
    PICKED[:] = array("q", filter(NODE.__contains__, PICKED))
    return len(PICKED)


def _live_ids() -> list[int]:
    """The live store's ids, ascending. Call with the lock held."""
    ids = list(NODE)  # in the order published: ascending while one thread uses the store
    if len(_THREADS) > 1 and ids != sorted(ids):
        ids.sort()
    return ids


def prune_scope_log(ids: list[int]) -> int:
    """Drop the :data:`SCOPE_LOG` entries that no live node needs (no live id from the entry to the
    next one; the last one stays) and the removed nodes' ids from :data:`RESCOPED`; return how many
    entries stay. ``ids``: :func:`_live_ids`. Each list is replaced in one C-level step (interrupted,
    it is as it was). Call with the lock held.

    An entry whose own node lives is kept. Dead entries come in blocks (a freed step's): a block is
    dropped whole when no live id lies between its first entry and the entry after it, else entry
    by entry.
    """
    log = SCOPE_LOG
    size = len(log)
    alive = list(map(NODE.__contains__, log))
    keep = alive[:]
    keep[-1:] = [True]
    k = 0
    while True:
        try:
            k = alive.index(False, k)  # the first dead entry of a block
        except ValueError:
            break
        try:
            end = alive.index(True, k)
        except ValueError:
            end = size
        hi = bisect_left(ids, log[end]) if end < size else len(ids)
        if bisect_left(ids, log[k]) < hi:  # live nodes in the block's span: look at each entry
            pos = [bisect_left(ids, e) for e in log[k:end]]
            for m, (p, q) in enumerate(zip(pos, [*pos[1:], hi], strict=True)):
                if p < q:
                    keep[k + m] = True
        k = end
    log[:] = array("q", compress(log, keep))
    RESCOPED.difference_update([r for r in RESCOPED if r not in NODE])
    return len(log)


def scope_starts(ids: list[int]) -> list[int] | None:
    """The positions in ``ids`` (the live store's ids, ascending) where a run of nodes recorded in one
    scope may begin, from :data:`SCOPE_LOG` (pruned first) and :data:`RESCOPED` (a superset of the
    runs' starts; the caller reads the scope there); None when the log cannot tell (a second thread
    has used the store). Call with the lock held.

    Examples
    --------
    >>> import graphtrace as gt
    >>> from graphtrace import store
    >>> with gt.scope("A"):
    ...     y = gt.Value(1.0) * 2.0
    >>> z = y + 1.0
    >>> with store.graph_lock():
    ...     ids = store._live_ids()
    ...     starts = store.scope_starts(ids)
    >>> starts is None or [store.NODE[ids[p]]["scope"] for p in starts][-2:] == ["A", ""]
    True
    """
    if not ids:
        return []
    if len(_THREADS) > 1:
        return None
    prune_scope_log(ids)
    size = len(ids)
    cand = set(map(bisect_left, repeat(ids), SCOPE_LOG))
    rescoped = list(map(bisect_left, repeat(ids), RESCOPED))  # all live: pruned above
    cand.update(rescoped)  # a rescoped node may start a run, and so may the node after it
    cand.update(map(add, rescoped, repeat(1)))
    cand.add(0)
    cand.discard(size)
    return sorted(cand)


def rescope(v: Handle, path: str) -> None:
    """Set the scope of ``v``'s node to ``path`` (listed in :data:`RESCOPED` first)."""
    with graph_lock():
        RESCOPED.add(v._id)
        v._attrs["scope"] = path


def only_sink(n: int) -> bool:
    """Whether node ``n`` is the store's only node without children, so that every node of the
    store is ``n`` or one of its ancestors (a training step's store). O(1). Call with the lock held."""
    return _sinks == 1 and not SUCC.get(n, True)


def read_trace(
    n: int,
    read: Callable[
        [list[int], dict[int, dict[str, Any]], list[int] | None, list[dict[str, Any]], list[dict[str, Any]]], T
    ],
) -> T | None:
    """``read(ids, node, starts, nonfinite, picked)`` with the lock held, when node ``n`` is the store's
    only sink (so the store is exactly ``n``'s trace, as after a training step's backward pass); else
    None.

    ``ids`` are every node's id, ascending (creation order: a topological order, the one a snapshot is
    read in), ``node`` maps them to their attribute dicts (:data:`NODE`), ``starts`` the positions in
    ``ids`` where a run of nodes of one scope may begin (:func:`scope_starts`; None: read every
    node's scope), ``nonfinite`` the attribute dicts of the nodes whose ``data`` or ``grad`` is NaN or
    infinite (found through :data:`NONFINITE`, without reading every float), ``picked`` those of the
    unit outputs and parameters (:data:`PICKED`, without reading every ``op``). ``read`` must not keep
    or change the dicts: it reads the live store, no copy. The sink count behind this test is kept
    exact by every write (see ``_sinks``).

    Examples
    --------
    >>> import graphtrace as gt
    >>> from graphtrace import store
    >>> x = gt.Value(1.0)
    >>> y = x * 2.0
    >>> store.read_trace(x._id, lambda ids, node, starts, bad, picked: len(ids)) is None  # x has a child
    True
    """
    fin = math.isfinite
    with graph_lock():
        if not only_sink(n):
            return None
        ids = _live_ids()
        bad = [a for a in map(NODE.get, list(NONFINITE)) if a is not None and not (fin(a["data"]) and fin(a["grad"]))]
        picked = list(filter(None, map(NODE.get, PICKED)))  # the live ones (flush prunes the list)
        return read(ids, NODE, scope_starts(ids), bad, picked)


def live_count() -> int:
    """Number of nodes in the live store, after applying queued frees.

    Examples
    --------
    >>> import graphtrace as gt
    >>> from graphtrace import store
    >>> before = store.live_count()
    >>> y = gt.Value(2.0) * 3
    >>> store.live_count() - before  # the leaf 2.0 is kept by y, the constant 3 too
    3
    >>> del y
    >>> store.live_count() - before
    0
    """
    with graph_lock() as G:
        return len(G)


@contextmanager
def graph_lock() -> Iterator[nx.DiGraph]:
    """Hold the store lock, with queued removals applied; yields the live graph."""
    global _held
    while _held:  # the last test before taking the lock: no call between them (see _held)
        _wait()
    with LOCK:
        _held = True
        try:
            if _dead or _free:
                flush()
            yield GRAPH
        finally:
            _held = False
