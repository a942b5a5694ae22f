"""The data of a page: a trace as compact columns the page's scripts decode, bit for bit.

One column per field, rows in topological order for nodes (``id``, ``scope`` index, ``role`` index,
``label``, ``op``, ``data``, ``grad``) and, for edges, each result's operands in order (``nargs`` per
result, then ``src`` the operand's row and ``lg`` the local_grad per edge). Numbers travel as base64 typed
arrays of the narrowest type (float64 bit for bit: NaN, the infinities and -0.0 included), strings as
distinct words plus an index column; ``id`` is left out when the ids are the row numbers. A tensor trace
adds ``shape``, ``info`` (the summary lines), ``numel``, ``known`` (bit 1: data recorded, bit 2: grad
recorded), ``bad`` (bit 1: non-finite data, bit 2: non-finite grad) and per edge ``gn`` (the gradient
norm along it) and ``gbad`` (its non-finite count).

``scopes``: the scope tree as ``[parent index, segment]``, parents before children (no path string is built:
scopes may nest 10,000 deep); ``stacks``: the sibling instances that fold, as ``[base name, member scopes]``
(see :mod:`graphtrace.export.stacks`). Strings reach the page only through ``tojson`` in a JSON script tag and
are drawn as text, never as HTML.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Hashable
from typing import Any

import networkx as nx
import numpy as np

from .._bidi import isolate
from ..naming import OP_NAMES
from .frames import contained_nonfinite, is_tensor_trace, node_roles, topological_nodes
from .stacks import stacks

__all__ = ["INPUTS", "OUTSIDE", "PARAMETERS", "ROLE_COLORS", "page_data", "tensor_info", "trace_name"]

#: Node colours by role, after torchviz (parameters blue, inputs orange, root green).
ROLE_COLORS = {
    "parameter": "#9ecae1",
    "leaf": "#fdd0a2",
    "constant": "#e5e5e5",
    "intermediate": "#ffffff",
    "root": "#a1d99b",
}
#: Boxes of the folded view that are not scopes: parameters (under their module path), and, when there
#: are more than ``budget`` of them, the model inputs (leaves used only inside scopes) and the other nodes
#: recorded outside any scope (a loss built by hand). The first view never opens them.
#: What the panel of a contained non-finite value says (see ``bad`` bit 4 in :func:`payload`).
CONTAINED = (
    "contained: every op using this value gave finite values and its gradient is finite (a mask, such as "
    "-inf before a softmax): not drawn as an anomaly"
)
PARAMETERS, INPUTS, OUTSIDE = "parameters", "(inputs)", "(outside any scope)"
MAX_LABEL = 32  # labels longer than this are cut on the boxes (the panel shows them whole)
_ROLE_INDEX = {role: i for i, role in enumerate(ROLE_COLORS)}
_INT32 = 2**31 - 1
_UNSAFE = re.compile(r"[^0-9A-Za-z_]+")
_INDEX = re.compile(r"\[\d+\]$")
_INDEXED_SEGMENT = re.compile(r"^(.+)\[(\d+)\]$")


def _fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def tensor_info(a: dict[str, Any]) -> str:
    """The summary lines of a tensor node (dtype, element count, data and grad statistics). A trace
    recorded with ``stats="norms"`` has the norm and the non-finite count alone: the other
    statistics are said to be not recorded (never shown as numbers).

    Examples
    --------
    >>> print(tensor_info({"dtype": "float32", "numel": 6, "stats": "norms", "data_known": True,
    ...                    "data_norm": 2.5, "data_nonfinite": 0, "grad_known": False}))
    dtype: float32, 6 elements
    data: norm 2.5 (mean, std, min, max: not recorded, stats='norms')
    grad: not recorded
    """
    lines = [f"dtype: {a.get('dtype', '')}, {a.get('numel', -1)} elements"]
    norms = a.get("stats") == "norms"
    for p in ("data", "grad"):
        if not a.get(f"{p}_known"):
            lines.append(f"{p}: not recorded")
            continue
        norm = a.get(f"{p}_norm", math.nan)
        if norms:
            stats = "norm " + (_fmt(norm) if norm == norm or a.get(f"{p}_nonfinite") else "not recorded (overflowed)")
            stats += " (mean, std, min, max: not recorded, stats='norms')"
        else:
            stats = ", ".join(f"{s} {_fmt(a.get(f'{p}_{s}', math.nan))}" for s in ("mean", "std", "min", "max", "norm"))
        bad = a.get(f"{p}_nonfinite", 0)
        lines.append(
            f"{p}: {stats}"
            + (", non-finite elements (how many: not recorded)" if bad == -1 else f", {bad} non-finite" if bad else "")
        )
    return "\n".join(lines)


def _shown(a: dict[str, Any], p: str) -> bool:
    """Whether the page shows node ``a``'s ``p`` (``data``, ``grad``) as a number: recorded, and not
    a ``stats="norms"`` norm that overflowed its dtype (NaN with every element finite: not recorded)."""
    if not a.get(f"{p}_known"):
        return False
    return not (a.get("stats") == "norms" and a.get(p) != a.get(p) and not a.get(f"{p}_nonfinite"))


def _generated(a: dict[str, Any], label: str) -> bool:
    """Whether ``label`` is a name graphtrace or the torch bridge made up (``add_537``, ``mean``)."""
    op = str(a.get("op", ""))
    if op:
        base = OP_NAMES.get(op) or _UNSAFE.sub("_", op).strip("_") or "op"
    else:
        base = {"constant": "const", "parameter": "param"}.get(str(a.get("role", "")), "leaf")
    return re.fullmatch(re.escape(base) + r"(_\d+)?", label) is not None


def trace_name(G: nx.DiGraph) -> str:
    """The name of a trace for its page: the root's label when a person gave it, else the model's
    name (the outermost scope of its parameters, or of its nodes) with "loss" (also for a root a
    person named "loss"), else the root's name.

    Examples
    --------
    >>> import graphtrace as gt
    >>> L = gt.Value(2.0) * 3; L.label = "L"
    >>> trace_name(gt.to_networkx(L)), trace_name(gt.to_networkx(gt.Value(2.0) * 3))
    ('L', 'mul')
    """
    roots = [n for n, r in node_roles(G).items() if r == "root"]
    root = G.graph.get("root", roots[-1] if roots else None)
    a = G.nodes[root] if root is not None and root in G else {}
    label = str(a.get("label", ""))
    if label and label != "loss" and not _generated(a, label):
        return label
    tops = {str(b.get("scope", "")).split("/", 1)[0] for b in G._node.values() if b.get("role") == "parameter"}
    tops.discard("")
    if not tops:
        tops = {str(b.get("scope", "")).split("/", 1)[0] for b in G._node.values()}
        tops.discard("")
    models = {_INDEX.sub("", t) for t in tops}
    if len(models) == 1:  # (a root named just "loss" says which model's)
        return f"{models.pop()} loss"
    return label or "graph"


def _b64(values: Any, dtype: str) -> str:
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
        return {"values": _b64(distinct.view("<f8"), "<f8"), "index": _ints(index.tolist())}
    return {"values": _b64(values, "<f8")}


def _words(values: list[str]) -> dict[str, Any]:
    """A string column as its distinct words and each row's word index (a trace repeats its names)."""
    seen: dict[str, int] = {}
    codes = [seen.setdefault(v, len(seen)) for v in values]
    return {"words": [isolate(w) for w in seen], "index": _ints(codes)}


def _float(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError, OverflowError):
        return math.nan


class _ScopeTree:
    """Scope paths as ``[parent index, segment]`` pairs, parents first, each path's segments walked from
    the root through a dict per scope (no prefix string is built)."""

    def __init__(self) -> None:
        self.pairs: list[tuple[int, str]] = [(-1, "")]
        self._children: list[dict[str, int]] = [{}]
        self._ids: dict[str, int] = {"": 0}

    def index(self, path: str) -> int:
        k = self._ids.get(path)
        if k is None:
            k = 0
            for seg in path.split("/"):
                nxt = self._children[k].get(seg)
                if nxt is None:
                    nxt = self._children[k][seg] = len(self.pairs)
                    self.pairs.append((k, seg))
                    self._children.append({})
                k = nxt
            self._ids[path] = k
        return k


def _module_lists(
    pairs: list[tuple[int, str]], found: list[tuple[str, list[int]]]
) -> tuple[list[tuple[int, str]], list[int], list[int]] | None:
    """The scope tree with a scope for each torch ``Sequential``/``ModuleList`` whose children do not all
    fold into one stack: the bridge names the children ``layer2[0]``, ``layer2[1]`` (the container has no
    ops of its own, so no scope), which would show as siblings of ``conv1``; grouped, ``ResNet18`` shows
    ``layer1 ×2`` and the boxes ``layer2`` … ``layer4``, as its modules are. A family is a container's
    children when it counts from ``[0]`` (a module's later calls count from ``[1]``) and no sibling has the
    container's name. None when nothing is grouped; else (pairs, the added scopes, old index -> new)."""
    families: dict[tuple[int, str], list[int]] = {}
    names: set[tuple[int, str]] = set()
    for k in range(1, len(pairs)):
        parent, seg = pairs[k]
        names.add((parent, seg))
        m = _INDEXED_SEGMENT.match(seg)
        if m is not None:
            families.setdefault((parent, m[1]), []).append(k)
    whole = {tuple(sorted(run)) for _, run in found}
    grouped = {
        key: members
        for key, members in families.items()
        if len(members) > 1
        and key not in names
        and any(pairs[k][1].endswith("[0]") for k in members)
        and tuple(sorted(members)) not in whole
    }
    if not grouped:
        return None
    member_of = {k: key for key, members in grouped.items() for k in members}
    out: list[tuple[int, str]] = [(-1, "")]
    new_index = [0] * len(pairs)
    made: dict[tuple[int, str], int] = {}
    virtual: list[int] = []
    for k in range(1, len(pairs)):
        parent, seg = pairs[k]
        up = new_index[parent]
        key = member_of.get(k)
        if key is not None:
            v = made.get(key)
            if v is None:
                v = made[key] = len(out)
                out.append((up, key[1]))
                virtual.append(v)
            up = v
        new_index[k] = len(out)
        out.append((up, seg))
    return out, virtual, new_index


def page_data(
    G: nx.DiGraph, *, fold: bool, budget: int, colors: tuple[str, dict[Hashable, float]] | None = None
) -> dict[str, Any]:
    """The page's data for ``G`` (see the module docstring); ``fold``: open folded (True) or every node
    shown (False); ``budget``: at most this many boxes in the first view; ``colors``: ``color_by`` as
    (name, value per node)."""
    roles = node_roles(G)
    order = topological_nodes(G)
    node, succ, pred = G._node, G._succ, G._pred
    tree = _ScopeTree()
    inputs = {
        n for n in order if not node[n].get("scope") and not pred[n] and all(node[c].get("scope") for c in succ[n])
    }
    outside = sum(1 for n in order if not node[n].get("scope")) - len(inputs)
    group_inputs, group_outside = len(inputs) > budget, outside > budget

    def owner(n: Any, path: str) -> str:
        """The innermost scope holding parameter n's module and every op using it ("" if none does: a
        model called per sample, or twice)."""
        segs = path.split("/")
        for c in succ[n]:
            user = str(node[c].get("scope", "")).split("/")
            k = 0
            while k < len(segs) and k < len(user) and segs[k] == user[k]:
                k += 1
            segs = segs[:k]
        return "/".join(segs)

    def shown_path(n: Any, a: dict[str, Any]) -> str:
        path = str(a.get("scope", ""))
        if a.get("role") == "parameter" and path:
            return owner(n, path) or f"{PARAMETERS}/{path}"
        if path:
            return path
        if n in inputs:
            return INPUTS if group_inputs else ""
        return OUTSIDE if group_outside else ""

    attrs = [node[n] for n in order]
    index = {n: i for i, n in enumerate(order)}
    ids = [n if isinstance(n, int) else str(n) for n in order]
    sources = [index[u] for v in order for u in pred[v]]
    nargs = [len(pred[v]) for v in order]
    int_ids = [n for n in ids if type(n) is int and abs(n) <= _INT32]
    # ids: none when they are the row numbers, else base64 when they are all int32, else a list
    id_column = (None if int_ids == list(range(len(ids))) else _ints(int_ids)) if len(int_ids) == len(ids) else ids
    scope_of = [tree.index(shown_path(n, a)) for n, a in zip(order, attrs, strict=True)]
    tensors = is_tensor_trace(G)
    role_of = [_ROLE_INDEX[roles[n]] for n in order]
    op_text = [str(a.get("op", "")) for a in attrs]
    ops = _words(op_text)
    op_index: dict[str, int] = {}
    op_of = [op_index.setdefault(w, len(op_index)) for w in op_text]  # as _words numbers them
    columns: dict[str, Any] = {
        "id": id_column,
        "scope": _ints(scope_of),
        "role": _ints(role_of),
        "label": _words([str(a.get("label", "")) for a in attrs]),
        "op": ops,
        "data": _floats([_float(a.get("data", math.nan)) for a in attrs]),
        "grad": _floats([_float(a.get("grad", math.nan)) for a in attrs]),
        "nargs": _ints(nargs),
        "src": _ints(sources),
        "lg": _floats([_float(e.get("local_grad", math.nan)) for v in order for e in pred[v].values()]),
    }
    if tensors:
        columns["shape"] = _words([str(a.get("shape", "")) for a in attrs])
        # a non-finite value every user turns finite again (a -inf attention mask before softmax), its
        # gradient finite: contained, said in its panel but not drawn as an anomaly
        contained = [contained_nonfinite(G, n) for n in order]
        columns["info"] = _words(
            [tensor_info(a) + ("\n" + CONTAINED if held else "") for a, held in zip(attrs, contained, strict=True)]
        )
        columns["numel"] = _floats([_float(a.get("numel", -1)) for a in attrs])
        columns["known"] = _ints([(1 if _shown(a, "data") else 0) | (2 if _shown(a, "grad") else 0) for a in attrs])
        columns["bad"] = _ints(
            [
                4 if held else (1 if a.get("data_nonfinite") else 0) | (2 if a.get("grad_nonfinite") else 0)
                for a, held in zip(attrs, contained, strict=True)
            ]
        )
        columns["gn"] = _floats([_float(e.get("grad_norm", math.nan)) for v in order for e in pred[v].values()])
        columns["gbad"] = _ints([int(e.get("grad_nonfinite", 0) or 0) for v in order for e in pred[v].values()])
    pairs = tree.pairs
    found = stacks(pairs, scope_of, op_of, role_of, nargs, sources) if fold else []
    virtual: list[int] = []
    if fold and tensors:
        regrouped = _module_lists(pairs, found)
        if regrouped is not None:
            pairs, virtual, new_index = regrouped
            scope_of = [new_index[k] for k in scope_of]
            columns["scope"] = _ints(scope_of)
            found = stacks(pairs, scope_of, op_of, role_of, nargs, sources)
    root = G.graph.get("root")
    data: dict[str, Any] = {
        "columns": columns,
        "scopes": [[parent, isolate(seg)] for parent, seg in pairs],
        "virtual": virtual,
        "stacks": [[isolate(base), *rest] for base, *rest in found],
        "kind": "tensor" if tensors else "scalar",
        # the level of a tensor trace's statistics: "norms" when every node has the norms alone
        "stats": "norms" if tensors and attrs and all(a.get("stats") == "norms" for a in attrs) else "full",
        "name": trace_name(G),
        "root": index[root] if root is not None and root in index else -1,
        "roles": list(ROLE_COLORS),
        "colors": list(ROLE_COLORS.values()),
        "budget": budget,
        "fold": fold,
        "noAuto": [PARAMETERS, INPUTS, OUTSIDE],
        "maxLabel": MAX_LABEL,
    }
    if colors:
        data["values"] = _floats([colors[1][n] for n in order])
        data["valueName"] = colors[0]
    return data
