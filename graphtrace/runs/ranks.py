"""The ranks of a run compared step by step: where a rank first departs from the others, and where each
rank's first non-finite value appeared (:func:`ranks`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._bidi import isolate

__all__ = ["RankComparison", "ranks"]

#: The order in which a step's quantities are compared (a loss that goes non-finite comes first: the
#: gradients and parameters it spoils follow from it).
_KINDS = ("loss", "grad", "data", "update")


@dataclass(frozen=True)
class RankComparison:
    """What :func:`ranks` found. ``str()`` of it is a one-paragraph summary.

    Attributes
    ----------
    world_size : int
        The run's number of ranks.
    first : dict or None
        The first departure of the run (``step``, ``rank``, ``kind``, ``name``, ``scope``, ``value``,
        ``reference``), or None when every rank agrees with the others at every step.
    departures : pandas.DataFrame
        Each departing rank's first departure, one row per rank in the order they depart: ``step``,
        ``rank``, ``kind`` (``"loss"``: non-finite while the others' is finite; ``"grad"``, ``"data"``,
        ``"update"``: a parameter's gradient, value or update, or for a torch model their norms,
        differs beyond the tolerance from the others'), ``name`` (the parameter; ``""`` for the
        loss), ``scope`` (its module), ``value``, ``reference`` (the others' value).
    nonfinite : pandas.DataFrame
        Each rank's first non-finite value, one row per rank that has one: ``rank``, ``step``,
        ``kind``, ``name``, ``scope``, ``value``, and where the step's trace says it started (from
        the ``anomalies`` table: a run logged with ``graph=`` or a graphtrace loss):
        ``origin_scope``, ``origin_op``, ``origin`` (``"forward"`` / ``"backward"``, ``""`` without
        a trace), ``cause``.
    layers : pandas.DataFrame
        Per step, rank and layer (scope cut to ``depth`` segments): ``grad_norm`` and ``data_norm``,
        the L2 norms over the layer's parameters (of a torch model's tensors).
    coverage : pandas.DataFrame
        One row per rank: ``steps`` (how many it recorded), ``last_step`` (``<NA>`` for none) and
        ``missing`` (how many of the steps other ranks recorded it lacks: a rank that stopped early,
        crashed or never logged). Ranks are compared only at the steps they share.
    """

    world_size: int
    first: dict[str, Any] | None
    departures: pd.DataFrame
    nonfinite: pd.DataFrame
    layers: pd.DataFrame = field(repr=False)
    coverage: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    def __str__(self) -> str:
        lines = []
        gaps = self.coverage[self.coverage["missing"] > 0] if "missing" in self.coverage else self.coverage
        if self.world_size == 1:
            lines.append("One rank (a run of one process): no other rank to compare with.")
        elif self.first is None and gaps.empty:
            lines.append(f"The {self.world_size} ranks agree at every step.")
        elif self.first is None:
            lines.append(f"The {self.world_size} ranks agree at every step they share.")
        elif self.first.get("ambiguous"):
            f, other = self.first, 1 - int(self.first["rank"])
            where = f" (in {isolate(f['scope'])})" if f.get("scope") else ""
            lines.append(
                f"Ranks 0 and 1 part at step {f['step']}: the {f['kind']} of {isolate(f['name'])}{where} is "
                f"{f['value']!r} on rank {f['rank']} and {f['reference']!r} on rank {other}; with two ranks the "
                "values do not tell which one departed."
            )
        else:
            said = f"Rank {self.first['rank']} departs first: {_what(self.first)}"
            if self.first.get("unchanged"):
                said += " (its parameters did not change at that step: no optimizer step?)"
            lines.append(said + ".")
        last = self.coverage["last_step"].max() if len(self.coverage) else None
        for r in gaps.to_dict("records"):
            if r["steps"] == 0:
                lines.append(f"Rank {r['rank']} recorded no step (the run's last step is {last}).")
            else:
                lines.append(
                    f"Rank {r['rank']} lacks {r['missing']} of the steps other ranks recorded "
                    f"(its last is step {r['last_step']}, the run's {last})."
                )
        for r in self.nonfinite.to_dict("records"):
            kind, name, scope = str(r["kind"]), isolate(str(r["name"])), isolate(str(r["scope"]))
            what = "loss" if kind == "loss" else f"{kind} of {name}" + (f" (in {scope})" if scope else "")
            text = f"Rank {r['rank']}: first non-finite value at step {r['step']}, its {what}: {r['value']!r}"
            if r["origin"]:
                where = isolate(str(r["origin_scope"])) or "(no scope)"
                text += f"; it starts in {where} ({r['origin_op']}, {r['origin']})"
            lines.append(text + ".")
        return "\n".join(lines)


def _what(d: dict[str, Any]) -> str:
    if d["kind"] == "loss":
        text = f"at step {d['step']} its loss is {d['value']!r}"
    else:
        where = f" (in {isolate(d['scope'])})" if d.get("scope") else ""
        text = f"at step {d['step']} the {d['kind']} of {isolate(d['name'])}{where} is {d['value']!r}"
    if (
        "reference" in d
        and d["reference"] is not None
        and not (isinstance(d["reference"], float) and math.isnan(d["reference"]) and d["kind"] != "loss")
    ):
        text += f" (the others': {d['reference']!r})"
    return text


def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """Elementwise: equal within the tolerance, both NaN, or the same infinity."""
    with np.errstate(invalid="ignore", over="ignore"):
        near = np.abs(a - b) <= atol + rtol * np.maximum(np.abs(a), np.abs(b))
    same: np.ndarray = near | (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & (a == b))
    return same


def _reference(values: np.ndarray, present: np.ndarray, close: Any) -> np.ndarray:
    """Per entry (last axis: ranks), the index of the rank whose value most ranks agree with (ties:
    the lowest rank); ``close(a, b)`` says whether two values agree."""
    n = values.shape[-1]
    agree = np.zeros(values.shape, dtype=np.int64)
    for i in range(n):
        for j in range(n):
            agree[..., i] += close(values[..., i], values[..., j]) & present[..., i] & present[..., j]
    agree[~present] = -1
    best: np.ndarray = np.argmax(agree, axis=-1)  # the first of the largest: the lowest rank among ties
    return best


def ranks(path: str | os.PathLike[str], *, rtol: float = 1e-6, atol: float = 0.0, depth: int = 2) -> RankComparison:
    """Compare the ranks of run ``path`` step by step, and name the first that departs from the others.

    At every step recorded by several ranks: the loss (ranks see different batches, so only a loss
    non-finite on some ranks and finite on others counts), and each parameter's gradient, value and
    update (for a torch model, their norms): under data parallelism (DDP) the gradients are averaged
    across ranks before the optimizer step, so every rank holds the same gradients and the same
    parameters after each step, and a rank whose value differs beyond ``rtol`` / ``atol`` from the
    others' has departed (a NaN in its batch, a skipped or different optimizer step, a bad device).
    The others' value is the one most ranks agree with (with two ranks, rank 0's). Within a step the
    loss comes first, then gradients, values and updates, each in the model's parameter order.

    Also each rank's first non-finite value (loss, gradient, value or update) and, when the run was
    logged with the step's trace (``run.log(step, loss, graph=tr.graph)`` on each rank, or a
    graphtrace loss), where in the model it started (the ``anomalies`` table: forward origins first).

    Parameters
    ----------
    path : str or path-like
        A recorded run (one process: one rank, nothing to compare).
    rtol, atol : float, optional
        Two values agree when ``|a - b| <= atol + rtol * max(|a|, |b|)`` (or both are NaN, or the
        same infinity). The default suits DDP, whose ranks hold bit-identical values.
    depth : int, optional
        How many scope segments name a layer in :attr:`RankComparison.layers`.

    Returns
    -------
    RankComparison

    Raises
    ------
    ValueError
        If ``path`` is not a readable run, or a tolerance is negative or not a number.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import graphtrace as gt
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "job"
    >>> model = gt.nn.MLP(1, [1])
    >>> runs = [gt.record(path, model, rank=k, world_size=2) for k in (0, 1)]
    >>> for step in range(3):
    ...     for k, run in enumerate(runs):
    ...         run.log(step, float("nan") if (k, step) == (1, 2) else 1.0)
    >>> for run in runs:
    ...     run.close()
    >>> print(gt.runs.ranks(path))
    Rank 1 departs first: at step 2 its loss is nan (the others': 1.0).
    Rank 1: first non-finite value at step 2, its loss: nan.
    """
    from .layout import _parts, _read_manifest
    from .read import _query, open_run

    for name, tol in (("rtol", rtol), ("atol", atol)):
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
            raise ValueError(f"ranks: {name} must be a number >= 0, got {tol!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"ranks: depth must be a positive int, got {depth!r}")
    root = Path(path)
    manifest = _read_manifest(root)
    world = len(_parts(root, manifest))
    con = open_run(root)
    order = {n: i for i, n in enumerate(manifest.get("parameters") or [])}
    steps = _query(con, "SELECT step, rank, loss FROM steps ORDER BY step, rank", root)
    params = _query(
        con, 'SELECT step, rank, name, scope, data, grad, "update", grad IS NULL AS no_grad FROM params', root
    )
    params["order"] = params["name"].map(lambda n: order.get(n, len(order))).astype("int64")
    params = params.sort_values(["step", "order", "name", "rank"], kind="stable")
    candidates = []

    def close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return _close(a, b, float(rtol), float(atol))

    if world > 1 and not steps.empty:
        loss = steps.pivot(index="step", columns="rank", values="loss").reindex(columns=range(world))
        values = loss.to_numpy(dtype=np.float64)
        marks = steps.assign(seen=1.0).pivot(index="step", columns="rank", values="seen")
        present = marks.reindex(columns=range(world)).notna().to_numpy()
        finite = np.isfinite(values)
        for i, step in enumerate(loss.index):
            ok, bad = present[i] & finite[i], present[i] & ~finite[i]
            if not ok.any() or not bad.any():
                continue
            # the ranks whose loss is not finite depart, unless they are more than the finite ones (a tie:
            # the finite loss is the reference, so with two ranks the broken one is named, whichever it is)
            off, ref_rank = (bad, int(np.argmax(ok))) if ok.sum() >= bad.sum() else (ok, int(np.argmax(bad)))
            for gone in np.flatnonzero(off).tolist():
                candidates.append((int(step), 0, 0, gone, "loss", "", "", values[i, gone], values[i, ref_rank]))
    if world > 1 and not params.empty:
        keys = params[["step", "order", "name", "scope"]].drop_duplicates(["step", "name"]).reset_index(drop=True)
        index = pd.MultiIndex.from_frame(keys[["step", "name"]])
        for kind_i, kind in enumerate(("grad", "data", "update"), start=1):
            table = params.pivot(index=["step", "name"], columns="rank", values=kind)
            table = table.reindex(index=index, columns=range(world))
            seen = params.assign(seen=1.0).pivot(index=["step", "name"], columns="rank", values="seen")
            present = seen.reindex(index=index, columns=range(world)).notna().to_numpy()
            values = table.to_numpy(dtype=np.float64)
            ref = _reference(values, present, close)
            ref_values = np.take_along_axis(values, ref[:, None], axis=1)[:, 0]
            for k in range(world):
                off = present[:, k] & ~close(values[:, k], ref_values)
                rows = np.flatnonzero(off)
                if rows.size:
                    j = rows[0]  # the first in (step, parameter order)
                    candidates.append(
                        (
                            int(keys["step"][j]),
                            kind_i,
                            int(keys["order"][j]),
                            k,
                            kind,
                            str(keys["name"][j]),
                            str(keys["scope"][j]),
                            values[j, k],
                            ref_values[j],
                        )
                    )
    cols = ["step", "rank", "kind", "name", "scope", "value", "reference"]
    first_per_rank: dict[int, tuple[Any, ...]] = {}
    for c in sorted(candidates, key=lambda c: c[:4]):
        first_per_rank.setdefault(c[3], c)
    chosen = sorted(first_per_rank.values(), key=lambda c: c[:4])
    departures = pd.DataFrame(
        [[c[0], c[3], c[4], c[5], c[6], float(c[7]), float(c[8])] for c in chosen], columns=cols
    ).astype({"step": "int64", "rank": "int64", "value": "float64", "reference": "float64"})
    first = None
    if chosen:
        c = chosen[0]
        first = {
            "step": c[0],
            "rank": c[3],
            "kind": c[4],
            "name": c[5],
            "scope": c[6],
            "value": float(c[7]),
            "reference": float(c[8]),
        }
        if c[4] != "loss" and world == 2:  # one rank against one: which departed is not told by the values
            first["ambiguous"] = True
            still = _unchanged_ranks(params, c[0], world)
            if len(still) == 1:  # unless one rank's parameters did not move at that step (no optimizer step)
                quiet = still[0]
                first.update(ambiguous=False, unchanged=True)
                if quiet != c[3]:
                    first.update(rank=quiet, value=float(c[8]), reference=float(c[7]))
    nonfinite = _first_nonfinite(con, root, steps, params, world)
    layer = f"array_to_string(string_split(scope, '/')[1:{depth}], '/')"
    layers = _query(
        con,
        f"SELECT step, rank, {layer} AS layer, sqrt(sum(grad * grad)) AS grad_norm, "
        "sqrt(sum(data * data)) AS data_norm FROM params GROUP BY ALL ORDER BY step, rank, layer",
        root,
    )
    every = set(steps["step"].tolist())
    coverage = pd.DataFrame(
        [
            [k, len(mine), max(mine) if mine else pd.NA, len(every - mine)]
            for k in range(world)
            for mine in [set(steps.loc[steps["rank"] == k, "step"].tolist())]
        ],
        columns=["rank", "steps", "last_step", "missing"],
    ).astype({"rank": "int64", "steps": "int64", "last_step": "Int64", "missing": "int64"})
    return RankComparison(world, first, departures, nonfinite, layers, coverage)


def _unchanged_ranks(params: pd.DataFrame, step: int, world: int) -> list[int]:
    """The ranks whose every parameter has update 0 at ``step`` while another rank's moved."""
    at = params[params["step"] == step]
    still = [k for k in range(world) if len(at[at["rank"] == k]) and (at.loc[at["rank"] == k, "update"] == 0).all()]
    return still if len(still) < world else []


def _first_nonfinite(con: Any, root: Path, steps: pd.DataFrame, params: pd.DataFrame, world: int) -> pd.DataFrame:
    from .read import _query

    rows = []
    for k in range(world):
        found: tuple[Any, ...] | None = None
        mine = steps[(steps["rank"] == k) & ~np.isfinite(steps["loss"].to_numpy(dtype=np.float64))]
        if len(mine):
            found = (int(mine["step"].iloc[0]), 0, 0, "loss", "", "", float(mine["loss"].iloc[0]))
        p = params[params["rank"] == k]
        for kind_i, kind in enumerate(("grad", "data", "update"), start=1):
            bad = p[~np.isfinite(p[kind].to_numpy(dtype=np.float64))]
            if kind == "grad":  # no gradient at all (a frozen parameter) is not a non-finite one
                bad = bad[~bad["no_grad"].to_numpy(dtype=bool)]
            if len(bad):
                r = bad.iloc[0]
                c = (int(r["step"]), kind_i, int(r["order"]), kind, str(r["name"]), str(r["scope"]), float(r[kind]))
                if found is None or c[:3] < found[:3]:
                    found = c
        if found is None:
            continue
        step = found[0]
        origins = _query(
            con,
            f"SELECT scope, op, label, forward_origin, cause FROM anomalies WHERE rank = {k} AND step = {step} "
            "ORDER BY forward_origin DESC, node_id",
            root,
        )
        if len(origins):
            o = origins.iloc[0]
            origin = (
                "forward" if bool(o["forward_origin"]) else "backward",
                str(o["scope"]),
                str(o["op"] or o["label"]),
            )
            cause = str(o["cause"])
        else:
            origin, cause = ("", "", ""), ""
        rows.append([k, step, found[3], found[4], found[5], found[6], origin[1], origin[2], origin[0], cause])
    cols = ["rank", "step", "kind", "name", "scope", "value", "origin_scope", "origin_op", "origin", "cause"]
    return pd.DataFrame(rows, columns=cols).astype({"rank": "int64", "step": "int64", "value": "float64"})
