"""The live graph store: one ``networkx.DiGraph`` holding every live :class:`~graphtrace.Value`.

This is the only module that knows how nodes are created and freed. A node lives exactly as long
as its Value: each Value holds references to its operand Values, so a node's ancestors stay alive
while it does; when the last reference to a Value goes, reference counting frees it and its
``__del__`` removes the node (and its in-edges) from the store. Nothing here holds a Value, so the
engine creates no reference cycles and never needs the cyclic garbage collector.

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

__all__ = ["GRAPH", "LOCK", "flush", "grad_enabled", "graph_lock", "new_id", "no_grad", "release"]

#: The live store. Read it under :data:`LOCK` (use :func:`graph_lock`); prefer
#: :func:`graphtrace.to_networkx`, which returns an independent snapshot.
GRAPH: nx.DiGraph = nx.DiGraph(name="graphtrace live store")
LOCK = threading.Lock()

NODE: dict[int, dict[str, Any]] = GRAPH._node
SUCC: dict[int, dict[int, dict[str, float]]] = GRAPH._succ
PRED: dict[int, dict[int, dict[str, float]]] = GRAPH._pred

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


def _remove(n: int) -> None:
    """Remove node ``n`` and its in-edges. Call with the lock held."""
    preds = PRED.pop(n, None)
    if preds is None:
        return
    for p in preds:
        s = SUCC.get(p)
        if s is not None:
            s.pop(n, None)
    # out-edges can only remain to children that are themselves pending removal
    del SUCC[n]
    del NODE[n]


def flush() -> None:
    """Remove the nodes queued while the lock was busy. Call with the lock held."""
    while _pending:
        _remove(_pending.pop())


def release(n: int) -> None:
    """Free node ``n``: called from ``Value.__del__`` when its Value is gone."""
    if LOCK.acquire(False):
        try:
            _remove(n)
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
