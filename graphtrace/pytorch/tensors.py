"""Summaries of a tensor's values as flat node attributes.

For a tensor ``t`` and a prefix ``p`` (``data`` or ``grad``): ``p_mean``, ``p_std`` (population),
``p_min``, ``p_max``, ``p_max_abs``, ``p_norm`` (L2), ``p_nonfinite`` (how many elements are NaN or
±inf), ``p_abs_mean`` (the mean of ``|x|``: for parameters and their gradients, NaN elsewhere, as it
costs a pass of its own) and, for a tensor of at most :data:`SMALL` elements, ``p_values`` (every
value, as JSON text so that every file format keeps it). ``p`` itself is the value of a
one-element tensor and the L2 norm of a larger one.

How they are computed: every statistic is a reduction launched on the tensor's own device, and
the results come to the host together, once (:func:`finish`), never one tensor at a time. The
values are scaled by a power of two at least ``max |x|`` (exact), so no sum of squares overflows
(a float32 tensor of values near 1e25, a float64 one near 1e200), and shifted by their mean
before they are squared, so the standard deviation keeps its digits when the values share a large
offset (a bias of 1000, values at 1e6 ± 0.01: the naive ``E[x²] - E[x]²`` loses them all in
float32). Each statistic is exact to a few units of the dtype's rounding, checked against float64.

A tensor with non-finite elements: ``p_nonfinite`` counts them; ``p_min``/``p_max`` are ±inf or
NaN as torch's own reductions give them, and the mean, std, norm and mean of ``|x|`` are NaN (inf
for the norm when the only non-finite elements are infinities). :func:`summary`, called on its own
outside a trace, also gives the finite elements' statistics in that case (it may wait for the
device; a trace never does).

Complex tensors are summarised over their magnitudes ``|z|``; sparse tensors over their stored
values; integer and boolean tensors as floats.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

import torch

__all__ = [
    "SMALL",
    "STATS",
    "Raw",
    "Scratch",
    "empty",
    "finish",
    "finish_many",
    "merge",
    "raw",
    "shape_text",
    "summary",
]

#: Tensors with at most this many elements also keep every value (``data_values``, ``grad_values``).
SMALL = 16
#: The statistics of every summary, in column order.
STATS = ("mean", "std", "min", "max", "max_abs", "abs_mean", "norm", "nonfinite")
#: Elements per pass of the shifted sums: a chunk and its scratch copy stay in a core's cache.
CHUNK = 1 << 17


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


class Scratch:
    """Reusable chunk-sized buffers per device and dtype, for the shifted sums of :func:`raw`.

    One per thread (:func:`raw` uses the thread's own unless given one): the sums run in the
    device's stream order, so a buffer is reused only after the kernels reading it were launched
    before it. Made once, they cost no allocation per summary (a fresh one each time fragments the
    host's heap: a forward loop in a trace grew by 60 MiB for nothing).
    """

    __slots__ = ("buffers",)

    def __init__(self) -> None:
        self.buffers: dict[tuple[Any, Any, int], torch.Tensor] = {}

    def get(self, n: int, like: torch.Tensor, which: int = 0) -> torch.Tensor:
        key = (like.device, like.dtype, which)
        b = self.buffers.get(key)
        if b is None or b.numel() < n:
            b = self.buffers[key] = torch.empty(max(n, 1024), dtype=like.dtype, device=like.device)
        return b[:n]


class Raw:
    """A tensor's statistics as launched on its device (:func:`finish` makes the summary).

    ``stats`` is a 1-d tensor on the tensor's device: ``[min, max, scale, shift, Σd, Σd², Σ|x/scale|,
    non-finite count]`` where ``scale`` is a power of two >= max |x| and ``d = x/scale - shift``; ``n``
    the element count; ``values`` the (magnitudes of the) values when there are at most :data:`SMALL`;
    ``parts`` the Raws merged into this one (the outputs of one multi-output op, see :func:`merge`).
    """

    __slots__ = ("complex", "n", "parts", "stats", "values")

    def __init__(self, stats: Any, n: int, values: Any, complex_: bool, parts: list[Raw] | None = None) -> None:
        self.stats, self.n, self.values, self.complex, self.parts = stats, n, values, complex_, parts


def merge(raws: list[Raw]) -> Raw:
    """One Raw for several tensors taken together (their concatenation): the outputs of one op."""
    if len(raws) == 1:
        return raws[0]
    parts = [q for r in raws for q in (r.parts or [r])]
    return Raw(None, sum(r.n for r in parts), None, any(r.complex for r in parts), parts)


def zeros_raw(n: int, like: torch.Tensor) -> Raw:
    """The Raw of ``n`` zeros (an output's gradient that autograd left undefined)."""
    z = torch.zeros(8, dtype=torch.float32, device=like.device)
    z[2] = 1.0  # the scale
    return Raw(z, n, torch.zeros(n, device=like.device) if n <= SMALL else None, False)


_THREAD = threading.local()
_TINY = {torch.float32: torch.finfo(torch.float32).tiny, torch.float64: torch.finfo(torch.float64).tiny}
_CONSTANTS: dict[tuple[Any, Any], tuple[torch.Tensor, torch.Tensor]] = {}


def _constants(device: Any, dtype: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """0-d tensors 1 and NaN on ``device`` (made once: no kernel per summary)."""
    c = _CONSTANTS.get((device, dtype))
    if c is None:
        c = _CONSTANTS[(device, dtype)] = (
            torch.ones((), dtype=dtype, device=device),
            torch.full((), math.nan, dtype=dtype, device=device),
        )
    return c


def _flat(t: torch.Tensor) -> torch.Tensor:
    x = t.detach()
    if x.is_sparse:
        x = x.coalesce().values()
    elif x.layout != torch.strided:
        x = x.to_dense()
    if x.is_complex():
        x = x.abs()
    if not x.is_floating_point():
        x = x.double()
    return x.reshape(-1)


def raw(t: torch.Tensor, l1: bool = False, scratch: Scratch | None = None) -> Raw:
    """Launch the statistics of ``t`` on its device (see :class:`Raw`); nothing waits for them.

    Passes over the values: their min and max, then per chunk of :data:`CHUNK` elements a scaled
    copy, its sum and sum of squares after the shift, and the non-finite count (and the sum of
    ``|x|`` when ``l1``). Float16 and bfloat16 are summed in float32. Call under ``torch.no_grad()``.
    """
    x = _flat(t)
    n = x.numel()
    if n == 0:
        return Raw(None, 0, None, t.is_complex())
    if scratch is None:
        scratch = getattr(_THREAD, "scratch", None)
        if scratch is None:
            scratch = _THREAD.scratch = Scratch()
    cdt = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    one, nan = _constants(x.device, cdt)
    lo, hi = torch.aminmax(x)
    if lo.dtype != cdt:
        lo, hi = lo.to(cdt), hi.to(cdt)
    # the scale 2^e >= max |x| (a power of two: scaling is exact); NaN and inf give e = 0
    big = torch.clamp(torch.maximum(hi, -lo), min=_TINY[cdt])
    inv = torch.ldexp(one, -torch.frexp(big).exponent)
    parts: list[list[torch.Tensor]] = []
    shift: torch.Tensor | None = None
    for k in range(0, n, CHUNK):
        chunk = x[k : k + CHUNK]
        m = chunk.numel()
        d = torch.mul(chunk, inv, out=scratch.get(m, one))
        absolute = torch.abs(d, out=scratch.get(m, one, 1)).sum() if l1 else nan
        if shift is None:
            # the first chunk's mean: the shift of every chunk (0 if it is not finite, so that
            # only the non-finite elements are non-finite after the shift, and they are counted)
            shift = torch.nan_to_num(d.mean(), 0.0, 0.0, 0.0)
        d.sub_(shift)
        s1, s2 = d.sum(), torch.dot(d, d)
        d.mul_(0.0).nan_to_num_(1.0)  # 1 where an element is NaN or ±inf, else 0
        parts.append([s1, s2, absolute, d.sum()])
    assert shift is not None
    if len(parts) == 1:
        stats = torch.stack([lo, hi, big, shift, *parts[0]])
    else:
        sums = torch.stack([torch.stack(p) for p in parts]).sum(0)
        stats = torch.cat([torch.stack([lo, hi, big, shift]), sums])
    values = x.clone() if n <= SMALL else None
    return Raw(stats, n, values, t.is_complex())


class _Moments:
    """One tensor's (or several tensors') statistics on the host, in units of ``scale``."""

    __slots__ = ("bad", "high", "l1", "low", "m2", "mean", "n", "norm", "scale")

    def __init__(self, f: list[float], n: int) -> None:
        lo, hi, big, shift, s1, s2, l1, bad = f
        self.n, self.bad, self.low, self.high = n, round(bad), lo, hi
        self.scale = math.ldexp(1.0, math.frexp(big)[1])  # as the device computed it
        if self.bad:
            has_nan = math.isnan(lo) or math.isnan(hi)
            self.mean = self.m2 = self.l1 = math.nan
            self.norm = math.nan if has_nan else math.inf
            return
        self.mean = shift + s1 / n  # (in units of scale)
        self.m2 = max(s2 - s1 * s1 / n, 0.0)
        self.l1 = l1
        self.norm = self.scale * math.sqrt(max(n * shift * shift + 2.0 * shift * s1 + s2, 0.0))

    def add(self, o: _Moments) -> None:
        """Take ``o`` in (Chan et al.'s pairwise update, in the larger unit)."""
        if o.scale > self.scale:
            self.rescale(o.scale)
        else:
            o.rescale(self.scale)
        tot = self.n + o.n
        delta = o.mean - self.mean
        self.mean += delta * o.n / tot
        self.m2 += o.m2 + delta * delta * self.n * o.n / tot
        self.l1 += o.l1
        self.n, self.bad = tot, self.bad + o.bad
        nan = math.isnan(self.low) or math.isnan(o.low)
        self.low, self.high = (math.nan, math.nan) if nan else (min(self.low, o.low), max(self.high, o.high))
        self.norm = math.hypot(self.norm, o.norm)

    def rescale(self, scale: float) -> None:
        r = self.scale / scale
        self.mean, self.m2, self.l1, self.scale = self.mean * r, self.m2 * r * r, self.l1 * r, scale


def _host(raws: list[Raw]) -> tuple[dict[int, list[float]], dict[int, list[float]]]:
    """Every Raw's statistics and small values on the host, in one transfer per device and dtype."""
    groups: dict[tuple[Any, Any], list[tuple[int, torch.Tensor]]] = {}
    vgroups: dict[tuple[Any, Any], list[tuple[int, torch.Tensor]]] = {}
    for r in raws:
        if r.stats is not None:
            groups.setdefault((r.stats.device, r.stats.dtype), []).append((id(r), r.stats))
        if r.values is not None:
            vgroups.setdefault((r.values.device, r.values.dtype), []).append((id(r), r.values))
    stats: dict[int, list[float]] = {}
    for items in groups.values():
        rows = torch.stack([s for _, s in items]).tolist()
        stats.update(zip((k for k, _ in items), rows, strict=True))
    values: dict[int, list[float]] = {}
    for items in vgroups.values():
        flat = torch.cat([v.reshape(-1) for _, v in items]).double().tolist()
        at = 0
        for k, v in items:
            values[k] = flat[at : at + v.numel()]
            at += v.numel()
    return stats, values


def finish(raws: list[Raw], prefix: str) -> list[dict[str, Any]]:
    """The summary attributes (module docstring) of :func:`raw` and :func:`merge` results, brought
    to the host together."""
    return finish_many([(raws, prefix)])[0]


def finish_many(batches: list[tuple[list[Raw], str]]) -> list[list[dict[str, Any]]]:
    """:func:`finish` of several lists at once: one transfer per device and dtype for all of them."""
    leaves = [q for raws, _ in batches for r in raws for q in (r.parts or [r])]
    stats, values = _host(leaves)
    return [_summaries(raws, prefix, stats, values) for raws, prefix in batches]


def _summaries(
    raws: list[Raw], prefix: str, stats: dict[int, list[float]], values: dict[int, list[float]]
) -> list[dict[str, Any]]:
    out = []
    for r in raws:
        parts = r.parts or [r]
        known = [q for q in parts if q.stats is not None]
        if not known:
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
        m = _Moments(stats[id(known[0])], known[0].n)
        for q in known[1:]:
            m.add(_Moments(stats[id(q)], q.n))
        n, bad, scale = m.n, m.bad, m.scale
        mean = std = abs_mean = math.nan
        if not bad:
            mean, std, abs_mean = scale * m.mean, scale * math.sqrt(m.m2 / n), scale * m.l1 / n
        d: dict[str, Any] = {
            f"{prefix}_mean": mean,
            f"{prefix}_std": std,
            f"{prefix}_min": m.low,
            f"{prefix}_max": m.high,
            f"{prefix}_abs_mean": abs_mean,
            f"{prefix}_max_abs": max(abs(m.low), abs(m.high)),
            f"{prefix}_norm": m.norm,
            f"{prefix}_nonfinite": bad,
        }
        norm = m.norm
        vals = [values.get(id(q)) for q in parts] if r.n <= SMALL else [None]
        flat = [v for vs in vals if vs is not None for v in vs] if all(v is not None for v in vals) else None
        d[prefix] = float(flat[0]) if flat is not None and r.n == 1 and not r.complex else norm
        if flat is not None:
            d[f"{prefix}_values"] = json.dumps(flat)
        out.append(d)
    return out


def summary(t: Any, prefix: str = "data") -> dict[str, Any]:
    """The flat summary attributes of tensor ``t`` (see the module docstring).

    Called on its own it may wait for the device, so when some elements are NaN or ±inf the mean,
    std, min, max, mean of ``|x|`` are those of the finite elements (``p_norm`` stays NaN or inf).

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
        out = finish([raw(t, l1=True)], prefix)[0]
        if out[f"{prefix}_nonfinite"]:  # the finite elements' statistics (this call may wait)
            x = _flat(t)
            finite = x[torch.isfinite(x)]
            if finite.numel():
                f = finish([raw(finite, l1=True)], prefix)[0]
                for s in ("mean", "std", "min", "max", "max_abs", "abs_mean"):
                    out[f"{prefix}_{s}"] = f[f"{prefix}_{s}"]
            else:
                for s in ("mean", "std", "min", "max", "max_abs", "abs_mean"):
                    out[f"{prefix}_{s}"] = math.nan
        return out
