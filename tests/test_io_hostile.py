"""Hostile files: every malformed trace is a ValueError naming the file, never a raw exception."""

from __future__ import annotations

import json
import os
import random
import stat
from pathlib import Path
from typing import Any

import networkx as nx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import graphtrace as gt
from graphtrace.io import _PARQUET_SCHEMA


def _valid_doc(root: gt.Value) -> dict[str, Any]:
    return nx.node_link_data(gt.to_networkx(root), edges="edges") | {"graphtrace": 1}  # type: ignore[no-any-return]


@pytest.fixture
def doc() -> dict[str, Any]:
    a = gt.Value(2.0, label="a")
    L = (a * 3 + 1).tanh()
    L.backward()
    return _valid_doc(L)


def _expect_error(path: Path, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        gt.load(path)
    assert str(path) in str(info.value), f"the error does not name the file: {info.value}"


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.__setitem__("graph", "str"), "'graph' must be an object"),
        (lambda d: d.__setitem__("nodes", "abc"), "'nodes' must be a list"),
        (lambda d: d.__setitem__("nodes", {"0": 1}), "'nodes' must be a list"),
        (lambda d: d.__setitem__("nodes", [1, 2, 3]), "'nodes' must be a list"),
        (lambda d: d.__setitem__("edges", [{"source": 0}]), "'edges' must be a list"),
        (lambda d: d.__setitem__("multigraph", True), "multigraph"),
        (lambda d: d.__setitem__("directed", False), "directed"),
        (lambda d: d["nodes"].append(dict(d["nodes"][0])), "duplicate node id"),
        (lambda d: d["edges"].append(dict(d["edges"][0])), "duplicate edge"),
        (lambda d: d["nodes"][0].__setitem__("id", [1]), "not a valid id"),
        (lambda d: d["graph"].__setitem__("root", [1]), "root"),
        (lambda d: d["nodes"][0].__setitem__("data", 10**400), "no float can hold"),
        (lambda d: d["edges"][0].__setitem__("local_grad", 10**400), "no float can hold"),
    ],
)
def test_malformed_json_traces(tmp_path: Path, doc: dict[str, Any], mutate: Any, match: str) -> None:
    mutate(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    _expect_error(path, match)


def test_deeply_nested_and_huge_number_json(tmp_path: Path) -> None:
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000)
    _expect_error(nested, "not valid JSON")
    digits = tmp_path / "digits.json"
    digits.write_text('{"graphtrace": 1, "nodes": [], "edges": [], "x": ' + "9" * 5000 + "}")
    _expect_error(digits, "not valid JSON")


def _write_rows(path: Path, rows: list[dict[str, Any]], meta: dict[bytes, bytes] | None = None) -> None:
    cols = {f.name: [r.get(f.name) for r in rows] for f in _PARQUET_SCHEMA}
    table = pa.table(cols, schema=_PARQUET_SCHEMA.with_metadata(meta or {b"graphtrace": b"1"}))
    pq.write_table(table, path)


NODE = {"kind": "node", "label": "x", "op": "", "role": "leaf", "data": 1.0, "grad": 0.0}
EDGE = {"kind": "edge", "local_grad": 1.0}


@pytest.mark.parametrize(
    ("rows", "meta", "match"),
    [
        ([NODE | {"node_id": 0}, NODE | {"node_id": 0}], None, "duplicate node id 0"),
        ([NODE | {"node_id": None}], None, "null node_id"),
        (
            [NODE | {"node_id": 0}, {"kind": "edge", "source": None, "target": 0, "local_grad": 1.0}],
            None,
            "null source",
        ),
        ([NODE | {"node_id": 0}], {b"graphtrace": b"1", b"graphtrace.root": b"abc"}, "root metadata"),
        ([NODE | {"node_id": 0}, {"kind": "weird"}], None, "kind 'weird'"),
        # the format's column types with a null where a value is needed: each checked one by one
        ([NODE | {"scope": "", "node_id": 0, "data": None}], None, "non-numeric 'data'"),
        ([NODE | {"scope": "", "node_id": 0, "label": None}], None, "non-string 'label'"),
        (
            [
                NODE | {"scope": "", "node_id": 0},
                NODE | {"scope": "", "node_id": 1},
                EDGE | {"source": 0, "target": 1, "local_grad": None},
            ],
            None,
            "lacks a numeric 'local_grad'",
        ),
        # every value present and typed: the structure is still checked
        (
            [
                NODE | {"scope": "", "node_id": 0},
                NODE | {"scope": "", "node_id": 1},
                EDGE | {"source": 0, "target": 1},
                EDGE | {"source": 1, "target": 0},
            ],
            None,
            "cycle",
        ),
        ([NODE | {"scope": "", "node_id": 0}], {b"graphtrace": b"1", b"graphtrace.root": b"7"}, "root 7 is not a node"),
    ],
)
def test_malformed_parquet_traces(tmp_path: Path, rows: Any, meta: Any, match: str) -> None:
    path = tmp_path / "bad.parquet"
    _write_rows(path, rows, meta)
    _expect_error(path, match)


def test_a_parquet_trace_with_other_column_types_is_checked_value_by_value(tmp_path: Path) -> None:
    schema = _PARQUET_SCHEMA.set(_PARQUET_SCHEMA.get_field_index("data"), pa.field("data", pa.string()))
    cols = {f.name: [NODE.get(f.name)] for f in _PARQUET_SCHEMA} | {"node_id": [0], "data": ["1.0"]}
    path = tmp_path / "strings.parquet"
    pq.write_table(pa.table(cols, schema=schema.with_metadata({b"graphtrace": b"1"})), path)
    _expect_error(path, "non-numeric 'data'")


def _mutations(data: bytes, rng: random.Random) -> list[bytes]:
    """Truncations, byte flips, and for text formats swaps of one token for a token of another type."""
    out = [data[: rng.randrange(len(data))] for _ in range(15)]
    for _ in range(40):
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        out.append(bytes(b))
    text = data.decode("utf-8", "replace")
    swaps = ['"x"', "null", "[]", "{}", "true", "-1", "1e999", '"NaN"']
    for _ in range(25):
        tokens = [m for m in ("0.0", "1.0", '"leaf"', '"a"', "true", "false", "[", "{", ":") if m in text]
        t = rng.choice(tokens)
        i = text.find(t, rng.randrange(len(text)) // 2)
        if i >= 0:
            out.append((text[:i] + rng.choice(swaps) + text[i + len(t) :]).encode())
    if data.startswith(b"{"):  # JSON: swap one value anywhere in the document for one of another type
        for _ in range(60):
            doc = json.loads(data)
            slots: list[tuple[Any, Any]] = []
            stack: list[Any] = [doc]
            while stack:
                node = stack.pop()
                keys = list(node) if isinstance(node, dict) else range(len(node))
                for key in keys:
                    slots.append((node, key))
                    if isinstance(node[key], (dict, list)):
                        stack.append(node[key])
            node, key = rng.choice(slots)
            node[key] = rng.choice(["x", None, [], {}, True, -1, 2**70, 1.5, [1], {"id": 0}])
            out.append(json.dumps(doc).encode())
    return out


@pytest.mark.parametrize("suffix", [".json", ".graphml", ".parquet"])
def test_fuzzed_files_give_a_trace_or_a_value_error_naming_the_file(tmp_path: Path, suffix: str) -> None:
    x = gt.Value(0.5, label="x")
    L = (x * x + gt.Value(1.0, label="c")).tanh()
    L.backward()
    good = gt.save(L, tmp_path / f"good{suffix}").read_bytes()
    rng = random.Random(suffix)
    kinds = {"ok": 0, "error": 0}
    for k, data in enumerate(_mutations(good, rng)):
        path = tmp_path / f"m{k}{suffix}"
        path.write_bytes(data)
        try:
            G = gt.load(path)
        except ValueError as exc:
            assert str(path) in str(exc), f"mutation {k}: error without the file name: {exc}"
            kinds["error"] += 1
        else:
            assert type(G) is nx.DiGraph and nx.is_directed_acyclic_graph(G)
            if G.graph.get("root") is not None:
                gt.backward(G)  # a file that loads is a usable trace
            kinds["ok"] += 1
    assert kinds["error"] >= 20, kinds


def test_save_never_replaces_a_read_only_file_and_keeps_modes(tmp_path: Path) -> None:
    L = gt.Value(1.0) * 2
    ro = tmp_path / "ro.json"
    ro.write_text("keep me")
    ro.chmod(0o444)
    with pytest.raises(PermissionError) as info:
        gt.save(L, ro)
    assert info.value.filename == str(ro)
    assert ro.read_text() == "keep me" and stat.S_IMODE(ro.stat().st_mode) == 0o444
    private = tmp_path / "private.json"
    private.write_text("old")
    private.chmod(0o600)
    gt.save(L, private)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and gt.load(private).number_of_nodes() == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_save_into_an_unwritable_folder_names_the_target(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    with pytest.raises(PermissionError) as info:
        gt.save(gt.Value(1.0) * 2, folder / "t.json")
    assert info.value.filename == str(folder / "t.json")
