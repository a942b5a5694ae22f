"""Graphviz DOT in the style of the seed's and micrograd's ``draw_dot``."""

from __future__ import annotations

import re
from typing import Any

from ..snapshot import as_graph
from .frames import topological_nodes

__all__ = ["draw_dot", "to_dot"]

_RECORD_SPECIAL = re.compile(r"([{}|<>\\])")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _record_text(s: str) -> str:
    """Escape text for a field of a Graphviz record label; a control character (which ``dot`` rejects
    or drops) shows as its Python escape ``\\xNN``."""
    s = _RECORD_SPECIAL.sub(r"\\\1", s)
    s = s.replace("\n", "\\n").replace("\r", "\\r")
    return _CONTROL.sub(lambda m: f"\\\\x{ord(m.group()):02x}", s)


def _quoted(s: str) -> str:
    # in a DOT quoted string only \" is an escape; other backslashes reach the label parser as they are.
    # Callers pass text whose backslashes are already doubled and that never ends in one.
    return '"' + s.replace('"', '\\"').replace("\n", "\\n") + '"'


def _html_text(s: str) -> str:
    """A Graphviz HTML-like label ``<...>`` showing ``s`` literally: every character that DOT's
    lexer, its escString rules or the HTML parser could read (quotes, backslashes, brackets,
    ampersands) becomes a numeric character reference, a backslash a doubled one (Graphviz reads
    backslash escapes even there), and a control character its visible ``\\xNN`` form."""
    out = []
    for c in s:
        o = ord(c)
        if c.isalnum() or c in " +-*/=.,:;_()":
            out.append(c)
        elif o < 0x20 or o == 0x7F or 0xD800 <= o < 0xE000 or o in (0xFFFE, 0xFFFF):  # not allowed in XML
            out.append(f"&#92;&#92;x{o:02x}")  # shown as the Python escape \xNN
        elif c == "\\":  # Graphviz still reads backslash escapes in HTML-like text: double it
            out.append("&#92;&#92;")
        else:
            out.append(f"&#{o};")
    return "<" + "".join(out) + ">"


def _clusters(by_scope: dict[str, list[str]]) -> list[str]:
    """DOT lines for nodes grouped by scope path: each path segment a nested ``subgraph cluster_k``
    labelled with the segment (escaped like an op label); nodes outside any scope at top level."""
    tree: dict[str, Any] = {}
    for path in by_scope:
        t = tree
        for seg in path.split("/") if path else []:
            t = t.setdefault(seg, {})
    out: list[str] = []
    counter = 0
    # depth-first without recursion (scopes may nest 10,000 deep); indentation stops growing at 16.
    # A str on the stack is a line to write; a tuple opens a cluster (seg given) or writes a scope's nodes.
    stack: list[str | tuple[str, dict[str, Any], str, str | None]] = [("", tree, "  ", None)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        prefix, t, indent, segment = item
        if segment is not None:
            out.append(f"{indent}subgraph cluster_{counter} {{")
            out.append(f'{indent}  label={_html_text(segment)}; style="rounded,dashed"; color="gray50";')
            counter += 1
            indent = indent + "  " if len(indent) < 32 else indent
        out.extend(indent + line for line in by_scope.get(prefix, []))
        for name, sub in reversed(t.items()):
            stack.append(f"{indent}}}")
            stack.append((f"{prefix}/{name}" if prefix else name, sub, indent, name))
    return out


def to_dot(x: Any, rankdir: str = "LR") -> str:
    """DOT text: a record node ``{ label | data | grad }`` per Value and an op node feeding each result;
    each edge is labelled with its ``local_grad`` (∂result/∂operand), as in the HTML view.

    Nodes recorded in a scope (:mod:`graphtrace.scopes`) sit in nested ``subgraph cluster_k`` blocks, one
    per path segment, labelled with the segment, so ``draw_dot`` of a Neuron call reads like one.

    Parameters
    ----------
    x : Value or networkx.DiGraph
    rankdir : {"LR", "TB", "RL", "BT"}

    Returns
    -------
    str
        Valid input for Graphviz ``dot``.

    Examples
    --------
    >>> import graphtrace as gt
    >>> a = gt.Value(2.0, label="a")
    >>> print(gt.to_dot(a * 3).splitlines()[3])
      n0 [label="{ a | data 2.0000 | grad 0.0000 }", shape=record];
    """
    if rankdir not in ("LR", "TB", "RL", "BT"):
        raise ValueError(f"to_dot: rankdir must be LR, TB, RL or BT, got {rankdir!r}")
    G = as_graph(x)
    order = topological_nodes(G)
    ids = {n: f"n{i}" for i, n in enumerate(order)}
    lines = ["digraph graphtrace {", f"  graph [rankdir={rankdir}];", '  node [fontname="monospace"];']
    by_scope: dict[str, list[str]] = {}
    for n in order:
        a = G._node[n]
        fields = [
            _record_text(str(a.get("label", ""))),
            f"data {float(a.get('data', float('nan'))):.4f}",
            f"grad {float(a.get('grad', float('nan'))):.4f}",
        ]
        mine = by_scope.setdefault(str(a.get("scope", "")), [])
        mine.append(f"{ids[n]} [label={_quoted('{ ' + ' | '.join(fields) + ' }')}, shape=record];")
        op = str(a.get("op", ""))
        if op:
            mine.append(f"{ids[n]}_op [label={_html_text(op)}];")
            mine.append(f"{ids[n]}_op -> {ids[n]};")
    lines.extend(_clusters(by_scope))
    for u, v, e in G.edges(data=True):
        target = f"{ids[v]}_op" if G._node[v].get("op") else ids[v]
        lg = e.get("local_grad")
        label = "" if lg is None else f' [label="{float(lg):.4g}", fontsize=10]'  # as the HTML's edge labels
        lines.append(f"  {ids[u]} -> {target}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_dot(x: Any, rankdir: str = "LR") -> Any:
    """A ``graphviz.Digraph`` of :func:`to_dot`'s text (renders inline in Jupyter).

    Raises
    ------
    ImportError
        If the optional ``graphviz`` package is missing (``pip install 'graphtrace[graphviz]'``).

    Examples
    --------
    >>> import graphtrace as gt
    >>> dot = gt.draw_dot(gt.Value(1.0, label="x") * 2)
    >>> type(dot).__name__
    'Digraph'
    """
    try:
        import graphviz
    except ImportError as exc:
        raise ImportError(
            "draw_dot needs the optional 'graphviz' package: pip install 'graphtrace[graphviz]' "
            "(and the Graphviz 'dot' program to render); to_dot works without it"
        ) from exc
    text = to_dot(x, rankdir=rankdir)
    body = text.splitlines()[1:-1]
    return graphviz.Digraph(name="graphtrace", body=[line + "\n" for line in body])
