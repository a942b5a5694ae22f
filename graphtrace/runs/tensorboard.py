"""A recorded run as TensorBoard event files (scalars, histograms, hyper-parameters), written with tensorboardX."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["to_tensorboard"]

_EVENTS = "events.out.tfevents."


def _hparam(value: Any) -> bool | int | float | str:
    """A hyper-parameter as TensorBoard's HParams plugin takes it: a number, a bool or text (JSON)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


def to_tensorboard(path: str | os.PathLike[str], logdir: str | os.PathLike[str], depth: int = 2) -> Path:
    """Write run ``path`` as TensorBoard event files under ``logdir`` (made if missing); return ``logdir``.

    The run is the TensorBoard run ``NAME``: the events go to ``LOGDIR/NAME``, ``NAME`` being the
    run folder's own name (``.`` is resolved: an export from inside the run is named after it); a run
    of several ranks is one TensorBoard run per rank, ``NAME/rank=K``. Exporting a run again replaces
    its earlier events there (nothing else in ``logdir`` is touched), so no step shows twice.

    Scalars per step, each at the step's recorded ``wall_time`` (TensorBoard's "relative" and "wall"
    axes show the run's own pace): ``loss``, ``accuracy``, ``learning_rate`` (where recorded), and per
    layer (module path cut to ``depth`` segments, as :func:`graphtrace.runs.health`) ``grad_flow/LAYER``
    (mean |grad|) and ``update_data_log10/LAYER``. Histograms per step and layer (TensorBoard's
    "distributions" and "histograms" tabs): ``data/LAYER``, ``grad/LAYER`` and ``update/LAYER`` over
    the layer's parameters (a torch run's rows are tensors: their norms). The run's hyper-parameters
    (and its rank) in the HParams tab, with ``loss`` as the metric. Written with tensorboardX's
    ``SummaryWriter`` (``pip install 'graphtrace-nx[tensorboard]'``); ``tensorboard --logdir LOGDIR`` shows them.

    Raises
    ------
    ValueError
        If ``path`` is not a readable run.
    ImportError
        If tensorboardX is not installed (the message says how to install it).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import graphtrace as gt
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with gt.record(root / "run", gt.nn.MLP(1, [1])) as run:
    ...     run.log(0, 1.0)
    >>> gt.runs.to_tensorboard(root / "run", root / "tb").name
    'tb'
    >>> sorted(p.name for p in (root / "tb").iterdir())
    ['run']
    """
    try:
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams
    except ImportError as exc:  # pragma: no cover - a test extra
        raise ImportError("to_tensorboard needs tensorboardX: pip install 'graphtrace-nx[tensorboard]'") from exc
    import numpy as np

    from .layout import _parts, _read_manifest
    from .read import _query, health, open_run

    root = Path(path)
    manifest = _read_manifest(root)
    name = root.resolve().name or "run"
    con = open_run(root)
    parts = _parts(root, manifest)
    ranked = parts[0].rank is not None
    layer = f"array_to_string(string_split(scope, '/')[1:{depth}], '/')"
    out = Path(logdir)
    out.mkdir(parents=True, exist_ok=True)
    hp = {k: _hparam(v) for k, v in (manifest.get("hparams") or {}).items()}
    for part in parts:
        rank = part.rank or 0
        steps = _query(
            con,
            "SELECT step, loss, accuracy, learning_rate, epoch(wall_time) AS wall FROM steps "
            f"WHERE rank = {rank} ORDER BY step",
            root,
        )
        if ranked and steps.empty:
            continue  # a rank that recorded nothing
        wall = {
            int(s): (None if math.isnan(w) else float(w)) for s, w in zip(steps["step"], steps["wall"], strict=True)
        }
        params = _query(
            con,
            f'SELECT step, {layer} AS layer, data, grad, "update" FROM params WHERE rank = {rank} ORDER BY step, layer',
            root,
        )
        h = health(root, depth, rank=rank)
        target = out / name / f"rank={rank}" if ranked else out / name
        target.mkdir(parents=True, exist_ok=True)
        # written aside, then swapped in for the earlier export's events: a failed export leaves those
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
        try:
            writer: Any = SummaryWriter(logdir=str(staging))
            try:
                for row in steps.itertuples(index=False):
                    for tag in ("loss", "accuracy", "learning_rate"):
                        v = float(getattr(row, tag))
                        # a NaN loss is what the step computed (the point where it broke); a NaN accuracy or
                        # learning rate means none was logged
                        if tag == "loss" or not math.isnan(v):
                            writer.add_scalar(tag, v, int(row.step), walltime=wall[int(row.step)])
                for row in h.itertuples(index=False):
                    for tag in ("param_abs_grad_mean", "update_data_log10"):
                        v = float(getattr(row, tag))
                        if math.isfinite(v):
                            tag_name = "grad_flow" if tag == "param_abs_grad_mean" else tag
                            writer.add_scalar(
                                f"{tag_name}/{row.layer}", v, int(row.step), walltime=wall.get(int(row.step))
                            )
                for (step, lay), g in params.groupby(["step", "layer"], sort=True):
                    for col in ("data", "grad", "update"):
                        values = g[col].to_numpy(dtype=np.float64)
                        values = values[np.isfinite(values)]
                        if values.size:
                            writer.add_histogram(
                                f"{col}/{lay or '(no scope)'}", values, int(step), walltime=wall.get(int(step))
                            )
                run_hp = {**hp, "rank": rank} if ranked else hp
                if run_hp:
                    for summary in hparams(run_hp, {"loss": math.nan}):
                        writer.file_writer.add_summary(summary)
            finally:
                writer.close()
            for old in target.iterdir():
                if old.name.startswith(_EVENTS) and old.is_file():
                    old.unlink()
            for new in staging.iterdir():
                new.replace(target / new.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out
