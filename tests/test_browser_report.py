"""The report's charts as a reader sees them, in headless Chromium (Debian's chromium, driven by playwright):
axis domains that fit the data, tick labels that do not overlap, the rule of thumb's label drawn once, tooltips
that name what they show, the comparison page's one tooltip for every run at a step, and the layers a chart's
quantity does not apply to shown as such.

Skipped only when chromium is missing on a developer machine; CI sets GRAPHTRACE_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import io
import math
import re
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import chromium
import pytest

import graphtrace as gt
from graphtrace.cli import main

pytestmark = pytest.mark.browser

sync_api = chromium.sync_api(allow_module_level=True)
SIZES = [(1280, 800), (1920, 1080)]
RUNS = ("lr1", "lr0.3")  # a dot in a run's name: it must not break the comparison's tooltip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two recorded runs of micrograd's demo (small), the report of the first and the page comparing both."""
    root = tmp_path_factory.mktemp("runs")
    for name, lr in zip(RUNS, ("1.0", "0.3"), strict=True):
        argv = ["train", "--steps", "30", "--samples", "30", "--hidden", "8,8", "--lr", lr, "--seed", "3"]
        with redirect_stdout(io.StringIO()):
            assert main([*argv, "--record", str(root / name), "--out", str(root / "out")]) == 0
    report = gt.report.report(root / RUNS[0])
    compare = gt.report.report([root / n for n in RUNS])
    return {"root": root, "report": report, "compare": compare}


class Page:
    """A page opened from file:// with every other request aborted, its console errors kept, its charts drawn."""

    def __init__(self, browser: Any, path: Path, size: tuple[int, int]) -> None:
        self.page = browser.new_page(viewport={"width": size[0], "height": size[1]})
        self.errors: list[str] = []
        self.blocked: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.route("**/*", self._route)
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_function("() => window.graphtraceViews !== undefined", timeout=60_000)

    def _route(self, route: Any) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def view(self, plot: str) -> str:
        """The JavaScript expression of the Vega view of the chart ``plot``."""
        index = self.page.evaluate(
            f"() => Number(document.querySelector('figure[data-plot=\"{plot}\"] .vl').id.slice(2))"
        )
        return f"window.graphtraceViews[{index}].view"

    def domain(self, plot: str, scale: str = "y") -> list[float]:
        return list(self.page.evaluate(f"() => {self.view(plot)}.scale('{scale}').domain()"))

    def hover(self, plot: str, step: int) -> str:
        """Point at the chart's plot area over ``step``, halfway up; the tooltip's text."""
        self.page.mouse.move(1, 1)  # off any chart: the previous tooltip hides
        self.page.wait_for_function(
            "() => { const t = document.getElementById('vg-tooltip-element');"
            " return !t || !t.classList.contains('visible'); }"
        )
        self.page.locator(f"figure[data-plot='{plot}']").scroll_into_view_if_needed()
        x, y = self.page.evaluate(
            f"""() => {{ const v = {self.view(plot)}, o = v.origin();
                 const r = document.querySelector("figure[data-plot='{plot}'] svg").getBoundingClientRect();
                 return [r.x + o[0] + v.scale('x')({step}), r.y + o[1] + v.height() / 2]; }}"""
        )
        self.page.mouse.move(x, y)
        self.page.wait_for_function(
            "() => { const t = document.getElementById('vg-tooltip-element');"
            " return t && t.classList.contains('visible'); }",
            timeout=30_000,
        )
        return str(self.page.inner_text("#vg-tooltip-element"))

    def close(self) -> None:
        assert self.errors == [] and self.blocked == [], (self.errors, self.blocked)
        self.page.close()


def _losses(path: Path) -> dict[int, float]:
    return dict(gt.open_run(path).sql("SELECT step, loss FROM steps ORDER BY step").fetchall())


@pytest.mark.parametrize("size", SIZES)
def test_the_loss_axis_spans_the_data_not_whole_powers_of_ten(browser: Any, runs: dict[str, Path], size: Any) -> None:
    losses = list(_losses(runs["root"] / RUNS[0]).values())
    both = losses + list(_losses(runs["root"] / RUNS[1]).values())
    for page_name, values in (("report", losses), ("compare", both)):
        page = Page(browser, runs[page_name], size)
        lo, hi = page.domain("loss")
        assert lo <= min(values) and hi >= max(values), (page_name, lo, hi)  # every point is drawn
        # and the axis is about the data's span (a log axis rounded out to 0.1..1 or 0.1..10 is not)
        assert lo >= min(values) / 1.25 and hi <= max(values) * 1.25, (page_name, lo, hi, min(values), max(values))
        page.close()


@pytest.mark.parametrize("size", SIZES)
def test_the_rule_of_thumb_is_labelled_once(browser: Any, runs: dict[str, Path], size: Any) -> None:
    for page_name in ("report", "compare"):
        page = Page(browser, runs[page_name], size)
        texts = page.page.evaluate(
            "() => [...document.querySelectorAll(\"figure[data-plot='update ratio'] svg .mark-text text\")]"
            ".map(t => t.textContent)"
        )
        assert texts.count("-3: the rule of thumb") == 1, texts
        rules = page.page.evaluate(
            "() => document.querySelectorAll(\"figure[data-plot='update ratio'] svg .mark-rule line\").length"
        )
        assert rules >= 1
        page.close()


#: the space a reader needs between two tick labels to read them as two (vega's own overlap test allows 0)
GAP = 3.0


def _too_close(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether two label boxes touch or overlap, counting GAP pixels around each."""
    return (
        a["x"] < b["x"] + b["width"] + GAP
        and b["x"] < a["x"] + a["width"] + GAP
        and (a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])
    )


def _readable(labels: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The pairs of labels that run into each other."""
    return [(a["text"], b["text"]) for i, a in enumerate(labels) for b in labels[i + 1 :] if _too_close(a, b)]


def _axis_labels(page: Page, plot: str, axis: str) -> list[dict[str, Any]]:
    """The labels a reader sees on an axis ("X" or "Y"): text and box (those vega hid are left out)."""
    return list(
        page.page.evaluate(
            """([plot, axis]) => {
              const out = [];
              for (const g of document.querySelectorAll(`figure[data-plot="${plot}"] svg g.role-axis`)) {
                if (!(g.getAttribute('aria-label') || '').startsWith(axis + '-axis')) continue;
                for (const t of g.querySelectorAll('.role-axis-label text')) {
                  const hidden = Number(getComputedStyle(t).opacity) === 0;
                  if (hidden || Number(t.getAttribute('opacity') ?? 1) === 0) continue;
                  const r = t.getBoundingClientRect();
                  out.push({text: t.textContent, x: r.x, y: r.y, width: r.width, height: r.height});
                }
              }
              return out; }""",
            [plot, axis],
        )
    )


@pytest.mark.parametrize("size", SIZES)
def test_the_histograms_tick_labels_do_not_run_into_each_other(browser: Any, runs: dict[str, Path], size: Any) -> None:
    page = Page(browser, runs["report"], size)
    selects = page.page.locator("figure[data-plot='histogram'] select")
    steps, layers = (selects.nth(k).locator("option").all_inner_texts() for k in (0, 1))
    checked, bad = 0, []
    for step in steps:  # every histogram the page can show
        selects.nth(0).select_option(step)
        for layer in layers:
            selects.nth(1).select_option(layer)
            for what in ("data", "grad", "update"):
                selects.nth(2).select_option(what)
                labels = _axis_labels(page, "histogram", "X")
                assert len(labels) >= 3, (step, layer, what, labels)
                bad += [(step, layer, what, pair) for pair in _readable(labels)]
                checked += 1
    assert checked == 3 * len(steps) * len(layers) >= 9
    assert not bad, bad[:5]
    page.close()


@pytest.mark.parametrize("size", SIZES)
def test_the_line_charts_tick_labels_do_not_run_into_each_other(browser: Any, runs: dict[str, Path], size: Any) -> None:
    for page_name in ("report", "compare"):
        page = Page(browser, runs[page_name], size)
        for plot in ("loss", "gradient flow", "update ratio", "learning rate"):  # the log axes among them
            for axis in ("X", "Y"):
                labels = _axis_labels(page, plot, axis)
                assert len(labels) >= 2, (page_name, plot, axis)
                assert not _readable(labels), (page_name, plot, axis, _readable(labels))
        page.close()


@pytest.mark.parametrize("size", SIZES)
def test_tooltips_name_what_they_show(browser: Any, runs: dict[str, Path], size: Any) -> None:
    page = Page(browser, runs["report"], size)
    tip = page.hover("gradient flow", 10)
    assert "mean |grad|" in tip and "param_abs_grad_mean" not in tip, tip
    tip = page.hover("update ratio", 10)
    assert "log10 update:data" in tip and "update_data_log10" not in tip, tip
    for name in ("MLP/Layer0", "MLP/Layer1", "MLP/Layer2"):  # every layer at the step, TensorBoard-style
        assert name in tip, tip
    page.close()


@pytest.mark.parametrize("size", SIZES)
def test_the_comparison_tooltip_lists_every_run_at_the_step(browser: Any, runs: dict[str, Path], size: Any) -> None:
    page = Page(browser, runs["compare"], size)
    losses = {name: _losses(runs["root"] / name) for name in RUNS}
    for at in (7, 22):
        tip = page.hover("loss", at)
        lines = [ln.strip() for ln in tip.splitlines() if ln.strip()]
        step = int(lines[lines.index("step (loss)") + 1])
        assert step == at, tip
        for name in RUNS:  # each run by name, with its loss at that step
            value = float(lines[lines.index(name) + 1])
            assert math.isclose(value, losses[name][step], rel_tol=1e-3), (name, step, value)
    tip = page.hover("gradient flow", 15)
    assert "mean |grad|" in tip and all(name in tip for name in RUNS), tip
    page.close()


@pytest.mark.parametrize("size", SIZES)
def test_the_status_table_stands_under_its_own_heading(browser: Any, runs: dict[str, Path], size: Any) -> None:
    page = Page(browser, runs["compare"], size)
    headings = page.page.evaluate(
        """() => [...document.querySelectorAll('table')].map(t => {
             let e = t.previousElementSibling; while (e && e.tagName !== 'H2') e = e.previousElementSibling;
             return [t.className, e ? e.textContent : null]; })"""
    )
    assert ["runs", "Runs"] in headings and ["dataframe hparams", "Hyper-parameters that differ"] in headings, headings
    runs_box = page.page.locator("table.runs").bounding_box()
    hparams_heading = page.page.locator("h2", has_text="Hyper-parameters that differ").bounding_box()
    assert runs_box["y"] + runs_box["height"] <= hparams_heading["y"]  # the status table comes first
    status = page.page.locator("table.runs").inner_text()
    assert all(name in status for name in RUNS) and "finished" in status
    page.close()


@pytest.mark.parametrize("size", SIZES)
def test_a_layer_without_relu_is_not_applicable_on_the_dead_relu_chart(
    browser: Any, runs: dict[str, Path], size: Any
) -> None:
    page = Page(browser, runs["report"], size)
    plot = "dead relu"
    legend = page.page.evaluate(
        f"() => [...document.querySelectorAll(\"figure[data-plot='{plot}'] svg .role-legend-label text\")]"
        ".map(t => t.textContent)"
    )
    assert "MLP/Layer2 (not applicable)" in legend and "MLP/Layer0" in legend and "MLP/Layer1" in legend, legend
    # a line for each layer with ReLU units, none for the output layer (not one at 0)
    drawn = page.page.evaluate(
        f"() => [...document.querySelectorAll(\"figure[data-plot='{plot}'] svg g.mark-line path\")]"
        ".filter(p => (p.getAttribute('d') || '').length > 2).map(p => p.getAttribute('stroke'))"
    )
    assert len(drawn) == 2, drawn
    caption = page.page.locator(f"figure[data-plot='{plot}'] figcaption").inner_text()
    assert "MLP/Layer2" in caption and "not applicable" in caption.lower(), caption
    tip = page.hover(plot, 12)
    lines = [ln.strip() for ln in tip.splitlines() if ln.strip()]
    assert lines[lines.index("MLP/Layer2") + 1] == "not applicable", tip
    assert re.fullmatch(r"[0-9.e-]+", lines[lines.index("MLP/Layer0") + 1]), tip
    page.close()
