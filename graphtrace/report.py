"""One self-contained HTML report of a recorded run: curves, gradient flow, update ratios,
distributions over steps, histograms, unit health, anomalies and the last snapshot's graph.

Plots are interactive Vega-Lite charts (:mod:`graphtrace.charts`: hover, zoom, a smoothing toggle,
layer and step choosers) with vega's JavaScript inlined; the graph is graphtrace's collapsed view in
a sandboxed ``<iframe srcdoc>``, loaded when scrolled to. Nothing is fetched; all text is escaped.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ._bidi import isolate
from ._files import atomic_write
from .charts import Charts

__all__ = ["compare_html", "report", "report_html", "watch"]

_GUIDE = -3.0  # log10 update:data, Karpathy's rule of thumb (makemore part 3)


def report_html(path: str | os.PathLike[str], *, reload_every: float | None = None) -> str:
    """The report page of run ``path`` as a string (see :func:`report`); ``reload_every`` (seconds)
    makes the open page reload itself (the live view of :func:`watch`)."""
    from .analysis import anomalies
    from .export.html import html_text
    from .io import load
    from .runs.layout import _parts, _read_manifest
    from .runs.read import _query, health, open_run, status

    root = Path(path)
    manifest = _read_manifest(root)
    state = status(root)
    if state == "interrupted":
        state = "interrupted (its manifest says running, but no recorder holds the run's lock: killed?)"
    world = len(_parts(root, manifest))
    if world > 1:  # the per-layer sections read rank 0; the Ranks section compares the ranks
        con = open_run(root, _prefix="every_rank_")
        for view in ("steps", "params", "scopes", "anomalies", "snapshots"):
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM every_rank_{view} WHERE rank = 0")
        all_steps = _query(con, "SELECT * FROM every_rank_steps ORDER BY step, rank", root)
    else:
        con = open_run(root)
    steps = _query(con, "SELECT * FROM steps ORDER BY step", root)
    if world == 1:
        all_steps = steps
    h = health(root)
    esc = _esc
    charts = Charts()
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f'<meta http-equiv="refresh" content="{reload_every:g}">' if reload_every else "",
        f"<title>graphtrace run: {esc(root.name)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>graphtrace run: {esc(root.name)}</h1>",
        f"<p>status <b>{esc(state)}</b>, started {esc(str(manifest.get('started')))}, "
        + (f"finished {esc(str(manifest.get('finished')))}, " if manifest.get("finished") else "")
        + f"graphtrace {esc(str(manifest.get('graphtrace')))}, "
        f"{len(steps)} complete steps" + (f" (rank 0; {world} ranks)" if world > 1 else "") + ".</p>",
        f"<p>hyper-parameters: <code>{esc(json.dumps(manifest.get('hparams'), ensure_ascii=False))}</code></p>",
    ]
    if world > 1:
        parts.append(_ranks_section(root, all_steps))
    if steps.empty:
        parts.append("<p>No complete step yet.</p></body></html>")
        return "".join(parts)
    last = steps.iloc[-1]
    shown = [f"loss {esc(_num(float(last['loss'])))}"]
    for col, name in (("accuracy", "accuracy"), ("learning_rate", "learning rate")):
        if not math.isnan(float(last[col])):  # NaN: not logged
            shown.append(f"{name} {esc(_num(float(last[col])))}")
    parts.append(f"<p>last step {int(last['step'])}: {', '.join(shown)}</p>")
    parts.append(_model_summary(con, root))
    rows = all_steps[["step", "rank", "loss", "accuracy", "learning_rate"]].to_dict("records")
    by_rank = "rank" if world > 1 else None
    parts.append("<h2>Training</h2>")
    parts.append(charts.line(rows, "loss", "loss", "loss", color=by_rank, log=True, smooth=True))
    for col, title in (("accuracy", "accuracy"), ("learning_rate", "learning rate")):
        if steps[col].notna().any():
            domain = (0, 1) if col == "accuracy" else None
            parts.append(charts.line(rows, col, title, title, color=by_rank, domain=domain))
    parts.append("<h2>Gradients and updates, per layer</h2>")
    if world > 1:
        parts.append("<p>Of rank 0 (the Ranks section above compares the ranks).</p>")
    hr = h.to_dict("records")
    parts.append(
        charts.line(
            hr, "param_abs_grad_mean", "mean |grad| of the layer's parameters", "gradient flow", color="layer", log=True
        )
    )
    parts.append(
        charts.line(
            hr,
            "update_data_log10",
            "log10(|update| / |data|)",
            "update ratio",
            color="layer",
            rule=_GUIDE,
            rule_label="-3: the rule of thumb",
        )
    )
    parts.append("<h2>Distributions over steps</h2>")
    parts.append(
        "<p>Per step, over the parameters of the layer chosen: min–max (lightest), 10–90% and 25–75% bands, "
        "and the median (line); hover for the numbers, drag or scroll to zoom the steps.</p>"
    )
    for what, title in (("data", "parameter values"), ("grad", "gradients"), ("update", "updates")):
        parts.append(charts.bands(_quantiles(con, root, what), title, f"distribution of {what}"))
    hist_rows, hist_steps = _histogram_rows(con, root, [int(s) for s in steps["step"]])
    if hist_rows:
        parts.append("<h2>Histograms</h2>")
        parts.append(charts.histogram(hist_rows, hist_steps, "histogram"))
    parts.append("<h2>Units</h2>")
    kinds = _unit_kinds(con, root)
    if kinds is None:
        parts.append(
            "<p>No step was recorded with its scope table (record with scopes_every=K), so dead and "
            "saturated units are not known.</p>"
        )
    else:
        if "relu" in kinds:
            without = sorted({str(r["layer"]) for r in hr} - _relu_layers(con, root))
            parts.append(
                charts.line(
                    hr,
                    "dead_relu_share",
                    "share of dead ReLU units (0 for every sample)",
                    "dead relu",
                    color="layer",
                    domain=(0, 1),
                    not_applicable=tuple(without),
                    caption=f"Not applicable (no ReLU units): {', '.join(without)}." if without else "",
                )
            )
        if "tanh" in kinds:
            parts.append(
                charts.line(
                    hr,
                    "tanh_saturated_share",
                    "share of tanh outputs with |t| > 0.97",
                    "saturated tanh",
                    color="layer",
                    domain=(0, 1),
                )
            )
        if not kinds:
            parts.append("<p>The model has no ReLU or tanh units, so none can die or saturate.</p>")
    bad = _query(
        con,
        "SELECT step, name, scope, data, grad FROM params WHERE NOT (isfinite(data) AND isfinite(grad)) "
        "ORDER BY step, name LIMIT 50",
        root,
    )
    parts.append("<h2>Anomalies</h2>")
    if world > 1:  # this section reads rank 0, as the sections above; the Ranks section reads them all
        parts.append(
            "<p>Of rank 0 (the Ranks section above gives every rank's first non-finite value and where it started).</p>"
        )
    bad_loss = [int(s) for s, v in zip(steps["step"], steps["loss"], strict=True) if not math.isfinite(v)]
    if bad.empty and not bad_loss:
        said = "On rank 0, no" if world > 1 else "No"
        parts.append(f"<p>{said} parameter, gradient or loss went non-finite.</p>")
    if bad_loss:
        parts.append(
            f"<p>First step whose loss is not finite: {bad_loss[0]} (loss "
            f"{esc(_num(float(steps.loc[steps['step'] == bad_loss[0], 'loss'].iloc[0])))}).</p>"
        )
    if not bad.empty:
        first = bad["step"].min()
        parts.append(f"<p>First step with a non-finite parameter or gradient: {esc(str(first))}.</p>")
        parts.append(bad.to_html(index=False, escape=True, classes="anomalies"))
    elif bad_loss:
        parts.append("<p>Every parameter and gradient stayed finite.</p>")
    snaps = [
        int(s) for s in _query(con, "SELECT DISTINCT step FROM snapshots WHERE rank = 0 ORDER BY step", root)["step"]
    ]
    if snaps:
        s = snaps[-1]
        G = load(_parts(root, manifest)[0].snapshot(s))
        nonfinite = _query(
            con,
            f"SELECT count(*) AS n FROM snapshots WHERE step = {s} AND rank = 0 AND kind = 'node' "
            "AND NOT (isfinite(data) AND isfinite(grad))",
            root,
        )["n"].iloc[0]
        table = anomalies(G) if nonfinite else None  # its table lists exactly these nodes
        if table is not None and not table.empty:
            parts.append(f"<p>Non-finite nodes of the step {s} snapshot (origins first):</p>")
            table = table.sort_values(["forward_origin", "backward_origin"], ascending=False).head(50)
            parts.append(table.to_html(index=False, escape=True, classes="anomalies"))
        page = html_text(G, title=f"step {s} of {root.name}", collapse=True)
        parts.append(f"<h2>The graph of step {s}</h2>")
        # the page travels gzipped (base64: no markup in it) and becomes the iframe's srcdoc when the
        # iframe scrolls into view: a 65k-node step is 0.5 MB here instead of 3.3 MB escaped
        packed = base64.b64encode(gzip.compress(page.encode("utf-8"), compresslevel=6)).decode("ascii")
        parts.append(
            f'<iframe id="graph" sandbox="allow-scripts" title="graph of step {s}"></iframe>'
            f'<script type="text/plain" id="graph-page">{packed}</script>'
            f"<script>{_LAZY_GRAPH}</script>"
        )
    else:
        parts.append("<p>No snapshot recorded (record with snapshot_every=K to see the graph).</p>")
    parts.append(charts.scripts())
    parts.append("</body></html>")
    return "".join(parts)


def _ranks_section(root: Path, steps: pd.DataFrame) -> str:
    """A run of several ranks: each rank's state and steps, the first rank that departs from the others
    and each rank's first non-finite value with where it started (:func:`graphtrace.runs.ranks`)."""
    from .runs.ranks import ranks
    from .runs.read import rank_status

    esc = _esc
    states = rank_status(root)
    found = ranks(root)
    table = pd.DataFrame(
        {
            "rank": list(states),
            "status": list(states.values()),
            "complete steps": [int((steps["rank"] == k).sum()) for k in states],
            "last loss": [
                _num(float(steps.loc[steps["rank"] == k, "loss"].iloc[-1])) if (steps["rank"] == k).any() else "-"
                for k in states
            ],
        }
    )
    parts = ["<h2>Ranks</h2>", table.to_html(index=False, escape=True, classes="ranks")]
    parts += [f"<p>{esc(line)}</p>" for line in str(found).splitlines()]
    if not found.departures.empty:
        parts.append("<p>Where each rank first departs from the others:</p>")
        parts.append(found.departures.to_html(index=False, escape=True, classes="departures"))
    if not found.nonfinite.empty:
        parts.append("<p>Each rank's first non-finite value, and where its trace says it started:</p>")
        parts.append(found.nonfinite.to_html(index=False, escape=True, classes="anomalies"))
    return "".join(parts)


def _query(con: Any, sql: str, root: Path) -> Any:
    from .runs.read import _query as run_query

    return run_query(con, sql, root)


# Unpack the graph's page into the iframe once it is (nearly) in view.
_LAZY_GRAPH = """(function () {
  var frame = document.getElementById("graph"), done = false;
  function load() {
    if (done) { return; }
    done = true;
    var bin = atob(document.getElementById("graph-page").textContent), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
    var text = new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
    window.graphtraceGraphPage = text.then(function (page) { frame.srcdoc = page; return page.length; });
  }
  new IntersectionObserver(function (entries, obs) {
    if (entries.some(function (e) { return e.isIntersecting; })) { obs.disconnect(); load(); }
  }, { rootMargin: "200px" }).observe(frame);
})();"""

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:20px;max-width:1100px}figure{margin:12px 0}"
    "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
    "code{background:#f5f5f5;padding:1px 4px}iframe{width:100%;height:620px;border:1px solid #ccc}"
    ".vega-bindings{font-size:12px;margin:4px 0}figcaption{font-size:13px;color:#444;margin:2px 0 0 40px}"
)
_LAYER = "array_to_string(string_split(scope, '/')[1:2], '/')"
MAX_POINTS = 300  # steps drawn per distribution (evenly spaced): a long run's page stays small
HIST_STEPS = 12


def _every(con: Any, root: Path) -> int:
    n = int(_query(con, "SELECT count(*) AS n FROM steps", root)["n"].iloc[0])
    return max(1, math.ceil(n / MAX_POINTS))


def _quantiles(con: Any, root: Path, what: str) -> list[dict[str, Any]]:
    """Per (step, layer): the quantiles of ``what`` over the layer's parameters (finite values)."""
    k = _every(con, root)
    col = f'"{what}"'
    df = _query(
        con,
        f"""SELECT step, {_LAYER} AS layer, min({col}) AS min, quantile_cont({col}, 0.1) AS q10,
                   quantile_cont({col}, 0.25) AS q25, median({col}) AS median, quantile_cont({col}, 0.75) AS q75,
                   quantile_cont({col}, 0.9) AS q90, max({col}) AS max
            FROM params WHERE isfinite({col}) AND step IN (SELECT step FROM steps QUALIFY
                row_number() OVER (ORDER BY step) % {k} = 1 OR {k} = 1 OR step = max(step) OVER ())
            GROUP BY ALL ORDER BY step, layer""",
        root,
    )
    df["step"] = df["step"].astype("int64")
    return list(df.to_dict("records"))


def _histogram_rows(con: Any, root: Path, steps: list[int]) -> tuple[list[dict[str, Any]], list[int]]:
    """Every parameter's data, grad and update at up to HIST_STEPS steps, evenly spaced, the last included."""
    if not steps:
        return [], []
    k = max(1, math.ceil(len(steps) / HIST_STEPS))
    chosen = sorted({*steps[::k], steps[-1]})
    picked = ", ".join(str(s) for s in chosen)
    df = _query(
        con,
        f'SELECT step, {_LAYER} AS layer, data, grad, "update" FROM params WHERE step IN ({picked})',
        root,
    )
    long = df.melt(id_vars=["step", "layer"], value_vars=["data", "grad", "update"], var_name="what")
    long["step"] = long["step"].astype("int64")
    return list(long.to_dict("records")), chosen


def _unit_kinds(con: Any, root: Path) -> set[str] | None:
    """The unit kinds the recorded scope tables saw ({"relu", "tanh"}), None without any scope table."""
    df = _query(
        con,
        "SELECT count(*) AS n, count(*) FILTER (WHERE NOT isnan(relu_zero_share)) AS relu, "
        "count(*) FILTER (WHERE NOT isnan(tanh_saturated_share)) AS tanh FROM scopes",
        root,
    )
    if int(df["n"].iloc[0]) == 0:
        return None
    return {kind for kind in ("relu", "tanh") if int(df[kind].iloc[0]) > 0}


def _relu_layers(con: Any, root: Path) -> set[str]:
    """The layers (two scope segments, as in :func:`graphtrace.runs.health`) that have ReLU units: a layer
    without any (a linear output layer) has no dead-ReLU share at all, not a share of 0."""
    unit_layer = "array_to_string(string_split(regexp_replace(scope, '\\[[0-9]+\\]', '', 'g'), '/')[1:2], '/')"
    df = _query(con, f"SELECT DISTINCT {unit_layer} AS layer FROM scopes WHERE NOT isnan(relu_zero_share)", root)
    return {str(v) for v in df["layer"]}


def _model_summary(con: Any, root: Path) -> str:
    """The model as its modules and their parameter counts (from the last step's params rows)."""
    has_numel = "numel" in _query(con, "SELECT * FROM params LIMIT 0", root).columns
    count = "CAST(sum(numel) AS BIGINT)" if has_numel else "count(*)"
    df = _query(
        con,
        f"SELECT {_LAYER} AS layer, count(DISTINCT scope) AS modules, count(*) AS tensors, {count} AS parameters "
        "FROM params WHERE step = (SELECT max(step) FROM steps) GROUP BY ALL ORDER BY layer",
        root,
    )
    if not has_numel:
        df = df.drop(columns=["tensors"])
    total = int(df["parameters"].sum()) if len(df) else 0
    modules = int(df["modules"].sum()) if len(df) else 0
    return (
        f"<details open><summary>model: {_plural(len(df), 'layer')}, {_plural(modules, 'module')}, "
        f"{_plural(total, 'parameter')}</summary>"
        f"{df.to_html(index=False, escape=True, classes='model')}</details>"
    )


def _num(x: float) -> str:
    """A logged number as people read it: as written when it is short (``1.0``, ``0.05``), else 6
    significant digits (``0.109``, not ``0.10899999999999987``)."""
    r = repr(x)
    return r if len(r) <= 10 else f"{x:.6g}"


def _esc(text: str) -> str:
    """User text for the page: escaped, and isolated when it holds bidi controls (see :mod:`graphtrace._bidi`)."""
    return html.escape(isolate(text))


def _plural(n: int, word: str) -> str:
    """``1 layer``, ``2 layers``, ``1,024 parameters``."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _hparams_table(manifests: list[dict[str, Any]], names: list[str]) -> pd.DataFrame:
    """The hyper-parameters that differ between the runs (one row per run); all of them for one run."""
    flat = [{k: json.dumps(v, ensure_ascii=False) for k, v in (m.get("hparams") or {}).items()} for m in manifests]
    keys = sorted({k for f in flat for k in f})
    differ = [k for k in keys if len({f.get(k, "(unset)") for f in flat}) > 1] if len(flat) > 1 else keys
    return pd.DataFrame({"run": names, **{k: [f.get(k, "(unset)") for f in flat] for k in differ}})


def compare_html(paths: list[str | os.PathLike[str]]) -> str:
    """One page comparing several runs: their curves overlaid (one colour per run) and a table of the
    hyper-parameters that differ (see :func:`report`)."""
    from .runs.layout import _read_manifest
    from .runs.read import _query, health, open_runs, run_names

    roots = [Path(p) for p in paths]
    manifests = [_read_manifest(r) for r in roots]
    names = run_names(roots)
    con = open_runs(roots)
    # rank 0 of a run of several ranks (its report compares them)
    steps = _query(
        con, "SELECT run, step, loss, accuracy, learning_rate FROM steps WHERE rank = 0 ORDER BY run, step", roots[0]
    )
    per_run = {n: steps[steps["run"] == n] for n in names}
    grads: dict[str, pd.DataFrame] = {}
    for n, r in zip(names, roots, strict=True):
        h = health(r)
        grads[n] = (
            h.groupby("step", as_index=False)[["param_abs_grad_mean", "update_data_log10"]].mean()
            if not h.empty
            else pd.DataFrame({"step": [], "param_abs_grad_mean": [], "update_data_log10": []})
        )
    esc = _esc
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>graphtrace runs: {esc(', '.join(names))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>graphtrace: {len(names)} runs compared</h1>",
        "<h2>Runs</h2>",
        "<table class=runs><tr><th>run</th><th>status</th><th>complete steps</th><th>last loss</th></tr>",
    ]
    for n, m in zip(names, manifests, strict=True):
        df = per_run[n]
        last = _num(float(df["loss"].iloc[-1])) if len(df) else "-"
        parts.append(
            f"<tr><td>{esc(n)}</td><td>{esc(str(m.get('status')))}</td><td>{len(df)}</td><td>{esc(last)}</td></tr>"
        )
    parts.append("</table>")
    parts.append("<h2>Hyper-parameters that differ</h2>")
    parts.append(_hparams_table(manifests, names).to_html(index=False, escape=True, classes="hparams"))
    parts.append("<h2>Curves</h2><p>Hover a chart for every run's value at that step; drag or scroll to zoom.</p>")
    charts = Charts()
    rows = steps.to_dict("records")
    parts.append(charts.line(rows, "loss", "loss", "loss", color="run", log=True, smooth=True))
    for col, title in (("accuracy", "accuracy"), ("learning_rate", "learning rate")):
        if steps[col].notna().any():
            parts.append(charts.line(rows, col, title, title, color="run"))
    flow = [{**r, "run": n} for n, g in grads.items() for r in g.to_dict("records")]
    parts.append(
        charts.line(
            flow, "param_abs_grad_mean", "mean |grad| (layers averaged)", "gradient flow", color="run", log=True
        )
    )
    parts.append(
        charts.line(
            flow,
            "update_data_log10",
            "log10 update:data (layers averaged)",
            "update ratio",
            color="run",
            rule=_GUIDE,
            rule_label="-3: the rule of thumb",
        )
    )
    parts.append(charts.scripts())
    parts.append("</body></html>")
    return "".join(parts)


def _writer_of(text: str) -> Any:
    return lambda fh: fh.write(text)


#: The longest wait :func:`watch` accepts between looks (a day): longer ones cannot be slept on every platform.
MAX_INTERVAL = 86400.0


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
    reloads itself every ``reload_every`` seconds; once the run is no longer running (finished, failed,
    or interrupted: its manifest says running but no recorder holds its lock, see
    :func:`graphtrace.runs.status`), write the final page (without the refresh) and return its path.
    ``graphtrace report RUN --watch``.

    Parameters
    ----------
    path, out
        As :func:`report`.
    interval : float
        Seconds between looks at the run's completed steps (> 0, at most :data:`MAX_INTERVAL`).
    reload_every : float
        The open page's reload period, in seconds (> 0, at most :data:`MAX_INTERVAL`).
    on_write : callable, optional
        Called with each page written (its text): for scripts and tests.

    Raises
    ------
    ValueError
        As :func:`report`, or ``interval`` / ``reload_every`` is not a number of seconds in
        (0, :data:`MAX_INTERVAL`] (infinity and NaN included).
    """
    import time

    from .runs.read import complete_steps, rank_status, status

    for name, value in (("interval", interval), ("reload_every", reload_every)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_INTERVAL:
            raise ValueError(
                f"watch: {name} must be a number of seconds > 0 and at most {MAX_INTERVAL:g}, got {value!r}"
            )
    root = Path(path)
    target = root / "report.html" if out is None else Path(out)
    if target.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"report: {str(target)!r} should end in .html")
    seen: tuple[tuple[int, ...], ...] | None = None
    while True:
        running = status(root) == "running"
        done = tuple(tuple(complete_steps(root, k)) for k in rank_status(root))  # each rank's
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
