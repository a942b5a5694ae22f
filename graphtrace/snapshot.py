"""Snapshots: an independent ``networkx.DiGraph`` copy of a Value and all its ancestors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import networkx as nx

from . import store
from .backward import _ancestors

__all__ = ["as_graph", "auto_name", "to_networkx"]


def auto_name(i: int) -> str:
    """The ``i``-th automatic short name: a, b, ..., z, ba, bb, ... (as jaxprs name variables).

    Examples
    --------
    >>> from graphtrace.snapshot import auto_name
    >>> [auto_name(i) for i in (0, 1, 25, 26, 27)]
    ['a', 'b', 'z', 'ba', 'bb']
    """
    if i < 0:
        raise ValueError(f"auto_name: index must be >= 0, got {i}")
    digits = []
    while True:
        i, r = divmod(i, 26)
        digits.append(chr(ord("a") + r))
        if i == 0:
            return "".join(reversed(digits))


def _auto_labels(labels: Iterable[str], count: int) -> list[str]:
    """``count`` short names, in order, none equal to a label in ``labels``."""
    taken = set(labels)
    out: list[str] = []
    i = 0
    while len(out) < count:
        name = auto_name(i)
        i += 1
        if name not in taken:
            out.append(name)
    return out


def to_networkx(root: Any) -> nx.DiGraph:
    """An independent ``nx.DiGraph`` of ``root`` and all its ancestors.

    Node ids are ints (the Values' ``node_id``); nodes carry ``data``, ``grad``, ``op``, ``label``
    and ``role``; edges carry ``local_grad``. Every node has a non-empty ``label``: the user's, or an
    automatic short name (a, b, ..., z, ba, ...) unique in the snapshot and never equal to a user
    label in it. ``G.graph["root"]`` is the root's id. Mutating the snapshot never touches the engine.

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
    >>> sorted(G.nodes[n]["label"] for n in G)
    ['a', 'b', 'c', 'x']
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
    attrs = G._node
    names = iter(_auto_labels((attrs[n]["label"] for n in ids), sum(1 for n in ids if not attrs[n]["label"])))
    for n in ids:
        if not attrs[n]["label"]:
            attrs[n]["label"] = next(names)
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
