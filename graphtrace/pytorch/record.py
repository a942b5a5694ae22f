"""A torch model's parameters as rows of a recorded run's ``params`` table (see :func:`graphtrace.record`)."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import torch

from .graph import module_paths
from .tensors import finish, raw, shape_text

__all__ = ["TorchParams"]


class TorchParams:
    """The parameter tensors of ``model`` and their values at the last logged step.

    One row per tensor and step: ``name``, ``scope`` (its module's path), ``shape``, ``numel``,
    ``data``, ``grad`` and ``update`` as L2 norms (``update``: the change since the previous logged
    step), ``data_mean``, ``data_std``, ``data_max_abs``, ``grad_mean``, ``grad_std``,
    ``grad_abs_mean``, ``grad_max_abs``, ``update_max_abs`` and ``update_data`` (‖update‖ / ‖data
    before the update‖).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.named = list(model.named_parameters())
        paths = module_paths(model)
        self.scopes = [paths[id(p)][1] for _, p in self.named]
        with torch.no_grad():
            self.last = [p.detach().clone() for _, p in self.named]
            self.last_norm = [float(torch.linalg.vector_norm(b.double())) for b in self.last]

    def table(self) -> pa.Table:
        """This step's rows; remembers the parameters' values for the next step's ``update``."""
        with torch.no_grad():
            now = [p.detach() for _, p in self.named]
            updates = [d - b for d, b in zip(now, self.last, strict=True)]
            data = finish([raw(d) for d in now], "data")
            grads = finish(
                [
                    raw(p.grad, l1=True) if p.grad is not None else raw(torch.full((1,), math.nan))
                    for _, p in self.named
                ],
                "grad",
            )
            upd = finish([raw(u) for u in updates], "update")
            before = self.last_norm
            for b, d in zip(self.last, now, strict=True):
                b.copy_(d)  # (into the same buffers: no allocation per step)
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
        return pa.table(cols)
