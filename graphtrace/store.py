"""The live graph store: one ``networkx.DiGraph`` holding every node that a live Value depends on.

This is the only module that knows how nodes are created and freed. A node lives exactly as long as a
live :class:`~graphtrace.Value` depends on it: while a Value handle on it is alive (``HANDLES`` counts
them) or while it has a child node, which itself lives by the same rule. Values hold no references to
other Values, and nothing here holds a Value, so the engine creates no reference cycles: when the last
handle of a node goes, reference counting runs its ``__del__``, which removes the node if it has no
children and then, iteratively, every ancestor left without handles and children. Intermediate Values
that user code drops at once (``sum(w * x ...)``) therefore die young: their nodes stay in the graph
while the result needs them, but the Python objects are freed, which keeps the cyclic collector's
work per node low.

For speed the hot paths write the DiGraph's own dicts (``_node``, ``_succ``, ``_pred``) exactly as
``DiGraph.add_node`` / ``add_edge`` / ``remove_node`` would; ``tests/test_store.py`` fails loudly if
networkx changes that layout, and ``pyproject.toml`` pins the networkx range.

Thread safety: every change of the graph happens under :data:`LOCK`. A Value freed while the lock
is busy (by another thread, or re-entrantly by the garbage collector inside a locked section)
queues its node id in a pending list that the next locked section flushes, so no dict is ever
changed while it is being iterated.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import networkx as nx

__all__ = [
    "GRAPH",
    "HANDLES",
    "LOCK",
    "collect",
    "drop_handle",
    "flush",
    "grad_enabled",
    "graph_lock",
    "new_id",
    "no_grad",
    "release",
]

#: The live store. Read it under :data:`LOCK` (use :func:`graph_lock`); prefer
#: :func:`graphtrace.to_networkx`, which returns an independent snapshot.
GRAPH: nx.DiGraph = nx.DiGraph(name="graphtrace live store")
LOCK = threading.Lock()

NODE: dict[int, dict[str, Any]] = GRAPH._node
SUCC: dict[int, dict[int, dict[str, float]]] = GRAPH._succ
PRED: dict[int, dict[int, dict[str, float]]] = GRAPH._pred
#: node id -> number of live Value handles on it (nodes kept only by children are absent)
HANDLES: dict[int, int] = {}

_pending: list[int] = []
_ids = itertools.count()
#: ``next(new_id)`` hands out node ids: increasing ints, so id order is a topological order.
new_id = _ids.__next__


class _GradMode(threading.local):
    enabled: bool = True


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


def collect(n: int) -> None:
    """Remove node ``n`` if nothing keeps it, then every ancestor left unkept. Call with the lock held."""
    stack = [n]
    while stack:
        m = stack.pop()
        if m in HANDLES or SUCC.get(m, True):  # a live handle or a child keeps it (or it is gone)
            continue
        preds = PRED.pop(m)
        del SUCC[m]
        del NODE[m]
        for p in preds:
            s = SUCC.get(p)
            if s is not None:
                del s[m]
                if not s and p not in HANDLES:
                    stack.append(p)


def drop_handle(n: int) -> None:
    """One Value handle on node ``n`` is gone. Call with the lock held."""
    c = HANDLES.get(n)
    if c is None:
        return
    if c > 1:
        HANDLES[n] = c - 1
        return
    del HANDLES[n]
    if not SUCC[n]:
        collect(n)


def flush() -> None:
    """Apply the handle drops queued while the lock was busy. Call with the lock held."""
    while _pending:
        drop_handle(_pending.pop())


def release(n: int) -> None:
    """A Value handle on node ``n`` is gone (``Value.__del__``)."""
    if LOCK.acquire(False):
        try:
            drop_handle(n)
            if _pending:
                flush()
        finally:
            LOCK.release()
    else:
        _pending.append(n)


@contextmanager
def graph_lock() -> Iterator[nx.DiGraph]:
    """Hold the store lock, with queued removals applied; yields the live graph."""
    with LOCK:
        if _pending:
            flush()
        yield GRAPH
