"""Paths through a trace: each path's share of a gradient, influence, the critical path, depth, fan-out."""

from __future__ import annotations

import math
from collections import Counter
from itertools import pairwise
from typing import Any

import networkx as nx
import pandas as pd

from ..export.frames import node_roles, topological_nodes
from ..snapshot import as_graph
from ._common import _STR, _root

__all__ = ["critical_path", "depth", "fan_out", "influence", "op_counts", "path_contributions"]


def path_contributions(x: Any, leaf: Any, *, max_paths: int = 100_000) -> pd.DataFrame:
    """Every path from ``leaf`` to the root with the product of its ``local_grad``s.

    The chain rule as a table: the ``contribution`` column sums to d(root)/d(leaf), the leaf's grad.

    Parameters
    ----------
    x : Value or networkx.DiGraph
    leaf : Value or node id
    max_paths : int
        Path counts grow exponentially with reuse; past this many a ValueError is raised.

    Returns
    -------
    pandas.DataFrame
        ``path`` (labels joined by " -> "), ``length`` (edges), ``local_grads`` (joined), ``contribution``.

    Examples
    --------
    >>> import graphtrace as gt
    >>> a = gt.Value(3.0, label="a")
    >>> b = a * a; b.label = "b"
    >>> L = b + a; L.label = "L"
    >>> L.backward()
    >>> df = gt.analysis.path_contributions(L, a)
    >>> df[["path", "contribution"]]
              path  contribution
    0  a -> b -> L           6.0
    1       a -> L           1.0
    >>> float(df["contribution"].sum()) == a.grad
    True
    """
    from ..value import Value

    G = as_graph(x)
    root = _root(G)
    node = leaf.node_id if isinstance(leaf, Value) else leaf
    if node not in G:
        raise ValueError(f"path_contributions: {leaf!r} is not a node of the trace")
    rows = []
    for path in nx.all_simple_paths(G, node, root) if node != root else [[root]]:
        grads = [G.edges[u, v]["local_grad"] for u, v in pairwise(path)]
        rows.append(
            (
                " -> ".join(str(G.nodes[n].get("label", n)) for n in path),
                len(path) - 1,
                " * ".join(f"{g:.6g}" for g in grads),
                math.prod(grads) * (1.0 if node == root else G.nodes[root].get("grad", 1.0)),
            )
        )
        if len(rows) > max_paths:
            raise ValueError(f"path_contributions: more than {max_paths} paths; raise max_paths to list them")
    rows.sort(key=lambda r: -abs(r[3]))
    return pd.DataFrame(
        {
            "path": pd.array([r[0] for r in rows], dtype=_STR),
            "length": pd.array([r[1] for r in rows], dtype="int64"),
            "local_grads": pd.array([r[2] for r in rows], dtype=_STR),
            "contribution": pd.array([r[3] for r in rows], dtype="float64"),
        }
    )


def influence(x: Any) -> pd.DataFrame:
    """Leaves (inputs, parameters, constants) ranked by ``|grad|``, with ``|grad * data|`` too.

    Examples
    --------
    >>> import graphtrace as gt
    >>> a, b = gt.Value(2.0, label="a"), gt.Value(-5.0, label="b")
    >>> L = a * b; L.backward()
    >>> gt.analysis.influence(L)["label"].tolist()
    ['a', 'b']
    """
    G = as_graph(x)
    roles = node_roles(G)
    leaves = [n for n in topological_nodes(G) if not G._pred[n]]
    df = pd.DataFrame(
        {
            "node_id": pd.array(leaves, dtype="int64") if all(type(n) is int for n in leaves) else leaves,
            "label": pd.array([str(G.nodes[n].get("label", "")) for n in leaves], dtype=_STR),
            "role": pd.array([roles[n] for n in leaves], dtype=_STR),
            "data": pd.array([float(G.nodes[n].get("data", math.nan)) for n in leaves], dtype="float64"),
            "grad": pd.array([float(G.nodes[n].get("grad", math.nan)) for n in leaves], dtype="float64"),
        }
    )
    df["abs_grad"] = df["grad"].abs()
    df["abs_grad_x_data"] = (df["grad"] * df["data"]).abs()
    return df.sort_values("abs_grad", ascending=False, kind="stable").reset_index(drop=True)


def op_counts(x: Any) -> pd.Series:
    """How many nodes each op made (``"leaf"`` for leaves), most common first.

    Examples
    --------
    >>> import graphtrace as gt
    >>> a = gt.Value(1.0)
    >>> gt.analysis.op_counts((a * 2 + a * 3).tanh()).to_dict()
    {'leaf': 3, '*': 2, '+': 1, 'tanh': 1}
    """
    G = as_graph(x)
    counts = Counter(str(d.get("op", "")) or "leaf" for _, d in G.nodes(data=True))
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] != "leaf", kv[0]))
    return pd.Series(dict(items), name="count", dtype="int64")


def critical_path(x: Any) -> pd.DataFrame:
    """The longest chain of ops (``networkx.dag_longest_path``), one row per node, leaf first.

    Examples
    --------
    >>> import graphtrace as gt
    >>> a = gt.Value(1.0, label="a")
    >>> y = (a * 2).tanh() + a; y.label = "y"
    >>> gt.analysis.critical_path(y)["op"].tolist()
    ['', '*', 'tanh', '+']
    """
    G = as_graph(x)
    path = nx.dag_longest_path(G)
    return pd.DataFrame(
        {
            "node_id": path,
            "label": pd.array([str(G.nodes[n].get("label", "")) for n in path], dtype=_STR),
            "op": pd.array([str(G.nodes[n].get("op", "")) for n in path], dtype=_STR),
            "data": pd.array([float(G.nodes[n].get("data", math.nan)) for n in path], dtype="float64"),
            "grad": pd.array([float(G.nodes[n].get("grad", math.nan)) for n in path], dtype="float64"),
        }
    )


def depth(x: Any) -> int:
    """Number of edges on the longest path (``networkx.dag_longest_path_length``).

    Examples
    --------
    >>> import graphtrace as gt
    >>> gt.analysis.depth((gt.Value(1.0) * 2).tanh())
    2
    """
    return int(nx.dag_longest_path_length(as_graph(x)))


def fan_out(x: Any) -> pd.DataFrame:
    """Nodes by how many ops use them (out-degree), most used first: reuse made visible.

    Examples
    --------
    >>> import graphtrace as gt
    >>> a = gt.Value(1.0, label="a")
    >>> row = gt.analysis.fan_out(a * a + a * 2).iloc[0]
    >>> str(row["label"]), int(row["fan_out"])
    ('a', 2)
    """
    G = as_graph(x)
    nodes = list(G)
    df = pd.DataFrame(
        {
            "node_id": nodes,
            "label": pd.array([str(G.nodes[n].get("label", "")) for n in nodes], dtype=_STR),
            "op": pd.array([str(G.nodes[n].get("op", "")) for n in nodes], dtype=_STR),
            "fan_out": pd.array([G.out_degree(n) for n in nodes], dtype="int64"),
        }
    )
    return df.sort_values("fan_out", ascending=False, kind="stable").reset_index(drop=True)
