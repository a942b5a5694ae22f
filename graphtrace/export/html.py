"""Interactive HTML through pyvis, with graphtrace's own template.

pyvis 0.3.2 as shipped loads vis-network and Bootstrap from CDNs and renders user text without
escaping; so graphtrace gives pyvis its own Jinja environment (autoescaping on) and template, which
embeds vis-network's JS and CSS from pyvis's package, escapes every user string (data goes through
``tojson``), forbids every network request with a Content-Security-Policy, and draws a left-to-right
layered layout computed here with physics off, so 10k-node traces draw in about a second.
"""

from __future__ import annotations

import base64
import html as _html
import math
import re
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import networkx as nx
import numpy as np
import pandas as pd
import pyvis
from markupsafe import Markup
from pyvis.network import Network

from .._files import atomic_write
from .._real import as_float
from ..snapshot import as_graph
from .frames import is_tensor_trace, node_roles, topological_nodes

__all__ = ["COLLAPSE_OVER", "DEFAULT_DIR", "EXPAND_BUDGET", "ROLE_COLORS", "html_text", "show", "to_html"]

#: Node colours by role, after torchviz (parameters blue, inputs orange, root green).
ROLE_COLORS = {
    "parameter": "#9ecae1",
    "leaf": "#fdd0a2",
    "constant": "#e5e5e5",
    "intermediate": "#ffffff",
    "root": "#a1d99b",
}
DEFAULT_DIR = Path("exports")
Y_STEP = 110
CHAR_PX, GAP_PX, MAX_LABEL = 8.5, 70, 32  # monospace 14px; labels longer than MAX_LABEL are cut
_TEMPLATES = Path(__file__).parent / "templates"


@cache
def _environment() -> jinja2.Environment:
    vis = Path(pyvis.__file__).parent / "lib" / "vis-9.1.2"
    js = (vis / "vis-network.min.js").read_text(encoding="utf-8")
    css = (vis / "vis-network.css").read_text(encoding="utf-8")
    dagre = (Path(__file__).parent / "vendor" / "dagre.min.js").read_text(encoding="utf-8")
    if "</script" in (js + dagre).lower() or "</style" in css.lower():  # pragma: no cover - clean copies
        raise RuntimeError("vis-network or dagre assets cannot be inlined safely")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True)
    env.globals.update(vis_js=Markup(js), vis_css=Markup(css), dagre_js=Markup(dagre), legend=list(ROLE_COLORS.items()))
    return env


def _fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def tensor_info(a: dict[str, Any]) -> str:
    """The summary lines of a tensor node (dtype, element count, data and grad statistics)."""
    lines = [f"dtype: {a.get('dtype', '')}, {a.get('numel', -1)} elements"]
    for p in ("data", "grad"):
        if not a.get(f"{p}_known"):
            lines.append(f"{p}: not recorded")
            continue
        stats = ", ".join(f"{s} {_fmt(a.get(f'{p}_{s}', math.nan))}" for s in ("mean", "std", "min", "max", "norm"))
        bad = a.get(f"{p}_nonfinite", 0)
        lines.append(f"{p}: {stats}" + (f", {bad} non-finite" if bad else ""))
    return "\n".join(lines)


def _box_label(a: dict[str, Any]) -> str:
    label = str(a.get("label", ""))
    if len(label) > MAX_LABEL:
        label = label[: MAX_LABEL - 1] + "…"
    op = str(a.get("op", ""))
    data, grad = a.get("data", float("nan")), a.get("grad", float("nan"))
    shape = f"  {a['shape']}" if a.get("shape") else ""
    return f"{label}{f'  ({op})' if op else ''}{shape}\ndata {_fmt(data)}\ngrad {_fmt(grad)}"


def _layout(G: nx.DiGraph, texts: dict[Any, str]) -> dict[Any, tuple[int, int]]:
    """Left to right by topological generation, each generation centred vertically: the positions of a
    full view of more than 3,000 nodes (smaller ones are laid out in the page by dagre).

    A leaf sits in the column just before its first use (not all leaves in column 0), so inputs and
    constants are drawn next to the op that reads them.
    """
    pos = {}
    try:
        generations = list(nx.topological_generations(G))
    except nx.NetworkXUnfeasible as exc:
        raise ValueError("the graph has a cycle, so it is not a computation trace") from exc
    level = {n: i for i, gen in enumerate(generations) for n in gen}
    succ = G._succ
    columns: dict[int, list[Any]] = {}
    for n, i in level.items():
        if i == 0 and succ[n]:
            i = min(level[s] for s in succ[n]) - 1
        columns.setdefault(i, []).append(n)
    generations = [columns[i] for i in sorted(columns)]
    x = 0.0
    previous = 0.0
    for gen in generations:
        gen.sort(key=lambda n: (0, n, "") if isinstance(n, int) else (1, 0, str(n)))
        width = CHAR_PX * max(len(line) for n in gen for line in texts[n].split("\n"))
        x += (previous + width) / 2 + GAP_PX if previous else 0.0
        previous = width
        half = (len(gen) - 1) / 2
        for j, n in enumerate(gen):
            pos[n] = (int(x), int((j - half) * Y_STEP))
    return pos


#: Colour of nodes without a value under ``color_by``.
NO_VALUE = "#d9d9d9"


def _colour_value(v: Any, n: Any) -> float | None:
    """``v`` as a float (None if not a number); a number too large for a float names its node."""
    try:
        return as_float(v)
    except OverflowError:
        raise ValueError(f"color_by: the value for node {n!r} does not fit a float: {str(v)[:40]}...") from None


def _values(G: nx.DiGraph, color_by: Any) -> tuple[str, dict[Any, float]] | None:
    """``color_by`` as (name, value of every node, NaN where missing); errors name what is wrong."""
    if color_by is None:
        return None
    if isinstance(color_by, str):
        if not color_by:
            raise ValueError("color_by: an attribute name must not be empty")
        out = {}
        for n, a in G._node.items():
            v = a.get(color_by)
            f = math.nan if v is None else _colour_value(v, n)
            if f is None:
                raise TypeError(f"color_by: node {n!r} has a non-numeric {color_by!r}: {v!r}")
            out[n] = f
        if all(v is None for v in (a.get(color_by) for a in G._node.values())):
            raise ValueError(f"color_by: no node has the attribute {color_by!r}")
        return color_by, out
    items = getattr(color_by, "items", None)
    if not callable(items):
        raise TypeError(
            "color_by must be a node attribute name, a mapping or a pandas Series from node id to number, "
            f"got {type(color_by).__name__}"
        )
    given: dict[Any, float] = {}
    for k, v in items():
        if k is None or (isinstance(k, float) and math.isnan(k)) or k is pd.NA:
            continue  # rows of a table that name no node here (diff's other side)
        if k not in G:
            raise ValueError(f"color_by: {k!r} is not a node of the graph")
        f = math.nan if v is None or v is pd.NA else _colour_value(v, k)
        if f is None:
            raise TypeError(f"color_by: the value for node {k!r} is not a number: {v!r}")
        given[k] = f
    name = getattr(color_by, "name", None)
    return (str(name) if name is not None else "value"), {n: given.get(n, math.nan) for n in G}


def _diverging(v: float, vmax: float) -> str:
    """Blue below 0, white at 0, red above, by ``sqrt(|v| / vmax)``; grey for NaN."""
    if math.isnan(v):
        return NO_VALUE
    t = 1.0 if math.isinf(v) or vmax <= 0 else math.sqrt(min(1.0, abs(v) / vmax))
    if v > 0:
        return f"rgb(255,{round(255 - 200 * t)},{round(255 - 200 * t)})"
    if v < 0:
        return f"rgb({round(255 - 200 * t)},{round(255 - 160 * t)},255)"
    return "#ffffff"


def _vmax(values: dict[Any, float]) -> float:
    return max((abs(v) for v in values.values() if math.isfinite(v)), default=0.0)


def _network(G: nx.DiGraph, title: str, colors: tuple[str, dict[Any, float]] | None = None) -> Network:
    roles = node_roles(G)
    vmax = _vmax(colors[1]) if colors else 0.0
    texts = {n: _box_label(a) for n, a in G._node.items()}
    tensors = is_tensor_trace(G)
    pos = _layout(G, texts)
    nodes = []
    order = topological_nodes(G)
    for n in order:
        a = G._node[n]
        label = str(a.get("label", ""))
        op = str(a.get("op", ""))
        data, grad = a.get("data", float("nan")), a.get("grad", float("nan"))
        x, y = pos[n]
        nodes.append(
            {
                "id": n if isinstance(n, int) else str(n),
                "name": label,
                "label": texts[n],
                "title": f"{label}\nop: {op or '(leaf)'}\nrole: {roles[n]}\ndata: {data!r}\ngrad: {grad!r}\nnode: {n}"
                + (f"\nshape: {a.get('shape', '')}\n{tensor_info(a)}" if tensors else "")
                + (f"\n{colors[0]}: {colors[1][n]!r}" if colors else ""),
                "color": {
                    "background": _diverging(colors[1][n], vmax) if colors else ROLE_COLORS[roles[n]],
                    "border": "#555",
                },
                "x": x,
                "y": y,
                "data": _json_num(data),
                "grad": _json_num(grad),
                "roleColor": ROLE_COLORS[roles[n]],
                **({"value": _json_num(colors[1][n])} if colors else {}),
            }
        )
    edges = [  # per result, its operands in order (the page's replay walks them breadth-first)
        {
            "from": u if isinstance(u, int) else str(u),
            "to": v if isinstance(v, int) else str(v),
            "label": _fmt(e.get("local_grad", float("nan"))),
            "lg": _json_num(e.get("local_grad", float("nan"))),
        }
        for v in order
        for u, e in G._pred[v].items()
    ]
    net = Network(height="100%", width="100%", directed=True, heading=title)
    net.nodes = nodes
    net.edges = edges
    net.node_ids = [d["id"] for d in nodes]
    net.templateEnv = _environment()
    net.templateEnv.globals["value_name"] = colors[0] if colors else None
    net.path = "graph.html"
    return net


#: Traces with more nodes than this open collapsed by scope (when they have scopes).
COLLAPSE_OVER = 500
#: A collapsed view first expands the biggest scopes while it shows at most this many boxes.
EXPAND_BUDGET = 15
#: Boxes of the collapsed view that are not scopes: parameters (under their module path), and, when
#: there are more than EXPAND_BUDGET of them, the model inputs (leaves used only inside scopes) and the
#: other nodes recorded outside any scope (a loss built by hand). The first view never expands them.
PARAMETERS, INPUTS, OUTSIDE = "parameters", "(inputs)", "(outside any scope)"
_ROLE_INDEX = {role: i for i, role in enumerate(ROLE_COLORS)}


def _collapsed_network(G: nx.DiGraph, title: str, colors: tuple[str, dict[Any, float]] | None = None) -> Network:
    """The scope-collapsible view: compact arrays that the page's script lays out and redraws.

    ``columns``: one column per field, rows in topological order for nodes (``id``, ``scope`` index,
    ``role`` index, ``label``, ``op``, ``data``, ``grad``) and, for edges, each result's operands in
    order (``nargs`` per result, then ``src`` the operand's node index and ``lg`` the local_grad per
    edge). Numbers travel as base64 typed arrays of the narrowest type, strings as distinct words plus
    an index column, ``id`` is left out when the ids are the row numbers;
    ``scopes``: every scope path and all its prefixes as ``[parent index, segment]``, parents before
    children. Strings reach the page only through ``tojson`` in a JSON script tag and are drawn as text,
    never as HTML.
    """
    roles = node_roles(G)
    order = topological_nodes(G)
    index = {n: i for i, n in enumerate(order)}
    # the scope tree as [parent index, segment] pairs, parents first: no prefix string is built (scopes
    # may nest 10,000 deep), a path's segments are walked from the root through a dict per scope
    scope_pairs: list[tuple[int, str]] = [(-1, "")]
    children: list[dict[str, int]] = [{}]
    scope_ids: dict[str, int] = {"": 0}

    def scope_id(path: str) -> int:
        k = scope_ids.get(path)
        if k is None:
            k = 0
            for seg in path.split("/"):
                nxt = children[k].get(seg)
                if nxt is None:
                    nxt = children[k][seg] = len(scope_pairs)
                    scope_pairs.append((k, seg))
                    children.append({})
                k = nxt
            scope_ids[path] = k
        return k

    node = G._node
    succ = G._succ
    pred = G._pred
    inputs = {
        n for n in order if not node[n].get("scope") and not pred[n] and all(node[c].get("scope") for c in succ[n])
    }
    outside = sum(1 for n in order if not node[n].get("scope")) - len(inputs)
    group_inputs, group_outside = len(inputs) > EXPAND_BUDGET, outside > EXPAND_BUDGET

    def shown_path(n: Any, a: dict[str, Any]) -> str:
        path = str(a.get("scope", ""))
        if a.get("role") == "parameter" and path:
            return f"{PARAMETERS}/{path}"
        if path:
            return path
        if n in inputs:
            return INPUTS if group_inputs else ""
        return OUTSIDE if group_outside else ""

    attrs = [node[n] for n in order]
    ids = [n if isinstance(n, int) else str(n) for n in order]
    pred = G._pred
    sources = [index[u] for v in order for u in pred[v]]
    local = [e.get("local_grad", math.nan) for v in order for e in pred[v].values()]
    int_ids = [n for n in ids if type(n) is int and abs(n) <= _INT32]
    # ids: none when they are the row numbers, else base64 when they are all int32, else a list
    id_column = (None if int_ids == list(range(len(ids))) else _ints(int_ids)) if len(int_ids) == len(ids) else ids
    columns: dict[str, Any] = {
        "id": id_column,
        "scope": _ints([scope_id(shown_path(n, a)) for n, a in zip(order, attrs, strict=True)]),
        "role": _ints([_ROLE_INDEX[roles[n]] for n in order]),
        "label": _words([str(a.get("label", "")) for a in attrs]),
        "op": _words([str(a.get("op", "")) for a in attrs]),
        "data": _floats([_float(a.get("data", math.nan)) for a in attrs]),
        "grad": _floats([_float(a.get("grad", math.nan)) for a in attrs]),
        # edges grouped by result: its operand count, then each operand (source) in order
        "nargs": _ints([len(pred[v]) for v in order]),
        "src": _ints(sources),
        "lg": _floats([_float(x) for x in local]),
    }
    if is_tensor_trace(G):
        columns["shape"] = _words([str(a.get("shape", "")) for a in attrs])
        columns["info"] = _words([tensor_info(a) for a in attrs])
    net = Network(height="100%", width="100%", directed=True, heading=title)
    net.nodes = []
    net.edges = []
    net.node_ids = []
    net.templateEnv = _environment()
    net.path = "collapsed.html"
    net.graphtrace_payload = {
        "columns": columns,
        "scopes": [list(p) for p in scope_pairs],
        "roles": list(ROLE_COLORS),
        "colors": list(ROLE_COLORS.values()),
        "budget": EXPAND_BUDGET,
        "noAuto": [PARAMETERS, INPUTS, OUTSIDE],
        "maxLabel": MAX_LABEL,
    }
    if colors:
        net.graphtrace_payload["values"] = _floats([colors[1][n] for n in order])
        net.graphtrace_payload["valueName"] = colors[0]
    return net


_INT32 = 2**31 - 1


def _float(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _b64(values: list[Any], dtype: str) -> str:
    """A column as base64 of its little-endian bytes: the page decodes it into a typed array without
    parsing a number (NaN and the infinities included), which is most of what the first draw waited for."""
    return base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode("ascii")


def _ints(values: list[int]) -> dict[str, str]:
    """An integer column in the narrowest of uint8, uint16 and int32 that holds it, with its type."""
    low, high = min(values, default=0), max(values, default=0)
    kind = "u1" if low >= 0 and high < 2**8 else "u2" if low >= 0 and high < 2**16 else "i4"
    return {"t": kind, "b": _b64(values, "<" + kind)}


def _floats(values: list[float]) -> dict[str, Any]:
    """A float64 column, bit for bit: its distinct values and an index column when that is shorter
    (a trace repeats its local derivatives and gradients), else the values themselves."""
    bits = np.asarray(values, dtype="<f8").view("<i8")
    distinct, index = np.unique(bits, return_inverse=True)
    if (
        len(distinct) * 8 + len(values) * (1 if len(distinct) <= 2**8 else 2 if len(distinct) <= 2**16 else 4)
        < len(values) * 8
    ):
        return {"values": _b64(distinct.view("<f8").tolist(), "<f8"), "index": _ints(index.tolist())}
    return {"values": _b64(values, "<f8")}


def _words(values: list[str]) -> dict[str, Any]:
    """A string column as its distinct words and each row's word index (a trace repeats its names)."""
    seen: dict[str, int] = {}
    codes = [seen.setdefault(v, len(seen)) for v in values]
    return {"words": list(seen), "index": _ints(codes)}


def _json_num(x: Any) -> Any:
    """A float for JSON, or its repr ("nan", "inf") since JSON has none."""
    x = float(x)
    return x if math.isfinite(x) else str(x)


def _wants_collapse(G: nx.DiGraph, collapse: bool | None) -> bool:
    if collapse is not None:
        if not isinstance(collapse, bool):
            raise TypeError(f"collapse must be True, False or None, got {collapse!r}")
        return collapse
    return len(G) > COLLAPSE_OVER and any(a.get("scope") for a in G._node.values())


def _root_label(G: nx.DiGraph) -> str:
    root = G.graph.get("root")
    if root is not None and root in G:
        return str(G.nodes[root].get("label", "")) or "graph"
    return "graph"


def html_text(x: Any, *, title: str | None = None, collapse: bool | None = None, color_by: Any = None) -> str:
    """The self-contained HTML page for ``x`` as a string (what :func:`to_html` writes).

    ``collapse`` picks the view and ``color_by`` colours it (see :func:`to_html`).

    Examples
    --------
    >>> import graphtrace as gt
    >>> a = gt.Value(2.0, label="<b>a</b>")
    >>> page = gt.html_text(a * 3)
    >>> "<b>a</b>" in page, "&lt;b&gt;a&lt;/b&gt;" in page or "\\\\u003cb\\\\u003e" in page
    (False, True)
    """
    G = as_graph(x)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str, got {type(title).__name__}")
    heading = title if title is not None else f"graphtrace: {_root_label(G)}"
    colors = _values(G, color_by)
    if _wants_collapse(G, collapse):
        net = _collapsed_network(G, heading, colors)
        template = net.templateEnv.get_template("collapsed.html")
        value_name = colors[0] if colors else None
        return str(template.render(heading=heading, payload=net.graphtrace_payload, value_name=value_name))
    return str(_network(G, heading, colors).generate_html())


def _safe_name(label: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._") or "graph"
    return name[:80]


def to_html(
    x: Any,
    path: str | Path | None = None,
    *,
    title: str | None = None,
    collapse: bool | None = None,
    color_by: Any = None,
) -> Path:
    """Write ``x`` as one self-contained interactive HTML file and return its path.

    A trace of more than :data:`COLLAPSE_OVER` (500) nodes that has scopes (a model's calls, see
    :mod:`graphtrace.scopes`) opens collapsed: each top-level scope instance is one box (its name,
    node count, its output's data and grad), the biggest boxes are expanded while at most
    :data:`EXPAND_BUDGET` (15) boxes show, and edges between boxes are merged into one per pair with
    a count. Parameters sit in a box ``parameters`` (then by module path); model inputs and the other
    nodes recorded outside any scope form the boxes ``(inputs)`` and ``(outside any scope)`` when there
    are more than 20 of each. Click a box to expand it one level; double-click a node or box inside an expanded scope
    to collapse that scope again. A search box finds a node (by label) or a scope (by name), expands
    the path to it and focuses it; a toggle colours by ``|grad|`` (log scale) instead of by role.
    Smaller traces show every node. For scripts: ``window.graphtraceExpand(scope)``,
    ``window.graphtraceCollapse(scope)`` and ``window.graphtraceSearch(text)`` return Promises
    resolved once the view is redrawn.

    Parameters
    ----------
    x : Value or networkx.DiGraph
    path : str or Path, optional
        Defaults to ``exports/<root label>.html`` (``exports/`` is created).
    title : str, optional
        The page heading; user text is always escaped.
    collapse : bool, optional
        Force the collapsible view (True) or every node (False); by default as described above.
    color_by : str, mapping or pandas.Series, optional
        Colour nodes by a number instead of by role: the name of a numeric node attribute, or a
        mapping / Series from node id to value (``d.set_index("node_b")["d_data"]`` for a
        :func:`graphtrace.diff` table ``d``; missing ids are skipped). Blue below 0, white at 0, red
        above (square root of the share of the largest |value|), grey without a value. A collapsed
        box takes its output node's colour.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    TypeError
        If ``x`` is not a Value or DiGraph, ``title`` is not a str, or ``color_by`` is neither a name
        nor a mapping, or gives a value that is not a number.
    ValueError
        If ``path`` does not end in ``.html``/``.htm``, the graph has a cycle, ``color_by`` names an
        attribute no node has or a node that is not in the graph; nothing is written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import graphtrace as gt
    >>> L = gt.Value(2.0, label="a") * 3; L.label = "L"
    >>> out = gt.to_html(L, pathlib.Path(tempfile.mkdtemp()) / "L.html")
    >>> out.read_text().count("vis.Network(")
    1
    """
    G = as_graph(x)
    target = Path(path) if path is not None else DEFAULT_DIR / f"{_safe_name(_root_label(G))}.html"
    if target.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"to_html: {str(target)!r} should end in .html")
    page = html_text(G, title=title, collapse=collapse, color_by=color_by)
    return atomic_write(target, lambda fh: fh.write(page))


def show(
    x: Any, *, title: str | None = None, height: int = 600, collapse: bool | None = None, color_by: Any = None
) -> Any:
    """Display ``x`` inline in Jupyter (classic, JupyterLab, VS Code).

    The page goes into an ``<iframe srcdoc=...>`` with scripts sandboxed away from the notebook, which
    draws where pyvis's ``IFrame`` display (a file URL) stays blank.

    Returns
    -------
    IPython.display.HTML

    Examples
    --------
    >>> import graphtrace as gt
    >>> widget = gt.show(gt.Value(1.0, label="x") + 1)
    >>> widget.data.startswith("<iframe")
    True
    """
    try:
        from IPython.display import HTML
    except ImportError as exc:  # pragma: no cover - IPython comes with Jupyter
        raise ImportError("graphtrace.show needs IPython (pip install ipykernel)") from exc
    page = html_text(x, title=title, collapse=collapse, color_by=color_by)
    with warnings.catch_warnings():  # IPython suggests IFrame, which is exactly what draws blank in VS Code
        warnings.simplefilter("ignore", UserWarning)
        return HTML(  # type: ignore[no-untyped-call]
            f'<iframe srcdoc="{_html.escape(page, quote=True)}" sandbox="allow-scripts" '
            f'style="width: 100%; height: {int(height)}px; border: 1px solid #ddd"></iframe>'
        )
