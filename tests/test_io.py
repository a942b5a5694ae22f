"""save / load: lossless round trips in three formats, atomic writes, clear errors."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphtrace as gt
from graphtrace import Value
from graphtrace.io import FORMATS


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def same_float(a: float, b: float) -> bool:
    return bits(a) == bits(b) or (math.isnan(a) and math.isnan(b))


def assert_same_trace(G: nx.DiGraph, H: nx.DiGraph) -> None:
    assert list(G.nodes) == list(H.nodes)
    assert G.graph.get("root") == H.graph.get("root")
    for n in G:
        a, b = G.nodes[n], H.nodes[n]
        for k in ("label", "op", "role"):
            assert a[k] == b[k], (n, k)
        for k in ("data", "grad"):
            assert same_float(a[k], b[k]), (n, k, a[k], b[k])
    assert list(G.edges) == list(H.edges)
    for u, v, e in G.edges(data=True):
        assert same_float(e["local_grad"], H.edges[u, v]["local_grad"])


def trace() -> Value:
    a, b = Value(2.0, label="a"), Value(-3.0, label="b")
    h = (a * b + 0.1).tanh() / (b**2 + 1)
    out = h * a + h.sigmoid()
    out.label = "out"
    out.backward()
    return out


@pytest.mark.parametrize("suffix", FORMATS)
def test_round_trip_and_backward_on_the_loaded_graph(tmp_path: Path, suffix: str) -> None:
    out = trace()
    G = gt.to_networkx(out)
    H = gt.load(gt.save(out, tmp_path / f"t{suffix}"))
    assert_same_trace(G, H)
    for n in H:
        H.nodes[n]["grad"] = 0.0
    gt.backward(H)
    for n in G:
        assert same_float(H.nodes[n]["grad"], G.nodes[n]["grad"]), n


special = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, -math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]),
)


@st.composite
def traces(draw: Any) -> nx.DiGraph:
    n = draw(st.integers(1, 8))
    G = nx.DiGraph()
    for i in range(n):
        G.add_node(
            i * 7 + 3,
            data=draw(special),
            grad=draw(special),
            op=draw(st.text(max_size=5)),
            label=draw(st.text(max_size=12)),
            role=draw(st.sampled_from(["leaf", "parameter", "constant", "intermediate", draw(st.text(max_size=4))])),
        )
    ids = list(G)
    for j in range(1, n):
        for i in draw(st.sets(st.integers(0, j - 1), max_size=3)):
            G.add_edge(ids[i], ids[j], local_grad=draw(special))
    G.graph["root"] = ids[-1]
    return G


@pytest.mark.parametrize("suffix", FORMATS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(G=traces())
def test_round_trip_is_lossless_for_any_floats_and_unicode(tmp_path: Path, suffix: str, G: nx.DiGraph) -> None:
    H = gt.load(gt.save(G, tmp_path / f"g{suffix}"))
    assert_same_trace(G, H)


@pytest.mark.parametrize("suffix", FORMATS)
def test_interrupted_save_leaves_the_old_file_whole(tmp_path: Path, suffix: str, monkeypatch: Any) -> None:
    path = tmp_path / f"t{suffix}"
    gt.save(trace(), path)
    before = path.read_bytes()
    import graphtrace.io as gio

    def boom(G: nx.DiGraph, fh: Any) -> None:
        fh.write(b"partial" if "b" in getattr(fh, "mode", "") else "partial")
        raise KeyboardInterrupt

    monkeypatch.setitem(gio._WRITERS, suffix, (boom, gio._WRITERS[suffix][1]))
    with pytest.raises(KeyboardInterrupt):
        gt.save(trace(), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left


def test_load_rejects_files_that_are_not_traces(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=r"a\.txt.*suffix"):
        gt.load(tmp_path / "a.txt")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json.*not valid JSON"):
        gt.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"nodes": [], "edges": []}))
    with pytest.raises(ValueError, match=r"other\.json.*not a graphtrace trace"):
        gt.load(tmp_path / "other.json")
    doc = nx.node_link_data(gt.to_networkx(trace()), edges="edges")
    doc["graphtrace"] = 1
    del doc["edges"][0]["local_grad"]
    (tmp_path / "nolg.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"nolg\.json.*local_grad"):
        gt.load(tmp_path / "nolg.json")
    C = nx.DiGraph()
    C.add_node(1, data=1.0, grad=0.0, op="+", label="a", role="intermediate")
    C.add_node(2, data=1.0, grad=0.0, op="+", label="b", role="intermediate")
    C.add_edge(1, 2, local_grad=1.0)
    C.add_edge(2, 1, local_grad=1.0)
    doc = nx.node_link_data(C, edges="edges")
    doc["graphtrace"] = 1
    (tmp_path / "cycle.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"cycle\.json.*cycle"):
        gt.load(tmp_path / "cycle.json")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match=r"junk\.parquet"):
        gt.load(tmp_path / "junk.parquet")
    (tmp_path / "junk.graphml").write_text("<graphml><oops")
    with pytest.raises(ValueError, match=r"junk\.graphml"):
        gt.load(tmp_path / "junk.graphml")
    with pytest.raises(FileNotFoundError):
        gt.load(tmp_path / "missing.json")


def test_save_rejects_bad_input_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="suffix"):
        gt.save(trace(), tmp_path / "t.csv")
    G = nx.DiGraph()
    G.add_edge("a", "b")
    with pytest.raises(ValueError, match="not an int"):
        gt.save(G, tmp_path / "g.json")
    assert list(tmp_path.iterdir()) == []


def test_parquet_is_queryable_with_duckdb(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    path = gt.save(trace(), tmp_path / "t.parquet")
    n_nodes, n_params = duckdb.sql(
        f"SELECT count(*), count(*) FILTER (WHERE role = 'leaf') FROM '{path}' WHERE kind = 'node'"
    ).fetchall()[0]
    assert (n_nodes, n_params) == (len(gt.to_networkx(trace())), 2)


def test_parquet_tables_reuse_string_columns_only_when_they_fit() -> None:
    from graphtrace.io import parquet_table
    from graphtrace.snapshot import TraceColumns

    def cols(edges: int, label: str = "y") -> TraceColumns:
        return TraceColumns(
            root=1,
            node_id=[0, 1],
            data=[1.0, 2.0],
            grad=[2.0, 1.0],
            op=["", "*"],
            label=["x", label],
            role=["leaf", "root"],
            scope=["", ""],
            source=[0] * edges,
            target=[1] * edges,
            local_grad=[1.0] * edges,
            named=True,
        )

    reuse: dict[str, object] = {}
    first = parquet_table(cols(1), reuse)
    same = parquet_table(cols(1), reuse)

    def address(t: object, name: str) -> int:
        return t.column(name).chunk(0).buffers()[2].address  # type: ignore[attr-defined, no-any-return]

    assert address(same, "op") == address(first, "op")  # taken again, not rebuilt
    other = parquet_table(cols(2, label="z"), reuse)  # one more edge row, another label
    assert other.num_rows == 4 and other.column("op").to_pylist() == ["", "*", None, None]
    assert other.column("label").to_pylist() == ["x", "z", None, None]
