"""A torch autograd graph (``grad_fn`` nodes and their ``next_functions``) as a graphtrace DiGraph."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import networkx as nx
import torch

from .tensors import Raw, empty, finish, raw, shape_text, summary

__all__ = ["NodeInfo", "build", "from_tensor", "module_paths", "op_name", "tensor_meta"]

_BACKWARD = re.compile(r"Backward\d*$")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z0-9])(?=[A-Z][a-z])")


def op_name(fn: Any) -> str:
    """The op of a ``grad_fn``: ``AddmmBackward0`` -> ``addmm``, ``NativeBatchNormBackward0`` ->
    ``native_batch_norm``, ``TBackward0`` -> ``t``; a custom ``autograd.Function`` by its class name."""
    name = _BACKWARD.sub("", type(fn).__name__) or type(fn).__name__
    return _CAMEL.sub("_", name).lower()


class NodeInfo:
    """What a trace saw of one autograd node: its output's shape and statistics and its module scope
    (forward), its output's gradient and the gradient along each incoming edge (backward)."""

    __slots__ = (
        "data",
        "edge_kept",
        "edges",
        "grad",
        "inexact",
        "kept",
        "meta",
        "passes",
        "scope",
        "seq",
        "sizes",
        "untracked",
    )

    def __init__(self, seq: int, scope: str, meta: dict[str, Any], data: Raw | None) -> None:
        self.seq = seq
        self.scope = scope
        self.meta = meta  # shape, dtype, numel, unit statistics of activations
        self.data = data
        self.grad: Raw | None = None
        self.edges: dict[Any, Raw | None] = {}  # source node -> the gradient along its edge
        self.sizes: dict[int, int] = {}  # output number -> its element count
        # several backward passes: how many reached the node; the gradients (per output, and per edge
        # and output) of passes that kept their graph, to be summed with the next pass's
        self.passes = 0
        self.kept: list[Any] | None = None
        self.edge_kept: dict[Any, dict[int, Any]] = {}
        self.inexact = False
        self.untracked: list[Raw] = []  # the op's inputs outside the graph (not requiring grad)


def tensor_meta(t: torch.Tensor) -> dict[str, Any]:
    """shape, dtype and numel of ``t``."""
    return {"shape": shape_text(t.shape), "dtype": str(t.dtype).removeprefix("torch."), "numel": int(t.numel())}


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


def _walk(roots: Iterable[Any]) -> tuple[list[Any], list[tuple[Any, Any, list[int]]]]:
    """Every node reachable from ``roots`` through ``next_functions`` (iteratively: graphs may be
    deep), in discovery order, and the edges (source, target, positions in the target's inputs)."""
    seen: dict[Any, None] = {}
    stack = [r for r in roots if r is not None]
    edges: list[tuple[Any, Any, list[int]]] = []
    while stack:
        fn = stack.pop()
        if fn in seen:
            continue
        seen[fn] = None
        positions: dict[Any, list[int]] = {}
        for j, (child, _) in enumerate(fn.next_functions):
            if child is not None:
                positions.setdefault(child, []).append(j)
        for child, pos in positions.items():
            edges.append((child, fn, pos))
            if child not in seen:
                stack.append(child)
    return list(seen), edges


def build(
    roots: list[Any],
    infos: dict[Any, NodeInfo],
    params: dict[int, tuple[str, str]],
    *,
    root: Any = None,
    root_tensor: torch.Tensor | None = None,
    leaves: dict[Any, Raw | None] | None = None,
) -> nx.DiGraph:
    """The DiGraph of everything reachable from the autograd nodes ``roots``.

    ``infos`` holds what a trace recorded per node (nothing for :func:`from_tensor`); ``params`` names
    the parameters; ``root`` is the output node (default: the last node without users, in recording
    order). Node ids are ints in a topological order (operands before results). ``leaves`` gives the
    gradient of each leaf (AccumulateGrad node) a trace saw its backward passes send (None: the
    leaf's ``.grad`` is read, as :func:`from_tensor` does).
    """
    fns, edges = _walk(roots)
    H = nx.DiGraph()
    # operands before results; among the nodes ready, parameters first (in the model's order), then
    # the ops in the order they ran, then the rest
    param_rank = {pid: k for k, pid in enumerate(params)}

    def key(k: int, fn: Any) -> tuple[int, int]:
        if fn in infos:
            return (1, infos[fn].seq)
        var = getattr(fn, "variable", None)
        if var is not None and id(var) in param_rank:
            return (0, param_rank[id(var)])
        return (2, k)

    order_key = {fn: key(k, fn) for k, fn in enumerate(reversed(fns))}
    H.add_nodes_from(fns)
    H.add_edges_from((u, v) for u, v, _ in edges)
    order = list(nx.lexicographical_topological_sort(H, key=order_key.__getitem__))
    index = {fn: i for i, fn in enumerate(order)}
    sinks = [fn for fn in order if not H._succ[fn]]
    root_fn = root
    if root_fn is None:  # the last recorded output nothing uses (the loss), else the last sink
        root_fn = max(sinks, key=lambda fn: (fn in infos, infos[fn].seq if fn in infos else index[fn]), default=None)
    # the scope of a node the trace did not see (an op inside a composite, e.g. the transpose inside
    # F.linear): that of the recorded node it feeds, nearest first
    scope: dict[Any, str] = {fn: infos[fn].scope for fn in fns if fn in infos}
    for fn in reversed(order):
        if fn not in scope:
            users = [v for v in H._succ[fn] if v in scope]
            scope[fn] = scope[max(users, key=index.__getitem__)] if users else ""
    # what is known of each node: its attributes, and its value and gradient statistics (converted
    # to numbers together, below)
    rows: list[tuple[Any, dict[str, Any], Raw | None, Raw | None]] = []
    counts: dict[tuple[str, str], int] = {}
    n_inputs = 0
    with torch.no_grad():
        for fn in order:
            data: Raw | None = None
            grad: Raw | None = None
            if type(fn).__name__ == "AccumulateGrad":
                var = fn.variable
                name, sc = params.get(id(var), ("", ""))
                if not name:
                    name = "input" if n_inputs == 0 else f"input_{n_inputs}"
                    n_inputs += 1
                attrs: dict[str, Any] = {"label": name, "op": "", "scope": sc}
                attrs["role"] = "parameter" if id(var) in params else "leaf"
                attrs.update(tensor_meta(var))
                data = raw(var, l1=True)
                if leaves is not None:
                    grad = leaves.get(fn)
                else:
                    grad = raw(var.grad, l1=True) if var.grad is not None else None
            else:
                op = op_name(fn)
                sc = scope[fn]
                k = counts.get((sc, op), 0)
                counts[(sc, op)] = k + 1
                role = "root" if fn is root_fn else "intermediate"
                attrs = {"label": op if k == 0 else f"{op}_{k}", "op": op, "role": role, "scope": sc}
                info = infos.get(fn)
                if info is not None:
                    attrs.update(info.meta)
                    data, grad = info.data, info.grad
                elif fn is root_fn and root_tensor is not None:
                    attrs.update(tensor_meta(root_tensor))
                    data = raw(root_tensor)
                else:
                    saved = _saved_result(fn)
                    if saved is not None:
                        attrs.update(tensor_meta(saved))
                        data = raw(saved)
                    else:
                        attrs.update({"shape": "", "dtype": "", "numel": -1})
                if grad is None and fn is root_fn and root_tensor is not None and root_tensor.retains_grad:
                    grad = raw(root_tensor.grad) if root_tensor.grad is not None else None
            attrs["grad_fn"] = type(fn).__name__
            rows.append((fn, attrs, data, grad))
    datas = iter(finish([d for _, _, d, _ in rows if d is not None], "data"))
    grads = iter(finish([g for _, _, _, g in rows if g is not None], "grad"))
    outside = [r for info in infos.values() for r in info.untracked]
    outside_bad = {id(r): int(s["data_nonfinite"]) for r, s in zip(outside, finish(outside, "data"), strict=True)}
    for fn, attrs, _, _ in rows:
        info = infos.get(fn)
        attrs["untracked_nonfinite"] = sum(outside_bad[id(r)] for r in info.untracked) if info is not None else 0
    G = nx.DiGraph()
    for fn, attrs, data, grad in rows:
        attrs.update(next(datas) if data is not None else empty("data"))
        attrs.update(next(grads) if grad is not None else empty("grad"))
        attrs["data_known"], attrs["grad_known"] = data is not None, grad is not None
        G.add_node(index[fn], **attrs)
    edge_raws: list[tuple[Any, Any, Raw]] = []
    for u, v, _ in edges:
        r = infos[v].edges.get(u) if v in infos else None
        if r is not None:
            edge_raws.append((u, v, r))
    edge_stats = dict(
        zip(
            ((u, v) for u, v, _ in edge_raws),
            finish([r for _, _, r in edge_raws], "grad"),
            strict=True,
        )
    )
    for u, v, _ in edges:
        info = infos.get(v)
        norm, bad, value = math.nan, 0, math.nan
        if (u, v) in edge_stats:
            e = edge_stats[(u, v)]
            norm, bad, value = e["grad_norm"], e["grad_nonfinite"], e["grad"]
        elif info is not None and info.grad is not None and u in infos and infos[u].grad is not None:
            # an op node feeding only this edge: the edge carries exactly its gradient
            a = G._node[index[u]]
            norm, bad, value = a["grad_norm"], a["grad_nonfinite"], a["grad"]
        if G._node[index[u]]["numel"] != 1:
            value = math.nan  # the gradient of a one-element source is a number; of a larger one, a norm
        G.add_edge(index[u], index[v], local_grad=math.nan, grad_norm=norm, grad_nonfinite=bad, grad_value=value)
    G.graph["root"] = index[root_fn] if root_fn is not None else None
    G.graph["kind"] = "torch"
    return G


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
        G.add_node(0, **attrs)
        G.graph["root"], G.graph["kind"] = 0, "torch"
        return G
    return build([fn], {}, params, root=fn, root_tensor=t)
