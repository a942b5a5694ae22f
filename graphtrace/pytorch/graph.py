"""A torch autograd graph (``grad_fn`` nodes and their ``next_functions``) as a graphtrace DiGraph."""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

import networkx as nx
import torch

from .tensors import Raw, empty, finish_many, raw, shape_text, summary

__all__ = ["NodeInfo", "Records", "assemble", "from_tensor", "module_paths", "op_name", "tensor_meta"]

_KEYS = itertools.count()

_BACKWARD = re.compile(r"Backward\d*$")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z0-9])(?=[A-Z][a-z])")


def op_name(fn: Any) -> str:
    """The op of a ``grad_fn``: ``AddmmBackward0`` -> ``addmm``, ``NativeBatchNormBackward0`` ->
    ``native_batch_norm``, ``TBackward0`` -> ``t``; a custom ``autograd.Function`` by its class name."""
    return _op_of(type(fn).__name__)


class NodeInfo:
    """What is known of one node of a torch graph: the autograd node's type, its output's shape and
    statistics and module scope (forward; ``recorded``: seen by a trace as it ran), its output's
    gradient and the gradient along each incoming edge (backward), or the tensor of a leaf."""

    __slots__ = (
        "data",
        "edge_kept",
        "edges",
        "grad",
        "grad_fn",
        "hint",
        "inexact",
        "kept",
        "leaf",
        "meta",
        "passes",
        "recorded",
        "same",
        "scope",
        "seq",
        "sizes",
        "spec",
        "untracked",
    )

    def __init__(self, seq: int, grad_fn: str, scope: str | None, meta: dict[str, Any], data: Raw | None) -> None:
        self.seq = seq
        self.grad_fn = grad_fn  # the autograd node's type name (AccumulateGrad for a leaf)
        self.scope = scope  # None: not seen (an op inside a composite): its users' scope
        self.meta = meta  # shape, dtype, numel, unit statistics of activations
        self.data = data
        self.recorded = False
        self.leaf: torch.Tensor | None = None  # the tensor of a leaf
        self.grad: Raw | None = None
        self.edges: dict[int, Raw | None] = {}  # source node -> the gradient along its edge
        self.spec: list[tuple[int | None, int]] = []  # per input position: (source node, its output number)
        self.sizes: dict[int, int] = {}  # output number -> its element count
        # several backward passes: how many reached the node; the gradients (per output, and per edge
        # and output) of passes that kept their graph, to be summed with the next pass's
        self.passes = 0
        self.kept: list[Any] | None = None
        self.edge_kept: dict[int, dict[int, Any]] = {}
        self.inexact = False
        self.untracked: list[Raw] = []  # the op's inputs outside the graph (not requiring grad)
        self.same = False  # a view or copy of its input (SAME_ELEMENTS)
        self.hint: Raw | None = None  # this pass's gradient, summarised by the view that alone uses it


class Records:
    """A torch graph as it is recorded: one :class:`NodeInfo` per autograd node, numbered in a
    topological order (operands first), and the edges between them. Holds no autograd node: each
    node found is tagged with its number in its ``metadata`` (under ``key``), so a graph the model
    drops (a forward pass without backward) is freed as it would be without graphtrace. Leaves are
    kept by tensor (a parameter's AccumulateGrad node may be made anew)."""

    def __init__(self, key: str, on_leaf: Any = None, on_reuse: Any = None) -> None:
        self.key = key
        self.nodes: list[NodeInfo] = []
        self.edges: dict[tuple[int, int], None] = {}
        self.users: list[int] = []  # per node: the input positions reading it
        self.leaf_of: dict[int, int] = {}  # id(leaf tensor) -> node
        self.on_leaf = on_leaf  # called with (AccumulateGrad node, its NodeInfo) for each one found
        self.on_reuse = on_reuse  # called with (node, its first user) when a second input position reads it
        self.first: dict[int, int] = {}  # node read at one input position so far -> the node reading it
        self.norms = False  # summarise at the "norms" level (see graphtrace.pytorch.tensors)

    def _new(self, grad_fn: str, scope: str | None, meta: dict[str, Any], data: Raw | None) -> NodeInfo:
        info = NodeInfo(len(self.nodes), grad_fn, scope, meta, data)
        self.nodes.append(info)
        self.users.append(0)
        return info

    def _link(self, info: NodeInfo, fn: Any) -> None:
        """The edges into ``info`` from its autograd node's inputs (all numbered already)."""
        key = self.key
        spec = []
        for child, nr in fn.next_functions:
            c = child.metadata[key] if child is not None else None
            spec.append((c, nr))
            if c is not None:
                self.edges[(c, info.seq)] = None
                self.users[c] += 1
                if self.users[c] == 1:
                    self.first[c] = info.seq
                elif self.users[c] == 2:
                    first = self.first.pop(c)
                    if self.on_reuse is not None:
                        self.on_reuse(c, first)
        info.spec = spec

    def _leaf(self, fn: Any) -> None:
        var = fn.variable
        seq = self.leaf_of.get(id(var))
        if seq is None:
            info = self._new("AccumulateGrad", None, tensor_meta(var), None)
            info.leaf = var
            seq = self.leaf_of[id(var)] = info.seq
        fn.metadata[self.key] = seq
        if self.on_leaf is not None:
            self.on_leaf(fn, self.nodes[seq])

    def node_of(self, fn: Any) -> int:
        """The number of autograd node ``fn``, numbering it and every node below it not seen yet
        (iteratively: graphs may be deep). A node no trace saw keeps its output where autograd
        saved it (``exp``, ``tanh``, ``relu``, ...)."""
        key = self.key
        seq = fn.metadata.get(key)
        if seq is not None:
            return int(seq)
        stack: list[tuple[Any, bool]] = [(fn, False)]
        while stack:
            f, expanded = stack.pop()
            if f.metadata.get(key) is not None:
                continue
            if type(f).__name__ == "AccumulateGrad":
                self._leaf(f)
            elif not expanded:
                stack.append((f, True))
                stack.extend((c, False) for c, _ in f.next_functions if c is not None and c.metadata.get(key) is None)
            else:
                saved = _saved_result(f)
                with torch.no_grad():
                    data = raw(saved, norms=self.norms) if saved is not None else None
                meta = tensor_meta(saved) if saved is not None else {"shape": "", "dtype": "", "numel": -1}
                info = self._new(type(f).__name__, None, meta, data)
                self._link(info, f)
                f.metadata[key] = info.seq
        return int(fn.metadata[key])

    def add_op(self, fn: Any, scope: str, meta: dict[str, Any], data: Raw | None) -> NodeInfo:
        """Record autograd node ``fn`` as seen by a trace (numbering its inputs first)."""
        for child, _ in fn.next_functions:
            if child is not None:
                self.node_of(child)
        info = self._new(type(fn).__name__, scope, meta, data)
        info.recorded = True
        self._link(info, fn)
        fn.metadata[self.key] = info.seq
        return info


_META: dict[tuple[Any, Any] | None, dict[str, Any]] = {}


def tensor_meta(t: torch.Tensor) -> dict[str, Any]:
    """shape, dtype and numel of ``t`` (a fresh dict; the texts are made once per shape and dtype)."""
    key: tuple[Any, Any] | None = (t.shape, t.dtype)
    try:
        meta = _META.get(key)
    except TypeError:  # a shape that cannot be hashed (symbolic sizes)
        meta, key = None, None
    if meta is None:
        if len(_META) > 4096:
            _META.clear()
        meta = {"shape": shape_text(t.shape), "dtype": str(t.dtype).removeprefix("torch."), "numel": int(t.numel())}
        if key is not None:
            _META[key] = meta
    return dict(meta)


def module_paths(model: Any) -> dict[int, tuple[str, str]]:
    """``id(parameter) -> (dotted name, module scope)`` for every parameter of ``model``: the scope is
    the owning module's path in graphtrace's form (see :func:`graphtrace.pytorch.trace`)."""
    if model is None:
        return {}
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")
    root = type(model).__name__
    out: dict[int, tuple[str, str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        owner = name.rpartition(".")[0]
        out.setdefault(id(p), (name, scope_path(root, owner)))
    return out


def scope_path(root: str, dotted: str) -> str:
    """A module's dotted name under the model class ``root`` as a scope path: ``encoder.layers.0.attn``
    -> ``Root/encoder/layers[0]/attn`` (a numeric name joins the name before it as its index)."""
    segs: list[str] = [root]
    for part in dotted.split(".") if dotted else []:
        if part.isdigit() and len(segs) > 1 and not segs[-1].endswith("]"):
            segs[-1] = f"{segs[-1]}[{part}]"
        else:
            segs.append(part.replace("/", "\\"))
    return "/".join(segs)


def assemble(
    records: Records,
    params: dict[int, tuple[str, str]],
    *,
    leaf_grads: dict[int, Raw | None] | None = None,
    leaf_data: dict[int, Raw] | None = None,
    root: int | None = None,
    root_tensor: torch.Tensor | None = None,
    stats: str = "full",
) -> nx.DiGraph:
    """The DiGraph of what ``records`` holds, in the schema of :func:`graphtrace.to_networkx`.

    ``params`` names the parameters; ``leaf_grads`` gives each leaf's gradient as a trace saw its
    passes send it (None: the leaves' ``.grad`` is read, as :func:`from_tensor` does); ``leaf_data``
    the statistics of leaves already summarised as they are now (else they are summarised); ``root`` is
    the output node (default: the last recorded node nothing uses, the loss) and ``root_tensor`` its
    tensor. Node ids are ints in a topological order: the parameters first (in the model's order),
    then every other node in the order it was recorded. Every statistic comes to the host in one
    transfer. ``stats``: the level of the statistics (``"full"``, ``"norms"``: what is summarised
    here, and every node's ``stats`` attribute).
    """
    norms = stats == "norms"
    nodes = records.nodes
    param_rank = {pid: k for k, pid in enumerate(params)}
    firsts = sorted(
        (i for i in nodes if i.leaf is not None and id(i.leaf) in param_rank), key=lambda i: param_rank[id(i.leaf)]
    )
    first_set = {i.seq for i in firsts}
    order = firsts + [i for i in nodes if i.seq not in first_set]
    index = [0] * len(nodes)
    for k, i in enumerate(order):
        index[i.seq] = k
    succ: list[list[int]] = [[] for _ in nodes]
    for u, v in records.edges:
        succ[u].append(v)
    if root is None:  # the last recorded output nothing uses (the loss), else the last sink
        sinks = [i for i in nodes if not succ[i.seq]]
        best = max(sinks, key=lambda i: (i.recorded, i.seq if i.recorded else index[i.seq]), default=None)
        root = best.seq if best is not None else None
    # the scope of a node the trace did not see (an op inside a composite, e.g. the transpose inside
    # F.linear): that of the node it feeds that comes last
    scope: list[str] = [""] * len(nodes)
    for i in reversed(order):
        if i.scope is not None:
            scope[i.seq] = i.scope
        elif i.leaf is not None:
            scope[i.seq] = params.get(id(i.leaf), ("", ""))[1]
        else:
            users = succ[i.seq]
            scope[i.seq] = scope[max(users, key=index.__getitem__)] if users else ""
    rows: list[tuple[NodeInfo, dict[str, Any], Raw | None, Raw | None]] = []
    counts: dict[tuple[str, str], int] = {}
    n_inputs = 0
    with torch.no_grad():
        for i in order:
            grad = i.grad
            data = i.data
            if i.leaf is not None:
                var = i.leaf
                name = params.get(id(var), ("", ""))[0]
                if not name:
                    name = "input" if n_inputs == 0 else f"input_{n_inputs}"
                    n_inputs += 1
                attrs: dict[str, Any] = {"label": name, "op": "", "scope": scope[i.seq]}
                attrs["role"] = "parameter" if id(var) in params else "leaf"
                attrs.update(tensor_meta(var))
                data = leaf_data.get(i.seq) if leaf_data else None
                if data is None:
                    data = raw(var, l1=True, norms=norms, defer=True)
                if leaf_grads is not None:
                    grad = leaf_grads.get(i.seq)
                else:
                    grad = raw(var.grad, l1=True, norms=norms, defer=True) if var.grad is not None else None
            else:
                op = _op_of(i.grad_fn)
                sc = scope[i.seq]
                k = counts.get((sc, op), 0)
                counts[(sc, op)] = k + 1
                role = "root" if i.seq == root else "intermediate"
                attrs = {"label": op if k == 0 else f"{op}_{k}", "op": op, "role": role, "scope": sc}
                attrs.update(i.meta)
                if i.seq == root and root_tensor is not None:
                    if not i.recorded:
                        attrs.update(tensor_meta(root_tensor))
                        data = raw(root_tensor, norms=norms)
                    if grad is None and root_tensor.retains_grad and root_tensor.grad is not None:
                        grad = raw(root_tensor.grad, norms=norms)
            attrs["grad_fn"] = i.grad_fn
            rows.append((i, attrs, data, grad))
    edge_raws = [(u, v, nodes[v].edges[u]) for u, v in records.edges if nodes[v].edges.get(u) is not None]
    outside = [r for i in nodes for r in i.untracked]
    (datas, grads, edge_sums, outsides), _ = finish_many(
        [
            ([d for _, _, d, _ in rows if d is not None], "data"),
            ([g for _, _, _, g in rows if g is not None], "grad"),
            ([r for _, _, r in edge_raws if r is not None], "grad"),
            (outside, "data"),
        ]
    )
    outside_bad = {id(r): int(o["data_nonfinite"]) for r, o in zip(outside, outsides, strict=True)}
    next_data, next_grad = iter(datas), iter(grads)
    no_data, no_grad = empty("data"), empty("grad")
    prepared: list[tuple[int, dict[str, Any]]] = []
    for i, attrs, data, grad in rows:
        summary_ = next(next_data) if data is not None else dict(no_data)
        kind = attrs.pop("unit_counts", None)  # an activation's unit counts, kept with its summary
        e1, e2 = summary_.pop("_e1", math.nan), summary_.pop("_e2", math.nan)
        numel = attrs.get("numel") or 0
        if kind == "relu":
            attrs["dead_units"] = int(e1) if e1 == e1 else None
            attrs["zero_share"] = (numel - e2) / numel if numel > 0 and e2 == e2 else math.nan
        elif kind == "tanh":
            attrs["saturated_share"] = e1 / numel if numel > 0 and e1 == e1 else math.nan
        attrs.update(summary_)
        attrs.update(next(next_grad) if grad is not None else no_grad)
        attrs["data_known"], attrs["grad_known"] = data is not None, grad is not None
        attrs["stats"] = stats
        attrs["untracked_nonfinite"] = sum(outside_bad[id(r)] for r in i.untracked) if i.untracked else 0
        prepared.append((index[i.seq], attrs))
    G = nx.DiGraph()
    G.add_nodes_from(prepared)  # one call: its attribute dicts are taken as they are
    edge_stats = {(u, v): e for (u, v, _), e in zip(edge_raws, edge_sums, strict=True)}
    node = G._node
    users = records.users
    edges: list[tuple[int, int, dict[str, Any]]] = []
    for u, v in records.edges:
        norm, bad, value = math.nan, 0, math.nan
        e = edge_stats.get((u, v))
        if e is not None:
            norm, bad, value = e["grad_norm"], e["grad_nonfinite"], e["grad"]
        elif nodes[v].grad is not None and (
            (nodes[u].recorded and nodes[u].grad is not None) or (nodes[u].leaf is not None and users[u] == 1)
        ):
            # an op node whose other edges have their own gradients, or a leaf used once: the edge
            # carries exactly the node's gradient
            a = node[index[u]]
            if a["grad_known"]:
                norm, bad, value = a["grad_norm"], a["grad_nonfinite"], a["grad"]
        if node[index[u]]["numel"] != 1:
            value = math.nan  # the gradient of a one-element source is a number; of a larger one, a norm
        attrs = {"local_grad": math.nan, "grad_norm": norm, "grad_nonfinite": bad, "grad_value": value}
        edges.append((index[u], index[v], attrs))
    G.add_edges_from(edges)
    G.graph["root"] = index[root] if root is not None else None
    G.graph["kind"] = "torch"
    return G


_OPS: dict[str, str] = {}


def _op_of(grad_fn: str) -> str:
    op = _OPS.get(grad_fn)
    if op is None:
        name = _BACKWARD.sub("", grad_fn) or grad_fn
        op = _OPS[grad_fn] = _CAMEL.sub("_", name).lower()
    return op


def _saved_result(fn: Any) -> torch.Tensor | None:
    """A node's output as its ``grad_fn`` saved it for backward (``exp``, ``tanh``, ``relu``, ...),
    while it still has it."""
    try:
        t = fn._saved_result
    except (AttributeError, RuntimeError):  # no saved result, or freed by a backward pass
        return None
    return t if isinstance(t, torch.Tensor) else None


def from_tensor(t: Any, model: Any = None) -> nx.DiGraph:
    """The autograd graph that made tensor ``t``, walked after the fact through ``grad_fn``.

    Op nodes are named after their ``grad_fn`` (``addmm``, ``relu``, ``addmm_1``: torch.fx's
    convention, unique per scope), parameters after ``model.named_parameters()`` when ``model`` is
    given (``fc1.weight``, scope ``Net/fc1``), other leaves ``input``, ``input_1``, ... An op's output
    value is known only where its ``grad_fn`` saved it (``exp``, ``tanh``, ``relu``, ...) or for ``t``
    itself (``data_known`` says which); gradients are known for leaves whose ``.grad`` is set. For the
    values and gradients of every op, and module scopes, record with :func:`trace` instead.

    Parameters
    ----------
    t : torch.Tensor
        An output with a ``grad_fn`` (or a leaf that requires grad: a one-node graph).
    model : torch.nn.Module, optional
        Names and scopes for the parameters.

    Returns
    -------
    networkx.DiGraph
        In the schema of :func:`graphtrace.to_networkx`, with ``G.graph["kind"] == "torch"``.

    Raises
    ------
    TypeError
        If ``t`` is not a tensor or ``model`` not a module.
    ValueError
        If ``t`` has no ``grad_fn`` and does not require grad (nothing recorded it).

    Examples
    --------
    >>> import torch
    >>> import graphtrace as gt
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    >>> y = net(torch.randn(4, 3)).sum()
    >>> G = gt.pytorch.from_tensor(y, net)
    >>> [G.nodes[n]["label"] for n in G]
    ['0.weight', '0.bias', 't', 'addmm', 'relu', 'sum']
    >>> G.nodes[G.graph["root"]]["shape"], G.nodes[0]["shape"], G.nodes[0]["scope"]
    ('scalar', '2×3', 'Sequential/0')
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"from_tensor: expected a torch.Tensor, got {type(t).__name__}")
    params = module_paths(model)
    fn = t.grad_fn
    if fn is None:
        if not t.requires_grad:
            raise ValueError(
                "from_tensor: the tensor has no grad_fn and does not require grad, so autograd recorded "
                "nothing (made under torch.no_grad(), detached, or from inputs that do not require grad)"
            )
        name, sc = params.get(id(t), ("input", ""))
        G = nx.DiGraph()
        attrs: dict[str, Any] = {"label": name, "op": "", "scope": sc}
        attrs["role"] = "parameter" if id(t) in params else "leaf"
        attrs.update(tensor_meta(t))
        attrs.update(summary(t))
        attrs.update(summary(t.grad, "grad") if t.grad is not None else empty("grad"))
        attrs["data_known"], attrs["grad_known"] = True, t.grad is not None
        attrs["stats"] = "full"
        G.add_node(0, **attrs)
        G.graph["root"], G.graph["kind"] = 0, "torch"
        return G
    records = Records(f"graphtrace.from_tensor.{next(_KEYS)}")
    try:
        root = records.node_of(fn)
        return assemble(records, params, root=root, root_tensor=t)
    finally:
        _untag(records, [fn])


def untag(key: str, roots: list[Any]) -> None:
    """Remove the tag ``key`` from the metadata of every autograd node below ``roots`` still alive."""
    stack = [r for r in roots if r is not None]
    while stack:
        f = stack.pop()
        if f.metadata.pop(key, None) is None:
            continue
        stack.extend(c for c, _ in f.next_functions if c is not None)


def _untag(records: Records, roots: list[Any]) -> None:
    untag(records.key, roots)
