"""A torch model's parameters as rows of a recorded run's ``params`` table (see :func:`graphtrace.record`)."""

from __future__ import annotations

import math
import queue
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import torch

from .graph import module_paths
from .tensors import _constants, _top, finish, raw, shape_text

__all__ = ["SCHEMA", "Capture", "TorchParams"]

_F64 = pa.float64()
#: The ``params`` table of a torch model's recorded run (:meth:`TorchParams.table`).
SCHEMA = pa.schema(
    [("name", pa.string()), ("scope", pa.string()), ("shape", pa.string()), ("numel", pa.int64())]
    + [
        (c, _F64)
        for c in (
            "data",
            "grad",
            "update",
            "data_mean",
            "data_std",
            "data_max_abs",
            "grad_mean",
            "grad_std",
            "grad_abs_mean",
            "grad_max_abs",
            "update_max_abs",
            "update_data",
        )
    ]
)

#: Copies of the parameters that may wait for the writer at once: the training thread waits for
#: one to come back beyond this (a writer slower than the steps slows the loop instead of filling
#: memory).
SLOTS = 2

_NAMES = SCHEMA.names


class Capture:
    """One logged step's parameters and gradients as copied on their devices (:meth:`TorchParams.capture`)."""

    __slots__ = ("data", "grads", "has_grad", "odd")

    def __init__(self, data: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        self.data, self.grads = data, grads
        self.has_grad: list[bool] = []
        self.odd: dict[int, torch.Tensor] = {}  # position -> a gradient unlike its parameter (sparse), copied apart


class CaptureStopped(RuntimeError):
    """Raised by :meth:`TorchParams.capture` when the writer that would free a slot has stopped."""


class TorchParams:
    """The parameter tensors of ``model`` and their values at the last logged step.

    One row per tensor and step: ``name``, ``scope`` (its module's path), ``shape``, ``numel``,
    ``data``, ``grad`` and ``update`` as L2 norms (``update``: the change since the previous logged
    step), ``data_mean``, ``data_std``, ``data_max_abs``, ``grad_mean``, ``grad_std``,
    ``grad_abs_mean``, ``grad_max_abs``, ``update_max_abs`` and ``update_data`` (‖update‖ / ‖data
    before the update‖). A parameter without a gradient (frozen, or logged before ``backward``) has
    null ``grad`` columns (SQL ``NULL``, NaN in pandas), never a non-finite value.

    A recorded run splits the work between two threads: the training thread only copies the
    parameters and their gradients on their device (:meth:`capture`: two fused copy calls, no
    wait for the device), and the run's writer thread summarises the copies (:meth:`table`), the
    only place where the numbers come to the host.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.named = list(model.named_parameters())
        # where each parameter is registered: a parameter replaced since (``m.weight = Parameter(...)``) is found
        owners = {name: mod for name, mod in model.named_modules(remove_duplicate=False)}
        self._slots_of = [(owners[n.rpartition(".")[0]], n.rpartition(".")[2]) for n, _ in self.named]
        paths = module_paths(model)
        self.scopes = [paths[id(p)][1] for _, p in self.named]
        self._names = [n for n, _ in self.named]
        self._sizes = [p.shape for _, p in self.named]
        self._shapes = [shape_text(z) for z in self._sizes]
        self._numels = [p.numel() for _, p in self.named]
        self._free: queue.Queue[Capture] = queue.Queue()
        self._slots = 0
        with torch.no_grad():
            self.last = [p.detach().clone() for _, p in self.named]
            self.last_norm = [float(torch.linalg.vector_norm(b.double())) for b in self.last]

    def capture(self, stop: Callable[[], bool] | None = None) -> Capture:
        """(Training thread.) Copy the parameters and their gradients into a free slot, on their
        devices; nothing waits for the device. While every slot waits for the writer, ``stop()`` is
        asked every 0.1 s: True (the writer failed and will give none back) raises
        :class:`CaptureStopped`."""
        self._check_unchanged()
        try:
            cap = self._free.get_nowait()
        except queue.Empty:
            if self._slots < SLOTS:
                self._slots += 1
                with torch.no_grad():
                    cap = Capture(
                        [torch.empty_like(p) for _, p in self.named], [torch.empty_like(p) for _, p in self.named]
                    )
            else:
                while True:  # the writer gives one back once it has summarised it
                    try:
                        cap = self._free.get(timeout=0.1)
                        break
                    except queue.Empty:
                        if stop is not None and stop():
                            raise CaptureStopped("the run's writer stopped: no parameter slot comes back") from None
        params: list[torch.Tensor] = [p for _, p in self.named]
        if not params:  # (a model without parameters: its steps have no params rows)
            return cap
        with torch.no_grad():
            torch._foreach_copy_(cap.data, params)
            has = [p.grad is not None for p in params]
            into, grads = [], []
            for k, p in enumerate(params):
                g = p.grad
                if g is None:
                    continue
                if g.layout == torch.strided and g.shape == cap.grads[k].shape and g.dtype == cap.grads[k].dtype:
                    into.append(cap.grads[k])
                    grads.append(g)
                else:  # a sparse (nn.Embedding(sparse=True)) or odd gradient: its own copy, summarised apart
                    cap.odd[k] = g.detach().clone()
            if grads:
                torch._foreach_copy_(into, grads)
        cap.has_grad = has
        return cap

    def _check_unchanged(self) -> None:
        """Raise ValueError, before anything is copied, if a parameter of the model was replaced or
        reshaped since the run opened: its rows would be of the old tensor, or the copy would fail."""
        for (name, p), (mod, attr), size in zip(self.named, self._slots_of, self._sizes, strict=True):
            now = mod._parameters.get(attr)
            if now is not p:
                raise ValueError(
                    f"log: the model's parameter {name!r} was replaced since gt.record opened the run (its rows "
                    "would be the old tensor's): record a new run (or resume this one) with the model as it is now"
                )
            if p.shape != size:
                raise ValueError(
                    f"log: the model's parameter {name!r} changed shape since gt.record opened the run "
                    f"({shape_text(size)} "
                    f"-> {shape_text(p.shape)}): record a new run with the model as it is now"
                )

    def table(self, cap: Capture | None = None) -> pa.Table:
        """This step's rows (of ``cap``, else of the parameters as they are now) as an Arrow table of
        :data:`SCHEMA`; remembers the parameters' values for the next step's ``update``. Brings the
        numbers to the host."""
        return pa.Table.from_pydict(self.columns(cap), schema=SCHEMA)

    def columns(self, cap: Capture | None = None) -> dict[str, list[Any]]:
        """:meth:`table`'s columns as Python lists (``None``: null), in :data:`SCHEMA`'s order: what a
        recorded run's writer thread keeps until it writes a batch of steps."""
        if cap is None:
            cap = self.capture()
        try:
            return self._columns(cap)
        finally:
            self._free.put(cap)

    def _columns(self, cap: Capture) -> dict[str, list[Any]]:
        with torch.no_grad():
            now, last = cap.data, self.last
            every = [cap.odd.get(k, g) for k, g in enumerate(cap.grads)]
            cap.odd = {}
            grads = [g for g, h in zip(every, cap.has_grad, strict=True) if h]
            data: list[dict[str, float]] = []
            grad_all: list[dict[str, float]] = []
            upd: list[dict[str, float]] = []
            if not now:  # (no parameters)
                pass
            elif _batchable(now) and _batchable(grads) and (not grads or grads[0].dtype == now[0].dtype):
                data, grad_rows, upd = _summaries(now, last, grads)
                it = iter(grad_rows)
                nan_row = dict.fromkeys(_GRAD_KEYS, math.nan)
                grad_all = [next(it) if h else nan_row for h in cap.has_grad]
            else:  # (sparse, complex, empty or mixed-dtype parameters: one tensor at a time)
                updates = torch._foreach_sub(now, last)
                nan = torch.full((1,), math.nan)
                data = finish([raw(d) for d in now], "data")
                grad_all = finish(
                    [raw(g, l1=True) if h else raw(nan) for g, h in zip(every, cap.has_grad, strict=True)], "grad"
                )
                upd = finish([raw(u) for u in updates], "update")
            # the captured values are the next step's "before"; the old buffers take the next capture
            self.last, cap.data = now, last
            before = self.last_norm
            self.last_norm = [r["data_norm"] for r in data]
        names = self._names
        cols: dict[str, list[Any]] = {
            "name": names,
            "scope": self.scopes,
            "shape": self._shapes,
            "numel": self._numels,
            "data": [d["data_norm"] for d in data],
            "grad": [g["grad_norm"] for g in grad_all],
            "update": [u["update_norm"] for u in upd],
        }
        for prefix, rows, stats in (
            ("data", data, ("mean", "std", "max_abs")),
            ("grad", grad_all, ("mean", "std", "abs_mean", "max_abs")),
            ("update", upd, ("max_abs",)),
        ):
            for s in stats:
                cols[f"{prefix}_{s}"] = [r[f"{prefix}_{s}"] for r in rows]
        cols["update_data"] = [u["update_norm"] / b if b > 0 else math.nan for u, b in zip(upd, before, strict=True)]
        if not all(cap.has_grad):  # no gradient (a frozen parameter, a step before backward): null, not NaN
            for k in [c for c in cols if c == "grad" or c.startswith("grad_")]:
                cols[k] = [v if h else None for v, h in zip(cols[k], cap.has_grad, strict=True)]
        return {k: cols[k] for k in _NAMES}


_GRAD_KEYS = ("grad_norm", "grad_mean", "grad_std", "grad_abs_mean", "grad_max_abs")


def _batchable(xs: list[torch.Tensor]) -> bool:
    """Whether :func:`_summaries` takes ``xs``: contiguous float32 or float64 tensors of one dtype
    and device, none empty."""
    if not xs:
        return True
    kind = (xs[0].dtype, xs[0].device)
    return kind[0] in (torch.float32, torch.float64) and all(
        x.layout == torch.strided and x.is_contiguous() and (x.dtype, x.device) == kind and x.numel() > 0 for x in xs
    )


def _moments(xs: list[torch.Tensor], *, inplace: bool, full: bool, l1: bool) -> torch.Tensor:
    """One row per tensor of ``xs``, on their device: ``max |x|`` (NaN with a NaN), ``inv`` (a power of two with
    ``|x * inv| <= 1``: no sum overflows), ``Σ(x * inv)²``, and with ``full`` the shift ``c`` (the
    first element, scaled: the shifted sums keep their digits at any offset), ``Σd`` and ``Σd²`` of
    ``d = x * inv - c`` and ``Σ|x * inv|`` (``l1``). The elementwise passes are fused over all
    tensors (``torch._foreach_*``); the sums are torch's (pairwise ``sum``, BLAS ``dot``) as
    :func:`graphtrace.pytorch.tensors.raw` has them. ``inplace``: ``xs`` may be overwritten."""
    one, nan = _constants(xs[0].device, xs[0].dtype)
    k = len(xs)
    ends = [torch.aminmax(x) for x in xs]  # (a max of |x| by _foreach_norm(xs, inf) is 20x slower on a CPU)
    mx = torch.maximum(torch.stack([hi for _, hi in ends]), -torch.stack([lo for lo, _ in ends]))
    inv = torch.ldexp(one.expand(k), -torch.frexp(_top(mx, xs[0].dtype)).exponent)
    invs = list(inv.unbind())
    if inplace:
        torch._foreach_mul_(xs, invs)
        d = xs
    else:
        d = list(torch._foreach_mul(xs, invs))
    flat = [t.view(-1) for t in d]
    sq = torch.stack([torch.dot(v, v) for v in flat])
    if not full:
        return torch.stack([mx, inv, sq], 1)
    a = torch.stack([s.sum() for s in torch._foreach_abs(flat)]) if l1 else nan.expand(k)
    c = torch.stack([v[0] for v in flat])
    torch._foreach_sub_(d, list(c.unbind()))
    s1 = torch.stack([v.sum() for v in flat])
    s2 = torch.stack([torch.dot(v, v) for v in flat])
    return torch.stack([mx, inv, sq, c, s1, s2, a], 1)


#: ``max |x|`` between these: the plain sums neither overflow nor lose an element to underflow that
#: would show at the dtype's precision (else the scaled sums of :func:`_moments`).
_SAFE = {torch.float32: (2.0**-40, 2.0**40), torch.float64: (2.0**-300, 2.0**300)}


#: ``mean² / variance`` above this: the variance from the plain sums would lose digits (an offset
#: tensor, e.g. 1000 ± 0.01): it is summed again around the mean.
_OFFSET = 100.0


def _summaries(
    now: list[torch.Tensor], last: list[torch.Tensor], grads: list[torch.Tensor]
) -> tuple[list[dict[str, float]], list[dict[str, float]], list[dict[str, float]]]:
    """(Writer thread.) The statistics of the parameters ``now``, of their gradients ``grads`` (those
    that have one) and of the update ``now - last``. Overwrites ``last`` (with ``-update``) and
    ``grads``; ``now`` is kept (the next step's ``last``).

    One round of reductions over every tensor, ending in one transfer of every number to the host:
    the min and max, ``Σx²``, and the sum and ``Σ|x|`` where asked. Then, only for what needs it: a
    tensor with a large offset (:data:`_OFFSET`) has ``Σd`` and ``Σd²`` of ``d = x - mean`` summed
    again, and a tensor with a non-finite, huge or tiny element (outside :data:`_SAFE`) takes the
    scaled sums of :func:`_moments` instead. About 3 reading passes per tensor and kind; few calls
    from Python (the writer thread holds the interpreter lock while it makes them).
    """
    torch._foreach_sub_(last, now)  # -update: the same norm and max |x|
    kinds = (("data", now, True, False), ("update", last, False, False), ("grad", grads, True, True))
    first: list[torch.Tensor] = []
    for _, xs, full, l1 in kinds:
        for x in xs:
            flat = x.view(-1)
            first.extend(torch.aminmax(flat))
            first.append(torch.dot(flat, flat))
            if full:
                first.append(flat.sum())
            if l1:
                first.append(flat.abs().sum())
    h = torch.stack(first).tolist() if first else []
    small, big = _SAFE[now[0].dtype]
    out: dict[str, list[dict[str, float]]] = {}
    third: list[torch.Tensor] = []
    again: list[tuple[dict[str, float], str, int, float]] = []
    scaled: list[tuple[dict[str, float], str, torch.Tensor, bool, bool]] = []
    at = 0
    for prefix, xs, full, l1 in kinds:
        rows = out[prefix] = []
        k_max, k_norm, k_mean, k_std, k_abs = (
            f"{prefix}_max_abs",
            f"{prefix}_norm",
            f"{prefix}_mean",
            f"{prefix}_std",
            f"{prefix}_abs_mean",
        )
        for x in xs:
            lo, hi, sq = h[at], h[at + 1], h[at + 2]
            at += 3
            if full:
                total = h[at]
                at += 1
            if l1:
                a = h[at]
                at += 1
            mx = max(-lo, hi) if lo == lo and hi == hi else math.nan
            row = {k_max: mx}
            rows.append(row)
            if mx == 0.0:  # all zeros (an update of a parameter that did not move)
                row.update({k_norm: 0.0, k_mean: 0.0, k_std: 0.0, k_abs: 0.0})
                continue
            if not small <= mx <= big:
                scaled.append((row, prefix, x, full, l1))
                continue
            n = x.numel()
            row[k_norm] = math.sqrt(sq)
            if l1:
                row[k_abs] = a / n
            if not full:
                continue
            mean = total / n
            var = max(sq / n - mean * mean, 0.0)
            row[k_mean] = mean
            row[k_std] = math.sqrt(var)
            if mean * mean > _OFFSET * var:  # summed again around the mean
                d = x.view(-1) - mean
                third += [d.sum(), torch.dot(d, d)]
                again.append((row, prefix, n, mean))
    if third:
        h3 = torch.stack(third).tolist()
        for k, (row, prefix, n, mean) in enumerate(again):
            s1, s2 = h3[2 * k], h3[2 * k + 1]
            row[f"{prefix}_mean"] = mean + s1 / n
            row[f"{prefix}_std"] = math.sqrt(max(s2 - s1 * s1 / n, 0.0) / n)
    for row, prefix, x, full, l1 in scaled:  # non-finite, huge or tiny elements: the scaled sums
        f = _moments([x.clone()], inplace=True, full=full, l1=l1).double().reshape(-1).tolist()
        mx, inv, sq = f[0], f[1], f[2]
        finite, unit, n = math.isfinite(mx), 1.0 / inv, x.numel()
        row[f"{prefix}_norm"] = unit * math.sqrt(sq) if finite else sq
        if full:
            c, s1, s2, a = f[3:7]
            row[f"{prefix}_mean"] = unit * (c + s1 / n) if finite else math.nan
            row[f"{prefix}_std"] = unit * math.sqrt(max(s2 - s1 * s1 / n, 0.0) / n) if finite else math.nan
            row[f"{prefix}_abs_mean"] = unit * (a / n) if finite else math.nan
    return out["data"], out["grad"], out["update"]
