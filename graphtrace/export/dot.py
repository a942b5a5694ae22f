"""Graphviz DOT in the style of the seed's and micrograd's ``draw_dot``."""

from __future__ import annotations

import re
from typing import Any

import networkx as nx

from ..snapshot import as_graph
from .frames import is_tensor_trace, topological_nodes

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


_INDEXED = re.compile(r"^(.*)\[(\d+)\]$")


def _spread(values: list[float]) -> str:
    """``min … median … max`` of ``values`` (NaN ones left out)."""
    v = sorted(x for x in values if x == x)
    if not v:
        return "nan"
    return f"{v[0]:.4g} … {v[(len(v) - 1) // 2]:.4g} … {v[-1]:.4g}"


def _fold(G: nx.DiGraph, order: list[Any], depth: int | None) -> dict[Any, tuple[str, str, str]]:
    """Node -> (item key, its cluster path, kind) for the nodes drawn inside a box: a scope deeper than
    ``depth`` (kind ``"box"``), or a stack of sibling instances of one module with the same node count
    (``MLP[0]`` ... ``MLP[99]``, kind ``"stack"``, at any level). Nodes drawn as themselves are absent."""
    node = G._node
    paths = {n: str(node[n].get("scope", "")) for n in order}
    size: dict[str, int] = {}
    for path in paths.values():
        prefix = ""
        for seg in path.split("/") if path else []:
            prefix = f"{prefix}/{seg}" if prefix else seg
            size[prefix] = size.get(prefix, 0) + 1
    members: dict[tuple[str, str, int], list[str]] = {}
    for prefix, n in size.items():
        parent, _, last = prefix.rpartition("/")
        m = _INDEXED.match(last)
        if m:
            members.setdefault((parent, m.group(1), n), []).append(prefix)
    stack_of = {p: key for key, ps in members.items() if len(ps) > 1 for p in ps}
    out: dict[Any, tuple[str, str, str]] = {}
    for n in order:
        path = paths[n]
        if not path:
            continue
        prefix = ""
        for level, seg in enumerate(path.split("/"), start=1):
            parent = prefix
            prefix = f"{prefix}/{seg}" if prefix else seg
            key = stack_of.get(prefix)
            if key is not None:
                out[n] = ("stack\0" + "\0".join(map(str, key)), parent, "stack")
                break
            if depth is not None and level > depth:
                out[n] = ("box\0" + prefix, parent, "box")
                break
    return out


def to_dot(x: Any, rankdir: str = "LR", depth: int | None = 1) -> str:
    """DOT text: a record node ``{ label | data | grad }`` per Value and an op node feeding each result;
    each edge is labelled with its ``local_grad`` (∂result/∂operand), as in the HTML view. On a tensor
    trace (:mod:`graphtrace.pytorch`) records add the shape and edges show the norm of the gradient
    they carry back (``grad_norm``).

    Nodes recorded in a scope (:mod:`graphtrace.scopes`) sit in nested ``subgraph cluster_k`` blocks, one
    per path segment, labelled with the segment, so ``draw_dot`` of a Neuron call reads like one. Scopes
    nested deeper than ``depth`` are folded into one box per instance (its node count and output), and
    sibling instances of one module with the same node count (a batch's ``MLP[0]`` ... ``MLP[99]``) into
    one stack (``MLP ×100`` with the min … median … max of their outputs). Edges into or out of a box are
    merged per pair of items, labelled with their count.

    Parameters
    ----------
    x : Value or networkx.DiGraph
    rankdir : {"LR", "TB", "RL", "BT"}
    depth : int or None, default 1
        Scope levels drawn node by node: at 1, a sample through an MLP is the cluster of its call
        with one box per layer (984 nodes: 40 lines of DOT, drawn by ``dot`` in well under a second); at
        2, a box per neuron; None draws every node (stacks are still folded).

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
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise ValueError(f"to_dot: depth must be an int >= 0 or None, got {depth!r}")
    G = as_graph(x)
    tensors = is_tensor_trace(G)
    order = topological_nodes(G)
    folded = _fold(G, order, depth)
    ids = {n: f"n{i}" for i, n in enumerate(order)}
    lines = ["digraph graphtrace {", f"  graph [rankdir={rankdir}];", '  node [fontname="monospace"];']
    by_scope: dict[str, list[str]] = {}
    boxes: dict[str, list[Any]] = {}  # item key -> its nodes, in topological order
    box_id: dict[str, str] = {}
    box_place: dict[str, tuple[str, str]] = {}
    for n in order:
        a = G._node[n]
        hit = folded.get(n)
        if hit is not None:
            key, place, kind = hit
            if key not in boxes:
                boxes[key] = []
                box_id[key] = f"b{len(box_id)}"
                box_place[key] = (place, kind)
            boxes[key].append(n)
            continue
        fields = [
            _record_text(str(a.get("label", ""))),
            f"data {float(a.get('data', float('nan'))):.4f}",
            f"grad {float(a.get('grad', float('nan'))):.4f}",
        ]
        if tensors:  # a tensor's shape under its name; data and grad are norms (one element: the value)
            fields.insert(1, _record_text(str(a.get("shape", ""))))
        mine = by_scope.setdefault(str(a.get("scope", "")), [])
        mine.append(f"{ids[n]} [label={_quoted('{ ' + ' | '.join(fields) + ' }')}, shape=record];")
        op = str(a.get("op", ""))
        if op:
            mine.append(f"{ids[n]}_op [label={_html_text(op)}];")
            mine.append(f"{ids[n]}_op -> {ids[n]};")
    for key, members in boxes.items():
        place, kind = box_place[key]
        if kind == "stack":
            _, _parent, name, each = key.split("\0")
            # the stack's instances: one output (last node) per instance path
            outs: dict[str, Any] = {}
            for n in members:  # the instance a node is in: the stack's parent path plus one segment
                path = str(G._node[n].get("scope", ""))
                rest = path[len(_parent) + 1 :] if _parent else path
                outs[rest.split("/", 1)[0]] = n  # the last node of each instance is its output
            data = _spread([float(G._node[o].get("data", float("nan"))) for o in outs.values()])
            grad = _spread([float(G._node[o].get("grad", float("nan"))) for o in outs.values()])
            title = f"{name} ×{len(outs)} [{each} nodes each]"
        else:
            path = key.split("\0", 1)[1]
            o = G._node[members[-1]]
            data = f"{float(o.get('data', float('nan'))):.4f}"
            grad = f"{float(o.get('grad', float('nan'))):.4f}"
            title = f"▸ {path.rsplit('/', 1)[-1]} [{len(members)} nodes]"
        fields = [_record_text(title), f"data {data}", f"grad {grad}"]
        style = (
            ', style="rounded,filled,dashed", fillcolor="#dadaeb"'
            if kind == "stack"
            else ', style="filled", fillcolor="#ecebf3"'
        )
        by_scope.setdefault(place, []).append(
            f"{box_id[key]} [label={_quoted('{ ' + ' | '.join(fields) + ' }')}, shape=Mrecord{style}];"
        )
    lines.extend(_clusters(by_scope))
    item = {n: box_id[folded[n][0]] for n in folded}
    merged: dict[tuple[str, str], list[float]] = {}
    for u, v, e in G.edges(data=True):
        target = item[v] if v in item else (f"{ids[v]}_op" if G._node[v].get("op") else ids[v])
        source = item.get(u, ids[u])
        if source == target:
            continue
        # a tensor trace's edges carry the norm of the gradient they send back instead
        merged.setdefault((source, target), []).append(
            float(e.get("grad_norm" if tensors else "local_grad", float("nan")))
        )
    for (source, target), grads in merged.items():
        if len(grads) == 1:  # as the HTML's edge labels
            label = f' [label="{grads[0]:.4g}", fontsize=10]'
        else:
            label = f' [label="×{len(grads)}", fontsize=10, penwidth={min(4.0, 1 + len(grads) ** 0.25):.2f}]'
        lines.append(f"  {source} -> {target}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_dot(x: Any, rankdir: str = "LR", depth: int | None = 1) -> Any:
    """A ``graphviz.Digraph`` of :func:`to_dot`'s text (renders inline in Jupyter).

    Raises
    ------
    ImportError
        If the optional ``graphviz`` package is missing (``pip install 'graphtrace-nx[graphviz]'``).

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
            "draw_dot needs the optional 'graphviz' package: pip install 'graphtrace-nx[graphviz]' "
            "(and the Graphviz 'dot' program to render); to_dot works without it"
        ) from exc
    text = to_dot(x, rankdir=rankdir, depth=depth)
    body = text.splitlines()[1:-1]
    return graphviz.Digraph(name="graphtrace", body=[line + "\n" for line in body])
