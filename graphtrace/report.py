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

__all__ = ["compare_html", "report", "report_html", "watch"]

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


def report_html(path: str | os.PathLike[str], *, reload_every: float | None = None) -> str:
    """The report page of run ``path`` as a string (see :func:`report`); ``reload_every`` (seconds)
    makes the open page reload itself (the live view of :func:`watch`)."""
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
        f'<meta http-equiv="refresh" content="{reload_every:g}">' if reload_every else "",
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


def _hparams_table(manifests: list[dict[str, Any]], names: list[str]) -> pd.DataFrame:
    """The hyper-parameters that differ between the runs (one row per run); all of them for one run."""
    flat = [{k: json.dumps(v) for k, v in (m.get("hparams") or {}).items()} for m in manifests]
    keys = sorted({k for f in flat for k in f})
    differ = [k for k in keys if len({f.get(k, "(unset)") for f in flat}) > 1] if len(flat) > 1 else keys
    return pd.DataFrame({"run": names, **{k: [f.get(k, "(unset)") for f in flat] for k in differ}})


def _overlay(frames: dict[str, pd.DataFrame], column: str, title: str, *, log: bool = False) -> str:
    fig, ax = _figure(title)
    drawn = False
    for run, df in frames.items():
        if column in df and df[column].notna().any():
            ax.plot(df["step"], df[column], label=run)
            drawn = True
    if log and drawn and all((df[column].dropna() > 0).all() for df in frames.values() if column in df):
        ax.set_yscale("log")
    ax.set_ylabel(column)
    if drawn:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no run recorded it", ha="center", transform=ax.transAxes)
    return _svg(fig)


def compare_html(paths: list[str | os.PathLike[str]]) -> str:
    """One page comparing several runs: their curves overlaid (one colour per run) and a table of the
    hyper-parameters that differ (see :func:`report`)."""
    from .runs import _query, _read_manifest, health, open_runs, run_names

    roots = [Path(p) for p in paths]
    manifests = [_read_manifest(r) for r in roots]
    names = run_names(roots)
    con = open_runs(roots)
    steps = _query(con, "SELECT run, step, loss, accuracy, learning_rate FROM steps ORDER BY run, step", roots[0])
    per_run = {n: steps[steps["run"] == n] for n in names}
    grads: dict[str, pd.DataFrame] = {}
    for n, r in zip(names, roots, strict=True):
        h = health(r)
        grads[n] = (
            h.groupby("step", as_index=False)[["param_abs_grad_mean", "update_data_log10"]].mean()
            if not h.empty
            else pd.DataFrame({"step": [], "param_abs_grad_mean": [], "update_data_log10": []})
        )
    esc = html.escape
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>graphtrace runs: {esc(', '.join(names))}</title>",
        "<style>body{font-family:sans-serif;margin:20px;max-width:1100px}figure{margin:12px 0}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}</style>"
        "</head><body>",
        f"<h1>graphtrace: {len(names)} runs compared</h1>",
        "<h2>Hyper-parameters that differ</h2>",
        _hparams_table(manifests, names).to_html(index=False, escape=True, classes="hparams"),
        "<table class=runs><tr><th>run</th><th>status</th><th>complete steps</th><th>last loss</th></tr>",
    ]
    for n, m in zip(names, manifests, strict=True):
        df = per_run[n]
        last = repr(float(df["loss"].iloc[-1])) if len(df) else "-"
        parts.append(
            f"<tr><td>{esc(n)}</td><td>{esc(str(m.get('status')))}</td><td>{len(df)}</td><td>{esc(last)}</td></tr>"
        )
    parts.append("</table>")
    plots = [
        ("loss", _overlay(per_run, "loss", "loss per run", log=True)),
        ("accuracy", _overlay(per_run, "accuracy", "accuracy per run")),
        ("learning rate", _overlay(per_run, "learning_rate", "learning rate per run")),
        (
            "gradient flow",
            _overlay(grads, "param_abs_grad_mean", "mean |grad| of the parameters (layers averaged)", log=True),
        ),
        (
            "update ratio",
            _overlay(grads, "update_data_log10", "log10 update:data (layers averaged; about -3 is healthy)"),
        ),
    ]
    for name, svg in plots:
        parts.append(f'<figure class="plot" data-plot="{esc(name)}">{svg}</figure>')
    parts.append("</body></html>")
    return "".join(parts)


def _writer_of(text: str) -> Any:
    return lambda fh: fh.write(text)


def watch(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    interval: float = 2.0,
    reload_every: float = 5.0,
    on_write: Any = None,
) -> Path:
    """Keep run ``path``'s report up to date while the run is being recorded: rewrite the page
    (atomically) whenever a step lands, with a ``<meta refresh>`` so that an open browser tab
    reloads itself every ``reload_every`` seconds; once the run's status is no longer ``running``,
    write the final page (without the refresh) and return its path. ``graphtrace report RUN --watch``.

    Parameters
    ----------
    path, out
        As :func:`report`.
    interval : float
        Seconds between looks at the run's completed steps.
    reload_every : float
        The open page's reload period, in seconds.
    on_write : callable, optional
        Called with each page written (its text): for scripts and tests.

    Raises
    ------
    ValueError
        As :func:`report`.
    """
    import time

    from .runs import _read_manifest, complete_steps

    if not (interval > 0 and reload_every > 0):
        raise ValueError(f"watch: interval and reload_every must be > 0, got {interval!r}, {reload_every!r}")
    root = Path(path)
    target = root / "report.html" if out is None else Path(out)
    if target.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"report: {str(target)!r} should end in .html")
    seen: tuple[int, ...] | None = None
    while True:
        running = _read_manifest(root).get("status") == "running"
        done = tuple(complete_steps(root))
        if done != seen or not running:
            page = report_html(root, reload_every=reload_every if running else None)
            atomic_write(target, _writer_of(page))
            if on_write is not None:
                on_write(page)
            seen = done
        if not running:
            return target
        time.sleep(interval)


def report(path: Any, out: str | os.PathLike[str] | None = None) -> Path:
    """Write the HTML report of run ``path`` (default ``<path>/report.html``) and return its path.

    One self-contained, offline page: loss and accuracy curves, mean |grad| of each layer's
    parameters over the steps (gradient flow), log10 update:data per layer with the -3 guide line,
    dead ReLU and saturated tanh shares (steps recorded with ``scopes_every``), the non-finite
    parameters and gradients (and the last snapshot's :func:`graphtrace.analysis.anomalies`), and the
    last snapshot's graph, collapsed by scope.

    Given a list of several runs, the page compares them instead (:func:`compare_html`): loss,
    accuracy, learning rate, gradient flow and update:data overlaid, one colour per run, and a table
    of the hyper-parameters that differ; written to ``out`` (default: ``compare.html`` next to the
    first run).

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
    several = not isinstance(path, (str, os.PathLike))
    if several:
        paths = list(path)
        if not paths:
            raise ValueError("report: no run given")
        if len(paths) == 1:
            path, several = paths[0], False
    if several:
        target = Path(paths[0]).parent / "compare.html" if out is None else Path(out)
    else:
        target = Path(path) / "report.html" if out is None else Path(out)
    if target.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"report: {str(target)!r} should end in .html")
    page = compare_html(paths) if several else report_html(path)
    return atomic_write(target, lambda fh: fh.write(page))
