"""A torch model's parameters as rows of a recorded run's ``params`` table (see :func:`graphtrace.record`)."""

from __future__ import annotations

import math
import queue
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import torch

from .graph import module_paths
from .tensors import finish, raw, shape_text

__all__ = ["Capture", "TorchParams"]

#: Copies of the parameters that may wait for the writer at once: the training thread waits for
#: one to come back beyond this (a writer slower than the steps slows the loop instead of filling
#: memory).
SLOTS = 2


class Capture:
    """One logged step's parameters and gradients as copied on their devices (:meth:`TorchParams.capture`)."""

    __slots__ = ("data", "grads", "has_grad")

    def __init__(self, data: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        self.data, self.grads = data, grads
        self.has_grad: list[bool] = []


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
        paths = module_paths(model)
        self.scopes = [paths[id(p)][1] for _, p in self.named]
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
        with torch.no_grad():
            torch._foreach_copy_(cap.data, params)
            has = [p.grad is not None for p in params]
            if any(has):
                torch._foreach_copy_(
                    [g for g, h in zip(cap.grads, has, strict=True) if h],
                    [p.grad for p in params if p.grad is not None],
                )
        cap.has_grad = has
        return cap

    def table(self, cap: Capture | None = None) -> pa.Table:
        """This step's rows (of ``cap``, else of the parameters as they are now); remembers the
        parameters' values for the next step's ``update``. Brings the numbers to the host (in a
        recorded run, the writer thread calls it)."""
        if cap is None:
            cap = self.capture()
        try:
            return self._table(cap)
        finally:
            self._free.put(cap)

    def _table(self, cap: Capture) -> pa.Table:
        with torch.no_grad():
            now = cap.data
            updates = torch._foreach_sub(now, self.last)
            nan = torch.full((1,), math.nan)
            data = finish([raw(d) for d in now], "data")
            grads = finish(
                [raw(g, l1=True) if h else raw(nan) for g, h in zip(cap.grads, cap.has_grad, strict=True)], "grad"
            )
            upd = finish([raw(u) for u in updates], "update")
            before = self.last_norm
            torch._foreach_copy_(self.last, now)  # (into the same buffers: no allocation per step)
            self.last_norm = [r["data_norm"] for r in data]
        cols: dict[str, Any] = {
            "name": pa.array([n for n, _ in self.named], pa.string()),
            "scope": pa.array(self.scopes, pa.string()),
            "shape": pa.array([shape_text(p.shape) for _, p in self.named], pa.string()),
            "numel": pa.array([p.numel() for _, p in self.named], pa.int64()),
            "data": pa.array([d["data_norm"] for d in data], pa.float64()),
            "grad": pa.array([g["grad_norm"] for g in grads], pa.float64()),
            "update": pa.array([u["update_norm"] for u in upd], pa.float64()),
        }
        for prefix, rows, stats in (
            ("data", data, ("mean", "std", "max_abs")),
            ("grad", grads, ("mean", "std", "abs_mean", "max_abs")),
            ("update", upd, ("max_abs",)),
        ):
            for s in stats:
                cols[f"{prefix}_{s}"] = pa.array([r[f"{prefix}_{s}"] for r in rows], pa.float64())
        ratio = [u["update_norm"] / b if b > 0 else math.nan for u, b in zip(upd, before, strict=True)]
        cols["update_data"] = pa.array(ratio, pa.float64())
        if not all(cap.has_grad):  # no gradient (a frozen parameter, a step before backward): null, not NaN
            none = pa.array([not h for h in cap.has_grad], pa.bool_())
            for k in [c for c in cols if c == "grad" or c.startswith("grad_")]:
                cols[k] = pa.array(cols[k].to_pylist(), pa.float64(), mask=none)
        return pa.table(cols)
