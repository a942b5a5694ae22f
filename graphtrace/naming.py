"""Readable names and trace-relative scope instances, derived when a trace is read (never per op).

Names
-----
A node the user did not label is named after what made it, as torch.fx names the nodes of a graph:
its op's :attr:`~graphtrace.rules.Rule.node_name` (``mul``, ``add``, ``relu``, ...), ``leaf`` for an
unlabelled leaf and ``const`` for a number operand; the second of the same kind in the same scope
instance is ``mul_1``, then ``mul_2``, ... in creation order. A name never repeats a user label of its
scope instance. So the name depends only on the node's scope instance and the ops recorded there
before it: the same op of the same neuron has the same name in step 5 and in step 50, and in another
process. A node's full identity is its scope plus its name (``MLP[3]/Layer1/Neuron0`` + ``mul_2``).

Scope instances
---------------
A module called outside any scope numbers its own calls over the whole process (``MLP[10315]``
after 10,315 calls). A trace renumbers them in the order they appear *in it*: the first call of
``MLP`` in a trace is ``MLP[0]``, whatever ran before. Only the outermost segment needs it: calls
inside a scope are numbered from 0 within that scope instance already (:mod:`graphtrace.scopes`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import networkx as nx

from .rules import RULES

__all__ = ["OP_NAMES", "name_labels", "name_nodes", "renumber_paths", "renumber_scopes"]

#: op -> the base name of its unlabelled results (from the rules table)
OP_NAMES: dict[str, str] = {r.name: r.node_name for r in RULES.values()}
_ROLE_NAMES = {"constant": "const", "parameter": "param"}
_INDEXED = re.compile(r"^(.*)\[(\d+)\]$")
_UNSAFE = re.compile(r"[^0-9A-Za-z_]+")


def _base(a: dict[str, Any]) -> str:
    op = str(a.get("op", ""))
    if op:
        name = OP_NAMES.get(op)
        if name is None:  # an op from a loaded file: its text, made an identifier
            name = _UNSAFE.sub("_", op).strip("_") or "op"
        return name
    return _ROLE_NAMES.get(str(a.get("role", "")), "leaf")


def name_nodes(G: nx.DiGraph, order: Iterable[Any]) -> None:
    """Give every node of ``G`` without a ``label`` its readable name (see above), in place.

    ``order``: the nodes in creation (topological) order. User labels are kept as they are.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.DiGraph()
    >>> G.add_nodes_from([(0, {"label": "x", "op": "", "role": "leaf", "scope": ""}),
    ...                   (1, {"label": "", "op": "", "role": "constant", "scope": ""}),
    ...                   (2, {"label": "", "op": "*", "role": "intermediate", "scope": ""}),
    ...                   (3, {"label": "", "op": "*", "role": "intermediate", "scope": ""})])
    >>> name_nodes(G, [0, 1, 2, 3])
    >>> [G.nodes[n]["label"] for n in G]
    ['x', 'const', 'mul', 'mul_1']
    """
    node = G._node
    attrs = [node[n] for n in order]
    labels = [a.get("label") for a in attrs]
    names = name_labels(
        labels,
        [str(a.get("op", "")) for a in attrs],
        [str(a.get("role", "")) for a in attrs],
        [str(a.get("scope", "")) for a in attrs],
    )
    for a, old, name in zip(attrs, labels, names, strict=True):
        if not old:
            a["label"] = name


def name_labels(labels: list[Any], ops: list[str], roles: list[str], scopes: list[str]) -> list[Any]:
    """The columnar form of :func:`name_nodes`: ``labels`` with every empty one replaced by its
    readable name, given each node's ``op``, ``role`` and ``scope`` in creation order.

    Examples
    --------
    >>> name_labels(["x", "", "", ""], ["", "", "*", "*"], ["leaf", "constant", "intermediate", "intermediate"],
    ...             ["", "", "", "A"])
    ['x', 'const', 'mul', 'mul']
    """
    taken: dict[str, set[str]] = {}
    for label, scope in zip(labels, scopes, strict=True):
        if label:
            taken.setdefault(scope, set()).add(str(label))
    bases: dict[tuple[str, str], str] = {}
    counts: dict[tuple[str, str], int] = {}
    out = list(labels)
    for i, label in enumerate(labels):
        if label:
            continue
        scope = scopes[i]
        kind = (ops[i], roles[i])
        base = bases.get(kind)
        if base is None:
            base = bases[kind] = _base({"op": kind[0], "role": kind[1]})
        used = taken.get(scope)
        k = counts.get((scope, base), 0)
        while True:
            name = f"{base}_{k}" if k else base
            k += 1
            if not used or name not in used:
                break
        counts[(scope, base)] = k
        out[i] = name
    return out


def renumber_scopes(G: nx.DiGraph, order: Iterable[Any]) -> None:
    """Renumber the outermost call index of every node's ``scope`` in order of appearance, in place.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.DiGraph()
    >>> G.add_nodes_from([(5, {"scope": "MLP[17]/Layer0"}), (6, {"scope": "MLP[17]"}),
    ...                   (7, {"scope": "MLP[18]/Layer0/Neuron2[1]"}), (8, {"scope": "eval/MLP[4]"})])
    >>> renumber_scopes(G, [5, 6, 7, 8])
    >>> [G.nodes[n]["scope"] for n in G]
    ['MLP[0]/Layer0', 'MLP[0]', 'MLP[1]/Layer0/Neuron2[1]', 'eval/MLP[4]']
    """
    node = G._node
    renumber = _renumberer()
    for n in order:
        a = node[n]
        path = a.get("scope")
        if not path or not isinstance(path, str):
            continue
        new = renumber(path)
        if new is not path:
            a["scope"] = new


def _renumberer() -> Any:
    """A function from a scope path to its renumbered path, numbering first segments in the order
    the paths are given to it (the same path object back when nothing changes)."""
    index: dict[str, str] = {}  # old first segment -> new one
    counts: dict[str, int] = {}
    renamed: dict[str, str] = {}  # whole path -> renumbered path

    def renumber(path: str) -> str:
        new = renamed.get(path)
        if new is None:
            head, sep, rest = path.partition("/")
            seg = index.get(head)
            if seg is None:
                m = _INDEXED.match(head)
                if m is None:
                    seg = head
                else:
                    k = counts.get(m.group(1), 0)
                    counts[m.group(1)] = k + 1
                    seg = f"{m.group(1)}[{k}]"
                index[head] = seg
            new = renamed[path] = seg + sep + rest if seg != head else path
        return new

    return renumber


def renumber_paths(paths: list[str]) -> list[str]:
    """``paths`` (in order of first appearance) with their outermost call index renumbered as
    :func:`renumber_scopes` does for a trace's nodes.

    Examples
    --------
    >>> renumber_paths(["MLP/Layer0", "", "MLP[7]/Layer0", "MLP[7]/Layer1", "MLP[9]/Layer0"])
    ['MLP/Layer0', '', 'MLP[0]/Layer0', 'MLP[0]/Layer1', 'MLP[1]/Layer0']
    """
    renumber = _renumberer()
    return [renumber(p) if p and isinstance(p, str) else p for p in paths]
