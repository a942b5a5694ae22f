"""One self-contained HTML report of a recorded run: curves, gradient flow, update ratios, unit health,
anomalies and the last snapshot's graph. Plots are matplotlib SVG written into the page; the graph is
graphtrace's collapsed view in a sandboxed ``<iframe srcdoc>``. Nothing is fetched; all text is escaped.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ._files import atomic_write

__all__ = ["report", "report_html"]

_GUIDE = -3.0  # log10 update:data, Karpathy's rule of thumb (makemore part 3)


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: inline SVG in HTML


def _figure(title: str) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    return fig, ax


def _curves(steps: pd.DataFrame) -> str:
    fig, ax = _figure("loss and accuracy")
    ax.plot(steps["step"], steps["loss"], color="tab:blue", label="loss")
    if (steps["loss"] > 0).all():
        ax.set_yscale("log")
    ax.set_ylabel("loss", color="tab:blue")
    if steps["accuracy"].notna().any():
        ax2 = ax.twinx()
        ax2.plot(steps["step"], steps["accuracy"], color="tab:green", label="accuracy")
        ax2.set_ylim(0, 1.05)
        ax2.set_ylabel("accuracy", color="tab:green")
    return _svg(fig)


def _by_layer(h: pd.DataFrame, column: str, title: str, *, log: bool = False, guide: float | None = None) -> str:
    fig, ax = _figure(title)
    for layer, g in h.groupby("layer", sort=True):
        y = g[column]
        if y.notna().any():
            ax.plot(g["step"], y, marker="." if len(g) < 30 else None, label=str(layer))
    if guide is not None:
        ax.axhline(guide, color="black", linestyle="--", linewidth=1, label=f"guide {guide:g}")
    if log and (h[column] > 0).any():
        ax.set_yscale("log")
    ax.set_ylabel(column)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "not recorded (record with scopes_every=K)", ha="center", transform=ax.transAxes)
    return _svg(fig)


def report_html(path: str | os.PathLike[str]) -> str:
    """The report page of run ``path`` as a string (see :func:`report`)."""
    from .analysis import anomalies
    from .export.html import html_text
    from .io import load
    from .runs import _query, _read_manifest, health, open_run

    root = Path(path)
    manifest = _read_manifest(root)
    con = open_run(root)
    steps = _query(con, "SELECT * FROM steps ORDER BY step", root)
    h = health(root)
    esc = html.escape
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>graphtrace run: {esc(root.name)}</title>",
        "<style>body{font-family:sans-serif;margin:20px;max-width:1100px}figure{margin:12px 0}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
        "pre{background:#f5f5f5;padding:6px;white-space:pre-wrap}iframe{width:100%;height:620px;border:1px solid #ccc}"
        "</style></head><body>",
        f"<h1>graphtrace run: {esc(root.name)}</h1>",
        f"<p>status <b>{esc(str(manifest.get('status')))}</b>, started {esc(str(manifest.get('started')))}, "
        f"finished {esc(str(manifest.get('finished')))}, graphtrace {esc(str(manifest.get('graphtrace')))}, "
        f"{len(steps)} complete steps.</p>",
        f"<pre>model: {esc(str(manifest.get('model')))}\nhparams: {esc(json.dumps(manifest.get('hparams')))}</pre>",
    ]
    if steps.empty:
        parts.append("<p>No complete step yet.</p></body></html>")
        return "".join(parts)
    last = steps.iloc[-1]
    parts.append(
        f"<p>last step {int(last['step'])}: loss {esc(repr(float(last['loss'])))}, "
        f"accuracy {esc(repr(float(last['accuracy'])))}</p>"
    )
    plots = [
        ("curves", _curves(steps)),
        ("gradient flow", _by_layer(h, "param_abs_grad_mean", "mean |grad| of each layer's parameters", log=True)),
        (
            "update ratio",
            _by_layer(h, "update_data_log10", "log10(mean |update| / mean |data|) per layer", guide=_GUIDE),
        ),
        ("dead relu", _by_layer(h, "dead_relu_share", "share of dead ReLU units (0 for every sample)")),
        ("saturated tanh", _by_layer(h, "tanh_saturated_share", "share of tanh outputs with |t| > 0.97")),
    ]
    for name, svg in plots:
        parts.append(f'<figure class="plot" data-plot="{esc(name)}">{svg}</figure>')
    bad = _query(
        con,
        "SELECT step, name, scope, data, grad FROM params WHERE NOT (isfinite(data) AND isfinite(grad)) "
        "ORDER BY step, name LIMIT 50",
        root,
    )
    parts.append("<h2>Anomalies</h2>")
    bad_loss = [int(s) for s, v in zip(steps["step"], steps["loss"], strict=True) if not math.isfinite(v)]
    if bad.empty and not bad_loss:
        parts.append("<p>No parameter, gradient or loss went non-finite.</p>")
    if bad_loss:
        parts.append(
            f"<p>First step whose loss is not finite: {bad_loss[0]} (loss "
            f"{esc(repr(float(steps.loc[steps['step'] == bad_loss[0], 'loss'].iloc[0])))}).</p>"
        )
    if not bad.empty:
        first = bad["step"].min()
        parts.append(f"<p>First step with a non-finite parameter or gradient: {esc(str(first))}.</p>")
        parts.append(bad.to_html(index=False, escape=True, classes="anomalies"))
    elif bad_loss:
        parts.append("<p>Every parameter and gradient stayed finite.</p>")
    snaps = [int(s) for s in _query(con, "SELECT DISTINCT step FROM snapshots ORDER BY step", root)["step"]]
    if snaps:
        s = snaps[-1]
        G = load(root / "snapshots" / f"step={s}" / "trace.parquet")
        table = anomalies(G)
        if not table.empty:
            parts.append(f"<p>Non-finite nodes of the step {s} snapshot (origins first):</p>")
            table = table.sort_values(["forward_origin", "backward_origin"], ascending=False).head(50)
            parts.append(table.to_html(index=False, escape=True, classes="anomalies"))
        page = html_text(G, title=f"step {s} of {root.name}", collapse=True)
        parts.append(f"<h2>The graph of step {s}</h2>")
        parts.append(
            f'<iframe id="graph" sandbox="allow-scripts" title="graph of step {s}" srcdoc="{esc(page)}"></iframe>'
        )
    else:
        parts.append("<p>No snapshot recorded (record with snapshot_every=K to see the graph).</p>")
    parts.append("</body></html>")
    return "".join(parts)


def report(path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Write the HTML report of run ``path`` (default ``<path>/report.html``) and return its path.

    One self-contained, offline page: loss and accuracy curves, mean |grad| of each layer's
    parameters over the steps (gradient flow), log10 update:data per layer with the -3 guide line,
    dead ReLU and saturated tanh shares (steps recorded with ``scopes_every``), the non-finite
    parameters and gradients (and the last snapshot's :func:`graphtrace.analysis.anomalies`), and the
    last snapshot's graph, collapsed by scope.

    Raises
    ------
    ValueError
        If ``path`` is not a graphtrace run (see :func:`graphtrace.open_run`) or ``out`` does not end
        in ``.html``; nothing is written.

    Examples
    --------
    >>> import pathlib, random, tempfile
    >>> import graphtrace as gt
    >>> from graphtrace.report import report
    >>> random.seed(0)
    >>> model = gt.nn.MLP(2, [3, 1])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> with gt.record(path, model, snapshot_every=2) as run:
    ...     for step in range(3):
    ...         loss = (model([1.0, -1.0]) - 1.0) ** 2
    ...         model.zero_grad(); loss.backward()
    ...         for p in model.parameters():
    ...             p.data -= 0.1 * p.grad
    ...         run.log(step, loss)
    >>> report(path).name
    'report.html'
    """
    target = Path(path) / "report.html" if out is None else Path(out)
    if target.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"report: {str(target)!r} should end in .html")
    page = report_html(path)
    return atomic_write(target, lambda fh: fh.write(page))
