"""Per-layer health of a trace: dead ReLUs, saturated tanh, gradient and update sizes (``health``)."""

from __future__ import annotations

import math
from typing import Any

import networkx as nx
import pandas as pd

from ..export.frames import is_tensor_trace, topological_nodes
from ._common import _STR, _frame
from .scope_table import by_scope

__all__ = ["health"]


def health(x: Any, depth: int = 2) -> pd.DataFrame:
    """Per layer: dead ReLUs, saturated tanh units and parameter gradients, from one trace of a batch.

    A layer is a module path cut to ``depth`` segments (``MLP/Layer0`` at the default 2: the
    instances of every call pooled); its units are the module paths one level deeper (its Neurons). A
    ReLU unit is **dead** when its output is exactly 0 for every sample of the trace (every call
    instance), so no gradient reaches its weights. Built on :func:`by_scope`.

    Parameters
    ----------
    x : Value or networkx.DiGraph
        A root Value (typically a batch's loss, after ``backward``) or a snapshot.
    depth : int, optional
        How many scope segments name a layer (2 for ``gt.nn.MLP``).

    Returns
    -------
    pandas.DataFrame
        One row per layer: ``layer`` (string), ``units`` (int64: units with a ReLU or tanh output),
        ``relu_units``, ``dead_relu`` (int64), ``dead_relu_share``, ``tanh_saturated_share`` (float64:
        share of tanh outputs with ``|t| > 0.97``, NaN without tanh), ``param_count`` (int64),
        ``param_abs_grad_mean``, ``param_abs_grad_max`` (float64).

    Raises
    ------
    ValueError
        If ``depth`` is not a positive int, or if ``x`` is a torch trace recorded with
        ``gt.pytorch.trace(model, stats="norms")``, which records neither the units of activations
        nor the parameters' mean ``|grad|`` (every row would be "not recorded").

    Examples
    --------
    >>> import random
    >>> import graphtrace as gt
    >>> random.seed(0)
    >>> model = gt.nn.MLP(2, [3, 1])
    >>> model.layers[0].neurons[0].b.data = -100.0  # this ReLU never fires on these inputs
    >>> loss = sum((model([x, -x]) - 1.0) ** 2 for x in (0.5, 1.0, 2.0))
    >>> loss.backward()
    >>> gt.analysis.health(loss)[["layer", "relu_units", "dead_relu", "dead_relu_share"]]
            layer  relu_units  dead_relu  dead_relu_share
    0  MLP/Layer0           3          1         0.333333
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"health: depth must be a positive int, got {depth!r}")
    if not isinstance(x, nx.DiGraph) or not is_tensor_trace(x):
        return _scalar_health(x, depth)
    if x.number_of_nodes() and all(a.get("stats") == "norms" for a in x._node.values()):
        raise ValueError(
            "health: this trace was recorded with gt.pytorch.trace(model, stats='norms'), which does not "
            "record the units of activations (dead ReLUs, saturated tanh) or the parameters' |grad| "
            "statistics; record the step with gt.pytorch.trace(model) (stats='full') for them"
        )
    return _tensor_health(x)


_HEALTH_SCHEMA = {
    "layer": _STR,
    "units": "int64",
    "relu_units": "int64",
    "dead_relu": "int64",
    "dead_relu_share": "float64",
    "tanh_saturated_share": "float64",
    "param_count": "int64",
    "param_abs_grad_mean": "float64",
    "param_abs_grad_max": "float64",
}


def _tensor_health(G: nx.DiGraph) -> pd.DataFrame:
    """:func:`health` of a tensor trace: one row per module scope where a ReLU or tanh ran; a unit is a
    feature or channel (dead: 0 for every sample and position); the parameters are those of the ops
    feeding the activation (the nearest ops above it that read a parameter: its Linear or Conv, and a
    norm layer between)."""
    node = G._node
    by_scope_: dict[str, list[Any]] = {}
    for n in topological_nodes(G):
        a = node[n]
        if a.get("units") is not None or a.get("saturated_share") is not None:
            by_scope_.setdefault(str(a.get("scope", "")), []).append(n)
    # a module of its own (nn.ReLU) is its scope; activations called in a module's forward
    # (torch.relu twice in one forward) are each a layer, named by scope and node name
    acts: dict[str, list[Any]] = {}
    for sc, ns in by_scope_.items():
        if len(ns) == 1:
            acts[sc] = ns
        else:
            acts.update({f"{sc}/{node[n]['label']}" if sc else str(node[n]["label"]): [n] for n in ns})
    rows = []
    for layer, ns in acts.items():
        relu_units = sum(int(node[n].get("units") or 0) for n in ns)
        dead = sum(int(node[n].get("dead_units") or 0) for n in ns)
        shares = [float(node[n]["saturated_share"]) for n in ns if node[n].get("saturated_share") is not None]
        tanh_units = sum(int(node[n].get("tanh_units") or 0) for n in ns)
        params = _feeding_parameters(G, ns)
        count = sum(int(node[p].get("numel", 0)) for p in params)
        known = [p for p in params if node[p].get("grad_known")]
        weight = sum(int(node[p]["numel"]) for p in known)
        rows.append(
            (
                layer,
                relu_units + tanh_units,
                relu_units,
                dead,
                dead / relu_units if relu_units else math.nan,
                sum(shares) / len(shares) if shares else math.nan,
                count,
                sum(node[p]["grad_abs_mean"] * int(node[p]["numel"]) for p in known) / weight if weight else math.nan,
                max((float(node[p]["grad_max_abs"]) for p in known), default=math.nan),
            )
        )
    return _frame(rows, _HEALTH_SCHEMA)


_VIEW_OPS = {"t", "view", "reshape", "unsafe_view", "expand", "permute", "transpose", "unsqueeze", "squeeze"}
_NORM_OPS = {"native_batch_norm", "native_layer_norm", "native_group_norm", "cudnn_batch_norm", "batch_norm"}


def _feeding_parameters(G: nx.DiGraph, starts: list[Any]) -> list[Any]:
    """The parameters of the ops that feed the activations ``starts``: walking operands up, the first
    op on each path that reads a parameter (directly or through a view such as the transpose in
    ``F.linear``), and past a norm layer to the op before it; a path stops at another activation."""
    node, pred = G._node, G._pred

    def params_of(n: Any) -> list[Any]:
        out = []
        for p in pred[n]:
            if node[p].get("role") == "parameter":
                out.append(p)
            elif node[p].get("op") in _VIEW_OPS:
                out.extend(q for q in pred[p] if node[q].get("role") == "parameter")
        return out

    found: dict[Any, None] = {}
    seen = set(starts)
    stack = list(starts)
    while stack:
        n = stack.pop()
        if n not in starts:
            if node[n].get("units") is not None or node[n].get("saturated_share") is not None:
                continue  # another activation: its own layer
            ps = params_of(n)
            if ps:
                found.update(dict.fromkeys(ps))
                if node[n].get("op") not in _NORM_OPS:
                    continue
        for p in pred[n]:
            if p not in seen and node[p].get("role") != "parameter":
                seen.add(p)
                stack.append(p)
    return sorted(found, key=lambda p: (str(type(p)), p))


def _scalar_health(x: Any, depth: int) -> pd.DataFrame:
    units = by_scope(x, pool=True)
    units = units[units["scope"].str.count("/") >= depth]
    layer_of = units["scope"].map(lambda p: "/".join(p.split("/")[:depth]))
    layers = by_scope(x, depth, pool=True).set_index("scope")
    rows = []
    for layer, group in units.groupby(layer_of, sort=True):
        relu = group["relu_zero_share"].dropna()
        tanh = group["tanh_saturated_share"].dropna()
        if relu.empty and tanh.empty:
            continue
        stats: Any = layers.loc[layer] if layer in layers.index else None
        rows.append(
            (
                layer,
                len(relu) + len(tanh),
                len(relu),
                int((relu == 1.0).sum()),
                float((relu == 1.0).mean()) if len(relu) else math.nan,
                float(tanh.mean()) if len(tanh) else math.nan,
                int(stats["param_count"]) if stats is not None else 0,
                float(stats["param_abs_grad_mean"]) if stats is not None else math.nan,
                float(stats["param_abs_grad_max"]) if stats is not None else math.nan,
            )
        )
    return _frame(rows, _HEALTH_SCHEMA)
