"""Interactive HTML: one self-contained page per trace, with graphtrace's own template and scripts.

The page is a template (``templates/page.html``, rendered by Jinja with autoescaping on: user text is
escaped, data goes through ``tojson`` in a JSON script tag) into which the scripts are inlined as they are
written: vis-network (from pyvis's package, which draws the boxes), dagre (vendored, the layered layout)
and graphtrace's own plain JavaScript files in ``js/``, one concern each (no build step). A
Content-Security-Policy forbids every network request. The trace travels as compact columns
(:mod:`graphtrace.export.payload`), bit for bit.
"""

from __future__ import annotations

import html as _html
import math
import re
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import networkx as nx
import pandas as pd
import pyvis
from markupsafe import Markup

from .._files import atomic_write
from .._real import as_float
from ..snapshot import as_graph
from .frames import topological_nodes
from .payload import ROLE_COLORS, page_data, trace_name

__all__ = ["DEFAULT_DIR", "EXPAND_BUDGET", "ROLE_COLORS", "SCRIPTS", "html_text", "show", "to_html"]

DEFAULT_DIR = Path("exports")
_HERE = Path(__file__).parent
#: The page's own scripts, in the order they are inlined (each one's concern in its first lines).
SCRIPTS = (
    "format.js",
    "data.js",
    "folding.js",
    "layout.js",
    "labels.js",
    "legend.js",
    "replay.js",
    "details.js",
    "search.js",
    "view.js",
    "page.js",
)
#: The first view opens boxes while it shows at most this many (and they fit the window legibly).
EXPAND_BUDGET = 15


def _inline(name: str, text: str) -> Markup:
    if "</script" in text.lower() or "<!--" in text:
        raise RuntimeError(f"{name} cannot be inlined into a <script> element safely")
    return Markup(text)


@cache
def _environment() -> jinja2.Environment:
    vis = Path(pyvis.__file__).parent / "lib" / "vis-9.1.2"
    css = (vis / "vis-network.css").read_text(encoding="utf-8")
    if "</style" in css.lower():  # pragma: no cover - a clean copy
        raise RuntimeError("vis-network's CSS cannot be inlined safely")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_HERE / "templates"), autoescape=True)
    env.globals.update(
        vis_js=_inline("vis-network", (vis / "vis-network.min.js").read_text(encoding="utf-8")),
        vis_css=Markup(css),
        dagre_js=_inline("dagre", (_HERE / "vendor" / "dagre.min.js").read_text(encoding="utf-8")),
        scripts=[(name, _inline(name, (_HERE / "js" / name).read_text(encoding="utf-8"))) for name in SCRIPTS],
    )
    return env


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


def _fold(collapse: bool | None) -> bool:
    if collapse is not None and not isinstance(collapse, bool):
        raise TypeError(f"collapse must be True, False or None, got {collapse!r}")
    return collapse is not False


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
    fold = _fold(collapse)
    colors = _values(G, color_by)
    topological_nodes(G)  # a cycle is refused before anything else is built
    heading = title if title is not None else f"graphtrace: {trace_name(G)}"
    data = page_data(G, fold=fold, budget=EXPAND_BUDGET, colors=colors)
    template = _environment().get_template("page.html")
    return str(template.render(heading=heading, payload=data, value_name=colors[0] if colors else None))


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

    The page opens folded by scope (a model's calls, see :mod:`graphtrace.scopes`): each top-level
    scope instance is one box (its name, node count, its output's data and grad), and the biggest boxes
    are opened while at most :data:`EXPAND_BUDGET` (15) boxes show and the whole view fits the window with
    labels of at least 10.5 CSS px (left to right, else top to bottom); what cannot fit stays folded.
    Consecutive sibling instances with the same structure (same ops, wiring and inner scope names:
    ``MLP[0]`` … ``MLP[99]``, a torch ``ModuleList``'s blocks) fold into one stack ("MLP ×100"), whose
    boxes show the min … median … max of the instances' outputs; opened, it shows one instance (picked
    in the header). Edges between boxes are merged into one per pair with a count. A parameter sits in
    the module using it (a torch model's ``conv1.weight`` in ``conv1``), else (a model called once per
    sample) in a box ``parameters``, by module path; model inputs and the other nodes recorded outside any
    scope form the boxes ``(inputs)`` and ``(outside any scope)`` when there are more than 15 of each.
    A trace without scopes shows every node. Click a box to open it; double-click inside an opened
    scope to close it; the search box finds a node (by label, id, or a parameter's dotted name), the
    output ("loss") or a scope; the buttons replay the backward pass step by step over what is shown;
    a legend explains every colour and number. For scripts: ``window.graphtraceExpand(scope)``,
    ``window.graphtraceCollapse(scope)``, ``window.graphtraceSearch(text)``,
    ``window.graphtracePick(k)`` and ``window.graphtraceStep(n)`` return Promises resolved once the
    view is redrawn.

    Parameters
    ----------
    x : Value or networkx.DiGraph
    path : str or Path, optional
        Defaults to ``exports/<root label>.html`` (``exports/`` is created).
    title : str, optional
        The page heading; user text is always escaped.
    collapse : bool, optional
        Open folded as described above (True or None, the default) or with every node shown
        (False).
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
