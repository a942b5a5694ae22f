"""Two traces compared node by node (``diff``)."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

import networkx as nx
import pandas as pd

from ..export.frames import topological_nodes
from ..snapshot import as_graph
from ._common import _STR, _frame, _num

__all__ = ["diff"]


_SEGMENT = re.compile(r"^(.*?)(?:\[(\d+)\])?$")


def _keys(G: nx.DiGraph) -> dict[tuple[str, str, str, int], Any]:
    """Each node's match key: parameters by label; other nodes by (scope with call indices renumbered
    in order of appearance, role, op, position among the nodes sharing those three)."""
    renumber: dict[tuple[str, str, str], int] = {}  # (renamed parent, name, index) -> new index
    counts: Counter[tuple[str, str]] = Counter()
    renamed: dict[str, str] = {}

    def norm(path: str) -> str:
        out = renamed.get(path)
        if out is not None:
            return out
        parent = ""
        for seg in path.split("/") if path else []:
            m = _SEGMENT.match(seg)
            name, idx = (m.group(1), m.group(2)) if m else (seg, None)
            if idx is None:
                parent = f"{parent}/{name}" if parent else name
                continue
            key = (parent, name, idx)
            if key not in renumber:
                renumber[key] = counts[(parent, name)]
                counts[(parent, name)] += 1
            seg = f"{name}[{renumber[key]}]"
            parent = f"{parent}/{seg}" if parent else seg
        renamed[path] = parent
        return parent

    seen: Counter[tuple[str, str, str]] = Counter()
    out: dict[tuple[str, str, str, int], Any] = {}
    for n in topological_nodes(G):
        a = G._node[n]
        role = str(a.get("role", ""))
        what = str(a["label"]) if role == "parameter" and a.get("label") else str(a.get("op", ""))
        k = (norm(str(a.get("scope", ""))), role, what)
        out[(*k, seen[k])] = n  # the position makes every key unique: no node is ever overwritten
        seen[k] += 1
    if len(out) != G.number_of_nodes():  # pragma: no cover (unique by construction)
        raise AssertionError(f"diff: {G.number_of_nodes() - len(out)} nodes share a key")
    return out


def diff(a: Any, b: Any) -> pd.DataFrame:
    """Node by node, what changed between two traces of the same structure (two steps, two runs).

    Every node is matched by its ``scope`` with call indices renumbered in order of appearance in each
    trace (so the k-th call of a module in ``a`` meets the k-th in ``b``: the same sample of two steps),
    its ``role``, its ``op`` (for a labelled parameter: its label, ``L0.N3.w1``), and its position among
    the nodes sharing those three in topological (creation) order. The position makes each key unique, so
    every node of each trace appears in exactly one row, even where two models (or two hand-made
    parameters) share labels.

    Parameters
    ----------
    a, b : Value or networkx.DiGraph
        Root Values (their traces are snapshotted) or snapshots, e.g. from :func:`graphtrace.load`.

    Returns
    -------
    pandas.DataFrame
        One row per matched key and per node found in one trace only: ``scope`` (renumbered), ``role``,
        ``op`` (string; for a labelled parameter it holds the label), ``position``
        (int64), ``label_a``, ``label_b`` (string), ``node_a``, ``node_b`` (Int64, missing on the other side),
        ``data_a``, ``data_b``, ``grad_a``, ``grad_b``, ``d_data`` (``data_b - data_a``), ``d_grad``
        (float64) and ``side`` (string: ``"both"``, ``"a"`` or ``"b"``), in ``a``'s order, then
        ``b``'s extra nodes.

    Examples
    --------
    >>> import graphtrace as gt
    >>> w = gt.Value(0.5, label="w")
    >>> step1 = (w * 2.0).relu(); step1.label = "out"
    >>> w.data = 0.75
    >>> step2 = (w * 2.0).relu(); step2.label = "out"
    >>> d = gt.analysis.diff(step1, step2)
    >>> d[["label_a", "role", "op", "data_a", "data_b", "d_data", "side"]]
      label_a          role    op  data_a  data_b  d_data  side
    0       w          leaf          0.75    0.75     0.0  both
    1   const      constant          2.00    2.00     0.0  both
    2     mul  intermediate     *    1.00    1.50     0.5  both
    3     out  intermediate  relu    1.00    1.50     0.5  both

    ``w`` is one node of both traces, so its data is 0.75 in both: diff snapshots (``gt.to_networkx``)
    taken at each step to see parameters move.
    """
    A, B = as_graph(a), as_graph(b)
    ka, kb = _keys(A), _keys(B)
    keys = list(ka) + [k for k in kb if k not in ka]

    def num(G: nx.DiGraph, n: Any, attr: str) -> float:
        return math.nan if n is None else _num(G._node[n].get(attr))

    def label(G: nx.DiGraph, n: Any) -> str:
        return "" if n is None else str(G._node[n].get("label", ""))

    rows = []
    for k in keys:
        na, nb = ka.get(k), kb.get(k)
        da, db = num(A, na, "data"), num(B, nb, "data")
        ga, gb = num(A, na, "grad"), num(B, nb, "grad")
        side = "both" if na is not None and nb is not None else ("a" if nb is None else "b")
        rows.append((*k, label(A, na), label(B, nb), na, nb, da, db, ga, gb, db - da, gb - ga, side))
    text: dict[str, Any] = {c: _STR for c in ("scope", "role", "op")}
    schema = {**text, "position": "int64", "label_a": _STR, "label_b": _STR, "node_a": object, "node_b": object}
    schema |= {c: "float64" for c in ("data_a", "data_b", "grad_a", "grad_b", "d_data", "d_grad")}
    df = _frame(rows, {**schema, "side": _STR})
    for c in ("node_a", "node_b"):
        ids = df[c].tolist()
        if all(v is None or type(v) is int for v in ids):
            df[c] = pd.array(ids, dtype="Int64")
    return df
