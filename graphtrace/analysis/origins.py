"""Where a NaN or an infinity starts in a trace: forward and backward origins (``anomalies``)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..export.frames import contained_nonfinite, is_tensor_trace, topological_nodes
from ..snapshot import as_graph
from ._common import _STR, _num

__all__ = ["anomalies"]


def anomalies(x: Any) -> pd.DataFrame:
    """Every node whose ``data`` or ``grad`` is NaN or ±inf, and where each kind of anomaly starts.

    A node is a **forward origin** when its ``data`` is not finite but the ``data`` of every operand
    is (or it is a leaf): the op (or the input) that made the first non-finite value. It is a
    **backward origin** when its ``grad`` is not finite but the ``grad`` of every node it pulls from
    (its children) is: there the non-finite value enters the backward pass, through a non-finite
    ``local_grad`` on one of its out-edges (the consumer op's derivative, e.g. ``x ** 0.5`` at 0) or
    through overflow of finite ``local_grad * grad`` terms (``cause`` says which). Other rows inherit
    their non-finite values from an origin. Use :func:`graphtrace.detect_anomaly` to stop at the
    first origin while the code runs.

    On a tensor trace a value whose non-finite elements go no further (every op using it gives finite
    values and its gradient is finite: a ``-inf`` attention mask before a softmax) is listed as
    ``contained`` in its cause and is not a forward origin.

    On a tensor trace (:mod:`graphtrace.pytorch`) a node is non-finite when any element of its value
    (or gradient) is (a norm is never what makes it so: it is computed scaled and never overflows),
    values the trace did not see count as finite, names carry the shape (``relu [8×16]``) and causes
    the module scope; an op whose input outside the graph (a tensor that does not require grad: the
    data, a mask, a buffer) holds non-finite elements says so (``input of addmm not recorded: 6
    non-finite elements``); a backward origin names the first edge whose gradient (the
    vector-Jacobian product the consumer sends back) has non-finite elements.

    Parameters
    ----------
    x : Value or networkx.DiGraph
        A root Value (its trace is snapshotted) or a snapshot.

    Returns
    -------
    pandas.DataFrame
        One row per anomalous node in topological order: ``node_id`` (int64 for graphtrace ids),
        ``label``, ``op``, ``scope`` (string), ``data``, ``grad`` (float64), ``forward_origin``,
        ``backward_origin`` (bool), ``operands`` (string: ``label = data`` of each operand, ``; ``-
        separated) and ``cause`` (string: why it is an origin; ``""`` for inherited values).

    Examples
    --------
    >>> import graphtrace as gt
    >>> x = gt.Value(1e300, label="x")
    >>> big = x * 1e10; big.label = "big"
    >>> y = big - big; y.label = "y"
    >>> df = gt.analysis.anomalies(y)
    >>> df[["label", "data", "forward_origin"]]
      label  data  forward_origin
    0   big   inf            True
    1     y   NaN           False
    """
    G = as_graph(x)
    order = topological_nodes(G)
    nodes, pred, succ = G._node, G._pred, G._succ
    tensors = is_tensor_trace(G)
    data = {n: _num(nodes[n].get("data")) for n in order}
    grad = {n: _num(nodes[n].get("grad", 0.0)) for n in order}
    if tensors:  # a tensor is finite when every element is; a value the trace did not see counts as finite
        data = {
            n: 0.0 if not nodes[n].get("data_known") else (math.nan if nodes[n].get("data_nonfinite") else data[n])
            for n in order
        }
        grad = {
            n: 0.0 if not nodes[n].get("grad_known") else (math.nan if nodes[n].get("grad_nonfinite") else grad[n])
            for n in order
        }
    fin = math.isfinite

    def name(n: Any) -> str:
        label = str(nodes[n].get("label") or f"node {n}")
        return f"{label} [{nodes[n].get('shape')}]" if tensors else label

    def where(n: Any) -> str:
        sc = nodes[n].get("scope")
        return f" in {sc}" if sc else ""

    rows: list[dict[str, Any]] = []
    for n in order:
        d, g = data[n], grad[n]
        if fin(d) and fin(g):
            continue
        fwd = not fin(d) and all(fin(data[p]) for p in pred[n])
        held = tensors and contained_nonfinite(G, n)
        causes = []
        if fwd and tensors:
            k, op, shape = nodes[n].get("data_nonfinite"), nodes[n].get("op"), nodes[n].get("shape")
            outside = int(nodes[n].get("untracked_nonfinite") or 0)
            if outside:  # an input the trace does not record (it does not require grad)
                causes.append(
                    f"input of {op}{where(n)} not recorded: {outside} non-finite elements; "
                    f"{op} gave {k} non-finite elements of {shape}"
                )
            else:
                causes.append(
                    f"{op}{where(n)} of finite operands gave {k} non-finite elements of {shape}"
                    if pred[n]
                    else f"leaf with {k} non-finite elements"
                )
        elif fwd:
            causes.append(f"{nodes[n].get('op')} of finite operands gave {d!r}" if pred[n] else f"leaf with data {d!r}")
        if held:  # e.g. a -inf attention mask: reported, but no NaN starts here
            fwd = False
            causes.append("contained: every op using it gave finite values and its gradient is finite (a mask)")
        bwd = False
        if not fin(g):
            terms = [(v, _num(e.get("local_grad")), grad[v]) for v, e in succ[n].items()]
            if terms and all(fin(gv) for _, _, gv in terms):
                bwd = True
                if tensors:  # the first edge whose gradient (vector-Jacobian product) is non-finite
                    bad_edges = [v for v, e in succ[n].items() if e.get("grad_nonfinite")]
                    v = bad_edges[0] if bad_edges else next(iter(succ[n]))
                    causes.append(
                        f"the gradient {name(v)} ({nodes[v].get('op')}{where(v)}) sends back along its edge has "
                        f"{succ[n][v].get('grad_nonfinite', 0)} non-finite elements"
                    )
                    terms = []
                bad = [(v, lg) for v, lg, _ in terms if not fin(lg)]
                if bad:
                    v, lg = bad[0]
                    causes.append(f"local_grad {lg!r} on the edge to {name(v)} ({nodes[v].get('op')})")
                elif terms:
                    causes.append("overflow of finite local_grad * grad terms")
        rows.append(
            {
                "node_id": n,
                "label": str(nodes[n].get("label", "")),
                "op": str(nodes[n].get("op", "")),
                "scope": str(nodes[n].get("scope", "")),
                "data": d,
                "grad": g,
                "forward_origin": fwd,
                "backward_origin": bwd,
                "operands": "; ".join(f"{name(p)} = {data[p]!r}" for p in pred[n]),
                "cause": "; ".join(causes),
            }
        )
    ids = [r["node_id"] for r in rows]
    df = pd.DataFrame(
        {
            "node_id": pd.array(ids, dtype="int64") if all(type(n) is int for n in ids) else ids,
            **{c: pd.array([r[c] for r in rows], dtype=_STR) for c in ("label", "op", "scope")},
            "data": pd.array([r["data"] for r in rows], dtype="float64"),
            "grad": pd.array([r["grad"] for r in rows], dtype="float64"),
            "forward_origin": pd.array([r["forward_origin"] for r in rows], dtype=bool),
            "backward_origin": pd.array([r["backward_origin"] for r in rows], dtype=bool),
            **{c: pd.array([r[c] for r in rows], dtype=_STR) for c in ("operands", "cause")},
        }
    )
    return df
