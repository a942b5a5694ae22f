"""A recorded run as TensorBoard event files (scalars and histograms), written with tensorboardX."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

__all__ = ["to_tensorboard"]


def to_tensorboard(path: str | os.PathLike[str], logdir: str | os.PathLike[str], depth: int = 2) -> Path:
    """Write run ``path`` as TensorBoard event files in ``logdir`` (made if missing); return ``logdir``.

    Scalars per step: ``loss``, ``accuracy``, ``learning_rate`` (where recorded), and per layer (module
    path cut to ``depth`` segments, as :func:`graphtrace.runs.health`) ``grad_flow/LAYER`` (mean
    |grad|) and ``update_data_log10/LAYER``. Histograms per step and layer (TensorBoard's
    "distributions" and "histograms" tabs): ``data/LAYER``, ``grad/LAYER`` and ``update/LAYER`` over
    the layer's parameters (a torch run's rows are tensors: their norms). Written with tensorboardX's
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
    """
    try:
        from tensorboardX import SummaryWriter
    except ImportError as exc:  # pragma: no cover - a test extra
        raise ImportError("to_tensorboard needs tensorboardX: pip install 'graphtrace-nx[tensorboard]'") from exc
    import numpy as np

    from .read import _query, health, open_run

    root = Path(path)
    con = open_run(root)
    steps = _query(con, "SELECT step, loss, accuracy, learning_rate FROM steps ORDER BY step", root)
    layer = f"array_to_string(string_split(scope, '/')[1:{depth}], '/')"
    params = _query(con, f'SELECT step, {layer} AS layer, data, grad, "update" FROM params ORDER BY step, layer', root)
    h = health(root, depth)
    out = Path(logdir)
    out.mkdir(parents=True, exist_ok=True)
    writer: Any = SummaryWriter(logdir=str(out))
    try:
        for row in steps.itertuples(index=False):
            for tag in ("loss", "accuracy", "learning_rate"):
                v = float(getattr(row, tag))
                if not math.isnan(v):
                    writer.add_scalar(tag, v, int(row.step))
        for row in h.itertuples(index=False):
            for tag in ("param_abs_grad_mean", "update_data_log10"):
                v = float(getattr(row, tag))
                if math.isfinite(v):
                    name = "grad_flow" if tag == "param_abs_grad_mean" else tag
                    writer.add_scalar(f"{name}/{row.layer}", v, int(row.step))
        for (step, lay), g in params.groupby(["step", "layer"], sort=True):
            for col in ("data", "grad", "update"):
                values = g[col].to_numpy(dtype=np.float64)
                values = values[np.isfinite(values)]
                if values.size:
                    writer.add_histogram(f"{col}/{lay or '(no scope)'}", values, int(step))
    finally:
        writer.close()
    return out
