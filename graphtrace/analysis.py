"""Graph analysis of traces with networkx algorithms. Each function takes a root Value or a snapshot."""

from __future__ import annotations

import math
import re
from collections import Counter
from itertools import chain, compress, islice, pairwise, repeat
from operator import eq, is_not, itemgetter, ne, truediv
from typing import Any

import networkx as nx
import pandas as pd

from .export.frames import is_tensor_trace, node_roles, topological_nodes
from .naming import renumber_paths
from .snapshot import as_graph
from .store import read_trace

__all__ = [
    "anomalies",
    "by_scope",
    "critical_path",
    "depth",
    "diff",
    "fan_out",
    "health",
    "influence",
    "op_counts",
    "path_contributions",
]

_STR = pd.StringDtype()


def _frame(rows: list[Any], schema: dict[str, Any]) -> pd.DataFrame:
    """A DataFrame of ``rows`` (tuples) with exactly these columns and dtypes, also when empty."""
    return pd.DataFrame.from_records(rows, columns=list(schema)).astype(schema)


def _root(G: nx.DiGraph) -> Any:
    root = G.graph.get("root")
    if root is None:
        sinks = [n for n in G if not G._succ[n]]
        if len(sinks) != 1:
            raise ValueError("the graph has no G.graph['root'] and not exactly one sink")
        root = sinks[0]
    return root


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
    from .value import Value

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
        - ``nonfinite`` (int64): nodes whose ``data`` or ``grad`` is NaN or infinite.

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
}
_SCOPE, _OP, _ROLE, _DATA, _GRAD = map(itemgetter, ("scope", "op", "role", "data", "grad"))
#: ops whose nodes by_scope looks at one by one: units, and leaves (parameters among them)
_PICK = frozenset(("relu", "tanh", ""))


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

    __slots__ = ("bad", "last_attrs", "last_ids", "paths", "picks", "size", "starts")

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


def _live_scan(x: Any) -> _Scan | None:
    """:class:`_Scan` of the live store, when it is exactly the trace of the Value ``x`` (``x`` is its
    only sink, as after a training step's backward pass: no snapshot needed); else None."""
    from .value import Value

    return read_trace(x._id, _Scan) if isinstance(x, Value) else None


def scope_columns(x: Any, depth: int | None = None, pool: bool = False) -> dict[str, list[Any]]:
    """:func:`by_scope`'s table as plain columns (name -> list, in ``_SCOPE_SCHEMA``'s order).

    Reads the live store directly when ``x`` is its only sink (a training step's loss after its
    backward pass: no snapshot is made), else a snapshot. ``depth`` is not checked here.
    """
    scan = _live_scan(x)
    if scan is None:
        G = as_graph(x)
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
        scan = _Scan(ids, attrs, None, bad)
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

    relu = shares("relu", (0.0).__eq__)
    tanh = shares("tanh", _SATURATED_ABS)
    modules: dict[str, list[float]] = {}  # module path -> |grad| of the parameters in it and below
    enclosing: dict[str, list[list[float]]] = {}  # a parameter's scope -> those modules' lists
    for a in compress(picked, map(eq, map(_ROLE, picked), repeat("parameter"))):
        path = a["scope"]
        lists = enclosing.get(path)
        if lists is None:
            module = _INDEX.sub("", path)
            parts = module.split("/") if module else []
            # the module and each enclosing module
            lists = enclosing[path] = [modules.setdefault("/".join(parts[:k]), []) for k in range(1, len(parts) + 1)]
        g = abs(a["grad"])
        for grads in lists:
            grads.append(g)
    params = {m: (len(g), math.fsum(g), math.fsum(g) / len(g), max(g)) for m, g in modules.items()}
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
    }


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


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

    On a tensor trace (:mod:`graphtrace.pytorch`) a node is non-finite when any element of its value
    (or gradient) is, values the trace did not see count as finite, names carry the shape
    (``relu [8×16]``) and causes the module scope; a backward origin names the first edge whose
    gradient (the vector-Jacobian product the consumer sends back) has non-finite elements.

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
        causes = []
        if fwd and tensors:
            k, op, shape = nodes[n].get("data_nonfinite"), nodes[n].get("op"), nodes[n].get("shape")
            causes.append(
                f"{op}{where(n)} of finite operands gave {k} non-finite elements of {shape}"
                if pred[n]
                else f"leaf with {k} non-finite elements"
            )
        elif fwd:
            causes.append(f"{nodes[n].get('op')} of finite operands gave {d!r}" if pred[n] else f"leaf with data {d!r}")
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
        If ``depth`` is not a positive int.

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
