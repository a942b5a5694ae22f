"""Save and load traces, losslessly: ``.json``, ``.graphml`` and ``.parquet``.

Formats
-------
``.json``
    networkx node-link data (``edges="edges"``) plus ``{"graphtrace": 1}``. Floats are written with
    ``repr`` (bit-exact); NaN and infinities use Python's ``NaN`` / ``Infinity`` tokens.
``.graphml``
    GraphML with typed keys (``data``/``grad``/``local_grad`` as double, strings as string). Characters
    XML 1.0 cannot hold (most control characters, and ``\\r``, which XML folds into ``\\n``) are
    written as ``\\uXXXX`` escapes, with a literal backslash written ``\\\\``; the graph attribute
    ``graphtrace_escape`` marks this.
``.parquet``
    One Parquet file holding both tables in long form, told apart by the ``kind`` column:
    node rows (``kind="node"``: ``node_id``, ``label``, ``op``, ``role``, ``scope``, ``data``, ``grad``) and edge
    rows (``kind="edge"``: ``source``, ``target``, ``local_grad``); the other columns are null. The
    root id is in the schema metadata (``graphtrace.root``). Float columns are Arrow float64 built
    directly (never via pandas), so NaN stays NaN, not null. Query it with DuckDB, e.g.
    ``SELECT * FROM 'trace.parquet' WHERE kind = 'node'``.

Every write is atomic (a temporary file, then a rename); every load checks that the file is a
graphtrace trace and raises ``ValueError`` naming the file and the problem.
"""

from __future__ import annotations

import json
import re
import sys
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import networkx as nx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._files import atomic_write
from .export.frames import TENSOR_COLUMNS, is_tensor_trace
from .snapshot import TraceColumns, as_graph, trace_columns
from .value import Value

__all__ = ["FORMATS", "load", "parquet_table", "save"]

FORMATS = (".json", ".graphml", ".parquet")
NODE_KEYS = ("data", "grad", "op", "label", "role", "scope")
_REQUIRED_KEYS = NODE_KEYS[:5]  # files written before scopes existed have no "scope": it loads as ""
_FLOAT_KEYS = ("data", "grad")
_STR_KEYS = ("op", "label", "role", "scope")
_FLOAT_INT_MAX = int(sys.float_info.max)


def _suffix(path: Path, verb: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{verb}: {str(path)!r} has suffix {path.suffix!r}; use one of {', '.join(FORMATS)}")
    return suffix


def _check_trace(G: nx.DiGraph, source: str, *, typed: bool = False) -> nx.DiGraph:
    """ValueError naming ``source`` unless G is an acyclic graphtrace trace with int ids.

    ``typed``: the reader has checked every id, attribute and ``local_grad`` already (a Parquet file
    whose columns have the format's types and no nulls where a value is needed), so only the
    structure (cycles, the root) is left to check."""
    if not isinstance(G, nx.DiGraph) or G.is_multigraph():
        raise ValueError(f"{source}: not a graphtrace trace (needs a directed simple graph, got {type(G).__name__})")
    for n, attrs in () if typed else G.nodes(data=True):
        if isinstance(n, bool) or not isinstance(n, int):
            raise ValueError(f"{source}: node id {n!r} is not an int")
        missing = [k for k in _REQUIRED_KEYS if k not in attrs]
        if missing:
            raise ValueError(f"{source}: node {n} lacks {', '.join(missing)}")
        for k in _FLOAT_KEYS:
            if isinstance(attrs[k], bool) or not isinstance(attrs[k], (int, float)):
                raise ValueError(f"{source}: node {n} has a non-numeric {k!r}: {attrs[k]!r}")
            if isinstance(attrs[k], int) and abs(attrs[k]) > _FLOAT_INT_MAX:
                raise ValueError(f"{source}: node {n} has a {k!r} no float can hold")
        for k in _STR_KEYS:
            if not isinstance(attrs.get(k, ""), str):
                raise ValueError(f"{source}: node {n} has a non-string {k!r}: {attrs[k]!r}")
    for u, v, e in () if typed else G.edges(data=True):
        lg = e.get("local_grad")
        if isinstance(lg, bool) or not isinstance(lg, (int, float)):
            raise ValueError(f"{source}: edge ({u}, {v}) lacks a numeric 'local_grad'")
        if isinstance(lg, int) and abs(lg) > _FLOAT_INT_MAX:
            raise ValueError(f"{source}: edge ({u}, {v}) has a 'local_grad' no float can hold")
    if not nx.is_directed_acyclic_graph(G):
        raise ValueError(f"{source}: the graph has a cycle, so it is not a computation trace")
    root = G.graph.get("root")
    if root is not None and (isinstance(root, bool) or not isinstance(root, int) or root not in G):
        raise ValueError(f"{source}: root {root!r} is not a node")
    return G


# --- JSON ---------------------------------------------------------------------------------------
def _write_json(G: nx.DiGraph, fh: IO[str]) -> None:
    doc = nx.node_link_data(G, edges="edges")
    doc["graphtrace"] = 1
    json.dump(doc, fh, ensure_ascii=False, allow_nan=True)


def _read_json(path: Path) -> nx.DiGraph:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"{path}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer of more digits than int() accepts
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("graphtrace") != 1 or "nodes" not in doc or "edges" not in doc:
        raise ValueError(f"{path}: not a graphtrace trace (no 'graphtrace': 1 node-link document)")
    if doc.get("directed", True) is not True or doc.get("multigraph", False) is not False:
        raise ValueError(f"{path}: not a graphtrace trace (needs 'directed': true and 'multigraph': false)")
    if not isinstance(doc.get("graph", {}), dict):
        raise ValueError(f"{path}: 'graph' must be an object, got {type(doc['graph']).__name__}")
    nodes, edges = doc["nodes"], doc["edges"]
    if not isinstance(nodes, list) or not all(isinstance(d, dict) and "id" in d for d in nodes):
        raise ValueError(f"{path}: 'nodes' must be a list of objects with an 'id'")
    if not isinstance(edges, list) or not all(isinstance(d, dict) and "source" in d and "target" in d for d in edges):
        raise ValueError(f"{path}: 'edges' must be a list of objects with a 'source' and a 'target'")
    _no_duplicates(path, "node id", [d["id"] for d in nodes])
    _no_duplicates(path, "edge", [(d["source"], d["target"]) for d in edges])
    G = nx.node_link_graph(doc, directed=True, multigraph=False, edges="edges")
    G.graph.pop("graphtrace", None)
    return G


def _no_duplicates(path: Path, what: str, keys: list[Any]) -> None:
    """ValueError naming the file and the first key that occurs twice (or an unhashable key)."""
    seen: set[Any] = set()
    for k in keys:
        try:
            if k in seen:
                raise ValueError(f"{path}: duplicate {what} {k!r}")
            seen.add(k)
        except TypeError:
            raise ValueError(f"{path}: {what} {k!r} is not a valid id") from None


# --- GraphML ------------------------------------------------------------------------------------
_XML_BAD = re.compile("[\\\\\x00-\x08\x0b\x0c\x0d\x0e-\x1f\ufffe\uffff]")


def _xml_escape(s: str) -> str:
    return _XML_BAD.sub(lambda m: "\\\\" if m.group() == "\\" else f"\\u{ord(m.group()):04x}", s)


def _xml_unescape(s: str) -> str:
    return re.sub(r"\\(\\|u[0-9a-f]{4})", lambda m: "\\" if m.group(1) == "\\" else chr(int(m.group(1)[1:], 16)), s)


def _write_graphml(G: nx.DiGraph, fh: IO[bytes]) -> None:
    H = nx.DiGraph()
    H.graph["graphtrace_escape"] = 1
    if G.graph.get("root") is not None:
        H.graph["root"] = int(G.graph["root"])
    for n, a in G.nodes(data=True):
        H.add_node(
            n,
            data=float(a["data"]),
            grad=float(a["grad"]),
            op=_xml_escape(a["op"]),
            label=_xml_escape(a["label"]),
            role=_xml_escape(a["role"]),
            scope=_xml_escape(a.get("scope", "")),
        )
    tensors = is_tensor_trace(G)
    if tensors:  # a tensor trace's shapes and summaries, where a node has them
        H.graph["kind"] = "torch"
        for n, a in G.nodes(data=True):
            H.nodes[n].update(
                {k: _xml_escape(v) if isinstance(v, str) else v for k in TENSOR_COLUMNS if (v := a.get(k)) is not None}
            )
    H.add_edges_from(
        (
            u,
            v,
            {
                "local_grad": float(e["local_grad"]),
                **({k: e[k] for k in _TENSOR_EDGE_KEYS if k in e} if tensors else {}),
            },
        )
        for u, v, e in G.edges(data=True)
    )
    for line in nx.generate_graphml(H, encoding="utf-8", prettyprint=False):
        fh.write(line.encode("utf-8"))
        fh.write(b"\n")


def _read_graphml(path: Path) -> nx.DiGraph:
    try:
        G = nx.read_graphml(path, node_type=int, force_multigraph=False)
    except Exception as exc:  # networkx raises several types for broken XML
        raise ValueError(f"{path}: not a readable GraphML file ({exc})") from None
    if not G.is_directed() or G.is_multigraph():
        raise ValueError(f"{path}: not a graphtrace trace (needs a directed simple graph)")
    if G.graph.pop("graphtrace_escape", None) != 1:
        raise ValueError(f"{path}: not a graphtrace trace (no graphtrace_escape graph attribute)")
    text_keys = _STR_KEYS + tuple(k for k, kind in TENSOR_COLUMNS.items() if kind == "string")
    for _, a in G.nodes(data=True):
        for k in text_keys:
            if k in a:
                a[k] = _xml_unescape(str(a[k]))
    return nx.DiGraph(G)


# --- Parquet ------------------------------------------------------------------------------------
_PARQUET_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("node_id", pa.int64()),
        ("label", pa.string()),
        ("op", pa.string()),
        ("role", pa.string()),
        ("scope", pa.string()),
        ("data", pa.float64()),
        ("grad", pa.float64()),
        ("source", pa.int64()),
        ("target", pa.int64()),
        ("local_grad", pa.float64()),
    ]
)


def _write_parquet(G: nx.DiGraph | TraceColumns, fh: IO[bytes]) -> None:
    if isinstance(G, TraceColumns):
        pq.write_table(parquet_table(G), fh)
        return
    nodes = list(G.nodes(data=True))
    edges = list(G.edges(data=True))
    cols = TraceColumns(
        root=G.graph.get("root"),  # type: ignore[arg-type]  # None: no root metadata
        node_id=[n for n, _ in nodes],
        data=[float(a["data"]) for _, a in nodes],
        grad=[float(a["grad"]) for _, a in nodes],
        op=[a["op"] for _, a in nodes],
        label=[a["label"] for _, a in nodes],
        role=[a["role"] for _, a in nodes],
        scope=[a.get("scope", "") for _, a in nodes],
        source=[u for u, _, _ in edges],
        target=[v for _, v, _ in edges],
        local_grad=[float(e["local_grad"]) for _, _, e in edges],
        named=True,
    )
    table = parquet_table(cols)
    if is_tensor_trace(G):  # a tensor trace's shapes and summaries: one more column each (null where absent)
        nn, ne = len(nodes), len(edges)
        none_n, none_e = [None] * nn, [None] * ne
        meta = {**(table.schema.metadata or {}), b"graphtrace.kind": b"torch"}
        for name, arrow in _tensor_fields():
            key = name.removeprefix("edge_")
            on_edges = name.startswith("edge_")
            values = none_n + [e.get(key) for _, _, e in edges] if on_edges else [a.get(key) for _, a in nodes] + none_e
            table = table.append_column(pa.field(name, arrow), pa.array(values, arrow, from_pandas=False))
        table = table.replace_schema_metadata(meta)
    pq.write_table(table, fh)


def parquet_table(cols: TraceColumns, reuse: dict[str, Any] | None = None) -> pa.Table:
    """A trace's columns (named: :meth:`~graphtrace.snapshot.TraceColumns.name`) as the Arrow table
    of the ``.parquet`` format: node rows, then edge rows, told apart by ``kind``.

    Examples
    --------
    >>> import graphtrace as gt
    >>> from graphtrace.io import parquet_table
    >>> y = gt.Value(2.0, label="x") * 3
    >>> t = parquet_table(gt.snapshot.trace_columns(y))
    >>> t.column("kind").to_pylist(), t.column("label").to_pylist()
    (['node', 'node', 'node', 'edge', 'edge'], ['x', 'const', 'mul', None, None])
    """
    nn, ne = len(cols.node_id), len(cols.source)
    none_n, none_e = pa.nulls(nn), pa.nulls(ne)

    def text(name: str, values: list[str]) -> pa.ChunkedArray:
        # ``reuse``: the string columns of a table made before (a run's previous snapshot), taken again
        # when their values are the same (a training step's ops, names and scopes are the last step's)
        if reuse is not None:
            before = reuse.get(name)
            if before is not None and before[1] == ne and (before[0] is values or before[0] == values):
                return before[2]  # type: ignore[no-any-return]
        a = column(values, pa.string())
        if reuse is not None:
            reuse[name] = (values, ne, a)
        return a

    def column(values: Sequence[Any], arrow: pa.DataType, on_edges: bool = False) -> pa.ChunkedArray:
        # float64 built directly from the floats (never via pandas): NaN stays NaN, not null
        a = pa.array(
            np.frombuffer(values, np.float64) if isinstance(values, array) else values, arrow, from_pandas=False
        )
        return pa.chunked_array([none_n.cast(arrow), a] if on_edges else [a, none_e.cast(arrow)], arrow)

    kinds = pa.DictionaryArray.from_arrays(
        pa.array(np.repeat(np.array([0, 1], np.int8), [nn, ne])), pa.array(["node", "edge"])
    ).cast(pa.string())
    columns = [
        kinds,
        column(cols.node_id, pa.int64()),
        text("label", cols.label),
        text("op", cols.op),
        text("role", cols.role),
        text("scope", cols.scope),
        column(cols.data, pa.float64()),
        column(cols.grad, pa.float64()),
        column(cols.source, pa.int64(), True),
        column(cols.target, pa.int64(), True),
        column(cols.local_grad, pa.float64(), True),
    ]
    meta = {b"graphtrace": b"1"}
    if cols.root is not None:
        meta[b"graphtrace.root"] = str(int(cols.root)).encode()
    return pa.Table.from_arrays(columns, schema=_PARQUET_SCHEMA.with_metadata(meta))


_TENSOR_EDGE_KEYS = {"grad_norm": "float64", "grad_nonfinite": "int64"}
_ARROW = {"string": pa.string(), "int64": pa.int64(), "Int64": pa.int64(), "bool": pa.bool_(), "float64": pa.float64()}


def _tensor_fields() -> list[tuple[str, pa.DataType]]:
    """The extra Parquet columns of a tensor trace: its node attributes, then its edges'."""
    node = [(name, _ARROW[kind]) for name, kind in TENSOR_COLUMNS.items()]
    edge = [(f"edge_{name}", _ARROW[kind]) for name, kind in _TENSOR_EDGE_KEYS.items()]
    return node + edge


def _read_parquet(path: Path) -> tuple[nx.DiGraph, bool]:
    """The trace, and whether its columns' types already checked every value (see :func:`_typed_columns`)."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from None
    meta = table.schema.metadata or {}
    if meta.get(b"graphtrace") != b"1":
        raise ValueError(f"{path}: not a graphtrace trace (no graphtrace schema metadata)")
    missing = [f.name for f in _PARQUET_SCHEMA if f.name not in table.column_names and f.name != "scope"]
    if missing:
        raise ValueError(f"{path}: missing columns {', '.join(missing)}")
    typed = _typed_columns(table)
    cols = {name: table.column(name).to_pylist() for name in _PARQUET_SCHEMA.names if name in table.column_names}
    if "scope" not in cols:  # written before scopes existed
        cols["scope"] = [""] * table.num_rows
    node_rows, edge_rows = [], []
    for i, kind in enumerate(cols["kind"]):
        if kind == "node":
            node_rows.append(i)
        elif kind == "edge":
            edge_rows.append(i)
        else:
            raise ValueError(f"{path}: row {i} has kind {kind!r} (expected 'node' or 'edge')")
    for i in node_rows:
        if cols["node_id"][i] is None:
            raise ValueError(f"{path}: node row {i} has a null node_id")
    for i in edge_rows:
        if cols["source"][i] is None or cols["target"][i] is None:
            raise ValueError(f"{path}: edge row {i} has a null source or target")
    _no_duplicates(path, "node id", [cols["node_id"][i] for i in node_rows])
    _no_duplicates(path, "edge", [(cols["source"][i], cols["target"][i]) for i in edge_rows])
    G = nx.DiGraph()
    G.add_nodes_from((cols["node_id"][i], {k: cols[k][i] for k in NODE_KEYS}) for i in node_rows)
    G.add_edges_from((cols["source"][i], cols["target"][i], {"local_grad": cols["local_grad"][i]}) for i in edge_rows)
    if meta.get(b"graphtrace.kind") == b"torch":
        G.graph["kind"] = "torch"
        for name, _ in _tensor_fields():
            if name not in table.column_names:
                continue
            values = table.column(name).to_pylist()
            key = name.removeprefix("edge_")
            if name.startswith("edge_"):
                for i in edge_rows:
                    if values[i] is not None:
                        G.edges[cols["source"][i], cols["target"][i]][key] = values[i]
            else:
                for i in node_rows:
                    if values[i] is not None:
                        G.nodes[cols["node_id"][i]][key] = values[i]
    if b"graphtrace.root" in meta:
        try:
            G.graph["root"] = int(meta[b"graphtrace.root"])
        except ValueError:
            raise ValueError(f"{path}: root metadata {meta[b'graphtrace.root']!r} is not an int") from None
    return G, typed


def _typed_columns(table: pa.Table) -> bool:
    """Whether ``table``'s columns have exactly the format's types and hold a value wherever one is
    needed: every node row its id, floats and strings, every edge row its ``local_grad`` (then no
    value of the file needs checking one by one)."""
    schema = table.schema
    for f in _PARQUET_SCHEMA:
        if f.name in schema.names and schema.field(f.name).type != f.type:
            return False
    kind = table.column("kind")
    nodes = pc.equal(kind, "node")
    edges = pc.equal(kind, "edge")
    if nodes.null_count or edges.null_count:
        return False
    need = [(nodes, name) for name in ("node_id", "data", "grad", "op", "label", "role")]
    need.append((edges, "local_grad"))
    if "scope" in schema.names:
        need.append((nodes, "scope"))
    return all(table.column(name).filter(rows).null_count == 0 for rows, name in need)


_WRITERS: dict[str, tuple[Callable[[Any, Any], None], bool]] = {
    ".json": (_write_json, False),
    ".graphml": (_write_graphml, True),
    ".parquet": (_write_parquet, True),
}
# each reader gives the graph and whether its values are checked already (only Parquet's typed columns)
_READERS: dict[str, Callable[[Path], tuple[nx.DiGraph, bool]]] = {
    ".json": lambda path: (_read_json(path), False),
    ".graphml": lambda path: (_read_graphml(path), False),
    ".parquet": _read_parquet,
}


def save(x: Any, path: str | Path) -> Path:
    """Save a trace (a root Value or a snapshot) to ``path``; the suffix picks the format.

    A tensor trace (:mod:`graphtrace.pytorch`) keeps its shapes, summaries and edge gradient norms in
    every format (Parquet: one nullable column each, marked ``graphtrace.kind = torch``).

    Parameters
    ----------
    x : Value or networkx.DiGraph
    path : str or Path
        Ending in ``.json``, ``.graphml`` or ``.parquet``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        For an unknown suffix or a graph that is not a graphtrace trace; nothing is written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import graphtrace as gt
    >>> L = gt.Value(2.0, label="a") * 3
    >>> L.backward()
    >>> p = gt.save(L, pathlib.Path(tempfile.mkdtemp()) / "L.parquet")
    >>> G = gt.load(p)
    >>> [d["label"] for _, d in G.nodes(data=True)], G.graph["root"] == L.node_id
    (['a', 'const', 'mul'], True)
    """
    target = Path(path)
    suffix = _suffix(target, "save")
    # a Value's trace to Parquet: straight from the store's columns (a valid trace by construction)
    fast = suffix == ".parquet" and isinstance(x, Value)
    G: nx.DiGraph | TraceColumns = trace_columns(x) if fast else _check_trace(as_graph(x), "save")
    write, binary = _WRITERS[suffix]
    return atomic_write(target, lambda fh: write(G, fh), binary=binary)


def load(path: str | Path) -> nx.DiGraph:
    """Load a trace saved by :func:`save`: an ``nx.DiGraph`` ready for :func:`graphtrace.backward`.

    Raises
    ------
    ValueError
        Naming the file and the problem: wrong suffix, unreadable or corrupt file, missing attributes
        or ``local_grad``, or a cycle.
    FileNotFoundError
        If ``path`` does not exist.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import graphtrace as gt
    >>> L = gt.Value(2.0) * gt.Value(5.0)
    >>> G = gt.load(gt.save(L, pathlib.Path(tempfile.mkdtemp()) / "L.json"))
    >>> _ = gt.backward(G)
    >>> sorted(d["grad"] for _, d in G.nodes(data=True))
    [1.0, 2.0, 5.0]
    """
    source = Path(path)
    suffix = _suffix(source, "load")
    if not source.is_file():
        raise FileNotFoundError(f"load: no such file {str(source)!r}")
    try:
        read, typed = _READERS[suffix](source)
        G = _check_trace(read, str(source), typed=typed)
    except ValueError as exc:
        if str(exc).startswith(f"{source}: "):
            raise
        raise ValueError(f"{source}: not a graphtrace trace ({exc})") from None
    except Exception as exc:  # whatever a damaged file makes a parser raise, the user sees one kind
        raise ValueError(f"{source}: not a readable graphtrace trace ({type(exc).__name__}: {exc})") from None
    if not isinstance(G, nx.DiGraph) or G.is_multigraph():
        raise ValueError(f"{source}: not a graphtrace trace (needs a directed simple graph)")
    for _, a in G.nodes(data=True):
        for k in _FLOAT_KEYS:
            if isinstance(a[k], int):
                a[k] = float(a[k])
        a.setdefault("scope", "")
    for _, _, e in G.edges(data=True):
        if isinstance(e["local_grad"], int):
            e["local_grad"] = float(e["local_grad"])
    return G
