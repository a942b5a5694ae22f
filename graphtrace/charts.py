"""Interactive, offline plots for the run report: Vega-Lite specifications rendered by vega-embed.

The specs are plain JSON (built here as dicts); the page inlines vega, vega-lite and vega-embed
(``export/vendor``, BSD-3-Clause) and renders every ``<div class="vl" data-spec=ID>`` from a JSON
script tag, as SVG with hover tooltips, zoom and pan on the step axis, and the controls a spec
binds (a smoothing toggle, a layer or step chooser). Nothing is fetched.
"""

from __future__ import annotations

import html
import json
import math
import re
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["NAMES", "Charts", "name_of"]

_VENDOR = Path(__file__).parent / "export" / "vendor"
_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"  # an identifier only: never fetched
WIDTH, HEIGHT = 640, 240
#: what a tooltip calls a column (a column not named here is shown by its own name)
NAMES = {
    "param_abs_grad_mean": "mean |grad|",
    "param_abs_grad_max": "max |grad|",
    "update_data_log10": "log10 update:data",
    "dead_relu_share": "dead ReLU share",
    "tanh_saturated_share": "saturated tanh share",
    "learning_rate": "learning rate",
    "q10": "10%",
    "q25": "25%",
    "q75": "75%",
    "q90": "90%",
}
#: what a tooltip says for a group (a layer) the chart's quantity does not apply to
NOT_APPLICABLE = "not applicable"


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


def name_of(column: str) -> str:
    """A column's name for a reader (``param_abs_grad_mean`` -> ``mean |grad|``)."""
    return NAMES.get(column, column)


def _at_each_step(
    rows: list[dict[Any, Any]], y: str, color: str, groups: list[str], not_applicable: set[str]
) -> list[dict[str, Any]]:
    """One row per step with every group's ``y`` as text (``g0``, ``g1``, ...): a tooltip for all of them."""
    index = {g: f"g{i}" for i, g in enumerate(groups)}
    steps: dict[Any, dict[str, Any]] = {}
    for r in rows:
        if r.get("step") is None:
            continue
        at = steps.setdefault(r["step"], {"step": r["step"]})
        v = r.get(y)
        at[index[str(r[color])]] = f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "–"
    for at in steps.values():
        for g in groups:
            at[index[g]] = NOT_APPLICABLE if g in not_applicable else at.get(index[g], "–")
    return [steps[s] for s in sorted(steps)]


def _natural(text: str) -> tuple[Any, ...]:
    """Sort key: ``Layer2`` before ``Layer10``, ``rank 2`` before ``rank 10``."""
    return tuple(int(s) if s.isdigit() else s for s in re.split(r"(\d+)", text))


def _legend_labels(groups: list[str], labels: list[str]) -> str:
    """A Vega expression that shows ``labels[i]`` for the legend entry ``groups[i]``."""
    if groups == labels:
        return "datum.label"
    table = json.dumps(dict(zip(groups, labels, strict=True)))
    return f"({table})[datum.label] || datum.label"


class Charts:
    """The plots of one page: ``add`` a spec, get its placeholder ``<div>``; ``scripts()`` once at the end."""

    def __init__(self) -> None:
        self.specs: list[dict[str, Any]] = []

    def add(self, spec: dict[str, Any], name: str, caption: str = "") -> str:
        spec = {"$schema": _SCHEMA, "width": WIDTH, "height": HEIGHT, **spec}
        self.specs.append(spec)
        below = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        return (
            f'<figure class="plot" data-plot="{html.escape(name)}">'
            f'<div class="vl" id="vl{len(self.specs) - 1}"></div>{below}</figure>'
        )

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
        not_applicable: tuple[str, ...] = (),
        caption: str = "",
    ) -> str:
        """A line per ``color`` group of ``y`` over ``step``: drag or wheel zooms the step axis; ``smooth`` adds
        a moving average of 10 steps with a toggle. Hovering shows the point's values, or, with ``color``, one
        tooltip listing every group at that step (TensorBoard's). The groups in ``not_applicable`` (a layer
        without ReLU units on the dead-ReLU chart) draw no line and read "not applicable" in the legend and
        the tooltip. The value axis spans the data (a log axis is not rounded out to powers of ten)."""
        rows = _clean(rows)
        tip = name_of(y)
        na = {str(g) for g in not_applicable}
        if color:  # the groups as text (a rank number too), a group the quantity does not apply to without values
            rows = [{**r, color: str(r[color]), **({y: None} if str(r[color]) in na else {})} for r in rows]
        positive = all((r.get(y) or 0) > 0 for r in rows if r.get(y) is not None)
        scale: dict[str, Any] = {"type": "log", "nice": False, "padding": 6} if log and positive else {"zero": False}
        if domain is not None:
            scale = {"domain": list(domain)}
        x = {"field": "step", "type": "quantitative", "title": "step"}
        enc: dict[str, Any] = {
            "x": x,
            "y": {
                "field": y,
                "type": "quantitative",
                "title": y_title,
                "scale": scale,
                "axis": {"labelOverlap": "greedy", "format": "~g"},  # a log axis labels 2..9 of each decade
            },
            "tooltip": [
                {"field": "step", "type": "quantitative", "title": "step"},
                {"field": y, "type": "quantitative", "format": ".4~g", "title": tip},
            ],
        }
        groups: list[str] = []
        if color:
            groups = sorted({str(r[color]) for r in rows if r.get(color) is not None}, key=_natural)
            labels = [f"{g} ({NOT_APPLICABLE})" if g in na else g for g in groups]
            enc["color"] = {
                "field": color,
                "type": "nominal",
                "title": color_title or color,
                "scale": {"domain": groups},
                "legend": {"labelExpr": _legend_labels(groups, labels), "labelLimit": 320},
            }
            enc["tooltip"].insert(0, {"field": color, "type": "nominal", "title": color_title or color})
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
                            {"field": "step", "type": "quantitative", "title": "step"},
                            {
                                "field": "smoothed",
                                "type": "quantitative",
                                "format": ".4~g",
                                "title": f"{tip} (mean of 10)",
                            },
                        ],
                    },
                }
            )
        if color:
            # one tooltip for every group at the hovered step: a rule at the nearest step, its points marked
            layers.append(
                {
                    "data": {"values": _at_each_step(rows, y, color, groups, na)},
                    "mark": {"type": "rule", "color": "#888"},
                    "encoding": {
                        "x": {"field": "step", "type": "quantitative"},
                        "opacity": {"condition": {"param": "hover", "empty": False, "value": 0.6}, "value": 0},
                        "tooltip": [
                            {"field": "step", "type": "quantitative", "title": f"step ({tip})"},
                            *({"field": f"g{i}", "type": "nominal", "title": g} for i, g in enumerate(groups)),
                        ],
                    },
                    "params": [
                        {
                            "name": "hover",
                            "select": {
                                "type": "point",
                                "fields": ["step"],
                                "nearest": True,
                                "on": "pointerover",
                                "clear": "pointerout",
                            },
                        }
                    ],
                }
            )
            layers.append(
                {
                    "transform": [{"filter": {"param": "hover", "empty": False}}],
                    "mark": {"type": "point", "filled": True, "size": 45},
                    "encoding": {
                        "x": x,
                        "y": {"field": y, "type": "quantitative"},
                        "color": {"field": color, "type": "nominal"},
                    },
                }
            )
        if rule is not None:  # drawn once: its own one-row data, not one mark per row of the chart's
            one: dict[str, Any] = {"values": [{}]}
            layers.append(
                {
                    "data": one,
                    "mark": {"type": "rule", "strokeDash": [6, 4], "color": "black"},
                    "encoding": {"y": {"datum": rule}},
                }
            )
            layers.append(
                {
                    "data": one,
                    "mark": {"type": "text", "align": "left", "dx": 4, "dy": -6, "color": "black"},
                    "encoding": {"y": {"datum": rule}, "x": {"value": 0}, "text": {"value": rule_label}},
                }
            )
        spec = {"data": {"values": rows}, **({"params": top} if top else {}), "layer": layers}
        return self.add(spec, name, caption)

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
                                {"field": "step", "type": "quantitative", "title": "step"},
                                *(
                                    {"field": f, "type": "quantitative", "format": ".4~g", "title": name_of(f)}
                                    for f in ("min", "q10", "q25", "median", "q75", "q90", "max")
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
                "mark": {"type": "bar"},
                "encoding": {
                    "x": {
                        "field": "value",
                        "type": "quantitative",
                        "bin": {"maxbins": 40},
                        "title": "value",
                        # a label at every few bin edges, short, none over another (the edges are 40 and close)
                        "axis": {"format": "~g", "labelOverlap": "greedy", "labelSeparation": 6, "labelFlush": True},
                    },
                    "y": {"aggregate": "count", "type": "quantitative", "title": "parameters"},
                    "tooltip": [
                        {
                            "field": "value",
                            "bin": {"maxbins": 40},
                            "type": "quantitative",
                            "title": "value",
                            "format": ".4~g",
                        },
                        {"aggregate": "count", "type": "quantitative", "title": "parameters"},
                    ],
                },
            },
            name,
        )
