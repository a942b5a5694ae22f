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

The ``"norms"`` level (``gt.pytorch.trace(model, stats="norms")``, ``raw(..., norms=True)``) computes
only ``p_norm`` and the exact ``p_nonfinite`` (and the values of small tensors, ``p`` itself): one
read of the tensor for the L2 norm (one row-wise ``vector_norm`` for a whole batch of small tensors,
in the tensor's dtype, float32 for float16 and bfloat16) and one pass that counts the non-finite
elements exactly (``x - x`` is 0 for a finite element, NaN for NaN and ±inf; NaNs become 1 and are
summed). ``p_mean``, ``p_std``, ``p_min``, ``p_max``, ``p_max_abs`` and ``p_abs_mean`` are NaN:
not recorded (the node's ``stats`` attribute says ``"norms"``). A norm whose sum of squares passes
the dtype's largest value while every element is finite (float32 values of about 1e19 and more) is
NaN too: not recorded (the full level scales the values first; it never overflows).
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

import torch

__all__ = [
    "LEVELS",
    "SENTINEL",
    "SMALL",
    "STATS",
    "Raw",
    "Scratch",
    "empty",
    "finish",
    "finish_many",
    "flush",
    "merge",
    "raw",
    "shape_text",
    "summary",
]

#: Tensors with at most this many elements also keep every value (``data_values``, ``grad_values``).
SMALL = 16
#: The levels of statistics a trace can record (see the module docstring): every statistic, or the
#: norms and exact non-finite counts alone.
LEVELS = ("full", "norms")
#: The statistics the ``"norms"`` level records (the others are NaN: not recorded).
NORMS_STATS = ("norm", "nonfinite")
#: The statistics of every summary, in column order.
STATS = ("mean", "std", "min", "max", "max_abs", "abs_mean", "norm", "nonfinite")
#: Elements per pass of the shifted sums: a chunk and its scratch copy stay in a core's cache.
CHUNK = 1 << 17
#: The numbers kept per tensor (see :class:`Raw`).
ROW = 9
#: Tensors of at most this many elements are summarised in batches of tensors of one shape (see
#: :class:`_Batch`): a handful of kernels for up to :data:`BATCH_ROWS` of them instead of ~15 each.
BATCH_MAX = 1 << 17
#: Elements of one batch's buffer, and the most tensors it holds.
BATCH_ELEMENTS = 1 << 19
BATCH_ROWS = 256
#: Batches a thread keeps at once (one per shape); beyond this every batch is summarised and dropped.
BATCH_SHAPES = 32


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

    __slots__ = ("batches", "buffers", "slabs")

    def __init__(self) -> None:
        self.buffers: dict[tuple[Any, Any, int], torch.Tensor] = {}
        self.slabs: dict[tuple[Any, Any], list[Any]] = {}  # (device, dtype) -> [slab, next free row]
        self.batches: dict[tuple[Any, Any, int, bool, bool], _Batch] = {}  # (device, dtype, numel, norms, l1) -> batch

    def flush(self, release: bool = False) -> None:
        """Launch the statistics of every tensor waiting in a batch; ``release``: free the batches'
        buffers too (a trace's exit)."""
        for b in self.batches.values():
            b.flush()
        if release:
            self.batches.clear()

    def stage(self, x: torch.Tensor, cdt: Any, l1: bool, extras: Any, norms: bool = False) -> Raw:
        """A Raw for ``x`` whose statistics are launched with its batch's (see :class:`_Batch`)."""
        # (a tensor asking for Σ|x| (a parameter's) apart: the batch's l1 pass would read every row)
        key = (x.device, cdt, x.numel(), norms, l1 and not norms)
        b = self.batches.get(key)
        if b is None:
            if len(self.batches) >= BATCH_SHAPES:
                self.flush(release=True)
            b = self.batches[key] = _Batch(x, cdt, self, norms)
        return b.add(x, l1, extras)

    def row(self, like: torch.Tensor) -> torch.Tensor:
        """A fresh row of :data:`ROW` numbers in a slab of 1,024 rows: the statistics that outlive a
        summary live in few large blocks, not in thousands of small allocations scattered between
        a model's activations on the host heap (which then cannot shrink: +1.3 MiB per forward pass
        of a 512x512 MLP)."""
        key = (like.device, like.dtype)
        slab = self.slabs.get(key)
        if slab is None or slab[1] == slab[0].shape[0]:
            slab = self.slabs[key] = [torch.empty((1024, ROW), dtype=like.dtype, device=like.device), 0]
        r: torch.Tensor = slab[0][slab[1]]
        slab[1] += 1
        return r

    def get(self, n: int, like: torch.Tensor, which: int = 0) -> torch.Tensor:
        key = (like.device, like.dtype, which)
        b = self.buffers.get(key)
        if b is None or b.numel() < n:
            b = self.buffers[key] = torch.empty(max(n, 1024), dtype=like.dtype, device=like.device)
        return b[:n]


class Raw:
    """A tensor's statistics as launched on its device (:func:`finish` makes the summary).

    ``stats`` is a 1-d tensor on the tensor's device: ``[min, max, c, inv, Σd, Σd², Σ|x|·inv, e1,
    e2]`` (``e1``, ``e2``: counts of units an activation's caller asked for, else NaN)
    where ``inv`` is a power of two with ``max |x| * inv <= 1`` (``< 2`` for values above half the
    dtype's largest, and where some are not finite: then from the largest finite value), ``c``
    the mean times ``inv`` (0 if not finite) and ``d = x * inv - c`` with every non-finite element replaced by
    :data:`SENTINEL` (so ``Σd`` counts them: ``Σd`` of the finite ones is at most ``3n``; ``bad``, the
    count as an integer, for a tensor of several chunks); ``n`` the
    element count; ``values`` the (magnitudes of the) values when there are at most :data:`SMALL`;
    ``parts`` the Raws merged into this one (the outputs of one multi-output op, see :func:`merge`).

    ``norms``: the ``"norms"`` level; ``stats`` is then ``[‖x‖, non-finite count]`` (the count NaN
    when ``bad`` holds it: a tensor of several chunks, or when it is counted later: ``src`` is then
    the tensor, which a trace holds until its exit anyway (a parameter, its gradient), and
    ``version`` its version; :func:`finish_many` counts its non-finite elements only if its norm
    is not finite).
    """

    __slots__ = ("bad", "batch", "complex", "n", "norms", "parts", "src", "stats", "values", "version")

    def __init__(
        self,
        stats: Any,
        n: int,
        values: Any,
        complex_: bool,
        parts: list[Raw] | None = None,
        norms: bool = False,
    ) -> None:
        self.stats, self.n, self.values, self.complex, self.parts = stats, n, values, complex_, parts
        self.norms = norms
        self.src: torch.Tensor | None = None
        self.version = 0
        self.batch: _Batch | None = None  # the batch whose flush launches ``stats``, while it waits there
        self.bad: torch.Tensor | None = None  # the non-finite count of a tensor of several chunks (int64)


class _Batch:
    """Tensors of one element count, device and dtype waiting to be summarised together.

    Each tensor is copied into a row of the batch's buffer as it is seen (one kernel; the copy keeps
    its values as they were, whatever in-place op comes next), and when the buffer is full or its
    statistics are needed (:func:`finish_many`, a trace's exit) one set of row-wise reductions
    launches the statistics of every row: the same numbers, in the same way, as :func:`raw` gives
    one tensor (min/max, the mean as a shift, a power-of-two scale, the shifted sums with the
    non-finite sentinel), about 20 kernels for up to :data:`BATCH_ROWS` tensors. A row holds the
    tensor's elements in memory order (no statistic depends on their order): a transposed or
    permuted tensor is copied as the block it is (:func:`_dense_flat`), not gathered element by
    element, and tensors of any shape with the same element count share a batch.
    """

    __slots__ = ("buf", "cdt", "extras", "l1", "n", "norms", "raws", "rows", "scratch")

    def __init__(self, like: torch.Tensor, cdt: Any, scratch: Scratch, norms: bool = False) -> None:
        self.n = int(like.numel())
        # rows of a multiple of NORM_GROUP elements at the "norms" level (zeros after the tensor's: see _norms_of)
        width = self.n if not norms or self.n <= NORM_GROUP else -(-self.n // NORM_GROUP) * NORM_GROUP
        capacity = min(BATCH_ROWS, max(1, BATCH_ELEMENTS // max(width, 1)))
        self.buf = torch.empty((capacity, width), dtype=cdt, device=like.device)
        if width > self.n:
            self.buf[:, self.n :].zero_()
        self.rows: list[torch.Tensor] = []  # views of the buffer's rows (1-d), made a few at a time as needed
        self.extras: torch.Tensor | None = None  # (capacity, 2): extra counts per row, NaN if none
        self.raws: list[Raw] = []
        self.cdt = cdt
        self.l1 = False
        self.scratch = scratch
        self.norms = norms  # the "norms" level: each row's L2 norm and non-finite count alone

    def add(self, x: torch.Tensor, l1: bool, extras: Any) -> Raw:
        k = len(self.raws)
        rows = self.rows
        if k == len(rows):  # the next rows' views, made in one call (one view per row costs as much as its copy)
            more = min(self.buf.shape[0] - k, max(8, k))
            rows.extend(self.buf[k : k + more, : self.n].unbind(0))
        flat = _dense_flat(x)
        if flat is not None:
            rows[k].copy_(flat)
        else:  # (an expanded or sliced tensor: gathered in its own order)
            rows[k].view(x.shape).copy_(x)
        if extras is not None and not self.norms:
            if self.extras is None:
                self.extras = torch.full((self.buf.shape[0], 2), math.nan, dtype=self.cdt, device=self.buf.device)
            self.extras[k].copy_(torch.stack(extras))
        r = Raw(None, self.n, x.reshape(-1).clone() if self.n <= SMALL else None, False, norms=self.norms)
        r.batch = self
        self.raws.append(r)
        self.l1 |= l1
        if k + 1 == self.buf.shape[0]:
            self.flush()
        return r

    def flush(self) -> None:
        if self.raws:
            with torch.no_grad():
                self._flush()

    def _flush(self) -> None:
        if self.norms:
            self._flush_norms()
            return
        raws = self.raws
        k = len(raws)
        cdt = self.cdt
        one, nan = _constants(self.buf.device, cdt)
        m = self.buf[:k].view(k, self.n)
        lo, hi = m.amin(1), m.amax(1)  # (aminmax along a dim runs element by element on a CPU)
        shift = torch.nan_to_num(m.mean(dim=1), 0.0, 0.0, 0.0)
        inv = torch.ldexp(one.expand(k), -torch.frexp(_top(torch.maximum(hi, -lo), cdt)).exponent)
        c = shift * inv
        d = torch.mul(m, inv.unsqueeze(1), out=self.scratch.get(k * self.n, one).view(k, self.n))
        l1 = torch.abs(d, out=self.scratch.get(k * self.n, one, 1).view(k, self.n)).sum(1) if self.l1 else nan.expand(k)
        sentinel = SENTINEL[cdt]
        d.sub_(c.unsqueeze(1)).nan_to_num_(sentinel, sentinel, sentinel)
        s1 = d.sum(1)
        s2 = torch.linalg.vecdot(d, d, dim=1)
        ex = self.extras[:k] if self.extras is not None else nan.expand(k, 2)
        stats = torch.cat([torch.stack([lo, hi, c, inv, s1, s2, l1], dim=1), ex], dim=1)
        for r, row in zip(raws, stats.unbind(0), strict=True):
            r.stats, r.batch = row, None
        if self.extras is not None:
            self.extras.fill_(math.nan)
        self.raws = []
        self.l1 = False

    def _flush_norms(self) -> None:
        """The "norms" level: every row's L2 norm (one row-wise reduction) and its exact non-finite
        count (as :func:`_count_chunk` takes it; a row's zeros after its tensor's elements are finite)."""
        raws = self.raws
        k = len(raws)
        one, _ = _constants(self.buf.device, self.cdt)
        m = self.buf[:k]
        width = m.shape[1]
        finite = torch.nansum(torch.add(one, m, alpha=0.0, out=self.scratch.get(k * width, one).view(k, width)), 1)
        stats = torch.stack([_norms_of(m), torch.rsub(finite.to(torch.float64), width)], dim=1)
        for r, row in zip(raws, stats.unbind(0), strict=True):
            r.stats, r.batch = row, None
        self.raws = []


def flush(release: bool = True) -> None:
    """Launch the statistics of every tensor this thread has waiting in a batch, and (``release``)
    free the batches' buffers (a trace's exit; a backward call's end keeps them)."""
    scratch = getattr(_THREAD, "scratch", None)
    if scratch is not None:
        scratch.flush(release=release)


def merge(raws: list[Raw]) -> Raw:
    """One Raw for several tensors taken together (their concatenation): the outputs of one op."""
    if len(raws) == 1:
        return raws[0]
    parts = [q for r in raws for q in (r.parts or [r])]
    return Raw(None, sum(r.n for r in parts), None, any(r.complex for r in parts), parts)


def zeros_raw(n: int, like: torch.Tensor, norms: bool = False) -> Raw:
    """The Raw of ``n`` zeros (an output's gradient that autograd left undefined)."""
    row = [0, 0] if norms else [0, 0, 0, 1, 0, 0, 0, math.nan, math.nan]  # (inv 1)
    z = torch.tensor(row, dtype=torch.float32).to(like.device)
    return Raw(z, n, torch.zeros(n, device=like.device) if n <= SMALL else None, False, norms=norms)


_THREAD = threading.local()
#: What a non-finite element becomes in the scaled, shifted copy: its sum counts them exactly
#: (each finite element adds at most 2 there), per dtype.
SENTINEL = {torch.float32: 2.0**100, torch.float64: 2.0**900}
_TINY = {torch.float32: torch.finfo(torch.float32).tiny, torch.float64: torch.finfo(torch.float64).tiny}
#: Half the dtype's largest value: the largest base of a scale (its power of two, 2**127 or 2**1023, has
#: an inverse the host's float64 holds).
_HUGE = {torch.float32: torch.finfo(torch.float32).max / 2, torch.float64: torch.finfo(torch.float64).max / 2}


def _top(m: torch.Tensor, cdt: Any) -> torch.Tensor:
    """``max |x|`` (``m``) as the scale's base: at least the smallest normal number, at most
    :data:`_HUGE`, which it is where it is NaN or inf (every finite ``|x * inv|`` is then below 2)."""
    huge = _HUGE[cdt]
    return torch.clamp(torch.nan_to_num(m, huge, huge, huge), min=_TINY[cdt], max=huge)


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


def _dense_flat(x: torch.Tensor) -> torch.Tensor | None:
    """The elements of ``x`` as a 1-d view in memory order if they fill one block of memory (a
    contiguous tensor, or a transpose or permutation of one), else None (an expanded, sliced or
    overlapping tensor)."""
    if x.is_contiguous():
        return x.view(-1)
    expected = 1
    for stride, size in sorted((st, sz) for st, sz in zip(x.stride(), x.shape, strict=True) if sz != 1):
        if stride != expected:
            return None
        expected *= size
    return x.as_strided((x.numel(),), (1,))


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
    if x.numel() > SMALL:  # (a small tensor's values are kept from it: in their own order)
        dense = _dense_flat(x)  # a transposed weight or gradient is read in place, not copied first
        if dense is not None:
            return dense
    return x.reshape(-1)


def raw(
    t: torch.Tensor,
    l1: bool = False,
    scratch: Scratch | None = None,
    extras: Any = None,
    norms: bool = False,
    defer: bool = False,
) -> Raw:
    """Launch the statistics of ``t`` on its device (see :class:`Raw`); nothing waits for them.
    ``extras``: two 0-d tensors kept with them (counts of an activation's units); ``norms``: the
    ``"norms"`` level (the L2 norm and the exact non-finite count alone; ``l1`` and ``extras`` are
    ignored); ``defer``: at that level, ``t`` lives, unchanged unless its version changes, until
    :func:`finish_many` (a trace's parameter, or its gradient), so its non-finite elements are
    counted there, only if its norm is not finite (a tensor of more than :data:`BATCH_MAX`
    elements; a smaller one is counted with its batch).

    Kernels: the min and max, the mean, then per chunk of :data:`CHUNK` elements (its copy stays in
    a core's cache) the shifted and scaled copy ``d`` with its non-finite elements replaced by
    :data:`SENTINEL`, ``Σd`` and ``Σd²`` (and ``Σ|x|`` when ``l1``); a few 0-d ops make the shift and
    the scale. Float16 and bfloat16 are summed in float32. Call under ``torch.no_grad()``.
    """
    if scratch is None:
        scratch = getattr(_THREAD, "scratch", None)
        if scratch is None:
            scratch = _THREAD.scratch = Scratch()
    if 0 < t.numel() <= BATCH_MAX and t.layout == torch.strided and t.is_floating_point():
        return scratch.stage(t, t.dtype if t.dtype in _TINY else torch.float32, l1, extras, norms)
    x = _flat(t)
    n = x.numel()
    if n == 0:
        return Raw(None, 0, None, t.is_complex(), norms=norms)
    cdt = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    if norms:
        return _raw_norms(x, t.is_complex(), cdt, scratch, t if defer else None)
    one, nan = _constants(x.device, cdt)
    sentinel = SENTINEL[cdt]
    lo, hi = torch.aminmax(x)
    shift = torch.nan_to_num(x.mean(dtype=cdt), 0.0, 0.0, 0.0)
    # inv: a power of two (scaling is exact) with |x * inv| <= 1, so no sum overflows; with a NaN or
    # inf, the one that scales the dtype's largest value to 1 (every finite element then adds at most
    # 2 to Σd, far less than the sentinel, whatever its size: the count holds)
    inv = torch.ldexp(one, -torch.frexp(_top(torch.maximum(hi, -lo).to(cdt), cdt)).exponent)
    c = shift * inv
    parts: list[list[torch.Tensor]] = []
    bad: list[torch.Tensor] = []
    for k in range(0, n, CHUNK):
        chunk = x[k : k + CHUNK] if n > CHUNK else x
        d = torch.mul(chunk, inv, out=scratch.get(chunk.numel(), one))
        a = torch.abs(d, out=scratch.get(chunk.numel(), one, 1)).sum() if l1 else nan  # Σ|x|·inv
        d.sub_(c).nan_to_num_(sentinel, sentinel, sentinel)
        # Σd²: squared into the second buffer and summed (torch's sum adds in a tree; a BLAS dot adds
        # in a few float32 lanes, off by ~1e-5 where many elements are equal: a ReLU output's zeros)
        parts.append([d.sum(), torch.mul(d, d, out=scratch.get(chunk.numel(), one, 1)).sum(), a])
        if n > CHUNK:  # this chunk's non-finite count (exact: at most CHUNK sentinels), summed as integers
            bad.append(torch.round(parts[-1][0] * (1.0 / sentinel)))
    e1, e2 = extras if extras is not None else (nan, nan)
    stats = scratch.row(one)
    if len(parts) == 1:
        torch.stack([lo, hi, c, inv, *parts[0], e1, e2], out=stats)
    else:
        total = torch.stack([torch.stack(q) for q in parts]).sum(0)
        torch.cat([torch.stack([lo, hi, c, inv]), total, torch.stack([e1, e2]).to(cdt)], out=stats)
    values = x.clone() if n <= SMALL else None
    out = Raw(stats, n, values, t.is_complex())
    if bad:  # the row's Σd cannot hold more than 2**24 sentinels exactly (float32): the count apart
        out.bad = torch.stack(bad).to(torch.int64).sum()
    return out


#: Elements per pass of the "norms" level's non-finite count (its float32 sum of ones is exact), and per
#: piece of a large tensor whose norm and count are taken together (a multiple of :data:`NORM_GROUP`:
#: 2 MiB of float32, so the count's passes read the piece from the cache the norm's pass brought it to).
NORMS_CHUNK = 1 << 19
#: The "norms" level sums the squares of this many elements at a time in the tensor's dtype, and those
#: sums in float64: as fast as one float32 sum and as exact as float64 (a float32 sum of 2.4M squares
#: is off by 1e-4; in groups of 256, by 4e-9).
NORM_GROUP = 256


def _norms_of(m: torch.Tensor) -> torch.Tensor:
    """The L2 norm of each row of ``m`` (float64), whose width is at most :data:`NORM_GROUP` or a
    multiple of it."""
    k, width = m.shape
    if width > NORM_GROUP:
        m = torch.linalg.vector_norm(m.view(k, width // NORM_GROUP, NORM_GROUP), dim=2)
    out: torch.Tensor = torch.linalg.vector_norm(m, dim=1, dtype=torch.float64)
    return out


def _norm_parts(x: torch.Tensor, cdt: Any) -> list[torch.Tensor]:
    """The L2 norms of flat tensor ``x``'s groups of :data:`NORM_GROUP` elements (and of the rest), in
    ``cdt``: the norm of ``x`` is their norm (see :func:`_norm_flat`)."""
    n = x.numel()
    whole = n - n % NORM_GROUP
    dt = cdt if x.dtype != cdt else None
    parts = [torch.linalg.vector_norm(x[:whole].view(-1, NORM_GROUP), dim=1, dtype=dt)] if whole else []
    if whole < n:
        parts.append(torch.linalg.vector_norm(x[whole:], dtype=dt).reshape(1))
    return parts


def _norm_of_parts(parts: list[torch.Tensor]) -> torch.Tensor:
    out: torch.Tensor = torch.linalg.vector_norm(parts[0] if len(parts) == 1 else torch.cat(parts), dtype=torch.float64)
    return out


def _norm_flat(x: torch.Tensor, cdt: Any) -> torch.Tensor:
    """The L2 norm of flat tensor ``x`` as a 0-d float64 tensor (see :data:`NORM_GROUP`)."""
    return _norm_of_parts(_norm_parts(x, cdt))


def _raw_norms(x: torch.Tensor, complex_: bool, cdt: Any, scratch: Scratch, src: torch.Tensor | None) -> Raw:
    """The "norms" level of a flat tensor ``x`` (see :func:`raw`): its L2 norm in one read, and its
    non-finite count (:func:`_count_chunk`, piece by piece), or ``src`` to count later."""
    n = x.numel()
    nan = _constants(x.device, torch.float64)[1]
    out = Raw(None, n, x.clone() if n <= SMALL else None, complex_, norms=True)
    if src is not None:
        out.stats = torch.stack([_norm_flat(x, cdt), nan])
        out.src, out.version = src, src._version
        return out
    # piece by piece, the count's passes right after the norm's: a piece is read from memory once
    parts: list[torch.Tensor] = []
    counts: list[torch.Tensor] = []
    for k in range(0, n, NORMS_CHUNK):
        piece = x[k : k + NORMS_CHUNK] if n > NORMS_CHUNK else x
        parts += _norm_parts(piece, cdt)
        counts.append(_count_chunk(piece, cdt, scratch))
    norm = _norm_of_parts(parts)
    if len(counts) == 1:
        out.stats = torch.stack([norm, counts[0].to(torch.float64)])
    else:  # (a float32 sum of more than 2**24 ones is not exact: the count apart, as integers)
        out.stats = torch.stack([norm, nan])
        out.bad = torch.stack(counts).to(torch.int64).sum()
    return out


def _count(x: torch.Tensor, cdt: Any, scratch: Scratch) -> list[torch.Tensor]:
    """The non-finite elements of flat tensor ``x``, one 0-d count per chunk of :data:`NORMS_CHUNK`
    elements (see :func:`_count_chunk`)."""
    n = x.numel()
    return [
        _count_chunk(x[k : k + NORMS_CHUNK] if n > NORMS_CHUNK else x, cdt, scratch) for k in range(0, n, NORMS_CHUNK)
    ]


def _count_chunk(chunk: torch.Tensor, cdt: Any, scratch: Scratch) -> torch.Tensor:
    """The non-finite elements of ``chunk`` (at most :data:`NORMS_CHUNK`), in a reused buffer: ``1 + 0·x``
    is 1 where ``x`` is finite and NaN where it is NaN or ±inf (one kernel), its ``nansum`` the finite
    elements (exact: at most 2**19 ones), and the chunk's size less that sum the count (two passes;
    ``x - x`` made 1 where NaN and summed took three)."""
    one, _ = _constants(chunk.device, cdt)
    d = torch.add(one, chunk, alpha=0.0, out=scratch.get(chunk.numel(), one))
    return torch.rsub(torch.nansum(d), chunk.numel())


def _counted_later(leaves: list[Raw], stats: dict[int, list[float]]) -> None:
    """The non-finite counts of the "norms" Raws whose tensors were kept (``src``): 0 where the norm
    is finite (no element can be NaN or ±inf then), else counted now, one transfer per device; -1
    (some, how many not recorded) where the tensor changed in place since (its version)."""
    later = [q for q in leaves if q.src is not None]
    if not later:
        return
    scratch = getattr(_THREAD, "scratch", None)
    if scratch is None:
        scratch = _THREAD.scratch = Scratch()
    by_device: dict[Any, list[tuple[Raw, torch.Tensor]]] = {}
    with torch.no_grad():
        for q in later:
            src, q.src = q.src, None
            if src is None:  # (one Raw met twice: a parameter's and its view's)
                continue
            f = stats[id(q)]
            if math.isfinite(f[0]):
                f[1] = 0.0
            elif src._version != q.version:
                f[1] = -1.0
            else:
                x = _flat(src)
                cdt = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
                c = torch.stack(_count(x, cdt, scratch)).to(torch.int64).sum()
                by_device.setdefault(x.device, []).append((q, c))
        for items in by_device.values():
            counts = torch.stack([c for _, c in items]).tolist()
            for (q, _), c in zip(items, counts, strict=True):
                f = stats[id(q)]
                # a NaN norm has a NaN behind it: none now, the tensor changed where its version does
                # not tell (``p.data[...] = ...``): some, how many not recorded
                f[1] = -1.0 if c == 0 and math.isnan(f[0]) else float(c)


class _Moments:
    """One tensor's (or several tensors') statistics on the host: the mean, M2 (sum of squared
    deviations) and sum of ``|x|`` in units of ``unit`` (``max |x|``), min, max, norm and the
    non-finite count."""

    __slots__ = ("bad", "high", "l1", "low", "m2", "mean", "n", "norm", "unit")

    def __init__(self, f: list[float], n: int, sentinel: float) -> None:
        lo, hi, c, inv, s1, s2, l1 = f[:7]
        self.n, self.low, self.high = n, lo, hi
        self.unit = 1.0 / inv if inv > 0 else 1.0
        finite = math.isfinite(lo) and math.isfinite(hi)
        if finite:
            self.bad = 0
        elif len(f) > ROW:  # counted apart (several chunks)
            self.bad = max(int(f[ROW]), 1)
        else:  # Σd: the sentinels (at most BATCH_MAX or CHUNK of them) and at most 2 per finite element
            self.bad = max(round(s1 / sentinel), 1) if math.isfinite(s1) else n
        if self.bad:
            has_nan = math.isnan(lo) or math.isnan(hi)
            self.mean = self.m2 = self.l1 = math.nan
            self.norm = math.nan if has_nan else math.inf
            return
        self.mean = c + s1 / n
        self.m2 = max(s2 - s1 * s1 / n, 0.0)
        self.l1 = l1
        self.norm = self.unit * math.sqrt(max(n * c * c + 2.0 * c * s1 + s2, 0.0))

    def add(self, o: _Moments) -> None:
        """Take ``o`` in (Chan et al.'s pairwise update, in the larger unit)."""
        if o.unit > self.unit:
            self.rescale(o.unit)
        else:
            o.rescale(self.unit)
        tot = self.n + o.n
        delta = o.mean - self.mean
        self.mean += delta * o.n / tot
        self.m2 += o.m2 + delta * delta * self.n * o.n / tot
        self.l1 += o.l1
        self.n, self.bad = tot, self.bad + o.bad
        nan = math.isnan(self.low) or math.isnan(o.low)
        self.low, self.high = (math.nan, math.nan) if nan else (min(self.low, o.low), max(self.high, o.high))
        self.norm = math.hypot(self.norm, o.norm)

    def rescale(self, unit: float) -> None:
        r = self.unit / unit
        self.mean, self.m2, self.l1, self.unit = self.mean * r, self.m2 * r * r, self.l1 * r, unit


def _host(
    raws: list[Raw], extras: list[torch.Tensor] | None = None
) -> tuple[dict[int, list[float]], dict[int, list[float]], list[float]]:
    """Every Raw's statistics and small values, and the 0-d tensors ``extras``, on the host: one
    transfer per device (everything packed into one float64 buffer there first)."""
    by_device: dict[Any, list[tuple[str, Any, torch.Tensor]]] = {}
    for r in raws:
        if r.stats is not None:
            by_device.setdefault(r.stats.device, []).append(("s", r, r.stats))
        if r.values is not None:
            by_device.setdefault(r.values.device, []).append(("v", r, r.values.reshape(-1)))
        if r.bad is not None:
            by_device.setdefault(r.bad.device, []).append(("b", r, r.bad.reshape(1)))
    for k, e in enumerate(extras or ()):
        by_device.setdefault(e.device, []).append(("e", k, e.reshape(1)))
    stats: dict[int, list[float]] = {}
    values: dict[int, list[float]] = {}
    extra = [math.nan] * len(extras or ())
    bad: dict[int, float] = {}
    for items in by_device.values():
        pieces: list[torch.Tensor] = []
        for dtype in {t.dtype for _, _, t in items}:  # one cat per dtype, then one of them all
            same = [t for _, _, t in items if t.dtype == dtype]
            pieces.append(torch.cat(same).double() if dtype != torch.float64 else torch.cat(same))
        order = [item for dtype in {t.dtype for _, _, t in items} for item in items if item[2].dtype == dtype]
        flat = torch.cat(pieces).tolist() if len(pieces) > 1 else pieces[0].tolist()
        at = 0
        for what, key, t in order:
            m = t.numel()
            if what == "s":
                stats[id(key)] = flat[at : at + m]
            elif what == "v":
                values[id(key)] = flat[at : at + m]
            elif what == "b":
                bad[id(key)] = flat[at]
            else:
                extra[key] = flat[at]
            at += m
    for key, b in bad.items():  # a tensor of several chunks: its exact non-finite count, after its row
        stats[key] = [*stats[key], b]
    return stats, values, extra


def finish(raws: list[Raw], prefix: str) -> list[dict[str, Any]]:
    """The summary attributes (module docstring) of :func:`raw` and :func:`merge` results, brought
    to the host together."""
    return finish_many([(raws, prefix)])[0][0]


def finish_many(
    batches: list[tuple[list[Raw], str]], extras: list[torch.Tensor] | None = None
) -> tuple[list[list[dict[str, Any]]], list[float]]:
    """:func:`finish` of several lists at once, and the values of the 0-d tensors ``extras``: one
    transfer per device for all of them."""
    leaves = [q for raws, _ in batches for r in raws for q in (r.parts or [r])]
    for q in leaves:
        if q.batch is not None:  # still waiting in its batch: launch the batch's statistics
            q.batch.flush()
    stats, values, extra = _host(leaves, extras)
    _counted_later(leaves, stats)
    return [_summaries(raws, prefix, stats, values) for raws, prefix in batches], extra


def _sentinel(r: Raw) -> float:
    return SENTINEL[torch.float64] if r.stats.dtype == torch.float64 else SENTINEL[torch.float32]


def _summaries(
    raws: list[Raw], prefix: str, stats: dict[int, list[float]], values: dict[int, list[float]]
) -> list[dict[str, Any]]:
    out = []
    k_mean, k_std, k_min, k_max, k_maxabs, k_abs, k_norm, k_bad = (f"{prefix}_{s}" for s in STATS)
    isfinite, sqrt = math.isfinite, math.sqrt
    for r in raws:
        if r.norms or (r.parts is not None and any(q.norms for q in r.parts)):
            out.append(_norms_summary(r, prefix, stats, values))
            continue
        if r.parts is None and r.stats is not None and r.n > SMALL:  # the common case, inline
            lo, hi, c, inv, s1, s2, l1, e1, e2 = stats[id(r)][:ROW]
            if isfinite(lo) and isfinite(hi):
                n, unit = r.n, 1.0 / inv
                norm = unit * sqrt(max(n * c * c + 2.0 * c * s1 + s2, 0.0))
                fast: dict[str, Any] = {
                    k_mean: unit * (c + s1 / n),
                    k_std: unit * sqrt(max(s2 - s1 * s1 / n, 0.0) / n),
                    k_min: lo,
                    k_max: hi,
                    k_abs: unit * (l1 / n),
                    k_maxabs: max(-lo, hi),
                    k_norm: norm,
                    k_bad: 0,
                    prefix: norm,
                }
                if e1 == e1:
                    fast["_e1"] = e1
                if e2 == e2:
                    fast["_e2"] = e2
                out.append(fast)
                continue
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
        m = _Moments(stats[id(known[0])], known[0].n, _sentinel(known[0]))
        for q in known[1:]:
            m.add(_Moments(stats[id(q)], q.n, _sentinel(q)))
        n, bad, scale = m.n, m.bad, m.unit
        mean = std = abs_mean = math.nan
        if not bad:
            mean, std, abs_mean = scale * m.mean, scale * math.sqrt(m.m2 / n), scale * (m.l1 / n)
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
        e1, e2 = stats[id(known[0])][7:9]
        if e1 == e1:
            d["_e1"] = e1
        if e2 == e2:
            d["_e2"] = e2
        vals = [values.get(id(q)) for q in parts] if r.n <= SMALL else [None]
        flat = [v for vs in vals if vs is not None for v in vs] if all(v is not None for v in vals) else None
        d[prefix] = float(flat[0]) if flat is not None and r.n == 1 and not r.complex else norm
        if flat is not None:
            d[f"{prefix}_values"] = json.dumps(flat)
        out.append(d)
    return out


_NAN_ROWS: dict[str, dict[str, Any]] = {}


def _nan_row(prefix: str) -> dict[str, Any]:
    """A fresh summary with every statistic NaN (not recorded), copied from one made once per prefix."""
    row = _NAN_ROWS.get(prefix)
    if row is None:
        row = _NAN_ROWS[prefix] = {f"{prefix}_{s}": math.nan for s in STATS}
    return dict(row)


def _norms_summary(
    r: Raw, prefix: str, stats: dict[int, list[float]], values: dict[int, list[float]]
) -> dict[str, Any]:
    """The summary of a "norms" level Raw (or of several merged): the norm, the exact non-finite
    count and the small values; every other statistic NaN (not recorded)."""
    parts = r.parts or [r]
    d = _nan_row(prefix)
    total, bad, has_nan, has_inf, overflow, unknown = 0.0, 0, False, False, False, False
    for q in parts:
        if q.stats is None:  # no elements
            continue
        f = stats[id(q)]
        norm, count = f[0], (f[2] if len(f) > 2 else f[1])
        k = int(count) if count == count else q.n
        if k < 0:  # some, how many not recorded (see _counted_later)
            unknown = True
            k = 1
        bad += k
        if k:  # NaN if some element is NaN, else inf
            has_nan, has_inf = has_nan or math.isnan(norm), has_inf or not math.isnan(norm)
        elif not math.isfinite(norm):  # every element finite: the sum of squares overflowed the dtype
            overflow = True
        else:
            total = math.hypot(total, norm)
    norm = math.nan if has_nan else math.inf if has_inf else math.nan if overflow else total
    d[f"{prefix}_norm"] = norm
    d[f"{prefix}_nonfinite"] = -1 if unknown else bad
    vals = [values.get(id(q)) for q in parts] if r.n <= SMALL else [None]
    flat = [v for vs in vals if vs is not None for v in vs] if all(v is not None for v in vals) else None
    d[prefix] = float(flat[0]) if flat is not None and r.n == 1 and not r.complex else norm
    if flat is not None:
        d[f"{prefix}_values"] = json.dumps(flat)
    return d


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
