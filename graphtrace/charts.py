"""Interactive, offline plots for the run report: Vega-Lite specifications rendered by vega-embed.

The specs are plain JSON (built here as dicts); the page inlines vega, vega-lite and vega-embed
(``export/vendor``, BSD-3-Clause) and renders every ``<div class="vl" data-spec=ID>`` from a JSON
script tag, as SVG with hover tooltips, zoom and pan on the step axis, and the controls a spec
binds (a smoothing toggle, a layer or step chooser). Nothing is fetched.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["Charts"]

_VENDOR = Path(__file__).parent / "export" / "vendor"
_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"  # an identifier only: never fetched
WIDTH, HEIGHT = 640, 240


@cache
def _scripts() -> str:
    parts = []
    for name in ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js"):
        js = (_VENDOR / name).read_text(encoding="utf-8")
        if "</script" in js.lower():  # pragma: no cover - clean copies
            raise RuntimeError(f"{name} cannot be inlined safely")
        parts.append(f"<script>{js}</script>")
    return "".join(parts)


def _number(v: Any) -> Any:
    if isinstance(v, float):  # 6 significant digits are more than a plot or its tooltip shows
        return float(f"{v:.6g}") if math.isfinite(v) else None  # NaN and ±inf: null, left out
    return v


def _clean(rows: list[dict[Any, Any]]) -> list[dict[Any, Any]]:
    """Rows for JSON: floats to 6 significant digits, NaN and ±inf null (Vega-Lite leaves them out)."""
    return [{k: _number(v) for k, v in r.items()} for r in rows]


class Charts:
    """The plots of one page: ``add`` a spec, get its placeholder ``<div>``; ``scripts()`` once at the end."""

    def __init__(self) -> None:
        self.specs: list[dict[str, Any]] = []

    def add(self, spec: dict[str, Any], name: str) -> str:
        spec = {"$schema": _SCHEMA, "width": WIDTH, "height": HEIGHT, **spec}
        self.specs.append(spec)
        return f'<figure class="plot" data-plot="{name}"><div class="vl" id="vl{len(self.specs) - 1}"></div></figure>'

    def scripts(self) -> str:
        data = json.dumps(self.specs, allow_nan=False).replace("<", "\\u003c")  # no </script> in the text
        return (
            f'<script type="application/json" id="vl-specs">{data}</script>{_scripts()}'
            "<script>(function () {"
            'var specs = JSON.parse(document.getElementById("vl-specs").textContent);'
            "window.graphtraceCharts = Promise.all(specs.map(function (s, i) {"
            'return vegaEmbed("#vl" + i, s, {renderer: "svg", actions: false});'
            "})).then(function (views) { window.graphtraceViews = views; return views.length; });"
            "})();</script>"
        )

    # ---- the charts ---------------------------------------------------------------------------------
    def line(
        self,
        rows: list[dict[Any, Any]],
        y: str,
        y_title: str,
        name: str,
        *,
        color: str | None = None,
        color_title: str | None = None,
        log: bool = False,
        smooth: bool = False,
        rule: float | None = None,
        rule_label: str = "",
        domain: tuple[float, float] | None = None,
    ) -> str:
        """A line per ``color`` group of ``y`` over ``step``: hover shows the values, drag or wheel
        zooms the step axis; ``smooth`` adds a moving average of 10 steps with a toggle."""
        rows = _clean(rows)
        positive = all((r.get(y) or 0) > 0 for r in rows if r.get(y) is not None)
        scale: dict[str, Any] = {"type": "log"} if log and positive else {"zero": False}
        if domain is not None:
            scale = {"domain": list(domain)}
        enc: dict[str, Any] = {
            "x": {"field": "step", "type": "quantitative", "title": "step"},
            "y": {"field": y, "type": "quantitative", "title": y_title, "scale": scale},
            "tooltip": [
                {"field": "step", "type": "quantitative"},
                {"field": y, "type": "quantitative", "format": ".4~g"},
            ],
        }
        if color:
            enc["color"] = {"field": color, "type": "nominal", "title": color_title or color}
            enc["tooltip"].insert(0, {"field": color, "type": "nominal"})
        layers: list[dict[str, Any]] = [
            {
                "mark": {"type": "line", "point": len(rows) <= 60, "strokeWidth": 1.5},
                "encoding": enc,
                "params": [{"name": "zoom", "select": {"type": "interval", "encodings": ["x"]}, "bind": "scales"}],
            }
        ]
        top: list[dict[str, Any]] = []  # the chart's controls (variable params live at the top level)
        if smooth:
            group = [color] if color else []
            layers[0]["encoding"] = {**enc, "opacity": {"condition": {"param": "smoothing", "value": 0.35}, "value": 1}}
            top.append(
                {"name": "smoothing", "value": False, "bind": {"input": "checkbox", "name": "smooth (10-step mean) "}}
            )
            layers.append(
                {
                    "transform": [
                        {
                            "window": [{"op": "mean", "field": y, "as": "smoothed"}],
                            "frame": [-9, 0],
                            "groupby": group,
                            "sort": [{"field": "step"}],
                        },
                        {"filter": {"param": "smoothing"}},
                    ],
                    "mark": {"type": "line", "strokeWidth": 2.5},
                    "encoding": {
                        "x": {"field": "step", "type": "quantitative"},
                        "y": {"field": "smoothed", "type": "quantitative", "title": y_title},
                        **({"color": {"field": color, "type": "nominal"}} if color else {}),
                        "tooltip": [
                            {"field": "step", "type": "quantitative"},
                            {
                                "field": "smoothed",
                                "type": "quantitative",
                                "format": ".4~g",
                                "title": f"{y} (mean of 10)",
                            },
                        ],
                    },
                }
            )
        if rule is not None:
            layers.append(
                {"mark": {"type": "rule", "strokeDash": [6, 4], "color": "black"}, "encoding": {"y": {"datum": rule}}}
            )
            layers.append(
                {
                    "mark": {"type": "text", "align": "left", "dx": 4, "dy": -6, "color": "black"},
                    "encoding": {"y": {"datum": rule}, "x": {"value": 0}, "text": {"value": rule_label}},
                }
            )
        return self.add({"data": {"values": rows}, **({"params": top} if top else {}), "layer": layers}, name)

    def bands(self, rows: list[dict[Any, Any]], what: str, name: str) -> str:
        """TensorBoard's "distributions": per step, the min–max, 10–90% and 25–75% bands and the
        median of ``what`` over a layer's parameters; a selector picks the layer."""
        rows = _clean(rows)
        layers = sorted({str(r["layer"]) for r in rows})
        x = {"field": "step", "type": "quantitative", "title": "step"}

        def band(lo: str, hi: str, op: float) -> dict[str, Any]:
            return {
                "mark": {"type": "area", "opacity": op, "color": "#3366cc"},
                "encoding": {"x": x, "y": {"field": lo, "type": "quantitative", "title": what}, "y2": {"field": hi}},
            }

        return self.add(
            {
                "data": {"values": rows},
                "params": [
                    {
                        "name": "layer",
                        "value": layers[0] if layers else "",
                        "bind": {"input": "select", "options": layers, "name": "layer "},
                    }
                ],
                "transform": [{"filter": "datum.layer == layer"}],
                "layer": [
                    band("min", "max", 0.15),
                    band("q10", "q90", 0.25),
                    band("q25", "q75", 0.4),
                    {
                        "mark": {"type": "line", "color": "#1a3d7c", "point": len(rows) <= 60 * max(1, len(layers))},
                        "encoding": {
                            "x": x,
                            "y": {"field": "median", "type": "quantitative", "title": what},
                            "tooltip": [
                                {"field": "step", "type": "quantitative"},
                                *(
                                    {"field": f, "type": "quantitative", "format": ".4~g"}
                                    for f in ("min", "q25", "median", "q75", "max")
                                ),
                            ],
                        },
                        "params": [
                            {"name": "zoom", "select": {"type": "interval", "encodings": ["x"]}, "bind": "scales"}
                        ],
                    },
                ],
            },
            name,
        )

    def histogram(self, rows: list[dict[Any, Any]], steps: list[int], name: str) -> str:
        """Histograms of parameter values at a chosen step: a slider picks the step (among those
        given), selectors the layer and the quantity (data, grad, update)."""
        rows = _clean(rows)
        layers = sorted({str(r["layer"]) for r in rows})
        return self.add(
            {
                "data": {"values": rows},
                "params": [
                    {"name": "at", "value": steps[-1], "bind": {"input": "select", "options": steps, "name": "step "}},
                    {
                        "name": "hlayer",
                        "value": layers[0] if layers else "",
                        "bind": {"input": "select", "options": layers, "name": " layer "},
                    },
                    {
                        "name": "what",
                        "value": "grad",
                        "bind": {"input": "select", "options": ["data", "grad", "update"], "name": " of "},
                    },
                ],
                "transform": [
                    {
                        "filter": "datum.step == at && datum.layer == hlayer && datum.what == what "
                        "&& isValid(datum.value)"
                    }
                ],
                "mark": {"type": "bar", "tooltip": True},
                "encoding": {
                    "x": {"field": "value", "type": "quantitative", "bin": {"maxbins": 40}, "title": "value"},
                    "y": {"aggregate": "count", "type": "quantitative", "title": "parameters"},
                },
            },
            name,
        )
