"""The live graph store: one ``networkx.DiGraph`` holding every node that a live Value depends on.

This is the only module that writes the store. :mod:`graphtrace.value` records ops through
:func:`add_node` and :func:`add_handle`; everything else reads under :func:`graph_lock`.

Lifetime
--------
A node lives while a live :class:`~graphtrace.Value` depends on it: while a Value handle on it is
alive (``HANDLES`` holds a weak reference per handle) or while it has a child node, which itself
lives by the same rule. Values hold no references to other Values and the store holds no Values,
so the engine creates no reference cycles. When a Value dies, its weak reference's callback is
``list.append`` of the ``_dead`` queue: a C function, so a Value's death runs no Python code at all.
The next locked section (the next op, ``backward``, a snapshot, :func:`graph_lock`) first
:func:`flush`\\ es that queue, removing every node left without handles and children, iteratively.

Interrupt safety
----------------
A ``KeyboardInterrupt`` (or any exception a signal handler raises) can only surface where CPython
checks for pending calls: at function entry, at a backward jump, after a call. So:

* every write of a recorded op happens inside ``with LOCK:`` as a sequence of dict stores with no
  such check point in it (``with`` releases the lock on any exception, and CPython checks nothing
  between taking the lock and entering the block);
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
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import networkx as nx

__all__ = [
    "GRAPH",
    "HANDLES",
    "LOCK",
    "Handle",
    "Ref",
    "add_handle",
    "add_node",
    "enable_grad",
    "flush",
    "grad_enabled",
    "graph_lock",
    "live_count",
    "new_id",
    "new_ref",
    "no_grad",
    "only_sink",
]

LOCK = threading.Lock()


class _LiveGraph(nx.DiGraph):  # type: ignore[misc]
    """The store's DiGraph: counting its nodes or edges applies queued frees first (unless the lock
    is held, as inside a locked section), so ``len(GRAPH)`` is the number of nodes a live Value needs."""

    def _settle(self) -> None:
        if (_dead or _free) and self is GRAPH and not LOCK.locked():
            with LOCK:
                flush()

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


class Handle:
    """Base class of handles on store nodes (:class:`graphtrace.Value`): lets modules below
    ``value.py`` (the backward pass, number coercion) recognise a Value without importing it."""

    __slots__ = ()


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
#: Number of nodes without children. Only a hint for :func:`only_sink`: it is kept exact, but a
#: wrong value would cost speed, never correctness.
_sinks = 0

_ids = itertools.count()
#: ``next(new_id)`` hands out node ids: increasing ints, so id order is a topological order.
new_id = _ids.__next__


_locked = LOCK.locked


def _wait() -> None:
    """Wait for another thread's long locked section (a backward pass, a snapshot, a big free) to end,
    polling with short sleeps instead of sleeping on the lock: a thread asleep on the lock is handed it
    while it has no GIL, and every op of the other threads then waits for two context switches (a lock
    convoy). If another thread takes the lock first, the ``with LOCK`` that follows simply blocks."""
    while _locked():
        _sleep(0.0002)


def new_ref(v: object, n: int) -> Ref:
    """A weak reference that queues itself in ``_dead`` when handle ``v`` of node ``n`` dies.

    Made before the node is registered (:func:`add_node`, :func:`add_handle`): a reference that
    dies unregistered is skipped by :func:`flush`.
    """
    r = Ref(v, _dead_append)
    r.n = n
    return r


def add_node(
    n: int,
    attrs: dict[str, Any],
    ref: Ref,
    i: int = -1,
    ei: dict[str, float] | None = None,
    j: int = -1,
    ej: dict[str, float] | None = None,
    ci: dict[str, Any] | None = None,
    cj: dict[str, Any] | None = None,
) -> None:
    """Record node ``n`` with one live handle ``ref`` and edges from up to two operands.

    ``i``/``j`` are operand node ids (``-1``: none; ``j == i`` records one edge, ``ei``), ``ei``/``ej``
    their edge-attribute dicts, ``ci``/``cj`` the attributes of a constant leaf to create for
    operand ``i``/``j`` in the same step (kept alive by ``n``). All or nothing: the writes below
    contain no point where CPython could raise an asynchronous exception.
    """
    global _sinks
    if _locked():
        _wait()
    with LOCK:
        if _dead or _free:
            flush()
        sinks = 1  # n has no children yet
        if ci is not None:
            NODE[i] = ci
            SUCC[i] = {}
            PRED[i] = {}
        if cj is not None:
            NODE[j] = cj
            SUCC[j] = {}
            PRED[j] = {}
        NODE[n] = attrs
        SUCC[n] = {}
        if ei is None:
            PRED[n] = {}
        elif ej is None or j == i:
            si = SUCC[i]
            if not si and ci is None:
                sinks -= 1
            PRED[n] = {i: ei}
            si[n] = ei
        else:
            si = SUCC[i]
            sj = SUCC[j]
            if not si and ci is None:
                sinks -= 1
            if not sj and cj is None:
                sinks -= 1
            PRED[n] = {i: ei, j: ej}
            si[n] = ei
            sj[n] = ej
        HANDLES[n] = ref
        _sinks += sinks


def add_handle(n: int, ref: Ref) -> None:
    """Register one more live handle ``ref`` on the existing node ``n`` (a copy, ``operands``)."""
    if _locked():
        _wait()
    with LOCK:
        if _dead or _free:
            flush()
        h = HANDLES.get(n)
        HANDLES[n] = ref if h is None else ((*h, ref) if isinstance(h, tuple) else (h, ref))


def flush() -> None:
    """Apply queued handle deaths and remove every node left unkept. Call with the lock held.

    Each step below is either applied entirely or not at all (no check point for an asynchronous
    exception between its writes), and applying a step twice changes nothing, so an interrupted
    flush is simply resumed by the next one.
    """
    global _sinks
    dead, free, handles = _dead, _free, HANDLES
    node, succ, pred = NODE, SUCC, PRED
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
        while free:  # remove m, queueing (below m) each parent it leaves unkept
            m = free[-1]
            if m in handles or succ.get(m, True):  # a live handle or a child keeps it (or it is gone)
                del free[-1]
                continue
            for p in pred[m]:
                s = succ.get(p)
                if s is not None:
                    if m in s:
                        del s[m]
                        if not s:
                            _sinks += 1
                    if not s and p not in handles:
                        free.insert(-1, p)
            del pred[m]
            del succ[m]
            del node[m]
            _sinks -= 1
            del free[-1]


def only_sink(n: int) -> bool:
    """Whether node ``n`` is the store's only node without children, so that every node of the
    store is ``n`` or one of its ancestors (a training step's store). O(1). Call with the lock held."""
    return _sinks == 1 and not SUCC.get(n, True)


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


class _GradMode(threading.local):
    """Per-thread recording state: whether ops record (:func:`no_grad`), and the scope path that
    every node recorded now carries (:func:`graphtrace.scope`; ``""`` outside any scope)."""

    enabled: bool = True
    scope: str = ""
    #: call counts of module names within each open scope, innermost last (see graphtrace.scopes)
    frames: list[dict[str, Any]]

    def __init__(self) -> None:
        self.frames = [{}]


_mode = _GradMode()


def grad_enabled() -> bool:
    """Whether ops in this thread record nodes and edges (False inside :func:`no_grad`)."""
    return _mode.enabled


@contextmanager
def no_grad() -> Iterator[None]:
    """Context manager: ops inside record no edges and keep no operand alive (inference).

    Results are plain leaf Values. Like PyTorch's, the mode is per thread and nests.

    Examples
    --------
    >>> import graphtrace as gt
    >>> w = gt.Value(3.0)
    >>> with gt.no_grad():
    ...     y = w * 2.0
    >>> y.op, y.data
    ('', 6.0)
    """
    previous = _mode.enabled
    _mode.enabled = False
    try:
        yield
    finally:
        _mode.enabled = previous


@contextmanager
def enable_grad() -> Iterator[None]:
    """Context manager: ops inside record again, even within :func:`no_grad` (like PyTorch's).

    Examples
    --------
    >>> import graphtrace as gt
    >>> from graphtrace.store import enable_grad
    >>> w = gt.Value(3.0)
    >>> with gt.no_grad(), enable_grad():
    ...     y = w * 2.0
    >>> y.op
    '*'
    """
    previous = _mode.enabled
    _mode.enabled = True
    try:
        yield
    finally:
        _mode.enabled = previous


@contextmanager
def graph_lock() -> Iterator[nx.DiGraph]:
    """Hold the store lock, with queued removals applied; yields the live graph."""
    if _locked():
        _wait()
    with LOCK:
        if _dead or _free:
            flush()
        yield GRAPH
