"""pandas tables of a trace: one row per node, and the chain-rule ledger with one row per edge."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from ..snapshot import as_graph

__all__ = ["edges_frame", "node_roles", "nodes_frame", "topological_nodes"]

_STR = pd.StringDtype()


def topological_nodes(G: nx.DiGraph) -> list[Hashable]:
    """Nodes in a topological order; ValueError naming the problem if ``G`` has a cycle.

    graphtrace node ids grow with creation time, so when every edge goes from a smaller id to a
    larger one, ascending id order is used: it is topological and reads in the order the user wrote
    the expression. Otherwise networkx's topological sort decides.
    """
    ids = list(G)
    if all(type(n) is int for n in ids) and all(u < v for u, v in G.edges()):  # type: ignore[operator]
        return sorted(ids)  # type: ignore[type-var]
    try:
        return list(nx.topological_sort(G))
    except nx.NetworkXUnfeasible as exc:
        raise ValueError("the graph has a cycle, so it is not a computation trace") from exc


def node_roles(G: nx.DiGraph) -> dict[Hashable, str]:
    """constant / leaf / parameter / intermediate / root for every node.

    The stored ``role`` attribute wins for leaves; the root is ``G.graph["root"]`` when set, else
    every node without successors.
    """
    root = G.graph.get("root")
    pred, succ, node = G._pred, G._succ, G._node
    roles = {}
    for n, attrs in node.items():
        if (n == root) if root is not None else not succ[n]:
            roles[n] = "root"
        elif pred[n]:
            roles[n] = "intermediate"
        else:
            stored = attrs.get("role")
            roles[n] = stored if stored in ("constant", "leaf", "parameter") else "leaf"
    return roles


def _id_column(ids: list[Hashable]) -> Any:
    if all(type(n) is int for n in ids):
        return np.asarray(ids, dtype=np.int64)
    return pd.array([str(n) for n in ids], dtype=_STR)


def _floats(values: list[Any]) -> Any:
    return np.asarray(values, dtype=np.float64)


def nodes_frame(x: Any) -> pd.DataFrame:
    """One row per node, in topological order.

    Parameters
    ----------
    x : Value or networkx.DiGraph
        A root Value (snapshotted with :func:`graphtrace.to_networkx`) or a snapshot.

    Returns
    -------
    pandas.DataFrame
        Columns ``node_id`` (int64), ``label``, ``op``, ``role`` (string), ``data``, ``grad``
        (float64), ``in_degree``, ``out_degree`` and ``depth`` (int64: the longest path from any leaf),
        ``scope`` (string: the scope path the node was recorded in, ``""`` outside any; see
        :mod:`graphtrace.scopes`). A tensor trace (:mod:`graphtrace.pytorch`) adds the columns of
        :data:`TENSOR_COLUMNS`: ``shape``, ``dtype``, ``numel`` (-1 when not seen), whether data and
        grad were recorded, their summaries, the non-finite elements among an op's inputs the trace
        does not record (``untracked_nonfinite``: tensors that do not require grad), the values of
        small tensors (JSON text), the ReLU
        ``units``/``dead_units``/``zero_share`` and tanh ``saturated_share`` of activations (NA elsewhere),
        and ``stats``, the level of the statistics recorded (``"full"``; ``"norms"``:
        ``gt.pytorch.trace(model, stats="norms")`` records the norms and non-finite counts alone, and
        the mean, std, min, max, max_abs, abs_mean and unit columns are NaN/NA: not recorded;
        ``""`` in a trace saved before the option existed, whose statistics are all recorded).

    Raises
    ------
    TypeError
        If ``x`` is neither a Value nor a DiGraph.
    ValueError
        If the graph has a cycle.

    Examples
    --------
    >>> import graphtrace as gt
    >>> a = gt.Value(2.0, label="a"); b = gt.Value(-3.0, label="b")
    >>> L = a * b; L.label = "L"
    >>> L.backward()
    >>> gt.nodes_frame(L)[["label", "op", "role", "data", "grad", "depth"]]
      label op  role  data  grad  depth
    0     a     leaf   2.0  -3.0      0
    1     b     leaf  -3.0   2.0      0
    2     L  *  root  -6.0   1.0      1
    """
    G = as_graph(x)
    order = topological_nodes(G)
    node, pred, succ = G._node, G._pred, G._succ
    roles = node_roles(G)
    depth: dict[Hashable, int] = {}
    for n in order:
        ps = pred[n]
        depth[n] = 1 + max(depth[p] for p in ps) if ps else 0
    attrs = [node[n] for n in order]
    frame = pd.DataFrame(
        {
            "node_id": _id_column(order),
            "label": pd.array([str(a.get("label", "")) for a in attrs], dtype=_STR),
            "op": pd.array([str(a.get("op", "")) for a in attrs], dtype=_STR),
            "role": pd.array([roles[n] for n in order], dtype=_STR),
            "data": _floats([a.get("data", np.nan) for a in attrs]),
            "grad": _floats([a.get("grad", np.nan) for a in attrs]),
            "in_degree": np.fromiter((len(pred[n]) for n in order), dtype=np.int64, count=len(order)),
            "out_degree": np.fromiter((len(succ[n]) for n in order), dtype=np.int64, count=len(order)),
            "depth": np.fromiter((depth[n] for n in order), dtype=np.int64, count=len(order)),
            "scope": pd.array([str(a.get("scope", "")) for a in attrs], dtype=_STR),
        }
    )
    if is_tensor_trace(G):
        for name, column in _tensor_columns(attrs).items():
            frame[name] = column
    return frame


def is_tensor_trace(G: nx.DiGraph) -> bool:
    """Whether ``G`` is a trace of tensors (:mod:`graphtrace.pytorch`), whose nodes carry shapes and
    summaries."""
    return bool(G.graph.get("kind") == "torch")


def contained_nonfinite(G: nx.DiGraph, n: Any) -> bool:
    """Whether node ``n`` of a tensor trace holds non-finite values that go no further: its gradient is
    finite and every op using it gave finite values (a ``-inf`` attention mask before a softmax). Such a
    value is reported, but it is not where a NaN starts."""
    a, users = G._node[n], G._succ[n]
    return (
        bool(a.get("data_nonfinite"))
        and not a.get("grad_nonfinite")
        and bool(users)
        and all(G._node[c].get("data_known") and not G._node[c].get("data_nonfinite") for c in users)
    )


#: The typed columns of a tensor trace's node table, after the scalar ones (see :mod:`graphtrace.pytorch`).
TENSOR_COLUMNS: dict[str, str] = {
    "grad_fn": "string",
    "shape": "string",
    "dtype": "string",
    "numel": "int64",
    "data_known": "bool",
    "grad_known": "bool",
    **{
        f"{p}_{s}": "float64"
        for p in ("data", "grad")
        for s in ("mean", "std", "min", "max", "max_abs", "abs_mean", "norm")
    },
    "data_nonfinite": "int64",
    "grad_nonfinite": "int64",
    "untracked_nonfinite": "int64",
    "data_values": "string",
    "grad_values": "string",
    "units": "Int64",
    "dead_units": "Int64",
    "zero_share": "float64",
    "saturated_share": "float64",
    "tanh_units": "Int64",
    "stats": "string",
}


def _tensor_columns(attrs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in TENSOR_COLUMNS.items():
        values = [a.get(name) for a in attrs]
        if kind == "float64":
            out[name] = _floats([np.nan if v is None else v for v in values])
        elif kind == "int64":
            out[name] = np.asarray([-1 if v is None else int(v) for v in values], dtype=np.int64)
        elif kind == "bool":
            out[name] = np.asarray([bool(v) for v in values], dtype=bool)
        elif kind == "Int64":
            out[name] = pd.array([None if v is None else int(v) for v in values], dtype="Int64")
        else:
            out[name] = pd.array(["" if v is None else str(v) for v in values], dtype=_STR)
    return out


def edges_frame(x: Any) -> pd.DataFrame:
    """The chain-rule ledger: one row per edge, networkx's ``to_pandas_edgelist`` convention.

    ``grad_contribution = local_grad * grad(target)`` is the term the seed computes by hand; for every
    non-root node, its ``grad`` is the sum of its outgoing contributions.

    On a tensor trace (:mod:`graphtrace.pytorch`) an edge carries a tensor: the frame adds
    ``grad_norm`` (float64: the norm of the gradient the target sends back along it) and
    ``grad_nonfinite`` (int64), and ``local_grad`` and ``grad_contribution`` become nullable
    (Float64): ``grad_contribution`` is the gradient where the source has one element, ``local_grad``
    where the target has one too; NA elsewhere (the Jacobian of a tensor op is not recorded).

    Returns
    -------
    pandas.DataFrame
        Columns ``source``, ``target`` (int64), ``source_label``, ``target_label``, ``op`` (of the
        target; string), ``local_grad`` (d target / d source) and ``grad_contribution`` (float64).
        Rows are grouped by target in topological order.

    Examples
    --------
    >>> import graphtrace as gt
    >>> a = gt.Value(2.0, label="a"); b = gt.Value(-3.0, label="b")
    >>> L = a * b; L.label = "L"
    >>> L.backward()
    >>> gt.edges_frame(L)[["source_label", "target_label", "op", "local_grad", "grad_contribution"]]
      source_label target_label op  local_grad  grad_contribution
    0            a            L  *        -3.0               -3.0
    1            b            L  *         2.0                2.0
    """
    G = as_graph(x)
    order = topological_nodes(G)
    node, pred = G._node, G._pred
    src: list[Hashable] = []
    dst: list[Hashable] = []
    local: list[Any] = []
    for v in order:
        for u, e in pred[v].items():
            src.append(u)
            dst.append(v)
            local.append(e.get("local_grad", np.nan))
    lg = _floats(local)
    target_grad = _floats([node[v].get("grad", np.nan) for v in dst])
    frame = pd.DataFrame(
        {
            "source": _id_column(src),
            "target": _id_column(dst),
            "source_label": pd.array([str(node[u].get("label", "")) for u in src], dtype=_STR),
            "target_label": pd.array([str(node[v].get("label", "")) for v in dst], dtype=_STR),
            "op": pd.array([str(node[v].get("op", "")) for v in dst], dtype=_STR),
            "local_grad": lg,
            "grad_contribution": lg * target_grad,
        }
    )
    if is_tensor_trace(G):
        _tensor_edges(G, frame, src, dst)
    return frame


def _tensor_edges(G: nx.DiGraph, frame: pd.DataFrame, src: list[Hashable], dst: list[Hashable]) -> None:
    """A tensor trace's ledger: the norm of the gradient each edge carries (and its non-finite
    elements); ``grad_contribution`` where it is a number (the source has one element) and
    ``local_grad`` where that is one too (the target also has one, with a nonzero gradient), else NA:
    a tensor's Jacobian is not recorded."""
    edge, node = G._adj, G._node
    attrs = [edge[u][v] for u, v in zip(src, dst, strict=True)]
    frame["grad_norm"] = _floats([a.get("grad_norm", np.nan) for a in attrs])
    frame["grad_nonfinite"] = np.asarray([int(a.get("grad_nonfinite", 0)) for a in attrs], dtype=np.int64)
    contribution: list[Any] = []
    local: list[Any] = []
    for u, v, a in zip(src, dst, attrs, strict=True):
        value = a.get("grad_value", np.nan)
        c = float(value) if node[u].get("numel") == 1 and value == value else None
        contribution.append(c)
        g = node[v].get("grad", np.nan)
        scalar_target = node[v].get("numel") == 1 and node[v].get("grad_known") and g == g and g != 0
        local.append(c / float(g) if c is not None and scalar_target else None)
    frame["local_grad"] = pd.array(local, dtype="Float64")
    frame["grad_contribution"] = pd.array(contribution, dtype="Float64")
