"""Snapshots: an independent ``networkx.DiGraph`` copy of a Value and all its ancestors."""

from __future__ import annotations

from typing import Any

import networkx as nx

from . import store
from .backward import _ancestors
from .naming import name_nodes, renumber_scopes

__all__ = ["as_graph", "to_networkx"]


def to_networkx(root: Any) -> nx.DiGraph:
    """An independent ``nx.DiGraph`` of ``root`` and all its ancestors.

    Node ids are ints (the Values' ``node_id``); nodes carry ``data``, ``grad``, ``op``, ``label``,
    ``role`` and ``scope``; edges carry ``local_grad``. Every node has a non-empty ``label``: the user's,
    or a name derived from what made it (``mul``, ``mul_1``, ``relu``, ``const``: unique in its scope
    instance and the same in every step, see :mod:`graphtrace.naming`). Scope call indices count from 0
    in the order the calls appear in this trace (``MLP[0]`` is its first sample). ``G.graph["root"]``
    is the root's id. Mutating the snapshot never touches the engine.

    Parameters
    ----------
    root : Value
        The output whose computation graph is wanted.

    Returns
    -------
    networkx.DiGraph

    Raises
    ------
    TypeError
        If ``root`` is not a Value.

    Examples
    --------
    >>> import graphtrace as gt
    >>> x = gt.Value(2.0, label="x")
    >>> y = x * x + 1
    >>> G = gt.to_networkx(y)
    >>> [G.nodes[n]["label"] for n in G]
    ['x', 'mul', 'const', 'add']
    >>> G.edges[x.node_id, y.operands[0].node_id]["local_grad"]
    4.0
    """
    from .value import Value

    if not isinstance(root, Value):
        raise TypeError(f"to_networkx: root must be a graphtrace Value, got {type(root).__name__}")
    G = nx.DiGraph()
    with store.graph_lock():
        pred = store.PRED
        node = store.NODE
        ids: list[int] = sorted(_ancestors(pred, root.node_id))  # type: ignore[arg-type]  # creation order is a topological order
        G.add_nodes_from((n, dict(node[n])) for n in ids)
        G.add_edges_from((u, v, dict(e)) for v in ids for u, e in pred[v].items())
    renumber_scopes(G, ids)
    name_nodes(G, ids)
    G.graph["root"] = root.node_id
    return G


def as_graph(x: Any) -> nx.DiGraph:
    """A snapshot for a root Value, or the DiGraph itself (the exporters' common entry point)."""
    from .value import Value

    if isinstance(x, Value):
        return to_networkx(x)
    if isinstance(x, nx.DiGraph) and not x.is_multigraph():
        return x
    raise TypeError(f"expected a graphtrace Value or a networkx.DiGraph, got {type(x).__name__}")
