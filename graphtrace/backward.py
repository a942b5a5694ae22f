"""The backward pass: a function of a graph, not of Python closures.

``backward(G, root)`` orders the root's ancestors with :func:`networkx.topological_sort`, walks that
order in reverse, and for every edge ``u -> v`` adds ``local_grad(u, v) * grad(v)`` to ``grad(u)``.
It runs the same on the live store and on any snapshot loaded from disk, and never recurses in
Python, so a chain of a million nodes is fine.

Gradient bookkeeping is PyTorch's: non-leaf nodes receive exactly d(root)/d(node) of this call,
leaves (in-degree 0) accumulate with ``+=``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import networkx as nx

from . import store

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


def _topological_order(G: nx.DiGraph, root: Hashable) -> list[Hashable]:
    """Root and ancestors in a networkx topological order, creating no reference cycle."""
    # In a DAG every node reaches some sink; if the root is the only sink, every node is an
    # ancestor and the whole graph is sorted (the common case: a training step's store).
    if all(s or n == root for n, s in G._succ.items()):
        return list(nx.topological_sort(G))
    anc = _ancestors(G._pred, root)
    # A subgraph view caches views of itself in its __dict__ (a reference cycle); drop them once
    # the order is read so the view is freed by reference counting alone.
    H = G.subgraph(anc)
    try:
        return list(nx.topological_sort(H))
    finally:
        H.__dict__.clear()


def _check_edges(G: nx.DiGraph, order: list[Hashable]) -> None:
    """ValueError naming the first edge into ``order`` without a numeric ``local_grad``."""
    pred = G._pred
    for v in order:
        for u, e in pred[v].items():
            lg = e.get("local_grad")
            if isinstance(lg, bool) or not isinstance(lg, (int, float)):
                raise ValueError(f"backward: edge {(u, v)} has no numeric 'local_grad' attribute")


def _propagate(G: nx.DiGraph, root: Hashable, seed: float, order: list[Hashable]) -> None:
    """Set ``grad`` on the root and each ancestor: d(root)/d(node), leaves accumulating.

    Each node pulls ``sum(local_grad(u, v) * grad(v))`` over its children ``v`` in the order of its
    successor dict (creation order), so the result is bit-for-bit the same whatever else is in the
    graph and whichever valid topological order networkx returns. Nodes outside ``order`` and
    non-ancestors in it are left alone.
    """
    succ, pred, node = G._succ, G._pred, G._node
    acc: dict[Hashable, float] = {root: seed}
    get = acc.get
    for u in reversed(order):
        if u == root:
            g: float | None = seed
        else:
            g = None
            for v, e in succ[u].items():
                gv = get(v)
                if gv is not None:
                    g = e["local_grad"] * gv if g is None else g + e["local_grad"] * gv
            if g is None:
                continue
            acc[u] = g
        attrs = node[u]
        if pred[u]:
            attrs["grad"] = g
        else:
            attrs["grad"] = attrs.get("grad", 0.0) + g


def _seed(grad: Any) -> float:
    from .value import _as_float

    seed = _as_float(grad)
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
        If ``root`` is missing or not in ``G``, ``G`` has a cycle, or an edge lacks ``local_grad``;
        ``G`` is left unchanged.

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
    from .value import Value

    if not isinstance(G, nx.DiGraph) or G.is_multigraph():
        raise TypeError(f"backward: G must be a networkx.DiGraph, got {type(G).__name__}")
    if isinstance(root, Value):
        root = root.node_id
    if root is None:
        root = G.graph.get("root")
        if root is None:
            raise ValueError("backward: no root given and G.graph has no 'root' entry")
    seed = _seed(grad)
    if root not in G:
        raise ValueError(f"backward: root {root!r} is not a node of G")
    if G is store.GRAPH:
        with store.graph_lock():
            _propagate(G, root, seed, _topological_order(G, root))
        return G
    try:
        order = _topological_order(G, root)
    except nx.NetworkXUnfeasible as exc:
        raise ValueError("backward: G has a cycle, so it is not a computation graph") from exc
    _check_edges(G, order)  # before anything is written
    _propagate(G, root, seed, order)
    return G


def backward_value(v: Any, grad: float = 1.0) -> None:
    """``Value.backward``: backpropagate over the live store from Value ``v``."""
    seed = _seed(grad)
    G = store.GRAPH
    with store.graph_lock():
        _propagate(G, v._id, seed, _topological_order(G, v._id))
