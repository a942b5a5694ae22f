"""The backward pass: a function of a graph, not of Python closures.

``backward(G, root)`` orders the root's ancestors with :func:`networkx.topological_sort`, walks that
order in reverse, and for every edge ``u -> v`` adds ``local_grad(u, v) * grad(v)`` to ``grad(u)``.
It runs the same on the live store and on any snapshot loaded from disk, and never recurses in
Python, so a chain of a million nodes is fine. It costs O(the root's ancestors): nodes of unrelated
graphs in the same store are never visited. All grads are computed first and then written in one
C-level pass, so a failure (or an interrupt) never leaves half of them written.

Gradient bookkeeping is PyTorch's: non-leaf nodes receive exactly d(root)/d(node) of this call,
leaves (in-degree 0) accumulate with ``+=``.
"""

from __future__ import annotations

import math
import numbers
from collections import deque
from collections.abc import Hashable
from itertools import compress, repeat
from operator import setitem
from typing import Any

import networkx as nx

from . import modes, store
from ._real import as_float
from .anomaly import check_backward

__all__ = ["backward", "backward_value"]


def _ancestors(pred: Any, root: Hashable) -> set[Hashable]:
    """The root and all its ancestors, by an iterative search over the predecessor dicts."""
    seen = {root}
    stack = [root]
    push = stack.append
    add = seen.add
    while stack:
        for u in pred[stack.pop()]:
            if u not in seen:
                add(u)
                push(u)
    return seen


_NO_ATTRS: dict[str, Any] = {}


def _nonfinite(g: float) -> bool:
    return not math.isfinite(g)


def _graph_of(node: dict[Hashable, Any], succ: dict[Hashable, Any], pred: dict[Hashable, Any]) -> nx.DiGraph:
    """A DiGraph over the given adjacency dicts (made to be sorted, not read)."""
    H = store.SortableDiGraph()
    H._node = node
    H._succ = H._adj = succ
    H._pred = pred
    H.neighbors = succ.__getitem__  # asked once per node by the sort: a C call (see store.LIVE_SORT)
    return H


def _induced(G: nx.DiGraph, anc: set[Hashable]) -> nx.DiGraph:
    """The subgraph of G induced by ``anc`` (closed under predecessors), children in G's order.

    Built from G's adjacency dicts directly, sharing the inner dicts where nothing is filtered out.
    Its node attribute dicts are one shared empty dict.
    """
    succ, pred = G._succ, G._pred
    keep = anc.issuperset
    return _graph_of(
        dict.fromkeys(anc, _NO_ATTRS),
        {u: s if keep(s) else {v: e for v, e in s.items() if v in anc} for u in anc for s in (succ[u],)},
        {u: pred[u] for u in anc},  # every predecessor of an ancestor is an ancestor
    )


def _induced_live(anc: set[Hashable]) -> nx.DiGraph:
    """The same for the live store, built from the predecessor side only: O(the ancestors' edges),
    however many other children their nodes have (a parameter used by every kept step's graph).

    Store ids grow with creation, so visiting ``anc`` in id order lists each node's children in
    creation order, the order of its successor dict in the store.
    """
    pred = store.PRED
    hsucc: dict[Hashable, dict[Hashable, Any]] = {u: {} for u in anc}
    for v in sorted(anc):  # type: ignore[type-var]
        for u, e in pred[v].items():  # type: ignore[index]
            hsucc[u][v] = e
    return _graph_of(dict.fromkeys(anc, _NO_ATTRS), hsucc, {u: pred[u] for u in anc})  # type: ignore[index]


def _sorted_graph(G: nx.DiGraph, root: Hashable) -> tuple[list[Hashable], dict[Hashable, Any]]:
    """A ``networkx.topological_sort`` order of root and ancestors, and the successor dicts to pull
    gradients through (children among the ancestors only), at a cost of O(the ancestors)."""
    live = G is store.GRAPH
    # A training step's store is the root's ancestors and nothing else: sort it as it is.
    if live and store.only_sink(root):  # type: ignore[arg-type]
        return list(nx.topological_sort(store.LIVE_SORT)), G._succ
    anc = _ancestors(G._pred, root)
    if len(anc) == len(G._node):
        return list(nx.topological_sort(store.LIVE_SORT if live else G)), G._succ
    # Share the store's successor dicts when no ancestor has children elsewhere (threads with their own
    # graphs); build them from the predecessor side when some do (a loop that keeps every step's loss).
    shared = not live or all(map(anc.issuperset, map(G._succ.__getitem__, anc)))
    H = _induced(G, anc) if shared else _induced_live(anc)
    try:
        return list(nx.topological_sort(H)), H._succ
    finally:
        H.__dict__.clear()  # drop the views networkx caches on H (they refer back to H: a cycle)


def _check_edges(G: nx.DiGraph, order: list[Hashable]) -> None:
    """ValueError naming the first edge into ``order`` without a real-number ``local_grad``."""
    pred = G._pred
    for v in order:
        for u, e in pred[v].items():
            lg = e.get("local_grad")
            if isinstance(lg, bool) or not isinstance(lg, numbers.Real):
                raise ValueError(f"backward: edge {(u, v)} has no real-number 'local_grad' attribute (got {lg!r})")
            try:
                float(lg)
            except (OverflowError, ValueError, TypeError):
                raise ValueError(f"backward: edge {(u, v)} has a 'local_grad' no float can hold: {lg!r}") from None


def _gradients(
    G: nx.DiGraph, root: Hashable, seed: float, sorted_graph: tuple[list[Hashable], dict[Hashable, Any]], exact: bool
) -> dict[Hashable, float]:
    """New ``grad`` of the root and each ancestor: d(root)/d(node), leaves accumulating.

    ``sorted_graph`` normally lists the root and its ancestors only, so the root comes last and
    every other node's children in ``succ`` come after it (:func:`_pull`); should it hold other
    nodes, they get no entry (:func:`_pull_some`). Each node pulls
    ``sum(local_grad(u, v) * grad(v))`` over those children in the order of its successor dict in G
    (creation order), so the result is bit-for-bit the same whatever else is in the graph and
    whichever valid topological order networkx returns. ``exact`` says every ``local_grad`` and
    ``grad`` is already a Python float (the live store); otherwise each is converted with ``float()``
    first. Nothing is written here.
    """
    order, succ = sorted_graph
    pred, node = G._pred, G._node
    if order and order[-1] == root:
        try:
            return _pull(order, succ, pred, node, root, seed, exact)
        except (KeyError, TypeError):  # a node that is no ancestor was sorted too (see only_sink)
            pass
    return _pull_some(order, succ, pred, node, root, seed, exact)


def _pull(
    order: list[Hashable], succ: Any, pred: Any, node: Any, root: Hashable, seed: float, exact: bool
) -> dict[Hashable, float]:
    """:func:`_gradients` when ``order`` is the root (last) and its ancestors only: every child a
    node pulls from comes later in the order, so its grad is known."""
    rest = reversed(order)
    next(rest)
    acc: dict[Hashable, float] = {root: seed if pred[root] else _accumulate(node, root, seed, exact)}
    for u in rest:
        g: Any = None
        if exact:
            for v, e in succ[u].items():
                g = e["local_grad"] * acc[v] if g is None else g + e["local_grad"] * acc[v]
        else:
            for v, e in succ[u].items():
                t = float(e["local_grad"]) * acc[v]
                g = t if g is None else g + t
        acc[u] = g if pred[u] else _accumulate(node, u, g, exact)
    return acc


def _pull_some(
    order: list[Hashable], succ: Any, pred: Any, node: Any, root: Hashable, seed: float, exact: bool
) -> dict[Hashable, float]:
    """:func:`_gradients` when ``order`` may hold nodes that are no ancestors of the root: they get
    no grad, and children without one are skipped."""
    acc: dict[Hashable, float] = {root: seed}
    get = acc.get
    for u in reversed(order):
        if u == root:
            g: Any = seed
        else:
            g = None
            for v, e in succ[u].items():
                gv = get(v)
                if gv is not None:
                    t = (e["local_grad"] if exact else float(e["local_grad"])) * gv
                    g = t if g is None else g + t
            if g is None:
                continue
            acc[u] = g
        if not pred[u]:
            acc[u] = _accumulate(node, u, g, exact)
    return acc


def _accumulate(node: dict[Hashable, Any], u: Hashable, g: float, exact: bool) -> float:
    """A leaf's new grad: its old ``grad`` plus ``g``."""
    old = node[u].get("grad", 0.0)
    if not exact:
        f = as_float(old)
        if f is None:
            raise ValueError(f"backward: node {u!r} has a non-numeric 'grad' to accumulate into: {old!r}")
        old = f
    return old + g  # type: ignore[no-any-return]


def _checked(
    G: nx.DiGraph, root: Hashable, seed: float, sorted_graph: tuple[list[Hashable], dict[Hashable, Any]], exact: bool
) -> dict[Hashable, float]:
    """:func:`_gradients`, then, inside :func:`graphtrace.detect_anomaly`, the check of every new grad."""
    acc = _gradients(G, root, seed, sorted_graph, exact)
    if modes._mode.anomaly:
        check_backward(G, sorted_graph[0], sorted_graph[1], acc)
    return acc


def _write(G: nx.DiGraph, acc: dict[Hashable, float]) -> None:
    """Store every computed grad: one C-level pass, so nothing can stop it half-way. In the live store,
    non-finite grads are listed in ``store.NONFINITE`` first (a finite sum has only finite terms)."""
    if G is store.GRAPH and not math.isfinite(sum(acc.values())):
        store.NONFINITE.update(compress(acc, map(_nonfinite, acc.values())))  # type: ignore[arg-type]
    deque(map(setitem, map(G._node.__getitem__, acc), repeat("grad"), acc.values()), maxlen=0)


def _seed(grad: Any) -> float:
    seed = as_float(grad)
    if seed is None:
        raise TypeError(f"backward: grad must be a real number, got {type(grad).__name__}: {grad!r}")
    return seed


def backward(G: nx.DiGraph, root: Any = None, grad: float = 1.0) -> nx.DiGraph:
    """Backpropagate from ``root`` over any graphtrace DiGraph, storing grads as node attributes.

    Parameters
    ----------
    G : networkx.DiGraph
        A snapshot from :func:`graphtrace.to_networkx` or :func:`graphtrace.load` (or any DAG whose
        edges carry a numeric ``local_grad``).
    root : node id or Value, optional
        Where to start; defaults to ``G.graph["root"]``, which snapshots set.
    grad : float, optional
        The seed d(root)/d(root), 1.0 by default.

    Returns
    -------
    networkx.DiGraph
        ``G`` itself, with ``grad`` set on the root and its ancestors.

    Raises
    ------
    TypeError
        If ``G`` is not a directed networkx graph or ``grad`` is not a real number.
    ValueError
        If ``root`` is missing or not in ``G``, ``G`` has a cycle, an edge lacks a real-number
        ``local_grad`` or a leaf's ``grad`` is not a number. Every grad is computed before any is
        written, so on any failure ``G`` is left exactly as it was.

    Examples
    --------
    >>> import graphtrace as gt
    >>> a = gt.Value(2.0, label="a"); b = gt.Value(-3.0, label="b")
    >>> L = a * b
    >>> G = gt.to_networkx(L)
    >>> _ = gt.backward(G, L.node_id)
    >>> G.nodes[a.node_id]["grad"], G.nodes[b.node_id]["grad"]
    (-3.0, 2.0)
    """
    if not isinstance(G, nx.DiGraph) or G.is_multigraph():
        raise TypeError(f"backward: G must be a networkx.DiGraph, got {type(G).__name__}")
    if isinstance(root, store.Handle):
        root = root.node_id  # type: ignore[attr-defined]
    if root is None:
        root = G.graph.get("root")
        if root is None:
            raise ValueError("backward: no root given and G.graph has no 'root' entry")
    seed = _seed(grad)
    if root not in G:
        raise ValueError(f"backward: root {root!r} is not a node of G")
    if G is store.GRAPH:
        with store.graph_lock():
            _write(G, _checked(G, root, seed, _sorted_graph(G, root), True))
            store.reset_shared_edges()
        return G
    try:
        sorted_graph = _sorted_graph(G, root)
    except nx.NetworkXUnfeasible as exc:
        raise ValueError("backward: G has a cycle, so it is not a computation graph") from exc
    _check_edges(G, sorted_graph[0])
    acc = _checked(G, root, seed, sorted_graph, False)  # every failure happens before the write
    _write(G, acc)
    return G


def backward_value(v: Any, grad: float = 1.0) -> None:
    """``Value.backward``: backpropagate over the live store from Value ``v``."""
    seed = _seed(grad)
    G = store.GRAPH
    with store.graph_lock():
        _write(G, _checked(G, v._id, seed, _sorted_graph(G, v._id), True))
        store.reset_shared_edges()  # a training step's values: the next step's ops share new ones
