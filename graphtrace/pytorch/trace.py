"""Recording a torch model's forward and backward: values, module scopes and edge gradients."""

from __future__ import annotations

import inspect
import itertools
import threading
import warnings
import weakref
from contextvars import ContextVar
from typing import Any

import networkx as nx
import torch
from torch._subclasses.fake_tensor import is_fake
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import (
    TorchDispatchMode,
    _disable_current_modes,
    _get_current_dispatch_mode_stack,
    _pop_mode,
    _push_mode,
)

from .graph import NodeInfo, Records, _op_of, assemble, module_paths, scope_path, tensor_meta
from .tensors import LEVELS, Raw, flush, merge, raw, zeros_raw

__all__ = ["Trace", "trace"]

_KEYS = itertools.count()

_RELU = {"relu", "relu_"}
_TANH = {"tanh", "tanh_"}
#: |tanh| above this is saturated (as graphtrace's scalar health)
SATURATED = 0.97


def _op_base(func: Any) -> str:
    return str(getattr(func, "__name__", "")).split(".")[0]


#: Ops whose output holds exactly their first input's elements (a view, a copy): the output's
#: statistics are the input's, and so is the gradient the op sends back (a reordering of its own).
SAME_ELEMENTS = frozenset(
    (
        "view",
        "_unsafe_view",
        "unsafe_view",
        "reshape",
        "_reshape_alias",
        "reshape_alias",
        "t",
        "transpose",
        "permute",
        "unsqueeze",
        "squeeze",
        "alias",
        "clone",
        "detach",
        "numpy_t",
        "lift_fresh",
    )
)
_OTHER, _SAME, _RELU_OP, _TANH_OP = 0, 1, 2, 3
_KINDS: dict[Any, int] = {}


def _kind(func: Any) -> int:
    k = _KINDS.get(func)
    if k is None:
        base = _op_base(func)
        k = _KINDS[func] = (
            _SAME if base in SAME_ELEMENTS else _RELU_OP if base in _RELU else _TANH_OP if base in _TANH else _OTHER
        )
    return k


def _units(out: torch.Tensor) -> tuple[int, Any]:
    """(units, dead units) of a ReLU output: a unit is a feature or channel (dim 1 of a batch, the
    only dim of a vector); dead when it is 0 for every sample and position of the batch (its largest
    value is 0: a ReLU output is >= 0). The dead count stays on the device (a 0-d tensor)."""
    if out.dim() == 0:
        return 1, (out == 0).sum()
    if out.dim() == 1:
        return int(out.shape[0]), (out == 0).sum()
    dims = [0, *range(2, out.dim())]
    return int(out.shape[1]), (out.amax(dim=dims) == 0).sum()


#: Ops whose output never requires grad though an input does (``detach``, also ``p.data``; a
#: ``*_like`` factory): not summarised (nothing the graph holds), so that they never take a
#: parameter's values for those an op read (``p.data -= lr * p.grad`` reads ``p`` through ``detach``)
_NO_GRAD_OUT = frozenset(
    getattr(torch.ops.aten, name).default
    for name in ("detach", "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like")
)


def _has_values(t: torch.Tensor) -> bool:
    """Whether ``t`` holds values to summarise: not a tensor on the ``meta`` device (a model built or
    run under ``torch.device("meta")`` for its shapes) nor a ``FakeTensor`` (``FakeTensorMode``)."""
    if t.device.type == "meta":
        return False
    return type(t) is torch.Tensor or not is_fake(t)


def _needs_grad(args: Any) -> bool:
    """Whether a tensor among ``args`` (or in a list or tuple among them) requires grad."""
    for a in args:
        if isinstance(a, torch.Tensor):
            if a.requires_grad:
                return True
        elif isinstance(a, (list, tuple)) and any(isinstance(b, torch.Tensor) and b.requires_grad for b in a):
            return True
    return False


class _Session:
    """The traces recording in one context (thread, or asyncio task) and the two modes they share:
    nested traces record every op into each of them, and another thread's ops and module calls
    never enter them (torch's mode stacks are per thread, module hooks check the context)."""

    def __init__(self) -> None:
        self.traces: list[Trace] = []
        self.mode = _Recorder(self)
        self.functions = _Functions(self)
        self.seen_inputs: dict[int, tuple[Any, int, Raw]] = {}  # inputs outside the graph, by id
        self.known: dict[int, tuple[Any, int, Raw]] = {}  # tensors summarised: id -> (ref, version, Raw)
        # leaves (by id) a backward pass reached since their summary in ``known``: an update after it
        # may have gone through ``.data`` (``p.data -= lr * p.grad``), which leaves ``_version`` alone
        self.stale: set[int] = set()
        self.paused = False  # a backward call is running: the dispatch mode is off
        self.alone = False  # ... and no other dispatch mode is on (a user's: the trace's kernels would reach it)
        self.higher = False  # a backward call with create_graph=True is running (the mode stays on)
        self.token: Any = None
        self.norms = False  # every trace on records the "norms" level (one full trace: every statistic)
        self.open = True  # False once its last trace exited: a context still holding it starts anew
        self.thread = threading.get_ident()  # the thread whose mode stacks hold its modes

    def levels(self) -> None:
        """The level of the summaries made once for every trace: "norms" if each trace asks for it."""
        self.norms = bool(self.traces) and all(tr._norms for tr in self.traces)

    def see(self, func: Any, out: Any, args: Any, kwargs: Any, grad: bool = True) -> None:
        """Summarise the outputs of an op that needs a gradient (once, for every trace); ``grad``:
        whether autograd records it (an op under ``torch.no_grad()``, an optimizer's, reads no
        parameter for the graph)."""
        kind = _kind(func)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        untracked: list[Raw] | None = None
        items = []
        for o in outs:
            if isinstance(o, torch.Tensor) and (o.is_floating_point() or o.is_complex()):
                if not _has_values(o):  # a meta or fake tensor: nothing to summarise, not the traced run's
                    continue
                meta = tensor_meta(o)
                n = meta["numel"]
                data = None
                extras = None
                if kind == _SAME and args and isinstance(args[0], torch.Tensor) and args[0].numel() == n:
                    data = self.known_raw(args[0], grad)  # a view or copy: its input's statistics
                elif self.norms:  # (no unit counts: the "norms" level)
                    pass
                elif kind == _RELU_OP:  # dead units and non-zero elements, counted on the device
                    meta["units"], dead = _units(o)
                    meta["unit_counts"] = "relu"
                    extras = (dead, torch.count_nonzero(o))
                elif kind == _TANH_OP:
                    meta["tanh_units"] = int(o.shape[1]) if o.dim() >= 2 else 1
                    meta["unit_counts"] = "tanh"
                    saturated = torch.count_nonzero(o.abs() > SATURATED)
                    extras = (saturated, saturated)
                if data is None:
                    data = raw(o, extras=extras, norms=self.norms)
                self.remember(o, data)
                if untracked is None:
                    untracked = self._untracked_inputs(args, kwargs, grad)
                items.append((o, meta, data, untracked))
        for tr in self.traces:
            scope = tr.scope
            tr.pending.extend((o, scope, meta, data, u) for o, meta, data, u in items)

    def remember(self, t: torch.Tensor, r: Raw) -> None:
        """Keep ``r`` as the statistics of ``t`` as it is now (its id and version, a weak reference)."""
        known = self.known
        if len(known) > 4096:  # drop the entries of tensors gone
            for k in [k for k, (ref, _, _) in known.items() if ref() is None]:
                del known[k]
        known[id(t)] = (weakref.ref(t), t._version, r)

    def known_raw(self, t: torch.Tensor, grad: bool = True) -> Raw:
        """The statistics of ``t``: those summarised already if it has not changed since, else new
        ones (a parameter's with the mean of ``|x|``, kept for the parameter's node). A leaf a
        backward pass reached since is summarised again (``.data`` writes leave its version alone)
        by the next op autograd records (``grad``) that reads it."""
        key = id(t)
        hit = self.known.get(key)
        if (
            hit is not None
            and hit[0]() is t
            and hit[1] == t._version
            and (self.norms or not hit[2].norms)
            and key not in self.stale
        ):
            return hit[2]
        r = raw(t, l1=t.is_leaf, norms=self.norms, defer=t.is_leaf)
        if grad or key not in self.stale:
            self.remember(t, r)
            self.stale.discard(key)
        return r

    def _untracked_inputs(self, args: Any, kwargs: Any, grad: bool = True) -> list[Raw]:
        """The statistics of an op's floating inputs that are not in the graph (they do not require
        grad: data, masks, buffers), once per tensor and version: where a NaN may come from outside.
        A leaf input that requires grad (a parameter) is summarised here too, as the op reads it
        (once per version): its node's values, so that the trace's exit has nothing left to launch
        for it."""
        found: list[Raw] = []
        for a in (*args, *(kwargs or {}).values()):
            for t in a if isinstance(a, (list, tuple)) else (a,):
                if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() == 0:
                    continue
                if t.requires_grad:
                    if t.grad_fn is None:
                        self.known_raw(t, grad)
                    continue
                key = id(t)
                hit = self.seen_inputs.get(key)
                if hit is None or hit[0]() is not t or hit[1] != t._version or (hit[2].norms and not self.norms):
                    hit = (weakref.ref(t), t._version, raw(t, norms=self.norms))
                    self.seen_inputs[key] = hit
                found.append(hit[2])
        return found


_SESSION: ContextVar[_Session | None] = ContextVar("graphtrace_pytorch_session", default=None)


def _session() -> _Session | None:
    """The session of this context, if it is still open and belongs to this thread: a context copied
    into another thread (``asyncio.to_thread``) or kept by a task after its parent's traces closed
    holds a session it must not record into."""
    s = _SESSION.get()
    return s if s is not None and s.open and s.thread == threading.get_ident() else None


class _Recorder(TorchDispatchMode):
    """Sees every aten op below autograd: the output of an op that needs a gradient is summarised
    right after it runs (before any in-place change); its ``grad_fn`` is read on the next op, once
    autograd has attached it."""

    def __init__(self, session: _Session) -> None:
        super().__init__()
        self.session = session

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        session = self.session
        if _session() is not session and not session.higher:
            # another asyncio task's op, run while this thread's trace waits at an ``await`` (the mode
            # stack is the thread's, not the task's): not the traced code's (a create_graph backward
            # may run in autograd's own threads, outside the context: it stays recorded)
            return func(*args, **(kwargs or {}))
        with _own_kernels(0):
            for tr in session.traces:
                if tr.pending:
                    tr.resolve()
        out = func(*args, **(kwargs or {}))
        if func not in _NO_GRAD_OUT and (_needs_grad(args) or (kwargs and _needs_grad(kwargs.values()))):
            enabled = torch.is_grad_enabled()
            torch._C._set_grad_enabled(False)  # torch.no_grad() without its context object per op
            try:
                with _own_kernels(0):
                    session.see(func, out, args, kwargs, enabled)
            finally:
                torch._C._set_grad_enabled(enabled)
        return out


def _own_kernels(mine: int) -> Any:
    """A context in which the trace's own kernels (its summaries) and the tensor attributes it reads
    reach no other mode: no function mode (the trace's own would see every ``t.grad_fn``, a user's
    ``torch.device`` would place the trace's buffers), and the dispatch modes on are turned off while
    they run if there are more than ``mine`` (the trace's own)."""
    if torch._C._len_torch_dispatch_stack() > mine:
        return _NoModes()
    return torch._C.DisableTorchFunction()


class _NoModes:
    """No function mode and no dispatch mode (see :func:`_own_kernels`)."""

    __slots__ = ("functions", "modes")

    def __enter__(self) -> None:
        self.functions = torch._C.DisableTorchFunction()
        self.functions.__enter__()
        self.modes = _disable_current_modes()
        self.modes.__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            self.modes.__exit__(*exc)
        finally:
            self.functions.__exit__(*exc)


def _take_off(mode: Any) -> list[Any] | None:
    """Take ``mode`` off this thread's dispatch mode stack, every other mode staying on in its order
    (a user's ``FlopCounterMode`` entered inside the trace keeps counting); the modes that were above
    it (None: it was not on the stack). Pairs with :func:`_put_back`."""
    if not any(m is mode for m in _get_current_dispatch_mode_stack()):
        return None
    above = []
    while (m := _pop_mode()) is not mode:
        above.append(m)
    for m in reversed(above):
        _push_mode(m)
    return above


def _put_back(mode: Any, above: list[Any]) -> None:
    """Put ``mode`` back where :func:`_take_off` took it from (below the modes that were above it)."""
    popped = [_pop_mode() for _ in above]
    _push_mode(mode)
    for m in reversed(popped):
        _push_mode(m)


def _exit_mode(mode: Any, exc: Any, stack: Any, pop: Any, push: Any) -> None:
    """Exit ``mode`` where it is on its mode stack (``stack()``, ``pop``, ``push``: the dispatch or the
    function modes'): the modes above it (another asyncio task's ``torch.device("meta")`` or dispatch
    mode, held across an ``await`` while this trace exits) are set aside while it exits, then put
    back in their order; a mode no longer on the stack is left alone (its ``__exit__`` would pop
    another's)."""
    if not any(m is mode for m in stack()):
        return
    above = []
    while stack()[-1] is not mode:
        above.append(pop())
    try:
        mode.__exit__(*exc)
    finally:
        for m in reversed(above):
            push(m)


#: The id of the autograd graph task running in this thread (-1 outside a backward pass).
_task_id: Any = getattr(torch._C, "_current_graph_task_id", lambda: -1)

_BACKWARD_CALLS = (torch.Tensor.backward, torch.autograd.backward, torch.autograd.grad)
_SIGNATURES = {f: inspect.signature(f) for f in _BACKWARD_CALLS}


def _retains(func: Any, args: Any, kwargs: Any) -> tuple[bool, Any]:
    """Whether a backward call keeps the graph for another pass (``retain_graph``, which defaults
    to ``create_graph``), and the call's bound arguments (None if they do not bind)."""
    try:
        bound = _SIGNATURES[func].bind(*args, **(kwargs or {}))
    except TypeError:
        return False, None  # torch raises its own error for the call
    a = bound.arguments
    retain = a.get("retain_graph")
    return bool(a.get("create_graph", False) if retain is None else retain), bound


class _Functions(TorchFunctionMode):
    """Pauses the dispatch mode while a backward pass runs (``loss.backward()``,
    ``torch.autograd.backward`` or ``grad``): under it every backward op would go through Python
    (+70% on ResNet-18); the backward is recorded by hooks on the autograd nodes instead."""

    def __init__(self, session: _Session) -> None:
        super().__init__()
        self.session = session

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func not in _BACKWARD_CALLS or _session() is not self.session:
            return func(*args, **(kwargs or {}))  # (another asyncio task's backward: not the trace's)
        session = self.session
        traces = list(session.traces)
        with _own_kernels(1):
            for tr in traces:
                tr.resolve()
        retain, bound = _retains(func, args, kwargs)
        # a pass that builds a graph of its own (create_graph=True: a gradient penalty) keeps the mode
        # on: its ops are recorded as any others (their values, shapes; their gradients in a later pass)
        higher = bound is not None and bool(bound.arguments.get("create_graph"))
        above = None if higher else _take_off(session.mode)  # only the trace's own mode: any other stays on
        session.paused, session.higher = above is not None, higher
        session.alone = session.paused and torch._C._len_torch_dispatch_stack() == 0
        for tr in traces:
            tr._retain = retain
        try:
            out = func(*args, **(kwargs or {}))
        finally:
            for tr in traces:
                tr._retain = False
            session.paused = session.alone = session.higher = False
            if above is not None:
                _put_back(session.mode, above)
        if func is torch.autograd.grad and bound is not None:
            for tr in traces:
                tr.grad_results(bound.arguments.get("inputs"), out)
        if not higher:
            # the pass's last gradients wait in partly filled batches: their statistics are launched
            # now (on a GPU they run while the code goes on), not at the trace's exit
            with _NoModes(), torch.no_grad():
                flush(release=False)
        return out


def _edge_raw(by_nr: dict[int, Any], norms: bool = False) -> Raw | None:
    """The statistics of an edge's gradient: its parts, one per output of the source it read,
    together (their norm is scaled: it never overflows)."""
    parts = [raw(g, norms=norms) for g in by_nr.values() if g is not None]
    return merge(parts) if parts else None


def _add(a: Any, b: Any) -> Any:
    """The sum of two gradients of one output (None: undefined, i.e. zero)."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b if a.shape == b.shape else a


class _Leaf:
    """What the trace's backward passes sent a leaf (a parameter), read from each pass (never from
    ``.grad``): ``raw`` the summary of their sum (None: to be made from ``total`` at the exit);
    ``total`` their sum so far, a tensor the trace made (``owned``) or the one pass's gradient itself
    (shared with ``.grad`` when autograd stole it), unchanged since as long as its version is
    ``version``; ``passes`` how many sent it something; ``lost`` whether the sum was changed in place
    between two passes (the sum then restarts); ``take``: the pass running is the first of a sum (its
    gradient is kept once autograd has accumulated it)."""

    __slots__ = ("lost", "owned", "passes", "raw", "take", "total", "version")

    def __init__(self) -> None:
        self.raw: Raw | None = None
        self.total: torch.Tensor | None = None
        self.version = 0
        self.owned = False
        self.passes = 0
        self.lost = False
        self.take = False

    def add(self, g: torch.Tensor, summary: Any) -> None:
        """Take one pass's gradient ``g`` in (``summary()`` summarises ``g`` as it is now); call with
        no mode of ours on and under ``torch.no_grad()``."""
        if self.passes and self.total is not None and self.total._version == self.version:
            self.total, self.owned, self.raw = self.total + g, True, None  # (a new tensor: ``g`` is autograd's)
            self.version = self.total._version
        else:
            if self.passes:  # what the earlier passes sent was changed in place (clipping, zero_())
                self.lost = True
            self.total, self.owned, self.take = None, False, True
            self.raw = summary()
        self.passes += 1

    def keep(self, g: torch.Tensor) -> None:
        """The first pass's gradient, once accumulated: kept by reference (no copy; autograd may
        have made it ``.grad``), with its version, for a later pass to add to."""
        if self.take:
            self.take = False
            self.total = g.detach() if g.requires_grad else g
            self.version = self.total._version


def _output_grads(info: NodeInfo, grad_outputs: Any, norms: bool = False) -> Raw | None:
    """The gradient of a node's outputs: of its output, or the concatenation of its outputs' (an
    output whose gradient autograd left undefined contributes zeros)."""
    grads = [g for g in grad_outputs if isinstance(g, torch.Tensor)]
    if not grads:
        return None
    if len(grad_outputs) == 1:
        return raw(grad_outputs[0], norms=norms)
    like = grads[0]
    parts = []
    for nr, g in enumerate(grad_outputs):
        if isinstance(g, torch.Tensor):
            parts.append(raw(g, norms=norms))
        elif info.sizes.get(nr):
            parts.append(zeros_raw(info.sizes[nr], like, norms))
    return merge(parts)


class Trace:
    """A context manager recording a torch model's forward and backward; ``graph`` once it exits.

    Use :func:`trace` to make one.
    """

    def __init__(self, model: Any = None, stats: str = "full") -> None:
        if model is not None and not isinstance(model, torch.nn.Module):
            raise TypeError(f"trace: model must be a torch.nn.Module or None, got {type(model).__name__}")
        if not isinstance(stats, str) or stats not in LEVELS:
            raise ValueError(
                f"trace: stats must be one of {', '.join(repr(x) for x in LEVELS)} (every statistic, or the L2 "
                f"norms and non-finite counts alone), got {stats!r}"
            )
        self.model = model
        self.stats = stats
        self._norms = stats == "norms"
        self.pending: list[tuple[torch.Tensor, str, dict[str, Any], Raw, list[Raw]]] = []
        self._records = Records(f"graphtrace.trace.{next(_KEYS)}", on_leaf=self._on_leaf, on_reuse=self._on_reuse)
        self._records.norms = self._norms
        self._handles: list[Any] = []
        self._stack: list[tuple[str, str, dict[str, int]]] = []  # (path, static path, calls of children)
        self._top: dict[str, int] = {}
        self._session: _Session | None = None
        self._graph: nx.DiGraph | None = None
        self._static: dict[Any, str] = {}  # module -> its path in the model (scope_path)
        self._params: dict[int, tuple[str, str]] = {}
        self._active = False
        self._retain = False  # whether the backward call running keeps its graph for another pass
        self._leaves: dict[int, _Leaf] = {}  # leaf node -> what the passes sent it
        # leaf node -> the gradient one view of it sent back (held, to be told by identity from the sum
        # autograd makes when several ops use the leaf: an id() may be reused), its version, its summary
        self._leaf_hints: dict[int, tuple[torch.Tensor, int, Raw]] = {}
        self._tasks: set[int] = set()  # the autograd graph tasks (backward passes) through the trace's ops
        self._no_grad_calls: dict[str, str] = {}  # modules called without autograd on inputs that need it

    # ---- module scopes ---------------------------------------------------------------------------
    def _pre(self, module: Any, args: Any) -> None:
        if _session() is not self._session:  # another thread's (or context's) call of the model
            return
        static = self._static.get(module, type(module).__name__)
        if self._stack:
            top, top_static, counts = self._stack[-1]
            # the module's path below the module calling it (``/conv1``; ``[0]`` for a Sequential's
            # child); a module called from elsewhere (a shared one) by its own name
            rel = static[len(top_static) :] if static.startswith(top_static) and static != top_static else None
            if rel is None or not rel.startswith(("/", "[")):
                rel = "/" + static.rsplit("/", 1)[-1]
            k = counts.get(rel, 0)
            counts[rel] = k + 1
            path = top + rel + (f"[{k}]" if k else "")
        else:
            k = self._top.get(static, 0)
            self._top[static] = k + 1
            path = static + (f"[{k}]" if k else "")
        self._stack.append((path, static, {}))
        if not torch.is_grad_enabled() and _needs_grad(args):  # e.g. inside a reentrant checkpoint
            outer = self._no_grad_calls.values()
            if not any(path.startswith((p + "/", p + "[")) for p in outer):  # the outermost such call
                self._no_grad_calls.setdefault(static, path)

    def _post(self, module: Any, args: Any, output: Any) -> None:
        if _session() is not self._session:
            return
        if self.pending:  # the module's last op belongs to it
            with _own_kernels(1):
                self.resolve()
        if self._stack:
            self._stack.pop()

    @property
    def scope(self) -> str:
        """The module scope the next op is recorded in (``""`` outside the model); in a backward
        pass that builds a graph (``create_graph=True``), that of the op whose backward runs."""
        session = self._session
        if session is not None and session.higher:
            fn: Any = torch._C._current_autograd_node()
            seq = fn.metadata.get(self._records.key) if fn is not None else None
            if seq is not None:
                return self._records.nodes[seq].scope or ""
        return self._stack[-1][0] if self._stack else ""

    # ---- forward ---------------------------------------------------------------------------------
    def resolve(self) -> None:
        """Match the outputs seen to the autograd nodes that made them. The outputs of one
        multi-output op (``split``, ``chunk``, ``unbind``) are one node: its value is their
        concatenation, in output order."""
        pending, self.pending = self.pending, []
        key = self._records.key
        groups: dict[Any, list[tuple[int, str, dict[str, Any], Raw]]] = {}
        inputs: dict[Any, list[Raw]] = {}
        for t, scope, meta, data, untracked in pending:
            fn: Any = t.grad_fn
            if fn is None or fn.metadata.get(key) is not None:
                continue
            groups.setdefault(fn, []).append((t.output_nr, scope, meta, data))
            inputs[fn] = untracked
        for fn, outs in groups.items():
            if len(outs) == 1:
                _, scope, meta, data = outs[0]
                sizes = {outs[0][0]: meta["numel"]}
            else:
                outs.sort(key=lambda o: o[0])
                scope = outs[0][1]
                meta = dict(outs[0][2])
                meta["shape"] = " + ".join(o[2]["shape"] for o in outs)
                meta["numel"] = sum(o[2]["numel"] for o in outs)
                data = merge([o[3] for o in outs])
                sizes = {o[0]: o[2]["numel"] for o in outs}
            info = self._records.add_op(fn, scope, meta, data)
            info.sizes = sizes
            info.same = _op_of(info.grad_fn) in SAME_ELEMENTS
            info.untracked = inputs[fn]
            self._handles.append(fn.register_hook(self._hook(info)))

    def _on_leaf(self, fn: Any, info: NodeInfo) -> None:
        """A leaf's AccumulateGrad node found: hook it (its tensor's hooks see what each pass sends)."""
        leaf = self._leaves.get(info.seq)
        if leaf is None:
            leaf = self._leaves[info.seq] = _Leaf()
        self._handles.append(fn.register_prehook(self._leaf_prehook(leaf, info.seq, id(info.leaf))))
        self._handles.append(fn.register_hook(self._leaf_posthook(leaf)))

    def _on_reuse(self, c: int, first: int) -> None:
        """Node ``c`` gets a second user after backward passes reached it through its first,
        ``first``, alone: the edge between them carried all that ``c`` received so far (the hooks
        record an edge's own gradient only for a node with several users)."""
        nodes = self._records.nodes
        user = nodes[first]
        if c in user.edges or c in user.edge_kept or first == c:
            return
        nr = next((n for s, n in user.spec if s == c), 0)
        below = nodes[c]
        if below.leaf is not None:
            leaf = self._leaves.get(c)
            if leaf is None or not leaf.passes:
                return
            if leaf.total is not None and leaf.total._version == leaf.version:
                # (summed with later passes; a pass's own gradient may become .grad, changed in place)
                with torch.no_grad():
                    user.edge_kept[c] = {nr: leaf.total if leaf.owned else leaf.total.clone()}
            else:
                user.edges[c] = leaf.raw
        elif below.passes:
            if below.kept is not None:  # kept passes: their gradients, to sum with later ones
                if nr < len(below.kept) and below.kept[nr] is not None:
                    user.edge_kept[c] = {nr: below.kept[nr]}
            elif len(below.sizes) <= 1:
                user.edges[c] = below.grad

    # ---- backward --------------------------------------------------------------------------------
    def _hook(self, info: NodeInfo) -> Any:
        records = self._records
        users, nodes = records.users, records.nodes

        def hook(grad_inputs: Any, grad_outputs: Any) -> None:
            self._tasks.add(_task_id())
            if self._quiet():
                record(grad_inputs, grad_outputs)
            else:
                with _NoModes(), torch.no_grad():  # the hook's own ops are not the model's
                    record(grad_inputs, grad_outputs)

        def record(grad_inputs: Any, grad_outputs: Any) -> None:
            retain = self._retain
            # the node's gradient: summed over the trace's backward passes
            grads = [g.detach() if isinstance(g, torch.Tensor) else None for g in grad_outputs]
            hint, info.hint = info.hint, None
            if info.kept is not None:  # an earlier pass kept its graph, and its gradients here
                grads = [_add(a, b) for a, b in zip(info.kept, grads, strict=True)]
                info.kept = None
                hint = None
            elif info.passes:  # an earlier pass did not keep its graph: its gradient is summarised
                info.inexact = True
                hint = None
            info.passes += 1
            same = info.same and len(info.spec) == 1 and len(grads) == 1
            child = info.spec[0][0] if same else None
            to_leaf = child is not None and nodes[child].leaf is not None
            if retain:
                info.kept, info.grad = grads, None
            elif hint is not None:  # the view this node feeds alone summarised this very gradient
                info.grad = hint
            elif same and isinstance(grads[0], torch.Tensor):
                info.grad = raw(grads[0], l1=to_leaf, norms=self._norms, defer=to_leaf)
            else:
                info.grad = _output_grads(info, grads, self._norms)
            if same and not retain and info.grad is not None and child is not None:
                # a view or copy sends back its own gradient, reordered: the same statistics for its
                # input's node (when this is its only use), its edge, and a leaf's contribution
                gi = grad_inputs[0] if grad_inputs else None
                below = nodes[child]
                if below.leaf is None and users[child] == 1 and below.passes == 0 and len(below.sizes) <= 1:
                    below.hint = info.grad
                elif below.leaf is not None and isinstance(gi, torch.Tensor):
                    self._leaf_hints[child] = (gi, gi._version, info.grad)
                if users[child] >= 2 or below.leaf is not None:  # (a leaf may get more users later)
                    info.edges[child] = info.grad  # the sum over passes, kept ones included
                    info.edge_kept.pop(child, None)
                return
            # the gradient along the edge to each child: summed over the positions that read
            # the same output of the child (x * x), concatenated over its different outputs
            # (a, b = h.split(2); a * b), summed over the passes
            # (only where the child is used more than once, or is a leaf: the edge out of any other
            # op node carries exactly that node's gradient, filled in when the graph is built)
            sums: dict[int, dict[int, torch.Tensor]] = {}
            for (c, nr), gi in zip(info.spec, grad_inputs, strict=False):
                if c is None or not isinstance(gi, torch.Tensor):
                    continue
                if users[c] < 2:
                    continue  # the edge carries its source's gradient (a leaf's: what the passes sent it)
                by_nr = sums.setdefault(c, {})
                by_nr[nr] = _add(by_nr.get(nr), gi.detach())
            for c, by_nr in sums.items():
                before = info.edge_kept.pop(c, None)
                if before is not None:
                    by_nr = {nr: _add(before.get(nr), by_nr.get(nr)) for nr in {*before, *by_nr}}
                elif c in info.edges:
                    info.inexact = True
                if retain:
                    info.edge_kept[c] = by_nr
                else:
                    info.edges[c] = _edge_raw(by_nr, self._norms)

        return hook

    def _ours(self) -> bool:
        """Whether the backward pass running is one of the trace's: its graph task went through an
        op the trace recorded (a parameter's AccumulateGrad node is shared by every pass of every
        thread; the trace's own ops are reached only by its passes, before the leaves they use)."""
        return _task_id() in self._tasks

    def _leaf_prehook(self, leaf: _Leaf, seq: int, key: int) -> Any:
        def prehook(grad_outputs: Any) -> None:
            hint = self._leaf_hints.pop(seq, None)
            session = self._session
            if session is not None:  # the leaf's values are read again by the next op that reads it
                session.stale.add(key)
            g = grad_outputs[0] if grad_outputs else None
            if not isinstance(g, torch.Tensor) or not self._ours():
                return

            def take() -> None:
                d = g.detach()  # (an alias: a reference to ``g`` itself would keep autograd from making it .grad)

                def summary() -> Raw:
                    if hint is not None and hint[0] is g and hint[1] == g._version:
                        return hint[2]  # the gradient the one view of this leaf summarised, reordered
                    return raw(d, l1=True, norms=self._norms, defer=True)

                leaf.add(d, summary)

            if self._quiet():
                take()
            else:
                with _NoModes(), torch.no_grad():
                    take()

        return prehook

    def _leaf_posthook(self, leaf: _Leaf) -> Any:
        def posthook(grad_inputs: Any, grad_outputs: Any) -> None:
            g = grad_outputs[0] if grad_outputs else None
            if leaf.take and isinstance(g, torch.Tensor) and self._ours():
                leaf.keep(g)

        return posthook

    def _quiet(self) -> bool:
        """Whether a hook may launch its own kernels as they are: no dispatch mode is on (the
        backward call took the trace's off, and no other is on: a user's would see them) and
        autograd records nothing (not ``create_graph``)."""
        session = self._session
        return session is not None and session.alone and not torch.is_grad_enabled()

    def _warn_reentrant(self) -> None:
        """Warn when the graph holds a reentrant checkpoint (``torch.utils.checkpoint(...,
        use_reentrant=True)``): it runs its function without autograd, so nothing inside is recorded."""
        if not any(i.grad_fn == "CheckpointFunctionBackward" for i in self._records.nodes):
            return
        where = list(self._no_grad_calls.values())
        modules = list(self._no_grad_calls)
        missing = [
            name
            for name, scope in self._params.values()
            if any(scope == m or scope.startswith(m + "/") or scope.startswith(m + "[") for m in modules)
        ]
        warnings.warn(
            "gt.pytorch.trace: torch.utils.checkpoint(..., use_reentrant=True) ran "
            + (", ".join(where) if where else "a function")
            + " without autograd, so the trace cannot record its ops, their values and gradients, or "
            + (f"the parameters they use ({', '.join(missing[:8])})" if missing else "the parameters it uses")
            + "; call torch.utils.checkpoint.checkpoint(..., use_reentrant=False) (torch's recommended "
            "mode) and the trace records them",
            RuntimeWarning,
            stacklevel=4,
        )

    def grad_results(self, inputs: Any, grads: Any) -> None:
        """``torch.autograd.grad``'s gradients of the leaves the trace holds: what that pass sent them
        (it does not accumulate into ``.grad``), kept by reference (the caller's tensors)."""
        ins = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs or ())
        with _NoModes(), torch.no_grad():
            for t, g in zip(ins, grads or (), strict=False):
                seq = self._records.leaf_of.get(id(t))
                if self._session is not None:
                    self._session.stale.add(id(t))
                leaf = self._leaves.get(seq) if seq is not None else None
                if leaf is None or not isinstance(g, torch.Tensor):
                    continue
                d = g.detach()
                leaf.add(d, lambda d=d: raw(d, l1=True, norms=self._norms, defer=True))
                leaf.keep(d)

    def _finish_passes(self) -> None:
        """At exit: summarise what the passes that kept their graph left, and say where a sum over
        passes could not be kept."""
        inexact = 0
        for info in self._records.nodes:
            if info.kept is not None:
                info.grad, info.kept = _output_grads(info, info.kept, self._norms), None
            for child, by_nr in info.edge_kept.items():
                info.edges[child] = _edge_raw(by_nr, self._norms)
            info.edge_kept = {}
            inexact += info.inexact
        self._warn_reentrant()
        with _NoModes(), torch.no_grad():
            for leaf in self._leaves.values():
                if leaf.raw is None and leaf.total is not None:  # a sum over passes
                    leaf.raw = raw(leaf.total, l1=True, norms=self._norms, defer=True)
                leaf.total = None
        leaves = [seq for seq, leaf in self._leaves.items() if leaf.lost]
        if inexact or leaves:
            nodes = self._records.nodes
            names = ", ".join(self._params.get(id(nodes[seq].leaf), ("a leaf",))[0] for seq in leaves[:5])
            warnings.warn(
                "gt.pytorch.trace: a trace records the sum of what its backward passes send each node; "
                + (
                    f"{inexact} nodes were reached again by a backward pass after one that did not keep "
                    "the graph (retain_graph=True would), so they show the sum of the later passes only; "
                    if inexact
                    else ""
                )
                + (
                    f"the gradient {len(leaves)} parameters ({names}) received from a pass was changed in "
                    "place before the next pass (zero_grad(set_to_none=False), clipping .grad, an in-place "
                    "op on a gradient torch.autograd.grad returned), so they show the sum of the passes "
                    "from the first after that change; trace one training step per trace"
                    if leaves
                    else ""
                ),
                RuntimeWarning,
                stacklevel=3,
            )

    # ---- the context -----------------------------------------------------------------------------
    def __enter__(self) -> Trace:
        if self._active or self._graph is not None:
            raise RuntimeError("trace: this trace was already used; make a new one with gt.pytorch.trace(model)")
        if _session() is None and any(isinstance(m, _Recorder) for m in _get_current_dispatch_mode_stack()):
            raise RuntimeError(
                "trace: another asyncio task (or context) of this thread has a trace open; torch's mode "
                "stack belongs to the thread, so two tasks cannot trace at once in one thread: trace "
                "one task at a time, or run each traced task in its own thread"
            )
        if self.model is not None:
            root = type(self.model).__name__
            self._params = module_paths(self.model)
            for dotted, m in self.model.named_modules():
                self._static[m] = scope_path(root, dotted)
                self._handles.append(m.register_forward_pre_hook(self._pre))
                self._handles.append(m.register_forward_hook(self._post, always_call=True))
        session = _session()
        if session is None:  # the first trace of this context: the modes start
            session = _Session()
            session.functions.__enter__()
            session.mode.__enter__()
            session.token = _SESSION.set(session)
        session.traces.append(self)
        session.levels()
        self._session = session
        self._active = True
        return self

    def __exit__(self, *exc: Any) -> None:
        session = self._session
        assert session is not None
        if session.traces and session.traces[-1] is not self and self in session.traces:
            session.traces.remove(self)  # an outer trace closed before an inner one
        elif self in session.traces:
            session.traces.pop()
        session.levels()
        self._active = False
        # the parameters' statistics taken when an op read them (a view: ``t`` of a weight), if
        # they have not changed since: not summarised again at the exit
        known = session.known
        leaf_data: dict[int, Raw] = {}
        with _own_kernels(1):
            self.resolve()
            for key, seq in self._records.leaf_of.items():
                hit = known.get(key)
                var = self._records.nodes[seq].leaf
                if hit is not None and var is not None and hit[0]() is var and hit[1] == var._version:
                    leaf_data[seq] = hit[2]
        if not session.traces:  # the last trace of this context: the modes stop
            _exit_mode(session.mode, exc, _get_current_dispatch_mode_stack, _pop_mode, _push_mode)
            _exit_mode(
                session.functions,
                exc,
                torch.overrides._get_current_function_mode_stack,
                torch.overrides._pop_mode,
                torch.overrides._push_mode,
            )
            session.open = False
            try:
                _SESSION.reset(session.token)
            except ValueError:  # closed in another context than it opened in (a task the trace made)
                _SESSION.set(None)
            session.seen_inputs.clear()
            session.known.clear()
            session.stale.clear()
        self._session = None
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._stack.clear()
        try:
            with _NoModes():  # the summaries at the exit reach no user's mode
                self._finish_passes()
                leaves = {seq: leaf.raw for seq, leaf in self._leaves.items()}
                self._graph = assemble(
                    self._records, self._params, leaf_grads=leaves, leaf_data=leaf_data, stats=self.stats
                )
        finally:
            if not session.traces:
                with _NoModes():
                    flush()  # frees the batches' buffers
            # drop every reference to the model and its tensors
            self._records = Records(self._records.key)
            self._static, self._leaves = {}, {}
            self._no_grad_calls = {}

    @property
    def graph(self) -> nx.DiGraph:
        """The recorded trace as a DiGraph (see :func:`trace`); available once the ``with`` exits."""
        if self._graph is None:
            raise RuntimeError("trace: the graph is built when the `with gt.pytorch.trace(...)` block exits")
        return self._graph


def trace(model: Any = None, stats: str = "full") -> Trace:
    """Record a torch model's forward and backward as a graphtrace trace.

    Inside ``with gt.pytorch.trace(model) as tr:`` every aten op that needs a gradient is seen as it
    runs (a ``TorchDispatchMode``): its output's shape, dtype and value summary (including ops inside
    composites, such as the transpose in ``F.linear``), and the module it ran in (forward hooks on
    every submodule). During a backward pass inside the block, hooks on the autograd nodes record each
    node's output gradient and the gradient flowing along every edge (``grad_norm``, the L2 norm of
    the vector-Jacobian product a node sends to each operand: the tensor form of the scalar engine's
    ``local_grad * grad``). ``tr.graph`` is built when the block exits; the trace then holds no
    reference to the model or the autograd graph.

    Several backward passes in one trace (``loss.backward(retain_graph=True)`` then another, two
    losses one after the other, ``torch.autograd.grad``): every gradient a trace records is the sum of
    what its passes sent, as torch's ``.grad`` accumulates, i.e. the gradient of the sum of
    everything backward was called on (``loss`` then ``2 * loss`` records the gradient of
    ``3 * loss``). A node's gradient is the sum of its edges' in every case. A parameter (a leaf)
    shows the sum of what the trace's own passes sent it, read from each pass by hooks, never from
    ``.grad``: a ``torch.autograd.grad`` pass counts (it leaves ``.grad`` alone), a gradient already
    in ``.grad`` when the block starts (accumulation over micro-batches) does not, ``zero_grad``
    between two passes resets nothing, and a backward pass of another thread (the same model,
    untraced) never enters it. A pass that keeps its graph keeps its gradients until the next pass
    or the exit, to sum them; so does a parameter's first pass (by reference: it is usually
    ``.grad`` itself). Where a sum cannot be kept (a pass after one that did not keep the graph; a
    parameter's gradient changed in place before the next pass: ``zero_grad(set_to_none=False)``,
    clipping) a ``RuntimeWarning`` says so.

    A parameter's node shows its values as the trace's last op to read them read them (for one
    forward pass: the values its gradient is taken at), or as they are at the exit where torch
    counted a change since (an optimizer's step, ``load_state_dict``: the parameter's ``_version``).
    An update through ``.data`` (micrograd's ``p.data -= lr * p.grad``, which torch does not count)
    shows when a backward pass ran between it and the next forward pass, as in a training loop
    (graphtrace reads a parameter again after each backward pass); an update through ``.data`` with
    no backward pass before the next read, or after the last forward pass, does not show on the
    parameter's node (the ops' own values are what they computed).

    A backward pass that builds a graph of its own (``create_graph=True``: a gradient penalty,
    higher-order derivatives) is recorded as it runs: its ops (``t``, ``mm``, ``tanh_backward``, whose
    ``grad_fn`` reads ``...BackwardBackward0`` for the backward of a backward) are nodes with their
    values and shapes, in the scope of the op whose backward made them, and get their gradients in
    a later pass like any op. A pass without ``create_graph`` records no op of its own (hooks on the
    autograd nodes read what it sends) and takes only the trace's dispatch mode off while it runs:
    a user's dispatch mode (``FlopCounterMode``) sees the same ops with a trace open as without.

    Memory: a trace keeps summaries (a few numbers per tensor), never the model's tensors or its
    autograd graph (each autograd node is tagged with its number in its ``metadata``), so a
    forward pass whose output the code drops is freed inside a trace as outside it; only the
    leaves (parameters, inputs that require grad) are held until the exit. A backward pass that
    keeps its graph (``retain_graph=True``) keeps its gradients until the next pass, to sum them.

    Traces may nest: an op run inside both is recorded into both (summarised once). A trace
    records what runs in the context that entered it (its thread, or asyncio task): another thread
    running the same model, traced or not, never enters its graph or its module scopes, and neither
    does another task of the same thread running while the traced one waits at an ``await``. Two
    tasks of one thread cannot trace at once (torch's mode stack is the thread's): the second
    trace's ``with`` raises ``RuntimeError``.

    Ops on tensors that hold no values (the ``meta`` device: a model built or run under
    ``torch.device("meta")`` for its shapes; ``FakeTensorMode``) are not recorded.

    ``torch.utils.checkpoint(..., use_reentrant=True)`` runs its function without autograd, so
    nothing inside can be recorded: a ``RuntimeWarning`` names the module and its parameters and
    the fix, ``use_reentrant=False`` (torch's recommended mode), with which everything is recorded.

    An op with several outputs (``split``, ``chunk``, ``unbind``) is one node, as it is one autograd
    node: its value and its gradient are those of its outputs concatenated in output order (its
    shape reads ``2×4 + 2×4``; an output nothing used has a zero gradient), and an edge out of it
    carries the gradient its consumer sends to every output it read, concatenated likewise.

    Scopes: ``Net`` for the model, then torch's module names with ``/`` (``Net/encoder/layers[0]/attn``:
    a numeric name is an index on the name before it). A module called again in the same parent gets
    its call index from the second call (``Net/block[1]``), as graphtrace's own scopes. ReLU outputs
    carry ``units`` and ``dead_units`` (features or channels that are 0 for every sample) and
    ``zero_share`` (the share of their elements that are 0), tanh outputs ``saturated_share`` (of
    their elements, ``|t| > 0.97``), for :func:`graphtrace.analysis.health` and
    :func:`graphtrace.analysis.by_scope`.

    What a trace costs is mostly its statistics (every tensor of the step is read a few times).
    ``stats="norms"`` keeps what finds a NaN and shows gradient flow for about a third of the
    kernels: the L2 norm of every value and gradient (edge norms included), the exact count of
    their non-finite elements (so :func:`graphtrace.analysis.anomalies` names the same origin),
    module scopes, shapes, dtypes, and the values of tensors of at most 16 elements (the loss).
    The mean, standard deviation, min, max, max ``|x|``, mean ``|x|`` and the units of ReLU and
    tanh outputs are not recorded: NaN (None for ``dead_units``), and every node's ``stats``
    attribute says ``"norms"`` (tables, :func:`graphtrace.analysis.by_scope`, the page's panel and
    legend say "not recorded"). The figures are in the documentation's performance page.

    Parameters
    ----------
    model : torch.nn.Module, optional
        Names the parameters and gives module scopes; without it ops have the scope ``""``.
    stats : {"full", "norms"}
        ``"full"`` (default): every statistic of :mod:`graphtrace.pytorch.tensors`; ``"norms"``:
        the L2 norms and exact non-finite counts alone (above).

    Returns
    -------
    Trace

    Raises
    ------
    TypeError
        If ``model`` is not a module.
    ValueError
        If ``stats`` is not ``"full"`` or ``"norms"``.

    Examples
    --------
    >>> import torch
    >>> import graphtrace as gt
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    >>> with gt.pytorch.trace(net) as tr:
    ...     loss = net(torch.randn(8, 3)).pow(2).mean()
    ...     loss.backward()
    >>> df = gt.nodes_frame(tr.graph)
    >>> ops = df[df["op"] != ""][["label", "op", "scope", "shape"]]
    >>> print(ops.to_string(index=False))  # doctest: +NORMALIZE_WHITESPACE
    label    op        scope shape
        t     t Sequential/0   3×4
    addmm addmm Sequential/0   8×4
     relu  relu Sequential/1   8×4
        t     t Sequential/2   4×1
    addmm addmm Sequential/2   8×1
      pow   pow                8×1
     mean  mean             scalar
    """
    return Trace(model, stats)
