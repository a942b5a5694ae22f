"""The per-scope table of a trace (``by_scope``), read from the live store through its indexes when
the store is exactly the trace (a training step), else from a snapshot."""

from __future__ import annotations

import math
import re
from collections import Counter
from itertools import chain, compress, islice, repeat
from operator import eq, is_not, itemgetter, ne, truediv
from typing import Any

import pandas as pd

from ..export.frames import is_tensor_trace, topological_nodes
from ..naming import renumber_paths
from ..snapshot import as_graph
from ..store import read_trace
from ._common import _STR

__all__ = ["TANH_SATURATION", "by_scope", "scope_columns"]


_INDEX = re.compile(r"\[\d+\]")
#: |tanh| above this counts as saturated (its local derivative 1 - t**2 is below 0.06)
TANH_SATURATION = 0.97


def _SATURATED_ABS(t: float) -> bool:
    return abs(t) > TANH_SATURATION


def _scope_key(path: str, depth: int | None, pool: bool) -> str:
    if pool:
        path = _INDEX.sub("", path)
    if depth is not None and path:
        path = "/".join(path.split("/")[:depth])
    return path


def by_scope(x: Any, depth: int | None = None, *, pool: bool = False) -> pd.DataFrame:
    """One row per scope instance (``pool=False``) or per module path (``pool=True``).

    Nodes are grouped by their ``scope`` attribute (see :mod:`graphtrace.scopes`), cut to its first
    ``depth`` segments when ``depth`` is given (so a row then covers its sub-scopes too), with call
    indices removed when ``pool`` is True (``MLP[3]/Layer0`` and ``MLP[4]/Layer0`` pool into
    ``MLP/Layer0``, together with that module's parameters, whose scope is their module path).
    Nodes outside any scope form the row ``""``. When ``x`` is a Value that is the live store's only
    sink (a training step's loss after its backward pass) the store is read in place, without a
    snapshot (:func:`graphtrace.store.read_trace`): about 20 ms for micrograd's 65,818-node demo step.

    Parameters
    ----------
    x : Value or networkx.DiGraph
    depth : int, optional
        Keep this many leading path segments (>= 1); all of them by default.
    pool : bool, optional
        Pool the instances of each module into one row.

    Returns
    -------
    pandas.DataFrame
        One row per group, in the order the groups were first recorded, with columns:

        - ``scope`` (string): the group's path;
        - ``nodes`` (int64): its node count;
        - ``output_node`` (int64), ``output_data``, ``output_grad`` (float64): the group's output, its
          last recorded node (a neuron's activation, a model call's score);
        - ``param_count`` (int64), ``param_abs_grad_sum``, ``param_abs_grad_mean``,
          ``param_abs_grad_max`` (float64, NaN without parameters): the parameters of the group's module
          (its path without call indices) and of its sub-modules, so each instance of a module reports
          the same parameters;
        - ``relu_zero_share`` (float64): share of its ReLU outputs exactly 0 (NaN without ReLUs);
        - ``tanh_saturated_share`` (float64): share of its tanh outputs with ``|t| > 0.97``;
        - ``nonfinite`` (int64): nodes whose ``data`` or ``grad`` is NaN or infinite;
        - ``relu_units``, ``dead_relu_units`` (float64, whole numbers): on a tensor trace
          (:mod:`graphtrace.pytorch`), the units of its ReLU outputs (features or channels) and those 0
          for every sample; NaN on graphtrace's own traces, where a unit is a neuron, a scope of its own.

        On a tensor trace the parameter columns count elements, as on graphtrace's own traces (where
        a parameter is one element): ``param_count`` is the number of parameter elements,
        ``param_abs_grad_sum`` the sum of their ``|grad|`` (each tensor's ``grad_abs_mean`` times its
        ``numel``), ``param_abs_grad_mean`` that per element (over the tensors whose gradient is
        known), as :func:`graphtrace.analysis.health` reads them. The shares count elements too:
        ``relu_zero_share`` is the share of its ReLU outputs' elements that are 0,
        ``tanh_saturated_share`` of its tanh outputs' elements with ``|t| > 0.97``, from what the
        trace recorded of each output (``zero_share``, ``saturated_share``, ``units``, ``dead_units``).
        A trace recorded with ``gt.pytorch.trace(model, stats="norms")`` has neither: its
        ``param_abs_grad_sum``/``_mean``/``_max``, ``relu_zero_share``, ``tanh_saturated_share``,
        ``relu_units`` and ``dead_relu_units`` are NaN (not recorded), never 0.

    Raises
    ------
    ValueError
        If ``depth`` is given and is not a positive int.

    Examples
    --------
    >>> import random
    >>> import graphtrace as gt
    >>> random.seed(0)
    >>> model = gt.nn.MLP(2, [3, 1])
    >>> out = model([1.0, -1.0])
    >>> out.backward()
    >>> t = gt.analysis.by_scope(out, depth=2)
    >>> t[["scope", "nodes", "param_count"]]
               scope  nodes  param_count
    0     MLP/Layer0      9            9
    1     MLP/Layer1      4            4
    2  MLP[0]/Layer0     21            9
    3  MLP[0]/Layer1      6            4
    >>> gt.analysis.by_scope(out, pool=True, depth=2)[["scope", "nodes", "param_count"]]
            scope  nodes  param_count
    0  MLP/Layer0     30            9
    1  MLP/Layer1     10            4
    """
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ValueError(f"by_scope: depth must be a positive int or None, got {depth!r}")
    return pd.DataFrame(scope_columns(x, depth, pool)).astype(_SCOPE_SCHEMA)


#: The columns of :func:`by_scope` and their dtypes.
_SCOPE_SCHEMA: dict[str, Any] = {
    "scope": _STR,
    "nodes": "int64",
    "output_node": "int64",
    "output_data": "float64",
    "output_grad": "float64",
    "param_count": "int64",
    "param_abs_grad_sum": "float64",
    "param_abs_grad_mean": "float64",
    "param_abs_grad_max": "float64",
    "relu_zero_share": "float64",
    "tanh_saturated_share": "float64",
    "nonfinite": "int64",
    "relu_units": "float64",
    "dead_relu_units": "float64",
}
_SCOPE, _OP, _ROLE, _DATA, _GRAD = map(itemgetter, ("scope", "op", "role", "data", "grad"))
#: ops whose nodes by_scope looks at one by one: units, and leaves (parameters among them)
_PICK = frozenset(("relu", "tanh", ""))
#: what a tensor trace records of an activation's units (graphtrace.pytorch.trace)
_TENSOR_UNIT_ATTRS = ("numel", "zero_share", "saturated_share", "units", "dead_units")
#: and of a parameter's gradient, element-wise (``grad`` is its L2 norm)
_TENSOR_PARAM_ATTRS = ("numel", "grad_known", "grad_abs_mean", "grad_max_abs")


class _Scan:
    """What :func:`by_scope` needs of a trace's nodes (in a topological order), read without a pass
    over every node's attribute dict where the live store can tell more cheaply.

    A *run* is a stretch of consecutive nodes whose ``scope`` is the same string object (the nodes of
    one module call share it). ``starts[r]`` is the position of run r's first node, ``paths[r]`` its
    scope, ``last_ids[r]`` / ``last_attrs[r]`` its last node; ``picks`` holds the attribute dicts of
    the ReLU and tanh outputs and of the parameters (the live store lists them in
    :data:`graphtrace.store.PICKED`; for a snapshot, ``picks`` None, they are found here among the
    units and leaves); ``size`` counts the nodes; ``bad`` the attribute dicts of the nodes with a
    non-finite data or grad (the caller finds them).

    ``node`` maps ``ids`` to attribute dicts. ``candidates`` (the live store's
    :func:`graphtrace.store.scope_starts`) are positions where a run may start: only the scopes
    there are read, a few thousand dicts instead of every node's (each one a cache miss in a
    training step's scattered heap). Without them every node's scope is read, by C-level passes.
    """

    __slots__ = ("bad", "last_attrs", "last_ids", "paths", "picks", "size", "starts", "tensors")

    def __init__(
        self,
        ids: list[Any],
        node: dict[Any, dict[str, Any]],
        candidates: list[int] | None,
        bad: list[dict[str, Any]],
        picks: list[dict[str, Any]] | None = None,
    ) -> None:
        get = node.__getitem__
        if candidates is None or picks is None:
            attrs = list(map(get, ids))
            if picks is None:
                picks = list(compress(attrs, map(_PICK.__contains__, map(_OP, attrs))))
            candidates = list(range(len(ids)))
            scopes = list(map(_SCOPE, attrs))
        else:
            scopes = list(map(_SCOPE, map(get, map(ids.__getitem__, candidates))))
        # a run starts where the scope string object differs from the one before
        changed = list(map(is_not, scopes, chain((None,), scopes)))
        starts = list(compress(candidates, changed))
        last = list(map(int.__sub__, [*islice(starts, 1, None), len(ids)], repeat(1))) if starts else []
        self.starts = starts
        self.paths = list(compress(scopes, changed))
        self.last_ids = list(map(ids.__getitem__, last))
        self.last_attrs = list(map(get, self.last_ids))
        self.picks = picks
        self.size = len(ids)
        self.bad = bad
        self.tensors = False  # a tensor trace: its units are counted from recorded statistics


def _live_scan(x: Any) -> _Scan | None:
    """:class:`_Scan` of the live store, when it is exactly the trace of the Value ``x`` (``x`` is its
    only sink, as after a training step's backward pass: no snapshot needed); else None."""
    from ..value import Value

    return read_trace(x._id, _Scan) if isinstance(x, Value) else None


def scope_columns(x: Any, depth: int | None = None, pool: bool = False) -> dict[str, list[Any]]:
    """:func:`by_scope`'s table as plain columns (name -> list, in ``_SCOPE_SCHEMA``'s order).

    Reads the live store directly when ``x`` is its only sink (a training step's loss after its
    backward pass: no snapshot is made), else a snapshot. ``depth`` is not checked here.
    """
    scan = _live_scan(x)
    if scan is None:
        G = as_graph(x)
        tensors = is_tensor_trace(G)
        ids = topological_nodes(G)
        node = G._node
        attrs = {}
        bad = []
        same: dict[str, str] = {}  # one string object per path, as in the live store
        for n in ids:
            a = node[n]
            path = str(a.get("scope", ""))
            b = {
                "scope": same.setdefault(path, path),
                "op": a.get("op"),
                "role": a.get("role"),
                "data": float(a.get("data", math.nan)),
                "grad": float(a.get("grad", math.nan)),
            }
            attrs[n] = b
            if not (math.isfinite(b["data"]) and math.isfinite(b["grad"])):
                bad.append(b)
            if tensors and b["op"] in _PICK:
                for k in _TENSOR_PARAM_ATTRS if b["role"] == "parameter" else _TENSOR_UNIT_ATTRS:
                    b[k] = a.get(k)
        scan = _Scan(ids, attrs, None, bad)
        scan.tensors = tensors
    table = _scope_table(scan, depth, pool)
    if not pool:  # call indices count from 0 in this trace (a snapshot's are already)
        table["scope"] = renumber_paths(list(table["scope"]))
    return table


def _strip_indices(paths: list[str]) -> list[str]:
    """``paths`` without call indices (``MLP[3]/Layer0`` -> ``MLP/Layer0``): one regex pass over
    them all joined, unless a path holds the separator."""
    joined = "\n".join(paths)
    if joined.count("\n") == len(paths) - 1:
        return _INDEX.sub("", joined).split("\n") if paths else []
    return [_INDEX.sub("", p) for p in paths]


def _by_key(per_path: dict[str, Any], key_of: dict[str, str] | None, add: Any) -> dict[str, Any]:
    """Per-path values combined per key with ``add`` (``key_of`` None: the keys are the paths)."""
    if key_of is None:
        return per_path
    out: dict[str, Any] = {}
    for path, v in per_path.items():
        key = key_of[path]
        out[key] = add(out[key], v) if key in out else v
    return out


def _param_stats(items: list[tuple[int, float, float]]) -> tuple[int, float, float, float]:
    """(elements, Σ|grad|, mean |grad| per element, max |grad|) of parameters given as (elements,
    Σ|grad|, max |grad|) each: over every element for the count, over those whose gradient is known
    (not NaN: a tensor parameter no pass reached) for the rest (NaN if none)."""
    known = [i for i in items if not math.isnan(i[1])]
    count = sum(i[0] for i in items)
    if not known:
        return count, math.nan, math.nan, math.nan
    total = math.fsum(i[1] for i in known)
    weight = sum(i[0] for i in known)
    return count, total, total / weight if weight else math.nan, max(i[2] for i in known)


def _scope_table(scan: _Scan, depth: int | None, pool: bool) -> dict[str, list[Any]]:
    """:func:`by_scope`'s columns from a :class:`_Scan`: Python code runs per run, unit and leaf."""
    paths, starts = scan.paths, scan.starts
    # key_of None: every path is its own key
    key_of = None if depth is None and not pool else {p: _scope_key(p, depth, pool) for p in dict.fromkeys(paths)}
    sizes = list(map(int.__sub__, [*islice(starts, 1, None), scan.size], starts))
    last = dict(zip(paths, range(len(paths)), strict=True))  # path -> its last run, in the order first recorded
    count = dict(zip(paths, sizes, strict=True))
    if len(last) < len(paths):  # a path in several runs (its count above is its last run's): add the others
        runs = range(len(paths))
        for r in compress(runs, map(ne, map(last.__getitem__, paths), runs)):
            count[paths[r]] += sizes[r]
    if key_of is not None:  # several paths per key
        count = _by_key(count, key_of, int.__add__)
        last = _by_key(last, key_of, max)
    keys = list(last)
    out_runs = list(map(last.__getitem__, keys))
    picked = scan.picks
    picked_ops = list(map(_OP, picked))
    picked_paths = list(map(_SCOPE, picked))

    nan = math.nan

    def shares(op: str, hit: Any) -> list[float]:
        """Each key's share of its ``op`` nodes whose data satisfy ``hit`` (NaN without such nodes)."""
        mask = list(map(eq, picked_ops, repeat(op)))
        where = list(compress(picked_paths, mask))
        if not where:
            return [nan] * len(keys)
        total = _by_key(Counter(where), key_of, int.__add__)
        hits = _by_key(Counter(compress(where, map(hit, map(_DATA, compress(picked, mask))))), key_of, int.__add__)
        return list(map(truediv, map(hits.get, keys, repeat(0)), map(total.get, keys, repeat(nan))))  # 0/nan: nan

    relu_units: list[Any] = [math.nan] * len(keys)
    dead_units: list[Any] = [math.nan] * len(keys)
    if scan.tensors:
        relu = _tensor_shares(picked, "relu", "zero_share", keys, key_of)
        tanh = _tensor_shares(picked, "tanh", "saturated_share", keys, key_of)
        relu_units = _tensor_sums(picked, "units", keys, key_of)
        dead_units = _tensor_sums(picked, "dead_units", keys, key_of)
    else:
        relu = shares("relu", (0.0).__eq__)
        tanh = shares("tanh", _SATURATED_ABS)
    # module path -> (elements, Σ|grad|, max |grad|) of each parameter in it and below: one element
    # per Value; a tensor's elements (its Σ|grad| is numel times its mean |grad|, when known)
    modules: dict[str, list[tuple[int, float, float]]] = {}
    enclosing: dict[str, list[list[tuple[int, float, float]]]] = {}  # a parameter's scope -> those modules' lists
    for a in compress(picked, map(eq, map(_ROLE, picked), repeat("parameter"))):
        path = a["scope"]
        lists = enclosing.get(path)
        if lists is None:
            module = _INDEX.sub("", path)
            parts = module.split("/") if module else []
            # the module and each enclosing module
            lists = enclosing[path] = [modules.setdefault("/".join(parts[:k]), []) for k in range(1, len(parts) + 1)]
        if scan.tensors:
            n = int(a.get("numel") or 0)
            known = bool(a.get("grad_known"))
            item = (n, float(a["grad_abs_mean"]) * n if known else nan, float(a["grad_max_abs"]) if known else nan)
        else:
            g = abs(a["grad"])
            item = (1, g, g)
        for grads in lists:
            grads.append(item)
    params = {m: _param_stats(g) for m, g in modules.items()}
    nonfinite = _by_key(Counter(map(_SCOPE, scan.bad)), key_of, int.__add__)
    out_attrs = list(map(scan.last_attrs.__getitem__, out_runs))
    none = (0, nan, nan, nan)  # the row "" (outside any module) has no parameters
    stats = list(map(params.get, _strip_indices(keys), repeat(none)))
    param_count, param_sum, param_mean, param_max = (list(map(itemgetter(k), stats)) for k in range(4))
    return {
        "scope": keys,
        "nodes": list(map(count.__getitem__, keys)),
        "output_node": list(map(scan.last_ids.__getitem__, out_runs)),
        "output_data": list(map(_DATA, out_attrs)),
        "output_grad": list(map(_GRAD, out_attrs)),
        "param_count": param_count,
        "param_abs_grad_sum": param_sum,
        "param_abs_grad_mean": param_mean,
        "param_abs_grad_max": param_max,
        "relu_zero_share": relu,
        "tanh_saturated_share": tanh,
        "nonfinite": list(map(nonfinite.get, keys, repeat(0))),
        "relu_units": relu_units,
        "dead_relu_units": dead_units,
    }


def _tensor_shares(
    picked: list[dict[str, Any]], op: str, share: str, keys: list[str], key_of: dict[str, str] | None
) -> list[float]:
    """Per key, the element-weighted share ``share`` of its ``op`` outputs (a tensor trace's)."""
    hits: dict[str, float] = {}
    total: dict[str, float] = {}
    for a in picked:
        v = a.get(share)
        if a["op"] != op or v is None or not math.isfinite(float(v)):
            continue
        key = key_of[a["scope"]] if key_of is not None else a["scope"]
        n = float(a.get("numel") or 0)
        hits[key] = hits.get(key, 0.0) + float(v) * n
        total[key] = total.get(key, 0.0) + n
    return [hits[k] / total[k] if total.get(k) else math.nan for k in keys]


def _tensor_sums(picked: list[dict[str, Any]], attr: str, keys: list[str], key_of: dict[str, str] | None) -> list[Any]:
    """Per key, the sum of ``attr`` over its ReLU outputs (None where it has none)."""
    out: dict[str, int] = {}
    for a in picked:
        v = a.get(attr)
        if a["op"] != "relu" or v is None:
            continue
        key = key_of[a["scope"]] if key_of is not None else a["scope"]
        out[key] = out.get(key, 0) + int(v)
    return [float(out[k]) if k in out else math.nan for k in keys]
