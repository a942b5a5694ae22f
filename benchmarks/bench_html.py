"""The collapsed HTML view of micrograd's demo step (65.8k nodes) in headless Chromium.

Targets (viewer issue): to_html <= 1 s and <= 10 MB; first draw <= 500 ms; median zoom/pan redraw
<= 30 ms; opening the folded MLP (the stack of its 100 calls) <= 200 ms; search-to-focus of a weight
<= 300 ms; one step of the backward replay on the 984-node sample <= 50 ms. Exporters issue: a
10,000-node trace drawn in full (no collapsing) reaches its first draw in <= 3 s (measured here only:
the browser test checks that it draws, not how fast; here the median of 5). Viewer issue: GPT-2 small
(tests/gpt2_small.py, 124M parameters, 8 tokens, traced forward and backward) first draw <= 500 ms and
opening a block <= 200 ms; 10,000 sibling scopes first draw <= 3 s. Page loads are interleaved across the
pages, round by round (the machine is shared), and each figure is a median. Needs Debian's chromium
(``apt-get install chromium``) and playwright (test extra).
Run: ``make bench`` or ``python benchmarks/bench_html.py``.
"""

from __future__ import annotations

import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import graphtrace as gt
from graphtrace.train import moons_demo, svm_loss

REDRAW = """async () => {
  const net = window.graphtraceNetwork, times = [];
  for (let k = 0; k < 20; k++) {
    const t = performance.now();
    const view = { scale: 0.5 + 0.05 * k, position: { x: 10 * k, y: -5 * k }, animation: false };
    await new Promise(r => { net.once("afterDrawing", r); net.moveTo(view); });
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[10];
}"""
TIMED = """async ([fn, arg]) => {
  const t = performance.now();
  await window[fn](arg);
  return performance.now() - t;
}"""


def main() -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("bench_html: chromium is not installed; skipped")
        return
    from playwright.sync_api import sync_playwright

    model, X, y = moons_demo()
    loss, _ = svm_loss(model, X, y)
    loss.backward()
    G = gt.to_networkx(loss)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "step.html"
        t0 = time.perf_counter()
        gt.to_html(G, path)
        t_html = time.perf_counter() - t0
        size = path.stat().st_size / 1e6
        extra = _extra_pages(Path(d))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            loads: dict[str, list[float]] = {"step": [], **{k: [] for k in extra}}
            for _ in range(5):  # the median of 5 loads of each page, interleaved; the last step page kept open
                for name, target in [("step", path), *extra.items()]:
                    page = browser.new_page(viewport={"width": 1280, "height": 800})
                    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
                    page.goto(target.resolve().as_uri())
                    page.wait_for_function("window.graphtraceFirstDraw !== null", timeout=60_000)
                    loads[name].append(page.evaluate("window.graphtraceFirstDraw"))
                    if name == "step" and len(loads["step"]) == 5:
                        kept = page
                    else:
                        page.close()
            page = kept
            first = statistics.median(loads["step"])
            boxes = page.evaluate("window.graphtraceNetwork.body.data.nodes.length")
            redraw = page.evaluate(REDRAW)
            page.evaluate("window.graphtraceCollapse('MLP[0]')")  # the first view opened the stack: close it
            expand = page.evaluate(TIMED, ["graphtraceExpand", "MLP[0]"])
            search = page.evaluate(TIMED, ["graphtraceSearch", "L1.N3.w2"])
            step = _replay_step(browser, Path(d))
            block = _open_block(browser, extra["gpt2"]) if "gpt2" in extra else None
            full = _full_first_draws(browser, Path(d))
            browser.close()
    rows = [
        ("to_html", f"{t_html:.2f} s", t_html <= 1.0, "<= 1 s"),
        ("file size", f"{size:.1f} MB", size <= 10, "<= 10 MB"),
        (f"first draw ({boxes} boxes), median of 5", f"{first:.0f} ms", first <= 500, "<= 500 ms"),
        ("median zoom/pan redraw", f"{redraw:.1f} ms", redraw <= 30, "<= 30 ms"),
        ("open the folded MLP x100", f"{expand:.0f} ms", expand <= 200, "<= 200 ms"),
        ("search-to-focus of L1.N3.w2", f"{search:.0f} ms", search <= 300, "<= 300 ms"),
        ("replay step, 984-node sample", f"{step:.1f} ms", step <= 50, "<= 50 ms"),
    ]
    if "gpt2" in loads:
        gpt = statistics.median(loads["gpt2"])
        rows.append(("GPT-2 small: first draw, median of 5", f"{gpt:.0f} ms", gpt <= 500, "<= 500 ms"))
        assert block is not None
        rows.append(("GPT-2 small: open a block", f"{block:.0f} ms", block <= 200, "<= 200 ms"))
    sib = statistics.median(loads["siblings"])
    rows.append(("10,000 sibling scopes: first draw", f"{sib:.0f} ms", sib <= 3000, "<= 3 s"))
    full_median = statistics.median(full)
    print(f"collapsed HTML of the demo step ({G.number_of_nodes():,} nodes), headless Chromium, 1280x800:")
    for what, value, ok, target in rows:
        print(f"  {what:<40} {value:>10}  target {target:<9} {'ok' if ok else 'MISSED'}")
    print(
        f"10k-node MLP trace drawn in full: first draw median {full_median:.0f} ms of 5 loads "
        f"({', '.join(f'{t:.0f}' for t in full)}), target <= 3 s {'ok' if full_median <= 3000 else 'MISSED'}"
    )
    sys.stdout.flush()


STEPS = """async () => {
  const times = [];
  for (let k = 1; k <= 12; k++) {
    const t = performance.now();
    await window.graphtraceStep(k);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[6];
}"""


def _replay_step(browser: object, d: Path) -> float:
    """Median time (ms) of one step of the backward replay, drawn, on one sample through the demo MLP
    (984 nodes, collapsed), with a neuron opened so that its nodes show."""
    random.seed(1337)
    model = gt.nn.MLP(2, [16, 16, 1])
    score = model([gt.Value(1.12, label="x0"), gt.Value(0.08, label="x1")])
    loss = (1 + -1 * score).relu()
    loss.label = "loss"
    loss.backward()
    path = gt.to_html(loss, d / "sample.html")
    page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    page.goto(path.resolve().as_uri())
    page.wait_for_function("window.graphtraceFirstDraw !== null", timeout=60_000)
    page.evaluate("window.graphtraceExpand('MLP[0]/Layer1/Neuron3')")
    ms = float(page.evaluate(STEPS))
    page.close()
    return ms


def _extra_pages(d: Path) -> dict[str, Path]:
    """10,000 sibling scopes feeding one sum; GPT-2 small traced (when torch is installed)."""
    x = gt.Value(1.0, label="x")
    outs = []
    for i in range(10_000):
        with gt.scope(f"s{i}"):
            outs.append(x * 2.0)
    root = sum(outs, gt.Value(0.0))
    root.backward()
    pages = {"siblings": gt.to_html(root, d / "siblings.html")}
    try:
        import torch  # noqa: F401
    except ImportError:
        return pages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from gpt2_small import GPT2, traced_step

    pages["gpt2"] = gt.to_html(traced_step(GPT2(), tokens=8), d / "gpt2.html")  # type: ignore[arg-type]
    return pages


OPEN_BLOCK = """async () => {
  const times = [];
  for (let k = 0; k < 5; k++) {
    await window.graphtraceCollapse("GPT2/transformer/h[0]");
    const t = performance.now();
    await window.graphtraceExpand("GPT2/transformer/h[0]");
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[2];
}"""


def _open_block(browser: object, path: Path) -> float:
    """Median time (ms) to open one block of GPT-2 small's folded stack, drawn."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    page.goto(path.resolve().as_uri())
    page.wait_for_function("window.graphtraceFirstDraw !== null", timeout=60_000)
    ms = float(page.evaluate(OPEN_BLOCK))
    page.close()
    return ms


def _full_first_draws(browser: object, d: Path) -> list[float]:
    """First-draw times (ms) of 5 fresh loads of the browser test's 10k-node trace, every node drawn."""
    random.seed(3)
    model = gt.nn.MLP(20, [64, 32, 1])
    out = model([gt.Value(random.uniform(-1, 1), label=f"x{i}") for i in range(20)])
    path = gt.to_html(out, d / "mlp.html", collapse=False)
    times = []
    for _ in range(5):
        page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
        page.goto(path.resolve().as_uri())
        page.wait_for_function("window.graphtraceFirstDraw !== null", timeout=60_000)
        times.append(page.evaluate("window.graphtraceFirstDraw"))
        page.close()
    return times


if __name__ == "__main__":
    main()
