"""Summaries of a tensor's values as flat node attributes.

For a tensor ``t`` and a prefix ``p`` (``data`` or ``grad``): ``p_mean``, ``p_std`` (population),
``p_min``, ``p_max``, ``p_max_abs``, ``p_norm`` (L2), ``p_nonfinite`` (how many elements are NaN or
±inf; the other statistics are over the finite elements), ``p_abs_mean`` (the mean of ``|x|``: for
parameters and their gradients, NaN elsewhere, as it costs a pass of its own) and, for a tensor of
at most :data:`SMALL` elements, ``p_values`` (every value, as JSON text so that every file format keeps it). ``p``
itself
is the value of a one-element tensor and the L2 norm of a larger one (NaN or inf when a non-finite
element makes it so).

Complex tensors are summarised over their magnitudes ``|z|``; sparse tensors over their stored
values; integer and boolean tensors as floats.
"""

from __future__ import annotations

import json
import math
from typing import Any

import torch

__all__ = ["SMALL", "STATS", "Raw", "empty", "finish", "raw", "shape_text", "summary"]

#: Tensors with at most this many elements also keep every value (``data_values``, ``grad_values``).
SMALL = 16
#: The statistics of every summary, in column order.
STATS = ("mean", "std", "min", "max", "max_abs", "abs_mean", "norm", "nonfinite")


def shape_text(shape: Any) -> str:
    """``(16, 3, 3, 3)`` as ``16×3×3×3``; a 0-d tensor is ``scalar``."""
    dims = tuple(int(d) for d in shape)
    return "×".join(str(d) for d in dims) if dims else "scalar"


def empty(prefix: str) -> dict[str, Any]:
    """The summary of a tensor that was not seen: NaN statistics, no values."""
    out: dict[str, Any] = {prefix: math.nan}
    for s in STATS:
        out[f"{prefix}_{s}"] = math.nan if s != "nonfinite" else 0
    return out


class Raw:
    """A tensor's statistics as computed while the model runs (:func:`finish` makes the summary):
    ``[sum, sum |x|, sum x², min, max]`` over the finite elements and the L2 norm over all, the
    element count, the non-finite count, and the values when small."""

    __slots__ = ("complex", "n", "nonfinite", "stats", "values")

    def __init__(self, stats: Any, n: int, nonfinite: int, values: Any, complex_: bool) -> None:
        self.stats, self.n, self.nonfinite, self.values, self.complex = stats, n, nonfinite, values, complex_


_F64 = torch.float64
_NAN32 = torch.tensor(math.nan)
_NAN64 = torch.tensor(math.nan, dtype=torch.float64)


def raw(t: torch.Tensor, l1: bool = False) -> Raw:
    """The statistics of ``t`` (see :class:`Raw`): three reductions in the tensor's own precision
    (float32 accumulates pairwise), a fourth for the mean of ``|x|`` when ``l1``. Call under
    ``torch.no_grad()``."""
    x = t.detach()
    if x.is_sparse:
        x = x.coalesce().values()
    elif x.layout != torch.strided:
        x = x.to_dense()
    if x.is_complex():
        x = x.abs()
    if not x.is_floating_point():
        x = x.double()
    elif x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    x = x.reshape(-1)
    n = x.numel()
    if n == 0:
        return Raw(None, 0, 0, None, t.is_complex())
    lo, hi = torch.aminmax(x)
    # the fastest kernels on CPU: dot for the sum of squares, abs().sum() for the L1 norm (both
    # vector_norm orders are 1-3x slower single-threaded); one transfer for all of them
    sq = torch.dot(x, x) if x.dtype in (torch.float32, torch.float64) else torch.linalg.vector_norm(x) ** 2
    total, l1_sum, sumsq, low, high = torch.stack([x.sum(), x.abs().sum() if l1 else _NAN32, sq, lo, hi]).tolist()
    norm = math.sqrt(sumsq)
    stats = [total, l1_sum, sumsq, low, high, norm]
    nonfinite = 0
    if not math.isfinite(sumsq):  # a NaN or ±inf element, or squares beyond float32
        finite = torch.isfinite(x)
        nonfinite = n - int(finite.sum())
        d = x.double() if nonfinite == 0 else x[finite].double()
        if d.numel():  # again in float64, over the finite elements
            lo, hi = torch.aminmax(d)
            l1_f = d.abs().sum() if l1 else _NAN64
            total, l1_sum, sumsq, low, high = torch.stack([d.sum(), l1_f, torch.dot(d, d), lo, hi]).tolist()
            stats = [total, l1_sum, sumsq, low, high, math.sqrt(sumsq) if nonfinite == 0 else norm]
        else:
            stats = [math.nan] * 5 + [norm]
    return Raw(stats, n, nonfinite, x.clone() if n <= SMALL else None, t.is_complex())


def finish(raws: list[Raw], prefix: str) -> list[dict[str, Any]]:
    """The summary attributes (module docstring) of :func:`raw` results."""
    out = []
    for r in raws:
        if r.stats is None:
            out.append(
                {
                    **{f"{prefix}_{s}": math.nan for s in STATS[:6]},
                    f"{prefix}_norm": 0.0,
                    f"{prefix}_nonfinite": 0,
                    prefix: 0.0,
                    f"{prefix}_values": "[]",
                }
            )
            continue
        total, abs_total, sumsq, low, high, norm = r.stats
        m = r.n - r.nonfinite
        mean = total / m if m else math.nan
        std = math.sqrt(max(sumsq / m - mean * mean, 0.0)) if m else math.nan
        d: dict[str, Any] = {
            f"{prefix}_mean": mean,
            f"{prefix}_std": std,
            f"{prefix}_min": low,
            f"{prefix}_max": high,
            f"{prefix}_abs_mean": abs_total / m if m else math.nan,
            f"{prefix}_max_abs": max(abs(low), abs(high)),
            f"{prefix}_norm": norm,
            f"{prefix}_nonfinite": r.nonfinite,
        }
        values = r.values.double().tolist() if r.values is not None else None
        d[prefix] = float(values[0]) if values is not None and r.n == 1 and not r.complex else norm
        if values is not None:
            d[f"{prefix}_values"] = json.dumps(values)
        out.append(d)
    return out


def summary(t: Any, prefix: str = "data") -> dict[str, Any]:
    """The flat summary attributes of tensor ``t`` (see the module docstring).

    Parameters
    ----------
    t : torch.Tensor
        Any tensor: dense or sparse, real, complex, integer or boolean, on any device.
    prefix : str
        ``"data"`` or ``"grad"``.

    Returns
    -------
    dict

    Raises
    ------
    TypeError
        If ``t`` is not a tensor.

    Examples
    --------
    >>> import torch
    >>> from graphtrace.pytorch import summary
    >>> s = summary(torch.tensor([3.0, -4.0, float("inf")]))
    >>> s["data_norm"], s["data_nonfinite"], s["data_min"], s["data_values"]
    (inf, 1, -4.0, '[3.0, -4.0, Infinity]')
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"summary: expected a torch.Tensor, got {type(t).__name__}")
    with torch.no_grad():
        return finish([raw(t, l1=True)], prefix)[0]
