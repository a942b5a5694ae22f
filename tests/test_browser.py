"""The HTML export opened in real headless Chromium (Debian's chromium, driven by playwright).

Skipped only when chromium is missing on a developer machine; CI sets GRAPHTRACE_REQUIRE_BROWSER=1,
which turns a missing browser into a failure.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path
from typing import Any

import chromium
import pytest

import graphtrace as gt
from graphtrace import Value

pytestmark = pytest.mark.browser

sync_api = chromium.sync_api(allow_module_level=True)
PlaywrightTimeout = sync_api.TimeoutError

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "</script><script>alert(1)</script>",
    '" onmouseover="alert(1)',
    "see href=javascript:alert(1) <a href='javascript:alert(1)'>x</a>",
]


class Page:
    """A page with every non-file request aborted, and console errors, failures and dialogs recorded."""

    def __init__(self, browser: Any, size: tuple[int, int] = (1280, 800)) -> None:
        self.page = browser.new_page(viewport={"width": size[0], "height": size[1]})
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.dialogs: list[str] = []
        self.blocked: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))
        self.page.on("dialog", self._dialog)
        self.page.route("**/*", self._route)

    def _dialog(self, d: Any) -> None:
        self.dialogs.append(d.message)
        d.dismiss()

    def _route(self, route: Any) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def open(self, path: Path) -> None:
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_function("window.graphtraceFirstDraw !== null && window.graphtraceFirstDraw !== undefined")


PENDING, PENDING_FONT, CURRENT = "#f4f4f4", "#666666", "#ff7f0e"  # the page's replay marks (legend.js)
DRAWN = """() => { const n = window.graphtraceNetwork, c = n.body.container.getBoundingClientRect(), s = n.getScale();
  return { width: c.width, height: c.height, scale: s,
    items: n.body.data.nodes.get().map(d => {
      const b = n.getBoundingBox(d.id), tl = n.canvasToDOM({x: b.left, y: b.top}),
            br = n.canvasToDOM({x: b.right, y: b.bottom});
      const lines = n.body.nodes[d.id].labelModule.lines || [];  // the text drawn, line by line (no spacer)
      const label = lines.map(l => l.blocks.map(b => b.text).join("").replace(/\u200b/g, ""))
        .filter(t => t.trim() !== "").join("\\n");
      return { id: d.id, label: label, background: d.color.background, border: d.color.border,
               borderWidth: d.borderWidth, font: d.font && d.font.color, pending: !!(d.shapeProperties &&
               d.shapeProperties.borderDashes && d.color.background === "#f4f4f4"),
               left: tl.x, top: tl.y, right: br.x, bottom: br.y, px: 14 * s }; }),
    edges: n.body.data.edges.get().map(e => ({ id: e.id, from: e.from, to: e.to, label: e.text || e.label || "",
      color: e.color && e.color.color })) }; }"""


def _text(label: str) -> str:
    """A box's text as drawn from its vis label (each line a ``<code>`` block, an empty spacer line between two)."""
    return label.replace("<code>", "").replace("</code>", "").replace("\n\n", "\n").replace("\u200b", "")


def _labels(page: Page) -> list[str]:
    """Every box's text as drawn."""
    got = page.page.evaluate("window.graphtraceNetwork.body.data.nodes.get().map(n => n.label)")
    return [_text(x) for x in got]


def drawn(page: Page) -> dict[str, Any]:
    """What the page draws now: every box's label, colours and rectangle (CSS px in the graph's area),
    every edge's label and colour, the scale."""
    return page.page.evaluate(DRAWN)  # type: ignore[no-any-return]


def test_offline_page_draws_every_node_without_errors(browser: Any, tmp_path: Path, seed_root: Value) -> None:
    path = gt.to_html(seed_root, tmp_path / "seed.html")
    page = Page(browser)
    page.open(path)
    drawn = page.page.evaluate("window.graphtraceNetwork.body.data.nodes.length")
    assert drawn == 7
    positions = page.page.evaluate("JSON.stringify(window.graphtraceNetwork.getPositions())")
    assert positions.count('"x"') == 7
    assert page.errors == [] and page.failed == [] and page.blocked == []
    assert page.page.inner_text("#heading") == "graphtrace: L"
    page.page.close()


def _hover_every_node(page: Page, *, click: bool = True) -> list[str]:
    ids = page.page.evaluate("window.graphtraceNetwork.body.data.nodes.getIds()")
    tips = []
    for i in ids:
        # bring the node into view first: a big view opens at a legible zoom, not fitted to the window
        pt = page.page.evaluate(
            """(id) => { const net = window.graphtraceNetwork;
                         net.focus(id, { scale: Math.max(net.getScale(), 0.72), animation: false });
                         return net.canvasToDOM(net.getPosition(id)); }""",
            i,
        )
        box = page.page.locator("#graph").bounding_box()
        page.page.mouse.move(box["x"] + 2, box["y"] + 2)  # leave the previous node so its tooltip hides
        page.page.wait_for_timeout(100)
        page.page.mouse.move(box["x"] + pt["x"], box["y"] + pt["y"])
        tip = page.page.locator("div.vis-tooltip")
        try:  # the tooltip shows after vis-network's hover delay: wait for it, however loaded the machine
            tip.first.wait_for(state="visible", timeout=5_000)
            tips.append(tip.first.inner_text())
        except PlaywrightTimeout:
            pass
        if click:
            page.page.mouse.click(box["x"] + pt["x"], box["y"] + pt["y"])
    return tips


def test_hostile_labels_never_execute_and_show_literally(browser: Any, tmp_path: Path) -> None:
    xs = [Value(float(i + 1), label=h) for i, h in enumerate(HOSTILE)]
    out = (xs[0] * xs[1] + xs[2]) * xs[3]
    out.label = HOSTILE[1]
    path = gt.to_html(out, tmp_path / "hostile.html", title=HOSTILE[0] + " " + HOSTILE[2])
    page = Page(browser)
    page.open(path)
    page.page.wait_for_timeout(200)
    tips = _hover_every_node(page)
    assert page.dialogs == []
    assert page.errors == [] and page.failed == [] and page.blocked == []
    assert page.page.inner_text("#heading") == HOSTILE[0] + " " + HOSTILE[2]
    for h in HOSTILE:
        assert any(t.startswith(h) for t in tips), (h, tips)
    details = page.page.inner_text("#details")
    assert HOSTILE[1] in details or any(h in details for h in HOSTILE)
    assert page.page.evaluate("document.querySelectorAll('img').length") == 0
    page.page.close()


def _mlp_trace(target: int = 10_000) -> Value:
    random.seed(3)
    model = gt.nn.MLP(20, [64, 32, 1])
    x = [Value(random.uniform(-1, 1), label=f"x{i}") for i in range(20)]
    out = model(x)
    out.label = "out"
    return out


def test_ten_thousand_node_trace_draws_every_node(browser: Any, tmp_path: Path) -> None:
    """The full view of a 10k-node trace draws every node, with local grads on hover. How fast it draws
    is a benchmark figure (``make bench``: bench_html.py), never a verdict here: it depends on the machine."""
    out = _mlp_trace()
    G = gt.to_networkx(out)
    assert 9_500 <= G.number_of_nodes() <= 11_000, G.number_of_nodes()
    path = gt.to_html(G, tmp_path / "mlp.html", collapse=False)  # every node
    page = Page(browser)
    page.page.goto(path.resolve().as_uri())
    page.page.wait_for_function(
        "window.graphtraceFirstDraw !== null && window.graphtraceFirstDraw !== undefined", timeout=120_000
    )
    assert page.page.evaluate("window.graphtraceNetwork.body.data.nodes.length") == G.number_of_nodes()
    assert page.errors == [] and page.failed == []
    edge = page.page.evaluate("window.graphtraceNetwork.body.data.edges.get()[0]")
    assert "label" not in edge and edge["title"].startswith("local_grad "), edge  # big: on hover
    page.page.close()


def test_screenshot_for_the_readme(browser: Any, tmp_path: Path) -> None:
    """Renders the seed graph and checks the screenshot is a real picture (not blank)."""
    a, b = Value(2.0, label="a"), Value(-3.0, label="b")
    L = (a * b + 10) * -2
    L.label = "L"
    L.backward()
    page = Page(browser)
    page.open(gt.to_html(L, tmp_path / "shot.html"))
    png = page.page.screenshot()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    page.page.close()


def _count(page: Page) -> int:
    return int(page.page.evaluate("window.graphtraceNetwork.body.data.nodes.length"))


def _click_item(page: Page, item: str, *, double: bool = False) -> None:
    xy = page.page.evaluate(
        """(id) => { const net = window.graphtraceNetwork; const p = net.getPositions([id])[id];
                     const d = net.canvasToDOM(p); const r = document.getElementById("graph").getBoundingClientRect();
                     return [d.x + r.left, d.y + r.top]; }""",
        item,
    )
    before = _count(page)
    if double:
        page.page.mouse.dblclick(xy[0], xy[1])
    else:
        page.page.mouse.click(xy[0], xy[1])
    # a box opens 250 ms after a single click: wait for the view to change, however loaded the machine
    page.page.wait_for_function(
        "(n) => window.graphtraceNetwork.body.data.nodes.length !== n", arg=before, timeout=60_000
    )


def test_a_large_trace_opens_collapsed_and_expands_and_collapses_by_click(
    browser: Any, tmp_path: Path, demo_sample: Value
) -> None:
    loss = demo_sample
    G = gt.to_networkx(loss)
    page = Page(browser)
    page.open(gt.to_html(G, tmp_path / "sample.html"))
    first = _count(page)
    assert 3 <= first <= 60, first
    labels = " ".join(_labels(page))
    for name in ("Layer0", "Layer1", "Layer2", "parameters", "x0", "x1", "loss"):
        assert name in labels, (name, labels)  # inputs -> Layer0 -> Layer1 -> Layer2 -> output
    ids = page.page.evaluate("window.graphtraceNetwork.body.data.nodes.getIds()")
    assert any(i.startswith("s") for i in ids) and "edges; showing" in page.page.inner_text("#stats")
    layer1 = page.page.evaluate(
        "window.graphtraceNetwork.body.data.nodes.get().filter(n => n.label.replace(/<\\/?code>/g, '')"
        ".startsWith('\u25b8 Layer1'))[0].id"
    )
    page.page.evaluate("window.graphtraceNetwork.fit({animation: false})")
    page.page.wait_for_timeout(200)
    _click_item(page, layer1)
    expanded = _count(page)
    assert expanded > first, (first, expanded)
    inner = [i for i in page.page.evaluate("window.graphtraceNetwork.body.data.nodes.getIds()") if i not in ids]
    page.page.evaluate("window.graphtraceNetwork.fit({animation: false})")
    page.page.wait_for_timeout(200)
    _click_item(page, inner[0], double=True)
    assert _count(page) == first
    assert page.errors == [] and page.failed == [] and page.blocked == [] and page.dialogs == []
    page.page.close()


def test_search_expands_the_path_and_focuses_a_weight(browser: Any, tmp_path: Path, demo_sample: Value) -> None:
    page = Page(browser)
    page.open(gt.to_html(demo_sample, tmp_path / "sample.html"))
    result = page.page.evaluate("window.graphtraceSearch('L1.N3.w2')")
    assert result["found"] is True
    selected = page.page.evaluate("window.graphtraceNetwork.getSelectedNodes()")
    assert selected == [result["id"]] and result["id"].startswith("n")
    assert "L1.N3.w2" in page.page.inner_text("#details")
    page.page.fill("#search", "MLP[0]/Layer1/Neuron5")
    page.page.press("#search", "Enter")
    page.page.wait_for_function("() => window.graphtraceNetwork.body.data.nodes.length > 20", timeout=60_000)
    ids = page.page.evaluate("window.graphtraceNetwork.body.data.nodes.getIds()")
    assert len(ids) > 20  # Layer1 of the call is open: its neurons show
    assert page.page.evaluate("window.graphtraceSearch('no such thing')")["found"] is False
    assert page.errors == []
    page.page.close()


def test_colour_by_grad_toggle_recolours_the_view(browser: Any, tmp_path: Path, demo_sample: Value) -> None:
    page = Page(browser)
    page.open(gt.to_html(demo_sample, tmp_path / "sample.html"))

    def colours() -> list[str]:
        return page.page.evaluate(  # type: ignore[no-any-return]
            "window.graphtraceNetwork.body.data.nodes.get().map(n => n.color.background)"
        )

    script = "(b) => JSON.stringify(window.graphtraceNetwork.body.data.nodes.get().map(n => n.color.background)) {} b"
    before = colours()
    page.page.select_option("#gt-colour", "absgrad")
    page.page.wait_for_function(script.format("!=="), arg=json.dumps(before, separators=(",", ":")), timeout=60_000)
    after = colours()
    assert after != before and any(c.startswith("rgb(") for c in after)
    page.page.select_option("#gt-colour", "role")
    page.page.wait_for_function(script.format("==="), arg=json.dumps(before, separators=(",", ":")), timeout=60_000)
    assert colours() == before
    page.page.close()


def test_hostile_scope_names_never_execute_in_the_collapsed_view(browser: Any, tmp_path: Path) -> None:
    random.seed(2)
    model = gt.nn.Layer(2, 2)
    outs = []
    for h in HOSTILE:
        with gt.scope(h.replace("/", "\\")):
            outs.extend(model([Value(1.0, label=h), Value(2.0)]))
    root = sum(outs, Value(0.0))
    path = gt.to_html(root, tmp_path / "hostile_scopes.html", collapse=True)
    page = Page(browser)
    page.open(path)
    tips = _hover_every_node(page, click=False)
    assert page.dialogs == [] and page.errors == [] and page.blocked == []
    assert page.page.evaluate("document.querySelectorAll('img').length") == 0
    for h in HOSTILE:
        assert any(h.replace("/", "\\") in t for t in tips), (h, tips)
    result = page.page.evaluate("(t) => window.graphtraceSearch(t)", HOSTILE[0])
    assert result["found"] is True and HOSTILE[0] in page.page.inner_text("#details")
    page.page.close()


def test_a_name_with_a_bidi_override_cannot_turn_the_text_after_it_around(browser: Any, tmp_path: Path) -> None:
    # U+202E (RIGHT-TO-LEFT OVERRIDE) in a label and a scope: drawn isolated (FSI ... PDI), so what follows
    # the name on the box and in the panel ("data 2", the chain rule) reads left to right as before
    with gt.scope("evil\u202eepocs"):
        w = Value(2.0, label="w\u202egnp.exe")
        out = w * 3.0
    out.label = "out"
    out.backward()
    path = gt.to_html(out, tmp_path / "bidi.html")
    page = Page(browser)
    page.open(path)
    assert page.page.evaluate("(t) => window.graphtraceSearch(t)", "gnp")["found"]
    details = page.page.inner_text("#details")
    assert "\u2068w\u202egnp.exe\u2069" in details and "\u2068evil\u202eepocs\u2069" in details, details
    labels = [d["label"] for d in drawn(page)["items"]]
    assert any(lab.startswith("\u2068w\u202egnp.exe\u2069") for lab in labels), labels
    assert page.errors == [] and page.dialogs == []
    page.page.close()


def test_color_by_a_diff_colours_both_views(browser: Any, tmp_path: Path) -> None:
    x = Value(2.0, label="x")
    up = (x * 3.0).tanh()
    down = x * -1.0
    G1 = gt.to_networkx(up + down)
    x.data = 2.5
    G2 = gt.to_networkx((x * 3.0).tanh() + x * -1.0)
    d = gt.diff(G1, G2)
    values = d.set_index("node_b")["d_data"]
    nid = {str(G2.nodes[n]["op"]) + ":" + str(G2.nodes[n].get("label")): n for n in G2}
    for collapse in (False, True):
        page = Page(browser)
        page.open(gt.to_html(G2, tmp_path / f"diff{collapse}.html", color_by=values, collapse=collapse))
        got = page.page.evaluate(  # by node id (the last line of each tooltip)
            "Object.fromEntries(window.graphtraceNetwork.body.data.nodes.get()"
            ".map(n => [n.title.split('\\n').pop().slice(6), n.color.background]))"
        )
        legend = page.page.inner_text(".legend")
        assert "colour: d_data" in legend and "parameter" not in legend
        assert page.errors == [] and page.blocked == []
        if not collapse:  # x moved up (red), x * -1 moved down (blue), a constant did not move (white)
            assert got[str(x.node_id)].startswith("rgb(255,")
            mul_neg = next(n for k, n in nid.items() if k.startswith("*:") and G2.nodes[n]["data"] < 0)
            assert got[str(mul_neg)].endswith(",255)")
            const = next(n for n in G2 if G2.nodes[n]["role"] == "constant")
            assert got[str(const)] == "#ffffff"
        else:
            assert any(c.startswith("rgb(") for c in got.values())
        page.page.close()


def tmp_steps_loss(path: Path) -> list[float]:
    return [r[0] for r in gt.open_run(path).sql("SELECT loss FROM steps ORDER BY step").fetchall()]


def test_run_report_draws_every_plot_and_the_graph_offline(browser: Any, tmp_path: Path) -> None:
    from graphtrace.report import report

    random.seed(11)
    model = gt.nn.MLP(2, [8, 8, 1])
    data = [[random.uniform(-1, 1), random.uniform(-1, 1)] for _ in range(40)]  # a step of ~5,000 nodes
    with gt.record(tmp_path / "run", model, snapshot_every=3, scopes_every=1) as run:
        for step in range(4):
            loss = sum((model(x) - 1.0) ** 2 for x in data) * (1.0 / len(data))
            model.zero_grad()
            loss.backward()
            for p in model.parameters():
                p.data -= 0.05 * p.grad
            run.log(step, loss, learning_rate=0.05)
    page = Page(browser)
    page.page.goto(report(tmp_path / "run").resolve().as_uri())
    # every plot is drawn (Vega-Lite, as SVG)
    drawn = page.page.evaluate("() => window.graphtraceCharts")
    figures = page.page.evaluate("document.querySelectorAll('figure.plot').length")
    assert drawn == figures == 9  # no accuracy was logged: no accuracy plot
    sizes = page.page.evaluate(
        "[...document.querySelectorAll('figure.plot svg.marks')].map(s => s.getBoundingClientRect().width * "
        "s.getBoundingClientRect().height)"
    )
    assert len(sizes) == 9 and all(a > 10_000 for a in sizes), sizes
    titles = page.page.evaluate(
        "[...document.querySelectorAll('figure.plot svg .role-axis-title')].map(t => t.textContent)"
    )
    assert "mean |grad| of the layer's parameters" in titles and "param_abs_grad_mean" not in titles
    # hovering a point of the loss curve shows its step and value
    loss = float(tmp_steps_loss(tmp_path / "run")[0])
    box = page.page.evaluate(
        "(() => { const p = document.querySelector('figure[data-plot=loss] svg .mark-symbol path');"
        " const r = p.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
    )
    page.page.mouse.move(box[0], box[1])
    page.page.wait_for_function(
        "() => { const t = document.getElementById('vg-tooltip-element');"
        " return t && t.classList.contains('visible'); }",
        timeout=60_000,
    )
    tip = page.page.inner_text("#vg-tooltip-element")
    assert "step" in tip and "loss" in tip and f"{loss:.4g}"[:4] in tip, tip
    # the graph's page is unpacked into its iframe once the iframe scrolls into view
    assert page.page.evaluate("window.graphtraceGraphPage === undefined")
    page.page.locator("#graph").scroll_into_view_if_needed()
    page.page.wait_for_function("() => window.graphtraceGraphPage !== undefined", timeout=60_000)
    assert page.page.evaluate("() => window.graphtraceGraphPage") > 10_000
    frame = page.page.frame_locator("#graph")
    frame.locator("#heading").wait_for(timeout=60_000)
    graph = next(f for f in page.page.frames if f != page.page.main_frame)
    graph.wait_for_function("window.graphtraceFirstDraw !== null && window.graphtraceFirstDraw !== undefined")
    assert graph.evaluate("window.graphtraceNetwork.body.data.nodes.length") > 3
    assert page.errors == [] and page.failed == [] and page.blocked == [] and page.dialogs == []
    page.page.close()


def test_ten_thousand_nested_scopes_draw_and_search(browser: Any, tmp_path: Path, deep_scopes: Any) -> None:
    outs = deep_scopes(10_000, ("s0", "s5000", "s9999"))
    root = outs[0] + outs[1] + outs[2]
    root.label = "root"
    root.backward()
    path = gt.to_html(root, tmp_path / "deep.html", collapse=True)
    assert path.stat().st_size < 2_000_000  # one [parent, segment] pair per scope, no prefix strings
    page = Page(browser)
    page.open(path)
    assert page.errors == [] and page.failed == []
    deepest = "/".join(f"s{i}" for i in range(10_000))
    page.page.evaluate("(name) => window.graphtraceExpand(name)", deepest)
    assert _count(page) >= 3
    assert page.page.evaluate("window.graphtraceSearch('s9999')")["found"] is True
    assert page.errors == []
    page.page.close()


SEED_BACKWARD = [
    ("L", 1.0),
    ("d", -2.0),
    ("f", 4.0),
    ("e", -2.0),
    ("c", -2.0),
    ("a", 6.0),
    ("b", -4.0),
]  # the seed's order


def test_the_backward_pass_replays_from_a_fresh_page_with_the_buttons(
    browser: Any, tmp_path: Path, seed_root: Value
) -> None:
    """From a freshly opened page, each click on the next-step button fills one more gradient in the
    backward order: the nodes not reached yet are drawn as pending ("grad ?", pending colours), the
    current one is marked with the edges its sum runs over, and the panel shows its chain rule."""
    path = gt.to_html(seed_root, tmp_path / "seed.html")
    page = Page(browser)
    page.open(path)
    final = {d["label"].split("\n")[0].split()[0]: d for d in drawn(page)["items"]}
    assert not any(d["pending"] for d in final.values())  # a fresh page shows every gradient
    for k, (name, grad) in enumerate(SEED_BACKWARD, start=1):
        page.page.click("#gt-next")
        view = drawn(page)
        by = {d["label"].split("\n")[0].split()[0]: d for d in view["items"]}
        done = [n for n, _ in SEED_BACKWARD[:k]]
        for n, d in by.items():
            if n in done:
                assert d["label"] == final[n]["label"] and d["background"] == final[n]["background"], (k, n, d)
                assert not d["pending"]
            else:
                assert d["label"].endswith("grad ?") and d["pending"], (k, n, d)
                assert d["background"] == PENDING and d["font"] == PENDING_FONT
        assert by[name]["border"] == CURRENT and by[name]["borderWidth"] == 4
        assert [x for x, d in by.items() if d["border"] == CURRENT] == [name]
        step = page.page.inner_text("#gt-step")
        assert step.startswith(f"step {k}/7: grad({name}) = {grad:g}"), step
        assert f"chain rule: grad({name})" in page.page.inner_text("#details")
        highlighted = [e for e in view["edges"] if e["color"] == CURRENT]
        assert [e["from"] for e in highlighted] == [by[name]["id"]] * len(highlighted)
        assert len(highlighted) == (0 if name == "L" else 1)
    assert page.errors == [] and page.blocked == []
    page.page.close()


@pytest.mark.parametrize(
    ("button", "pending"),
    [("#gt-first", 7), ("#gt-prev", 1), ("#gt-last", 0), ("#gt-next", 6)],
)
def test_every_replay_button_draws_the_same_picture_from_a_fresh_page(
    browser: Any, tmp_path: Path, seed_root: Value, button: str, pending: int
) -> None:
    page = Page(browser)
    page.open(gt.to_html(seed_root, tmp_path / "seed.html"))
    page.page.click(button)
    got = drawn(page)["items"]
    assert sum(d["label"].endswith("grad ?") for d in got) == pending
    assert sum(d["background"] == PENDING for d in got) == pending
    # the same picture as the script entry point gives for that step
    step = {"#gt-first": 0, "#gt-prev": 6, "#gt-last": 7, "#gt-next": 1}[button]
    other = Page(browser)
    other.open(gt.to_html(seed_root, tmp_path / "seed2.html"))
    other.page.evaluate("(n) => window.graphtraceStep(n)", step)
    assert [(d["label"], d["background"], d["border"]) for d in drawn(other)["items"]] == [
        (d["label"], d["background"], d["border"]) for d in got
    ]
    page.page.close()
    other.page.close()


def test_play_greys_everything_first_and_then_fills_in_order(browser: Any, tmp_path: Path, seed_root: Value) -> None:
    page = Page(browser)
    page.open(gt.to_html(seed_root, tmp_path / "seed.html"))
    page.page.click("#gt-play")
    seen = set()
    while True:  # the labels always agree with the step the header shows
        snap = page.page.evaluate(
            """() => [document.getElementById("gt-step").textContent,
                      window.graphtraceNetwork.body.data.nodes.get().filter(n => n.label.replace(/<\\/?code>/g, "")
                        .endsWith("grad ?")).length]"""
        )
        k = int(snap[0].split("/")[0].split()[1])
        assert snap[1] == 7 - k, snap
        seen.add(k)
        if k == 7:
            break
        page.page.wait_for_timeout(100)
    assert 0 in seen and len(seen) >= 5, seen
    page.page.close()


def test_the_step_entry_point_takes_integers_only_and_the_buttons_keep_working(
    browser: Any, tmp_path: Path, seed_root: Value
) -> None:
    page = Page(browser)
    page.open(gt.to_html(seed_root, tmp_path / "seed.html"))
    for bad in ("2.5", "NaN", "'2'", "Infinity", "null"):
        err = page.page.evaluate(f"window.graphtraceStep({bad}).then(() => 'accepted', e => e.name + ': ' + e.message)")
        assert err.startswith("TypeError: graphtraceStep: the step must be an integer"), (bad, err)
    assert page.page.inner_text("#gt-step") == ""  # nothing moved
    assert not any(d["label"].endswith("grad ?") for d in drawn(page)["items"])
    page.page.click("#gt-next")
    page.page.click("#gt-next")
    assert page.page.inner_text("#gt-step").startswith("step 2/7: grad(d) = -2")
    assert sum(d["label"].endswith("grad ?") for d in drawn(page)["items"]) == 5
    assert page.page.evaluate("(n) => window.graphtraceStep(n)", 99)["step"] == 7  # integers are clamped
    assert page.errors == []
    page.page.close()


def _replay_all(page: Page) -> list[str]:
    """Click the next-step button until the last step; per step, check every box's label and colour
    (pending until its turn, its final picture after) and return the items in the order they filled."""
    final = {d["id"]: d for d in drawn(page)["items"]}
    order: list[str] = []
    total = len(final)
    for k in range(1, total + 1):
        page.page.click("#gt-next")
        view = drawn(page)
        current = [d["id"] for d in view["items"] if d["border"] == CURRENT]
        assert len(current) == 1, (k, current)
        order.append(current[0])
        assert page.page.inner_text("#gt-step").startswith(f"step {k}/{total}: "), page.page.inner_text("#gt-step")
        for d in view["items"]:
            if d["id"] in order:
                assert d["label"] == final[d["id"]]["label"] and not d["pending"], (k, d)
            else:
                assert d["pending"] and d["background"] == PENDING, (k, d)
                assert d["label"].splitlines()[-1].endswith("?"), (k, d["label"])
    return order


def _reverse_topological(order: list[str], edges: list[dict[str, Any]]) -> None:
    at = {x: k for k, x in enumerate(order)}
    for e in edges:  # a user gets its gradient before each of its operands
        assert at[e["to"]] < at[e["from"]], (e, order)


def test_on_a_folded_page_boxes_fill_after_everything_between_them_and_the_output(
    browser: Any, tmp_path: Path, demo_sample: Value
) -> None:
    page = Page(browser)
    page.open(gt.to_html(demo_sample, tmp_path / "sample.html"))
    view = drawn(page)
    assert any(d["id"].startswith("s") for d in view["items"])  # boxes and nodes
    order = _replay_all(page)
    labels = {d["id"]: d["label"] for d in view["items"]}
    assert labels[order[0]].startswith("loss")
    _reverse_topological(order, view["edges"])
    assert page.errors == []
    page.page.close()


def test_a_folded_training_step_replays_box_by_box(browser: Any, tmp_path: Path) -> None:
    from graphtrace.train import moons_demo, svm_loss

    model, X, y = moons_demo(samples=40)
    loss, _ = svm_loss(model, X, y)
    loss.backward()
    page = Page(browser)
    page.open(gt.to_html(loss, tmp_path / "step.html"))
    view = drawn(page)
    order = _replay_all(page)
    labels = {d["id"]: d["label"] for d in view["items"]}
    assert labels[order[0]].startswith("\u25b8 (outside any scope)")  # the loss is computed outside the model
    # open Layer1 x40 with a click: only boxes show, and they replay one by one
    layer1 = next(d for d in view["items"] if d["label"].startswith("\u25b8 Layer1 \u00d740"))
    _click_item(page, layer1["id"])
    inner = drawn(page)
    assert all(d["label"].startswith(("\u25b8", "\u25a4")) for d in inner["items"]), inner["items"]
    order = _replay_all(page)
    assert len(order) == len(inner["items"]) > len(view["items"])
    assert page.errors == []
    page.page.close()


def test_a_torch_page_replays_with_pending_gradient_norms(browser: Any, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    with gt.pytorch.trace(cnn) as tr:
        cnn(torch.randn(2, 3, 8, 8)).square().mean().backward()
    page = Page(browser)
    page.open(gt.to_html(tr.graph, tmp_path / "cnn.html"))
    view = drawn(page)
    order = _replay_all(page)
    labels = {d["id"]: d["label"] for d in view["items"]}
    assert labels[order[0]].startswith("mean")
    _reverse_topological(order, view["edges"])
    page.page.click("#gt-first")
    assert all(
        d["label"].endswith("\u2207 ?") or d["label"].endswith("\u2016\u2207\u2016 ?") for d in drawn(page)["items"]
    )
    assert page.errors == []
    page.page.close()


def test_a_click_shows_the_chain_rule_with_its_numbers(browser: Any, tmp_path: Path, seed_root: Value) -> None:
    page = Page(browser)
    page.open(gt.to_html(seed_root, tmp_path / "seed.html"))
    page.page.evaluate("window.graphtraceSearch('e')")
    details = page.page.inner_text("#details")
    # grad(e) = local_grad(e -> d) * grad(d) = 1 * -2
    assert "chain rule: grad(e)" in details and "1 \u00d7 -2 = -2" in details, details
    # the user is "user", never a letter the seed names a node by (it read "over its users c: ... grad(c)")
    assert "\u03a3 over its users: local_grad(e \u2192 user) \u00b7 grad(user)" in details, details
    assert page.page.get_attribute("#details [data-sum]", "data-sum") == "-2"
    page.page.click("#details [data-term] a")  # the link to the child d
    assert "chain rule: grad(d)" in page.page.inner_text("#details")
    assert page.page.evaluate("window.graphtraceNetwork.getSelectedNodes()") != []
    page.page.evaluate("window.graphtraceSearch('L')")  # the output: its grad is the seed, no sum over users
    head = page.page.inner_text("#details").splitlines()
    assert any(line.startswith("chain rule: grad(L) is the seed 1") for line in head), head
    assert not any("\u03a3" in line for line in head), head
    page.page.close()


def test_colour_scales_are_drawn_with_their_ends_and_the_png_button_saves_a_picture(
    browser: Any, tmp_path: Path, seed_root: Value
) -> None:
    page = Page(browser)
    page.open(gt.to_html(seed_root, tmp_path / "seed.html"))
    page.page.select_option("#gt-colour", "grad")
    assert page.page.get_attribute("#gt-scale", "data-low") == "-6"
    assert page.page.get_attribute("#gt-scale", "data-high") == "6"
    colours = page.page.evaluate("window.graphtraceNetwork.body.data.nodes.get().map(n => n.color.background)")
    assert len(set(colours)) >= 4
    # a page without scopes has no box to open: its first hint does not speak of boxes
    assert "box" not in page.page.inner_text("#details"), page.page.inner_text("#details")
    page.page.select_option("#gt-colour", "absgrad")
    # the smallest |grad| (L's, 1) is not drawn white like a zero gradient would be
    drawn = [
        [_text(t), c]
        for t, c in page.page.evaluate(
            "window.graphtraceNetwork.body.data.nodes.get().map(n => [n.label, n.color.background])"
        )
    ]
    low = [bg for label, bg in drawn if label.split()[0] == "L"]
    assert low and low[0] not in ("#ffffff", "rgb(255,255,255)"), drawn
    # the ends of the log scale as the magnitudes they are (they read "1e0.8" before)
    assert page.page.get_attribute("#gt-scale", "data-high") == "6"
    assert page.page.get_attribute("#gt-scale", "data-low") == "1"
    assert page.page.inner_text("#gt-scale").split() == ["1", "6"], page.page.inner_text("#gt-scale")
    with page.page.expect_download() as info:
        page.page.click("#gt-png")
    png = Path(info.value.path()).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    assert page.errors == [] and page.blocked == []
    page.page.close()


def test_the_collapsed_view_replays_the_opened_scope_and_sums_a_parameters_terms(browser: Any, tmp_path: Path) -> None:
    random.seed(1337)
    model = gt.nn.MLP(2, [4, 1])
    loss = sum((1 + -1.0 * model([Value(0.5 * k), Value(-1.0 + k)])).relu() for k in range(20))
    loss.label = "loss"
    loss.backward()
    G = gt.to_networkx(loss)
    page = Page(browser)
    page.open(gt.to_html(G, tmp_path / "batch.html"))
    # a weight used by all 20 samples: its chain rule lists one term per sample, summing to its grad
    w = model.parameters()[0]
    page.page.evaluate("(t) => window.graphtraceSearch(t)", w.label)
    details = page.page.inner_text("#details")
    assert f"chain rule: grad({w.label})" in details
    # one grouped line for the 20 alike users, expandable into one term per sample
    assert "20\u00d7 mul in 20 instances: MLP[0]/Layer0/Neuron0 \u2026 MLP[19]/Layer0/Neuron0" in details, details
    assert "over 20 terms" in details and page.page.get_attribute("#details [data-group]", "data-group") == "20"
    assert page.page.locator("#details details [data-term]").first.is_hidden()
    page.page.click("#details details summary")
    terms = page.page.locator("#details details [data-term]")
    assert terms.count() == 20 and terms.nth(3).is_visible() and terms.nth(3).inner_text().strip().startswith("MLP[3]/")
    total = float(page.page.get_attribute("#details [data-sum]", "data-sum"))  # type: ignore[arg-type]
    assert total == pytest.approx(w.grad, rel=1e-9, abs=1e-12)
    # open one sample's call and replay the backward pass over the nodes shown
    page.page.evaluate("window.graphtraceExpand('MLP[3]/Layer0/Neuron1')")
    shown = page.page.evaluate("window.graphtraceNetwork.body.data.nodes.length")  # boxes and nodes
    # the open scopes are nested containers (compound layout) and every node shown lies inside the innermost
    # (the search above opened the weight's scope under "parameters": its containers are drawn too)
    clusters = page.page.evaluate("window.graphtraceClusters()")
    labels = [(c["label"], c["depth"]) for c in clusters]
    chain = [("\u25a4 MLP \u00d720: instance 3 (MLP[3])", 0), ("Layer0", 1), ("Neuron1", 2)]
    assert [x for x in labels if x in chain] == chain, labels
    inner = clusters[labels.index(chain[-1])]
    positions = page.page.evaluate(
        "(() => { const net = window.graphtraceNetwork, p = net.getPositions();"
        " return net.body.data.nodes.get().filter(n => n.title.includes('\\nscope: MLP[3]/Layer0/Neuron1\\n'))"
        ".map(n => p[n.id]); })()"
    )
    assert len(positions) >= 5  # the neuron's nodes (its weights are in the parameters scope)
    for q in positions:
        assert abs(q["x"] - inner["x"]) <= inner["width"] / 2 and abs(q["y"] - inner["y"]) <= inner["height"] / 2, (
            q,
            inner,
        )
    first = page.page.evaluate("window.graphtraceStep(1)")
    assert first["of"] == shown and first["step"] == 1
    last = page.page.evaluate("(n) => window.graphtraceStep(n)", shown)
    assert last["step"] == shown and isinstance(last["grad"], (int, float))  # (JSON: 0.0 arrives as 0)
    labels = _labels(page)
    assert not any(label.endswith("grad ?") for label in labels)
    page.page.evaluate("window.graphtraceStep(2)")
    labels = _labels(page)
    assert sum(label.endswith("grad ?") for label in labels) == shown - 2
    page.page.select_option("#gt-colour", "grad")
    assert page.page.get_attribute("#gt-scale", "data-high") not in (None, "0")
    assert page.errors == [] and page.blocked == []
    page.page.close()


def test_the_training_step_opens_folded_legible_and_an_instance_shows_its_values(browser: Any, tmp_path: Path) -> None:
    from graphtrace.train import moons_demo, svm_loss

    model, X, y = moons_demo(samples=40)
    loss, _ = svm_loss(model, X, y)
    loss.label = "loss"
    loss.backward()
    G = gt.to_networkx(loss)
    page = Page(browser)
    page.open(gt.to_html(G, tmp_path / "step.html"))
    labels = _labels(page)
    assert len(labels) <= 15, labels
    assert any("\u00d740" in label for label in labels), labels  # the 40 samples' calls are one stack
    assert page.page.evaluate("window.graphtraceNetwork.getScale()") * 14 >= 10  # labels >= 10 CSS px
    # pick sample 17 and open its last layer: the neuron's output is that sample's own
    got = page.page.evaluate("window.graphtracePick(17, 'MLP')")
    assert got == {"instance": 17, "of": 40, "scope": "MLP[17]"}
    page.page.evaluate("window.graphtraceExpand('MLP[17]/Layer2/Neuron0')")
    out = [d for _, d in sorted(G.nodes(data=True)) if d["scope"] == "MLP[17]/Layer2/Neuron0"][-1]  # its output
    titles = page.page.evaluate("window.graphtraceNetwork.body.data.nodes.get().map(n => n.title)")
    assert any(t.startswith(out["label"] + "\n") and f"data: {out['data']!r}\n" in t for t in titles), out
    shown = _labels(page)
    assert any("\u00d740" in label for label in shown)  # boxes of the other scopes still summarise all 40
    assert page.errors == [] and page.blocked == []
    page.page.close()


def test_the_collapsed_page_carries_every_number_bit_for_bit(browser: Any, tmp_path: Path) -> None:
    """The collapsed page's columns (base64 float64, distinct values plus an index, narrow integer
    types) decode to exactly the graph's numbers, ids and names: NaN, the infinities, -0.0, subnormals
    and repeated values included."""
    import math

    import networkx as nx

    values = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 0.1 + 0.2, 1.0, 1.0, -2.5, 1e300]
    ids: list[Any] = [70_000 + k for k in range(len(values) - 2)] + [-5, "str-id"]
    G = nx.DiGraph()
    for k, (n, v) in enumerate(zip(ids, values, strict=True)):
        G.add_node(n, label=f"n{k} {HOSTILE[k % len(HOSTILE)]}", op="" if k < 3 else "mul", data=v, grad=values[-1 - k])
    for k in range(3, len(ids)):
        G.add_edge(ids[k - 3], ids[k], local_grad=values[(k + 4) % len(values)])
        G.add_edge(ids[k - 1], ids[k], local_grad=1.0)
    page = Page(browser)
    page.open(gt.to_html(G, tmp_path / "numbers.html", collapse=True))
    titles = page.page.evaluate("window.graphtraceNetwork.body.data.nodes.get().map(n => n.title)")
    assert len(titles) == len(ids)
    seen = {}
    for t in titles:
        fields = dict(line.split(": ", 1) for line in t.split("\n") if ": " in line)
        seen[fields["node"]] = (fields["data"], fields["grad"])
    for n, a in G.nodes(data=True):
        data, grad = seen[str(n)]
        for shown, want in ((data, a["data"]), (grad, a["grad"])):
            got = float(shown)
            assert (math.isnan(got) and math.isnan(want)) or (
                got == want and math.copysign(1, got) == math.copysign(1, want)
            ), (n, shown, want)
    # every edge's local_grad, as the chain-rule panel lists it for each result
    for n in ids[3:]:
        page.page.evaluate("(t) => window.graphtraceSearch(t)", G.nodes[n]["label"])
        details = page.page.inner_text("#details")
        for u in G.predecessors(n):
            assert G.nodes[u]["label"] in details
    assert page.errors == [] and page.dialogs == [] and page.blocked == []
    page.page.close()


def test_only_instances_with_the_same_ops_fold_into_a_stack(browser: Any, tmp_path: Path) -> None:
    """Two calls with the same node count and children but different ops stay two boxes; the same ops fold."""

    def trace(second_op: str) -> Value:
        x, y, z = Value(1.0, label="x"), Value(2.0, label="y"), Value(3.0, label="z")
        with gt.scope("Block[0]"):
            a = (x * y) * z
        with gt.scope("Block[1]"):
            b = (x * y) * z if second_op == "mul" else (x + y) + z
        out = a + b
        out.label = "out"
        out.backward()
        return out

    labels = {}
    for op in ("mul", "add"):
        page = Page(browser)
        page.open(gt.to_html(trace(op), tmp_path / f"fold_{op}.html", collapse=True))
        page.page.evaluate("window.graphtraceExpand('Block[0]')")
        labels[op] = [c["label"] for c in page.page.evaluate("window.graphtraceClusters()")]
        assert page.errors == []
        page.page.close()
    assert labels["mul"] == ["\u25a4 Block \u00d72: instance 0 (Block[0])"], labels
    assert "Block[0]" in labels["add"] and not any("\u00d7" in x for x in labels["add"]), labels


def test_a_torch_resnet_page_shows_shapes_and_tensor_summaries(browser: Any, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from torch_models import ResNet18

    torch.manual_seed(0)
    model = ResNet18(classes=10)
    with gt.pytorch.trace(model) as tr:
        loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([1, 2]))
        loss.backward()
    page = Page(browser)
    page.open(gt.to_html(tr.graph, tmp_path / "resnet.html", collapse=True))
    # layer1's two blocks have the same structure and fold into one stack; layer2's differ (the first
    # downsamples) and stay apart
    labels = _labels(page)
    page.page.evaluate("window.graphtraceExpand('ResNet18/layer1[0]/conv1')")
    clusters = [c["label"] for c in page.page.evaluate("window.graphtraceClusters()")]
    assert "\u25a4 layer1 \u00d72: instance 0 (layer1[0])" in clusters, (clusters, labels)
    page.page.evaluate("window.graphtraceExpand('ResNet18/layer2[0]')")
    boxes = _labels(page)
    assert not any("layer2 \u00d7" in b for b in boxes), boxes
    titles = [
        [_text(t), tip]
        for t, tip in page.page.evaluate("window.graphtraceNetwork.body.data.nodes.get().map(n => [n.label, n.title])")
    ]
    # conv1 opened: its convolution and, beside it, the weight it owns (a parameter sits in its module)
    conv = [t for label, t in titles if label.startswith("convolution  2×64×8×8")]
    assert conv, titles
    assert any(label.startswith("layer1.0.conv1.weight  64×64×3×3") for label, _ in titles), titles
    # a scope of one node is drawn as that node, named after its module: "relu · relu"
    assert any(label.startswith("relu \u00b7 relu  2×64×8×8") for label, _ in titles), titles
    assert "shape: 2×64×8×8" in conv[0] and "dtype: float32" in conv[0] and "data: mean " in conv[0]
    assert "grad: mean " in conv[0]
    assert page.errors == [] and page.blocked == []
    page.page.close()


# ---- every first view fits and reads (#27 item 2) -------------------------------------------------------
SIZES = [(1280, 800), (1920, 1080)]


def _first_view_pages(tmp: Path) -> dict[str, Path]:
    """The pages a newcomer opens first: the seed, one sample and a whole training step of the demo MLP,
    a small CNN, a 6-block GPT-style model and a ResNet-18 traced with gt.pytorch.trace."""
    import random

    from graphtrace.train import moons_demo, svm_loss

    a, b, c, f = Value(2.0, label="a"), Value(-3.0, label="b"), Value(10.0, label="c"), Value(-2.0, label="f")
    e = a * b
    e.label = "e"
    d = e + c
    d.label = "d"
    L = d * f
    L.label = "L"
    L.backward()
    out = {"seed": gt.to_html(L, tmp / "seed.html")}
    random.seed(1337)
    model = gt.nn.MLP(2, [16, 16, 1])
    s = (1 + -1 * model([Value(1.12, label="x0"), Value(0.08, label="x1")])).relu()
    s.label = "loss"
    s.backward()
    out["sample"] = gt.to_html(s, tmp / "sample.html")
    model, X, y = moons_demo()
    loss, _ = svm_loss(model, X, y)
    loss.backward()
    out["step"] = gt.to_html(loss, tmp / "step.html")
    try:
        import torch
        from torch import nn
    except ImportError:
        return out
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from gpt2_small import GPT2, traced_step

    torch.manual_seed(0)
    cnn = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 10),
    )  # fmt: skip
    with gt.pytorch.trace(cnn) as tr:
        cnn(torch.randn(2, 3, 16, 16)).square().mean().backward()
    out["cnn"] = gt.to_html(tr.graph, tmp / "cnn.html")
    from torch_models import ResNet18

    resnet = ResNet18(classes=10)
    with gt.pytorch.trace(resnet) as tr:
        x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
        torch.nn.functional.cross_entropy(resnet(x), y).backward()
    out["resnet"] = gt.to_html(tr.graph, tmp / "resnet.html")
    gpt = GPT2(n_layer=6, n_head=4, n_embd=64, vocab_size=256, block_size=32)
    out["gpt"] = gt.to_html(traced_step(gpt), tmp / "gpt.html")  # type: ignore[arg-type]
    return out


@pytest.fixture(scope="module")
def first_view_pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _first_view_pages(tmp_path_factory.mktemp("first_views"))


def _inside(view: dict[str, Any], items: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The items drawn (or of ``items``) whose rectangle is not wholly inside the graph's area."""
    return [
        d
        for d in (view["items"] if items is None else items)
        if d["left"] < -1 or d["top"] < -1 or d["right"] > view["width"] + 1 or d["bottom"] > view["height"] + 1
    ]


@pytest.mark.parametrize("size", SIZES, ids=["1280x800", "1920x1080"])
@pytest.mark.parametrize("name", ["seed", "sample", "step", "cnn", "gpt"])
def test_every_first_view_fits_the_window_and_reads(
    browser: Any, first_view_pages: dict[str, Path], name: str, size: tuple[int, int]
) -> None:
    if name not in first_view_pages:
        pytest.skip("torch is not installed")
    page = Page(browser, size)
    page.open(first_view_pages[name])
    view = drawn(page)
    assert _inside(view) == [], _inside(view)  # every box wholly inside the graph's area
    assert all(d["px"] >= 10 for d in view["items"]), view["scale"]  # labels >= 10 CSS px
    assert len(view["items"]) <= (7 if name == "seed" else 15)
    if name == "seed":  # a small graph is zoomed to fill the window, not left at 8% of it
        width = max(d["right"] for d in view["items"]) - min(d["left"] for d in view["items"])
        height = max(d["bottom"] for d in view["items"]) - min(d["top"] for d in view["items"])
        assert width > 0.45 * view["width"] or height > 0.45 * view["height"], (width, height, view["width"])
    # the fit button brings everything back after the view was moved away
    page.page.evaluate("window.graphtraceNetwork.moveTo({position: {x: 5000, y: -3000}, scale: 3, animation: false})")
    assert len(_inside(drawn(page))) == len(view["items"])
    page.page.click("#gt-fit")
    again = drawn(page)
    assert _inside(again) == [] and all(d["px"] >= 10 for d in again["items"])
    assert page.errors == [] and page.blocked == []
    page.page.close()


@pytest.mark.parametrize("size", SIZES, ids=["1280x800", "1920x1080"])
def test_the_fit_button_shows_everything_after_a_box_is_opened(
    browser: Any, first_view_pages: dict[str, Path], size: tuple[int, int]
) -> None:
    page = Page(browser, size)
    page.open(first_view_pages["sample"])
    page.page.evaluate("window.graphtraceExpand('MLP[0]/Layer1')")
    opened = drawn(page)
    assert len(opened["items"]) > 15  # Layer1's 16 neurons and the rest: more than fits legibly at 1280
    page.page.click("#gt-fit")
    view = drawn(page)
    assert _inside(view) == [], [d["label"] for d in _inside(view)]
    assert len(view["items"]) == len(opened["items"]) and page.errors == []
    page.page.close()


def test_a_minus_inf_attention_mask_is_contained_and_a_real_nan_is_still_an_anomaly(
    browser: Any, tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    q = torch.randn(4, 4, requires_grad=True)
    mask = torch.tril(torch.ones(4, 4, dtype=torch.bool))
    with gt.pytorch.trace() as tr:  # causal attention's mask: -inf above the diagonal, finite after softmax
        att = (q @ q.T).masked_fill(~mask, float("-inf")).softmax(-1)
        att.sum().backward()
    page = Page(browser)
    page.open(gt.to_html(tr.graph, tmp_path / "mask.html", collapse=False))
    items = {d["label"].split("  ")[0]: d for d in drawn(page)["items"]}
    assert items["masked_fill"]["border"] != "#d62728", items["masked_fill"]
    assert all(d["border"] != "#d62728" for d in items.values()), items
    assert page.page.evaluate("window.graphtraceSearch('masked_fill')")["found"]
    assert "contained: every op using this value gave finite values" in page.page.inner_text("#details")
    page.page.close()
    with gt.pytorch.trace() as tr:  # a NaN that reaches the loss is an anomaly, as before
        (q.log() * 2).sum().backward()
    page = Page(browser)
    page.open(gt.to_html(tr.graph, tmp_path / "nan.html", collapse=False))
    items = {d["label"].split("  ")[0]: d for d in drawn(page)["items"]}
    assert items["log"]["border"] == "#d62728" and items["mul"]["border"] == "#d62728", items
    page.page.close()


def test_the_replay_of_a_bag_of_parameters_gives_the_range_its_box_shows(
    browser: Any, first_view_pages: dict[str, Path]
) -> None:
    page = Page(browser)
    page.open(first_view_pages["sample"])
    page.page.click("#gt-last")
    status = page.page.inner_text("#gt-step")
    box = next(d for d in drawn(page)["items"] if "parameters" in d["label"])
    shown = box["label"].split("\n")[2].split(" ", 1)[1]  # "grad -3.035 … 0 … 2.791" on the box
    assert "\u2026" in shown and status.endswith("parameters done, grad " + shown), (status, shown)
    panel = page.page.inner_text("#details")
    assert "grad min \u2026 median \u2026 max: " + shown in panel and "output" not in panel, panel
    page.page.close()


# what is written on the graph, as rectangles in CSS px of the graph's area: every box (its label is its
# rectangle), every number drawn on an edge, every container's name (drawn at the top left of its frame)
WRITTEN = """() => { const n = window.graphtraceNetwork;
  const dom = (l, t, r, b) => { const a = n.canvasToDOM({x: l, y: t}), c = n.canvasToDOM({x: r, y: b});
                                return {left: a.x, top: a.y, right: c.x, bottom: c.y}; };
  const boxes = n.body.data.nodes.get().map(d => { const b = n.getBoundingBox(d.id);
    const first = (n.body.nodes[d.id].labelModule.lines || [])[0];  // the first line drawn
    const text = first ? first.blocks.map(k => k.text).join("") : "";
    return Object.assign({kind: "box", text: text}, dom(b.left, b.top, b.right, b.bottom)); });
  const numbers = window.graphtraceEdgeLabels ? window.graphtraceEdgeLabels().map(l =>
      ({kind: "edge", text: l.text, left: l.left, top: l.top, right: l.right, bottom: l.bottom}))
    : Object.values(n.body.edges).filter(e => e.options.label).map(e => { const z = e.labelModule.size;
      return Object.assign({kind: "edge", text: e.options.label},
                           dom(z.left, z.top, z.left + z.width, z.top + z.height)); });
  const ctx = document.createElement("canvas").getContext("2d");
  ctx.font = "14px ui-monospace, monospace";
  const names = window.graphtraceClusters().map(c => { const x = c.x - c.width / 2 - 10, y = c.y - c.height / 2 - 22;
    return Object.assign({kind: "name", text: c.label},
                         dom(x + 6, y + 4, x + 6 + ctx.measureText(c.label).width, y + 18)); });
  return boxes.concat(numbers, names); }"""


def _overlapping(written: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The pairs of things written on the graph whose rectangles overlap (by more than 1 px each way)."""
    out = []
    for j, a in enumerate(written):
        for b in written[j + 1 :]:
            w = min(a["right"], b["right"]) - max(a["left"], b["left"])
            h = min(a["bottom"], b["bottom"]) - max(a["top"], b["top"])
            if w > 1 and h > 1:
                out.append((f"{a['kind']} {a['text']}", f"{b['kind']} {b['text']}"))
    return out


def _reaches(edges: list[dict[str, Any]], a: str, b: str) -> bool:
    step: dict[str, list[str]] = {}
    for e in edges:
        step.setdefault(e["from"], []).append(e["to"])
    seen, todo = {a}, [a]
    while todo:
        for nxt in step.get(todo.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return b in seen


@pytest.mark.parametrize("size", SIZES, ids=["1280x800", "1920x1080"])
@pytest.mark.parametrize("name", ["resnet", "gpt", "cnn", "step"])
def test_a_models_first_view_shows_its_parts_inside_the_window_at_11px_with_nothing_written_over(
    browser: Any, first_view_pages: dict[str, Path], name: str, size: tuple[int, int]
) -> None:
    """As TensorBoard's graph dashboard: the model's own modules, repeated blocks grouped "×N", the whole
    hierarchy on the screen, every box's label, every number on an edge and every container's name
    readable and clear of each other."""
    if name not in first_view_pages:
        pytest.skip("torch is not installed")
    page = Page(browser, size)
    page.open(first_view_pages[name])
    view = drawn(page)
    written = page.page.evaluate(WRITTEN)
    assert _inside(view) == [], _inside(view)  # every box wholly inside the graph's area
    assert all(d["px"] >= 11 for d in view["items"]), view["scale"] * 14  # labels >= 11 CSS px
    assert _overlapping(written) == []
    labels = [d["label"].split("\n")[0] for d in view["items"]]
    shown = " | ".join(labels)

    def box(name: str) -> dict[str, Any] | None:  # a module drawn as a box, or as its one op ("relu · relu")
        return next(
            (
                d
                for d in view["items"]
                if d["label"].startswith(("\u25b8 " + name + "  ", "\u25a4 " + name + "  ", name + " \u00b7 "))
            ),
            None,
        )

    if name == "resnet":  # ResNet18's children, layer1's two alike blocks as one stack
        for module in ("conv1", "bn1", "maxpool", "layer1 \u00d72", "layer2", "layer3", "layer4", "avgpool", "fc"):
            assert box(module) is not None, (module, shown)
        assert box("layer1 \u00d72")["id"].startswith("g")  # type: ignore[index]
    if name == "gpt":  # embedding -> the six blocks as one box -> the head
        stack, head = box("h \u00d76"), box("lm_head")
        embedding = next((d for d in view["items"] if d["label"].startswith("wte \u00b7 embedding")), None)
        assert stack is not None and head is not None and embedding is not None, shown
        assert _reaches(view["edges"], embedding["id"], stack["id"]) and _reaches(
            view["edges"], stack["id"], head["id"]
        )
    if name == "cnn":  # a small model fills the window in one direction at least, zoomed to fit
        width = max(d["right"] for d in view["items"]) - min(d["left"] for d in view["items"])
        height = max(d["bottom"] for d in view["items"]) - min(d["top"] for d in view["items"])
        assert width > 0.85 * view["width"] or height > 0.85 * view["height"], (
            width,
            height,
            view["width"],
            view["height"],
        )
        assert len(labels) >= 9, shown  # its layers, not one box
    assert page.errors == [] and page.blocked == []
    page.page.close()


@pytest.mark.parametrize("size", SIZES, ids=["1280x800", "1920x1080"])
def test_opening_a_box_keeps_what_it_opened_in_view(
    browser: Any, first_view_pages: dict[str, Path], size: tuple[int, int]
) -> None:
    if "gpt" in first_view_pages:  # the stack of blocks opens into one block, all of it in view
        page = Page(browser, size)
        page.open(first_view_pages["gpt"])
        before = {d["id"] for d in drawn(page)["items"]}
        boxes = [d for d in drawn(page)["items"] if d["id"][0] in "sg" and "parameters" not in d["label"]]
        box = next((d for d in boxes if "h \u00d76" in d["label"]), None) or next(
            d for d in boxes if "mlp" in d["label"]
        )
        _click_item(page, box["id"])
        view = drawn(page)
        opened = [d for d in view["items"] if d["id"] not in before]
        assert len(opened) >= 3, view["items"]
        assert _inside(view, opened) == [] and all(d["px"] >= 10 for d in view["items"])
        page.page.close()
    # a box whose inside cannot fit at a legible size: the view stays legible, on what it opened
    page = Page(browser, size)
    page.open(first_view_pages["sample"])
    view = drawn(page)
    box = next(d for d in view["items"] if d["label"].startswith("\u25b8 Layer1"))
    before = {d["id"] for d in view["items"]}
    _click_item(page, box["id"])
    view = drawn(page)
    opened = [d for d in view["items"] if d["id"] not in before]
    assert all(d["px"] >= 10 for d in view["items"])
    shown = [d for d in opened if d not in _inside(view, opened)]
    assert len(shown) >= min(len(opened), 5), (len(shown), len(opened))
    assert page.errors == []
    page.page.close()


# ---- folding by structure, thousands of siblings (#26 items 17-18, #27 item 3) -----------------------------
def test_only_alike_calls_stack_and_the_stacks_count_their_members(browser: Any, tmp_path: Path) -> None:
    x, y = Value(1.5, label="x"), Value(-2.0, label="y")
    outs = []
    for k in range(10):
        with gt.scope(f"f[{k}]"):
            with gt.scope("inner" if k != 7 else "other"):
                a = x * y
            outs.append(a.tanh() + (y if k == 5 else x))  # f[5] wired differently, f[7] another inner name
    root = sum(outs, Value(0.0))
    root.label = "out"
    root.backward()
    page = Page(browser)
    page.open(gt.to_html(root, tmp_path / "f.html"))
    labels = [d["label"].split("  [")[0] for d in drawn(page)["items"]]
    assert sorted(x for x in labels if x.startswith(("\u25a4 f", "\u25b8 f"))) == [
        "\u25a4 f \u00d72",
        "\u25a4 f \u00d75",
        "\u25b8 f[5]",
        "\u25b8 f[6]",
        "\u25b8 f[7]",
    ]
    got = page.page.evaluate("window.graphtracePick(3, 'f')")
    assert got == {"instance": 3, "of": 5, "scope": "f[3]"}
    assert "\u25a4 f \u00d75: instance 3 (f[3])" in [
        c["label"] for c in page.page.evaluate("window.graphtraceClusters()")
    ]
    assert page.page.inner_text("#gt-pick").startswith("instance") and "of f \u00d75 (f[3])" in page.page.inner_text(
        "#gt-pick"
    )
    assert page.errors == []
    page.page.close()


def test_ten_thousand_sibling_scopes_open_folded_and_fitting(browser: Any, tmp_path: Path) -> None:
    x = Value(1.0, label="x")
    outs = []
    for i in range(10_000):
        with gt.scope(f"s{i}"):
            outs.append(x * 2.0)
    root = sum(outs, Value(0.0))
    root.label = "root"
    root.backward()
    page = Page(browser)
    page.open(gt.to_html(root, tmp_path / "siblings.html"))
    view = drawn(page)
    assert page.errors == [] and len(view["items"]) <= 15 and _inside(view) == []
    shown = " ".join(d["label"] for d in view["items"]) + " ".join(
        c["label"] for c in page.page.evaluate("window.graphtraceClusters()")
    )
    assert "s \u00d710000" in shown, shown
    page.page.close()


def test_a_chain_through_thousands_of_sibling_scopes_draws(browser: Any, tmp_path: Path) -> None:
    """Siblings that cannot fold (names without numbers): 3,000 boxes in a chain (dagre's recursion overflows
    there: the page lays them out by columns), and 6,000 nodes with every node shown."""
    import itertools
    import string

    names = ["".join(p) for p in itertools.product(string.ascii_lowercase, repeat=3)]
    for n, collapse in ((3_000, True), (3_000, False)):
        y = Value(1.0, label="y")
        for i in range(n):
            with gt.scope(names[i]):
                y = y * 1.0001
        y.label = "out"
        y.backward()
        page = Page(browser)
        page.page.goto(gt.to_html(y, tmp_path / f"chain{n}.html", collapse=collapse).resolve().as_uri())
        page.page.wait_for_function(
            "window.graphtraceFirstDraw !== null && window.graphtraceFirstDraw !== undefined", timeout=120_000
        )
        assert page.errors == [], page.errors[:3]
        assert _count(page) >= n
        # legible, on the output
        view = drawn(page)
        out = next(d for d in view["items"] if d["label"].startswith(("out", "\u25b8 " + names[n - 1])))
        assert view["scale"] * 14 >= 10 and out not in _inside(view, [out])
        page.page.close()


def _crossings(page: Page, among: str) -> int:
    """How many pairs of drawn edges cross, counting the edges between boxes whose labels start with
    ``among`` that run forward along a row (each as the straight line vis-network draws between the two
    boxes' centres; an edge down to the next row of a wrapped layout is a curve, left out)."""
    segs = page.page.evaluate(
        """(among) => { const n = window.graphtraceNetwork, p = n.getPositions(), lab = {};
             n.body.data.nodes.get().forEach(d => { lab[d.id] = d.label; });
             return n.body.data.edges.get().filter(e => lab[e.from].startsWith(among) && lab[e.to].startsWith(among))
                      .map(e => [p[e.from].x, p[e.from].y, p[e.to].x, p[e.to].y]).filter(s => s[0] < s[2]); }""",
        among,
    )

    def side(ax: float, ay: float, bx: float, by: float, cx: float, cy: float) -> float:
        return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)

    count = 0
    for j, (a, b, c, d) in enumerate(segs):
        for e, f, g, h in segs[j + 1 :]:
            if {(a, b), (c, d)} & {(e, f), (g, h)}:
                continue  # edges sharing a box meet there, they do not cross
            if (
                side(a, b, c, d, e, f) * side(a, b, c, d, g, h) < 0
                and side(e, f, g, h, a, b) * side(e, f, g, h, c, d) < 0
            ):
                count += 1
    return count


def test_a_view_of_hundreds_of_boxes_is_laid_out_with_few_crossings(browser: Any, tmp_path: Path) -> None:
    """Past 400 boxes the page lays out by columns itself (dagre takes too long): each column is ordered
    to cross less, not left in the order the nodes were made. Here each layer of 20 takes the one before
    in reverse: in creation order every pair of edges between two layers crosses (190 per layer), and
    ordered by where their inputs are none need to."""
    width, depth = 20, 24
    layer = [Value(float(k), label=f"t0_{k}") for k in range(width)]
    for d in range(1, depth):
        layer = [layer[width - 1 - k].tanh() for k in range(width)]
        for k, v in enumerate(layer):
            v.label = f"t{d}_{k}"
    root = sum(layer, Value(0.0))
    root.label = "out"
    root.backward()
    page = Page(browser)
    page.open(gt.to_html(root, tmp_path / "crossings.html", collapse=False))
    assert _count(page) > 400 and page.errors == []
    crossings = _crossings(page, "t")
    assert crossings <= 0.02 * (depth - 1) * width * (width - 1) / 2, crossings
    page.page.close()


# ---- torch pages that explain themselves, search and details, legends and title (#27 items 4-6) ----------
def _legend(page: Page) -> str:
    return page.page.inner_text("#gt-legend")


def test_a_torch_page_labels_its_numbers_and_shows_nan_only_for_a_real_one(
    browser: Any, first_view_pages: dict[str, Path], tmp_path: Path
) -> None:
    import re

    torch = pytest.importorskip("torch")
    page = Page(browser)
    page.open(first_view_pages["cnn"])
    view = drawn(page)
    for d in view["items"]:
        if not d["label"].startswith("\u25b8"):
            assert re.search(r"(\u2016x\u2016|x) \S+  (\u2016\u2207\u2016|\u2207) \S+$", d["label"]), d["label"]
        assert "nan" not in d["label"] and not re.search(r"(\w+)  \(\1\)", d["label"]), d["label"]  # op said once
    assert all(e["label"] == "" or e["label"].startswith("\u00d7") or float(e["label"]) >= 0 for e in view["edges"])
    assert "\u2016x\u2016: L2 norm" in _legend(page) and "\u2016gradient\u2016 flowing back" in _legend(page)
    assert page.page.evaluate("window.graphtraceSearch('convolution')")["found"]
    panel = page.page.inner_text("#details")
    assert "gradient of " in panel and "(\u2016\u2207\u2016 along the edge)" in panel and "nan" not in panel, panel
    # norms are never negative: coloured by them, the scale runs from 0 (white) to the largest (red), with no
    # blue half that nothing could use (it ran from -max to max)
    page.page.select_option("#gt-colour", "data")
    assert page.page.get_attribute("#gt-scale", "data-low") == "0"
    assert float(page.page.get_attribute("#gt-scale", "data-high") or "0") > 0
    bar = page.page.eval_on_selector("#gt-scale [data-scale=bar]", "e => getComputedStyle(e).backgroundImage")
    assert "rgb(255, 55, 55)" in bar and "rgb(55, 95, 255)" not in bar, bar
    page.page.close()
    # a graph walked after the fact knows op gradients for leaves only: "not recorded", never "nan"
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    G = gt.pytorch.from_tensor(net(torch.randn(4, 3)).sum(), net)
    page = Page(browser)
    page.open(gt.to_html(G, tmp_path / "after.html"))
    labels = [d["label"] for d in drawn(page)["items"]]
    assert any(label.endswith("\u2016\u2207\u2016 \u2014") for label in labels), labels
    assert not any("nan" in label for label in labels), labels
    page.page.evaluate("window.graphtraceSearch('relu')")
    panel = page.page.inner_text("#details")
    assert "not recorded" in panel and "nan" not in panel, panel
    page.page.close()
    # a real NaN in the model stays NaN, drawn as an anomaly and named in the legend
    x = torch.tensor([[1.0, -4.0], [9.0, 16.0]], requires_grad=True)
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(2))
        lin.bias.zero_()
    with gt.pytorch.trace(lin) as tr:
        lin(x).sqrt().sum().backward()
    page = Page(browser)
    page.open(gt.to_html(tr.graph, tmp_path / "nan.html"))
    view = drawn(page)
    sqrt = next(d for d in view["items"] if d["label"].startswith("sqrt"))
    assert sqrt["border"] == "#d62728" and "nan" in sqrt["label"], sqrt
    assert "non-finite value" in _legend(page)
    page.page.close()


def test_search_finds_run_table_names_the_loss_and_says_when_nothing_matches(
    browser: Any, first_view_pages: dict[str, Path]
) -> None:
    page = Page(browser)
    page.open(first_view_pages["step"])
    # a parameter by the name named_parameters() and the run tables (params.name) give it
    got = page.page.evaluate("window.graphtraceSearch('layers.1.neurons.3.w.5')")
    assert got["found"] and page.page.inner_text("#details").startswith("L1.N3.w5\n")
    assert page.page.evaluate("window.graphtraceNetwork.getSelectedNodes()") == [got["id"]]
    # its 100 uses, one per sample: one grouped line, its terms grouped by sample
    details = page.page.inner_text("#details")
    assert (
        "100\u00d7 mul" in details
        and "in 100 instances: MLP[0]/Layer1/Neuron3 \u2026 MLP[99]/Layer1/Neuron3" in details
    )
    assert details.count("grad(mul_5)") == 1, details  # one line for the 100 terms (and one for the L2 term)
    # the output, by the word a person uses for it
    page.page.fill("#search", "loss")
    page.page.press("#search", "Enter")
    page.page.wait_for_function("document.getElementById('gt-found').textContent.startsWith('found')")
    assert "role: root" in page.page.inner_text("#details")
    # a scope by the path the run tables and by_scope write (no instance numbers)
    assert page.page.evaluate("window.graphtraceSearch('MLP/Layer1')")["found"]
    assert page.page.inner_text("#gt-found").startswith("found scope MLP[0]/Layer1"), page.page.inner_text("#gt-found")
    # a miss says so, in the toolbar without wrapping it (1280 px) and in the panel; the last match is let go
    header = page.page.evaluate("document.querySelector('header').getBoundingClientRect().height")
    page.page.fill("#search", "no-such-thing-at-all-in-this-graph-whatsoever")
    page.page.press("#search", "Enter")
    assert page.page.inner_text("#gt-found") == "no match"
    assert page.page.get_attribute("#gt-found", "title") == (
        "no node or scope matches \u201cno-such-thing-at-all-in-this-graph-whatsoever\u201d"
    )
    assert page.page.evaluate("document.querySelector('header').getBoundingClientRect().height") == header
    assert page.page.evaluate("window.graphtraceNetwork.getSelectedNodes()") == []
    details = page.page.inner_text("#details")
    assert details.startswith("No node or scope matches") and "named_parameters()" in details, details
    page.page.fill("#search", "")  # the box cleared: the message goes too
    page.page.press("#search", "Enter")
    assert page.page.inner_text("#gt-found") == "" and page.page.inner_text("#details").startswith("Click a box")
    assert page.page.evaluate("window.graphtraceSearch('no-such-thing')") == {"found": False}
    page.page.close()
    if "gpt" in first_view_pages:  # torch pages search too: a parameter by its dotted name, a block by its scope
        page = Page(browser)
        page.open(first_view_pages["gpt"])
        assert page.page.evaluate("window.graphtraceSearch('transformer.h.3.attn.c_attn.weight')")["found"]
        assert "role: parameter" in page.page.inner_text("#details")
        assert page.page.evaluate("window.graphtraceSearch('h[3]')")["found"]
        assert "GPT2/transformer/h[3]" in page.page.inner_text("#details")
        assert page.errors == []
        page.page.close()


def test_the_legend_names_only_what_is_drawn_and_the_title_names_the_trace(
    browser: Any, first_view_pages: dict[str, Path]
) -> None:
    page = Page(browser)
    page.open(first_view_pages["seed"])
    roles = page.page.evaluate("[...document.querySelectorAll('#gt-legend [data-role]')].map(e => e.dataset.role)")
    assert roles == ["leaf", "intermediate", "root"]  # no parameter, no constant in the seed
    legend = _legend(page)
    assert "grad ?" in legend and "current step" in legend and "local \u2202out/\u2202in" in legend
    assert (
        page.page.evaluate("document.querySelector('#gt-legend [data-pending]').style.backgroundColor")
        == "rgb(244, 244, 244)"
    )
    # its text reads (WCAG AA: a contrast of at least 4.5 to its background)
    rgb = page.page.evaluate(
        "(() => { const s = getComputedStyle(document.querySelector('#gt-legend [data-pending]'));"
        " return [s.color, s.backgroundColor].map(c => c.match(/\\d+/g).slice(0, 3).map(Number)); })()"
    )

    def luminance(c: list[int]) -> float:
        lin = [v / 255 / 12.92 if v / 255 <= 0.03928 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(rgb[0]), luminance(rgb[1])), reverse=True)
    assert (hi + 0.05) / (lo + 0.05) >= 4.5, rgb
    page.page.select_option("#gt-colour", "grad")
    assert page.page.evaluate("document.querySelectorAll('#gt-legend [data-role]').length") == 0
    assert "colour: grad" in _legend(page) and page.page.get_attribute("#gt-scale", "data-high") == "6"
    page.page.close()
    page = Page(browser)
    page.open(first_view_pages["step"])
    assert page.page.inner_text("#heading") == "graphtrace: MLP loss" and page.page.title() == "graphtrace: MLP loss"
    legend = _legend(page)
    assert "min \u2026 median \u2026 max, on a stack over its instances' outputs" in legend, legend
    assert "\u00d7n on an edge: n edges between two boxes" in legend
    page.page.close()


# ---- a transformer at GPT-2-small scale (#27 item 7) ------------------------------------------------------
@pytest.fixture(scope="module")
def gpt2_small_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from gpt2_small import GPT2, traced_step

    model = GPT2()  # 12 blocks, d = 768, 12 heads, 50,257 tokens: 124M parameters, random weights
    assert sum(p.numel() for p in model.parameters()) == 124_439_808
    G = traced_step(model, tokens=8)
    del model
    return gt.to_html(G, tmp_path_factory.mktemp("gpt2") / "gpt2.html")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", SIZES, ids=["1280x800", "1920x1080"])
def test_gpt2_small_opens_as_a_stack_of_twelve_blocks_that_fits(
    browser: Any, gpt2_small_page: Path, size: tuple[int, int]
) -> None:
    page = Page(browser, size)
    page.open(gpt2_small_page)
    view = drawn(page)
    labels = [d["label"] for d in view["items"]]
    shown = labels + [c["label"] for c in page.page.evaluate("window.graphtraceClusters()")]
    assert len(labels) <= 15 and any("h \u00d712" in x for x in shown), shown
    assert _inside(view) == [] and all(d["px"] >= 10 for d in view["items"])
    assert page.page.inner_text("#heading") == "graphtrace: GPT2 loss"
    stack = next((d for d in view["items"] if "h \u00d712" in d["label"]), None)
    if stack is not None:  # folded: a click opens one block, its insides summarised over the twelve
        _click_item(page, stack["id"])
        opened = drawn(page)
        assert any("\u00d712" in d["label"] for d in opened["items"] if d["id"] != stack["id"]), opened["items"]
        assert all(d["px"] >= 10 for d in opened["items"])
    assert page.errors == [] and page.blocked == []
    page.page.close()


def test_the_readme_pictures_are_taken_from_the_pages_as_they_open(browser: Any, tmp_path: Path) -> None:
    """docs/make_pictures.py (make pictures) writes real 1280x800 pictures, clicking only the page's buttons."""
    import importlib.util

    import numpy as np
    from PIL import Image

    spec = importlib.util.spec_from_file_location(
        "make_pictures", Path(__file__).parent.parent / "docs" / "make_pictures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    source = Path(module.__file__).read_text(encoding="utf-8")
    assert "graphtraceStep" not in source and "graphtracePick" not in source and "graphtraceExpand" not in source
    written = module.main(["seed_graph", "seed_replay"], out=[tmp_path], browser=browser)
    assert sorted(p.name for p in written) == ["seed_graph.png", "seed_replay.png"]
    for p in written:
        img = np.asarray(Image.open(p).convert("RGB"))
        assert img.shape == (800, 1280, 3) and len(np.unique(img.reshape(-1, 3), axis=0)) > 50
    # the replay's picture shows pending gradients: the page's grey fills boxes in it, not in the fresh page
    # (where only a few anti-aliased pixels have that grey)
    grey = np.array([244, 244, 244])
    counts = [
        int((np.asarray(Image.open(tmp_path / n).convert("RGB")) == grey).all(axis=2).sum())
        for n in ("seed_graph.png", "seed_replay.png")
    ]
    assert counts[1] > 10 * counts[0] + 10_000, counts


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_a_norms_trace_says_what_it_did_not_record_and_never_shows_nan(
    browser: Any, tmp_path: Path, size: tuple[int, int]
) -> None:
    """gt.pytorch.trace(model, stats="norms"): clicking every node, its panel gives the norms and says
    the mean, std, min and max were not recorded (never "nan"); the legend says so, inside the window."""
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    with gt.pytorch.trace(cnn, stats="norms") as tr:
        cnn(torch.randn(2, 3, 8, 8)).square().mean().backward()
    page = Page(browser, size)
    page.open(gt.to_html(tr.graph, tmp_path / "norms.html", collapse=False))  # every node drawn
    legend = page.page.locator("#gt-legend")
    assert "recorded with stats='norms': norms and non-finite counts; mean, std, min, max not recorded" in (
        legend.inner_text()
    )
    box = legend.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= size[0] and box["y"] < size[1]
    ids = page.page.evaluate("window.graphtraceNetwork.body.data.nodes.getIds()")
    assert len(ids) == tr.graph.number_of_nodes()
    graph = page.page.locator("#graph").bounding_box()
    panels = []
    for i in ids:
        pt = page.page.evaluate(
            """(id) => { const net = window.graphtraceNetwork;
                         net.focus(id, { scale: Math.max(net.getScale(), 0.72), animation: false });
                         return net.canvasToDOM(net.getPosition(id)); }""",
            i,
        )
        # (each node is brought to the same spot: a click right after the last one there is a double click)
        page.page.wait_for_timeout(600)
        page.page.mouse.click(graph["x"] + pt["x"], graph["y"] + pt["y"])
        page.page.wait_for_function(
            "(id) => window.graphtraceNetwork.getSelectedNodes().indexOf(id) >= 0", arg=i, timeout=30_000
        )
        panels.append(page.page.inner_text("#details"))
    for text in panels:
        assert not re.search(r"\bnan\b", text, re.IGNORECASE), text
        assert text.count("(mean, std, min, max: not recorded, stats='norms')") == 2, text
        assert "norm " in text
    # the loss: its value, as recorded
    loss = next(a for _, a in tr.graph.nodes(data=True) if a["op"] == "mean")
    assert any(f"{loss['data']:.4g}" in t for t in panels)
    assert page.errors == [] and page.blocked == []
    page.page.close()


# every box's text as vis draws it: its lines' heights (in canvas px, spacer lines included), the text's
# vertical extent and the box's
LINES = """() => { const n = window.graphtraceNetwork;
  return n.body.data.nodes.getIds().map(id => { const node = n.body.nodes[id], L = node.labelModule;
    return { id: id, lines: (L.lines || []).map(l => [l.blocks.map(b => b.text).join("").replace(/\u200b/g, ""),
                                                      l.height]),
             textTop: L.size.top, textBottom: L.size.top + L.size.height, yLine: L.size.yLine,
             mono: L.fontOptions.mono.vadjust, top: node.shape.top,
             bottom: node.shape.top + node.shape.height }; }); }"""


@pytest.mark.parametrize("name", ["cnn", "step"])
def test_the_lines_of_a_box_have_room_between_them_and_stay_inside_it(
    browser: Any, first_view_pages: dict[str, Path], name: str
) -> None:
    """vis-network stacks a label's lines with no space: an underscore ("native_batch_norm") touched the line
    below and read as a bar over its number. Each text line now has an empty line of 6 px below it,
    and the first line is drawn at the top of the text, which stays inside its box."""
    if name not in first_view_pages:
        pytest.skip("torch is not installed")
    page = Page(browser)
    page.open(first_view_pages[name])
    boxes = page.page.evaluate(LINES)
    assert boxes
    with_underscore = 0
    for b in boxes:
        lines = b["lines"]
        text = [j for j, (t, _) in enumerate(lines) if t.strip()]
        assert len(text) >= 2, b
        for j, k in itertools.pairwise(text):  # between two lines of text: spacer lines of >= 6 px
            assert sum(h for _, h in lines[j + 1 : k]) >= 6, b
            assert all(h == 14 for t, h in lines if t.strip()), b
        with_underscore += any("_" in t for t, _ in lines)
        # vis draws line j centred at yLine + (the heights above it) + the text's vadjust: the first line's
        # middle 7 px below the text's top, the last line inside the box
        first_mid = b["yLine"] + b["mono"]
        assert abs(first_mid - (b["textTop"] + 7)) <= 0.5, b
        assert b["top"] - 0.5 <= b["textTop"] and b["textBottom"] <= b["bottom"] + 0.5, b
    if name == "cnn":
        assert with_underscore, [b["lines"][0][0] for b in boxes]  # (a page where the underscore mattered)
    page.page.close()


def test_odd_characters_in_a_label_are_drawn_literally_with_the_same_spacing(browser: Any, tmp_path: Path) -> None:
    """A label with "<" or "&" (markup to vis-network's label parser) is drawn as written, with the gap between
    its lines; one that vis would fail on (an "&" in a line that is no regular expression) as plain lines."""
    a = Value(1.5, label="a<b>&c_d")
    x = Value(2.0, label="x_1")
    odd = Value(3.0, label="(*)&y")
    out = a * x + odd
    out.label = "out"
    out.backward()
    page = Page(browser)
    page.open(gt.to_html(out, tmp_path / "odd.html"))
    assert page.errors == []
    boxes = {b["lines"][0][0].split("  ")[0]: b for b in page.page.evaluate(LINES)}
    assert {"a<b>&c_d", "x_1", "(*)&y", "out"} <= set(boxes), list(boxes)
    for name in ("a<b>&c_d", "x_1", "out"):
        lines = boxes[name]["lines"]
        assert [t for t, _ in lines if t.strip()][1:] == [
            t for t, _ in lines if t.strip() and t.startswith(("data", "grad"))
        ]
        assert all(h == 14 for t, h in lines if t.strip()) and any(h == 6 and not t.strip() for t, h in lines), lines
    plain = boxes["(*)&y"]["lines"]
    assert [t for t, _ in plain] == ["(*)&y", "data 3", "grad 1"], plain  # literal, without the gap
    assert page.page.evaluate("window.graphtraceSearch('a<b>&c_d')")["found"]
    page.page.close()


def test_the_tooltip_of_a_box_goes_when_the_click_opens_it(browser: Any, first_view_pages: dict[str, Path]) -> None:
    """Hovering a box shows its tooltip; clicking it opened the box and left the tooltip over the new view (over the
    node a later search found, too)."""
    page = Page(browser)
    page.open(first_view_pages["step"])
    layer1 = next(d["id"] for d in drawn(page)["items"] if d["label"].startswith("\u25b8 Layer1"))
    xy = page.page.evaluate(
        """(id) => { const net = window.graphtraceNetwork; const d = net.canvasToDOM(net.getPositions([id])[id]);
                     const r = document.getElementById("graph").getBoundingClientRect();
                     return [d.x + r.left, d.y + r.top]; }""",
        layer1,
    )
    page.page.mouse.move(xy[0] - 5, xy[1] - 5)
    page.page.mouse.move(xy[0], xy[1])
    tip = ".vis-tooltip"
    page.page.wait_for_function(
        "() => { const t = document.querySelector('.vis-tooltip'); "
        "return t !== null && getComputedStyle(t).visibility === 'visible'; }",
        timeout=60_000,
    )
    assert "Layer1" in page.page.inner_text(tip)
    _click_item(page, layer1)
    assert page.page.evaluate(f"getComputedStyle(document.querySelector('{tip}')).visibility") == "hidden"
    page.page.close()
