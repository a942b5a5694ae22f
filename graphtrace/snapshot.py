"""Snapshots: an independent copy of a Value and all its ancestors, as a ``networkx.DiGraph``
(:func:`to_networkx`) or as columns (:func:`trace_columns`, what a recorded run's snapshot is
written from without building a graph)."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import networkx as nx

from . import store
from .backward import _ancestors
from .naming import name_labels, name_nodes, renumber_paths, renumber_scopes

__all__ = ["TraceColumns", "TraceCopy", "as_graph", "to_networkx", "trace_columns"]


@dataclass
class TraceColumns:
    """A trace as columns in creation (topological) order: the nodes' ``node_id``, ``data``,
    ``grad``, ``op``, ``label``, ``role``, ``scope`` and the edges' ``source``, ``target``,
    ``local_grad`` (edges grouped by target, in node order), and the ``root`` id.

    As read from the store (:func:`trace_columns` with ``named=False``) the labels are the users' (empty
    where none was given) and the scopes carry the process-wide call indices; :meth:`name` turns them
    into what :func:`to_networkx` shows, in place.
    """

    root: int
    node_id: list[int]
    data: Sequence[float]  # a list or an array("d")
    grad: Sequence[float]
    op: list[str]
    label: list[str]
    role: list[str]
    scope: list[str]
    source: list[int]
    target: list[int]
    local_grad: Sequence[float]
    named: bool = False
    #: the labels as read from the store, before :meth:`name` (None until then)
    given_label: list[str] | None = field(default=None, repr=False, compare=False)

    def name(self, like: TraceColumns | None = None) -> TraceColumns:
        """Renumber the scopes' outermost call indices and name the unlabelled nodes (see
        :mod:`graphtrace.naming`), once; returns ``self``.

        ``like``: a trace named before (a recorded run's previous snapshot). When this trace has the
        same ops, roles, given labels and renumbered scopes, node for node (a training step like the
        one before), its names are the same and are taken from it instead of derived again.
        """
        if not self.named:
            scope = renumber_paths(self.scope)
            given = self.label
            if (
                like is not None
                and like.named
                and like.given_label == given
                and like.op == self.op
                and like.role == self.role
                and like.scope == scope
            ):
                self.label = like.label
            else:
                self.label = name_labels(given, self.op, self.role, scope)
            self.scope, self.given_label, self.named = scope, given, True
        return self


class TraceCopy:
    """What :func:`copy_trace` took from the live store under its lock, to be made into
    :class:`TraceColumns` later (:meth:`columns`: in another thread, say), whatever the store does
    meanwhile."""

    __slots__ = ("_attrs", "_counts", "_floats", "_ids", "_local_grad", "_source", "_strings", "root")

    def __init__(self, root: Any) -> None:
        from .value import Value

        if not isinstance(root, Value):
            raise TypeError(f"trace_columns: root must be a graphtrace Value, got {type(root).__name__}")
        self.root = n = root.node_id
        with store.graph_lock():
            pred = store.PRED
            # the store is exactly the trace (a training step's): no search; else creation order is a
            # topological order
            ids = store._live_ids() if store.only_sink(n) else sorted(_ancestors(pred, n))  # type: ignore[arg-type,type-var]
            preds = list(map(pred.__getitem__, ids))
            # the values that can change later (data, grad, a label set or a node rescoped) are copied
            # now; op and role never change once recorded, so the dicts are kept to read them later
            self._attrs = attrs = list(map(store.NODE.__getitem__, ids))
            self._floats = [array("d", map(itemgetter(k), attrs)) for k in ("data", "grad")]
            self._strings: list[list[str]] = [list(map(itemgetter(k), attrs)) for k in ("label", "scope")]
            self._source = list(chain.from_iterable(preds))
            self._local_grad = array("d", map(_LOCAL_GRAD, chain.from_iterable(map(dict.values, preds))))
        self._ids = ids
        self._counts = list(map(len, preds))

    def columns(self, *, named: bool = True, like: TraceColumns | None = None) -> TraceColumns:
        """The copy as columns (named unless ``named=False``; ``like``: see :meth:`TraceColumns.name`)."""
        data, grad = self._floats
        label, scope = self._strings
        op = list(map(itemgetter("op"), self._attrs))
        role = list(map(itemgetter("role"), self._attrs))
        cols = TraceColumns(
            root=self.root,
            node_id=self._ids,
            data=data,
            grad=grad,
            op=op,
            label=label,
            role=role,
            scope=scope,
            source=self._source,
            target=list(chain.from_iterable(map(repeat, self._ids, self._counts))),
            local_grad=self._local_grad,
        )
        return cols.name(like) if named else cols


_LOCAL_GRAD = itemgetter("local_grad")


def trace_columns(root: Any, *, named: bool = True) -> TraceColumns:
    """``root`` and all its ancestors as columns, copied from the live store without building a graph.

    The columns hold what :func:`to_networkx` would give, node for node and edge for edge (same ids,
    names, scopes, floats). With ``named=False`` the labels and scopes are the store's, to be named
    by :meth:`TraceColumns.name`. A recorded run copies the trace under the store's lock
    (:class:`TraceCopy`) and makes the columns in its writer thread.

    Parameters
    ----------
    root : Value
        The output whose computation graph is wanted.
    named : bool, optional
        Whether to name the nodes and renumber the scopes (default True).

    Returns
    -------
    TraceColumns

    Raises
    ------
    TypeError
        If ``root`` is not a Value.

    Examples
    --------
    >>> import graphtrace as gt
    >>> x = gt.Value(2.0, label="x")
    >>> y = x * x + 1
    >>> cols = gt.snapshot.trace_columns(y)
    >>> cols.label, list(cols.data)
    (['x', 'mul', 'const', 'add'], [2.0, 4.0, 1.0, 5.0])
    >>> sorted(zip(cols.source, cols.target)) == sorted(gt.to_networkx(y).edges)
    True
    """
    return TraceCopy(root).columns(named=named)


def to_networkx(root: Any) -> nx.DiGraph:
    """An independent ``nx.DiGraph`` of ``root`` and all its ancestors.

    Node ids are ints (the Values' ``node_id``); nodes carry ``data``, ``grad``, ``op``, ``label``,
    ``role`` and ``scope``; edges carry ``local_grad``. Every node has a non-empty ``label``: the user's,
    or a name derived from what made it (``mul``, ``mul_1``, ``relu``, ``const``: unique in its scope
    instance and the same in every step, see :mod:`graphtrace.naming`). Scope call indices count from 0
    in the order the calls appear in this trace (``MLP[0]`` is its first sample). ``G.graph["root"]``
    is the root's id. Mutating the snapshot never touches the engine.

    Parameters
    ----------
    root : Value
        The output whose computation graph is wanted.

    Returns
    -------
    networkx.DiGraph

    Raises
    ------
    TypeError
        If ``root`` is not a Value.

    Examples
    --------
    >>> import graphtrace as gt
    >>> x = gt.Value(2.0, label="x")
    >>> y = x * x + 1
    >>> G = gt.to_networkx(y)
    >>> [G.nodes[n]["label"] for n in G]
    ['x', 'mul', 'const', 'add']
    >>> G.edges[x.node_id, y.operands[0].node_id]["local_grad"]
    4.0
    """
    from .value import Value

    if not isinstance(root, Value):
        raise TypeError(f"to_networkx: root must be a graphtrace Value, got {type(root).__name__}")
    G = nx.DiGraph()
    with store.graph_lock():
        pred = store.PRED
        node = store.NODE
        ids: list[int] = sorted(_ancestors(pred, root.node_id))  # type: ignore[arg-type]  # creation order is a topological order
        G.add_nodes_from((n, dict(node[n])) for n in ids)
        G.add_edges_from((u, v, dict(e)) for v in ids for u, e in pred[v].items())
    renumber_scopes(G, ids)
    name_nodes(G, ids)
    G.graph["root"] = root.node_id
    return G


def as_graph(x: Any) -> nx.DiGraph:
    """A snapshot for a root Value, or the DiGraph itself (the exporters' common entry point)."""
    from .value import Value

    if isinstance(x, Value):
        return to_networkx(x)
    if isinstance(x, nx.DiGraph) and not x.is_multigraph():
        return x
    raise TypeError(f"expected a graphtrace Value or a networkx.DiGraph, got {type(x).__name__}")
