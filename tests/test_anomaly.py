"""Anomaly mode (gt.detect_anomaly) and gt.analysis.anomalies: where NaN and inf start."""

from __future__ import annotations

import inspect
import math
import threading
from pathlib import Path

import pytest

import graphtrace as gt
from graphtrace import Value, store

HERE = Path(__file__).name


def _line_of(text: str) -> int:
    """The line number in this file of the first line containing ``text`` (after this function)."""
    lines = Path(__file__).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "def _line_of" in line) + 3
    return next(i + 1 for i, line in enumerate(lines[start:], start) if text in line)


def test_forward_stops_at_the_op_that_makes_inf_and_records_nothing() -> None:
    x = Value(1e300, label="x")
    before = len(store.GRAPH)
    with gt.detect_anomaly(), gt.scope("loss"), pytest.raises(gt.AnomalyError) as info:
        x * 1e10  # MARK-forward
    err = info.value
    assert len(store.GRAPH) == before
    assert (err.phase, err.op, err.scope, err.node) == ("forward", "*", "loss", None)
    assert f"{HERE}:{_line_of('MARK-forward')}" in err.source
    msg = str(err)
    assert "x = 1e+300" in msg and "10000000000.0" in msg and "from finite operands" in msg
    assert "'loss'" in msg and "Nothing was recorded" in msg


def test_forward_names_an_operand_that_was_already_non_finite() -> None:
    x = Value(math.inf, label="x")  # made outside the block
    with gt.detect_anomaly(), pytest.raises(gt.AnomalyError, match="an operand already was"):
        x + 1.0


def test_forward_inside_a_model_names_the_neuron_scope() -> None:
    model = gt.nn.MLP(2, [2, 1])
    for p in model.parameters():
        p.data = 1e200
    with gt.detect_anomaly(), pytest.raises(gt.AnomalyError) as info:
        model([1e200, 1e200])
    assert info.value.scope.startswith("MLP[0]/Layer0/Neuron")
    assert HERE in info.value.source  # the user's line, not graphtrace's


def test_backward_stops_at_the_edge_whose_local_grad_is_inf_and_writes_nothing() -> None:
    x = Value(0.0, label="x")
    w = Value(3.0, label="w")
    with gt.detect_anomaly():
        y = x**0.5  # MARK-pow
        L = y * w
        with pytest.raises(gt.AnomalyError) as info:
            L.backward()
    err = info.value
    assert (err.phase, err.op, err.node) == ("backward", "**", x.node_id)
    assert f"{HERE}:{_line_of('MARK-pow')}" in err.source
    assert "local_grad inf" in str(err) and "Nothing was written" in str(err)
    assert (x.grad, w.grad, y.grad, L.grad) == (0.0, 0.0, 0.0, 0.0)
    L.backward()  # outside the block nothing is checked: d(sqrt x)/dx at 0 is inf (torch's convention)
    assert x.grad == math.inf and w.grad == 0.0


def test_backward_overflow_of_finite_terms_is_named() -> None:
    a, b = Value(1e-300, label="a"), Value(1e200, label="b")
    with gt.detect_anomaly():
        L = (a * b) * 1e200
        assert math.isfinite(L.data)
        with pytest.raises(gt.AnomalyError, match="overflow of finite terms") as info:
            L.backward()
    assert info.value.node == a.node_id and a.grad == 0.0


def test_backward_on_a_snapshot_is_checked_too() -> None:
    x = Value(0.0, label="x")
    L = (x**0.5) * 2.0
    G = gt.to_networkx(L)
    with gt.detect_anomaly(), pytest.raises(gt.AnomalyError) as info:
        gt.backward(G, L.node_id)
    assert info.value.source == ""  # recorded outside the block
    assert "recorded outside detect_anomaly" in str(info.value)
    assert all(G.nodes[n]["grad"] == 0.0 for n in G)


def test_outside_the_block_nothing_is_checked_and_modes_nest() -> None:
    x = Value(1e300)
    assert (x * 1e10).data == math.inf
    with gt.detect_anomaly():
        with gt.no_grad():
            y = x * 1e10  # not recorded, so not checked
        assert y.data == math.inf and y.op == ""
        with gt.no_grad(), store.enable_grad(), pytest.raises(gt.AnomalyError):
            x * 1e10
        with gt.detect_anomaly():
            pass
        with pytest.raises(gt.AnomalyError):  # still on after an inner block ends
            x * 1e10
    assert (x * 1e10).data == math.inf
    assert store.grad_enabled() is True


def test_anomaly_mode_is_per_thread() -> None:
    x = Value(1e300)
    results: list[float] = []
    entered, done = threading.Event(), threading.Event()

    def other() -> None:
        entered.wait(10)
        results.append((x * 1e10).data)
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with gt.detect_anomaly():
        entered.set()
        done.wait(10)
    t.join()
    assert results == [math.inf]


def test_sources_of_freed_nodes_are_forgotten_when_the_block_ends() -> None:
    with gt.detect_anomaly():
        kept = Value(2.0) * 3.0
        dropped = Value(2.0) * 4.0
        ids = (kept.node_id, dropped.node_id)
        assert all(i in store.SOURCES for i in ids)
        del dropped
    assert ids[0] in store.SOURCES and ids[1] not in store.SOURCES


def test_anomalies_table_marks_forward_origins_and_inherited_values() -> None:
    x = Value(1e300, label="x")
    big = x * 1e10
    big.label = "big"
    nan = big - big
    nan.label = "nan"
    out = nan * 2.0 + 1.0
    out.label = "out"
    bad_leaf = Value(math.nan, label="bad")
    total = out + bad_leaf
    df = gt.analysis.anomalies(total)
    origins = set(df.loc[df["forward_origin"], "label"])
    assert origins == {"big", "bad"}  # inf * anything finite is the first; a NaN input is its own origin
    assert {"nan", "out"} <= set(df["label"]) and "x" not in set(df["label"])
    row = df.set_index("label").loc["big"]
    assert row["op"] == "*" and "x = 1e+300" in row["operands"] and "gave inf" in row["cause"]
    assert str(df["data"].dtype) == "float64" and str(df["forward_origin"].dtype) == "bool"
    assert list(df.columns) == [
        "node_id", "label", "op", "scope", "data", "grad", "forward_origin", "backward_origin", "operands", "cause",
    ]  # fmt: skip


def test_anomalies_table_marks_backward_origins_on_a_loaded_file(tmp_path: Path) -> None:
    x = Value(0.0, label="x")
    w = Value(3.0, label="w")
    with gt.scope("net"):
        y = x**0.5
    y.label = "y"
    L = y * w
    L.backward()
    path = tmp_path / "trace.json"
    gt.save(L, path)
    for graph in (L, gt.load(path)):
        df = gt.analysis.anomalies(graph)
        assert list(df["label"]) == ["x"]  # y's grad (3.0) and everything else is finite
        row = df.iloc[0]
        assert row["backward_origin"] and not row["forward_origin"]
        assert "local_grad inf" in row["cause"] and "**" in row["cause"]


def test_anomalies_of_a_clean_trace_is_empty_with_the_documented_columns() -> None:
    a = Value(2.0)
    df = gt.analysis.anomalies(a * 3.0)
    assert df.empty and "backward_origin" in df.columns


def test_a_nan_leaf_made_inside_detect_anomaly_is_named_with_its_line() -> None:
    x = gt.Value(1.0, label="x")
    with gt.detect_anomaly():
        bad = gt.Value(float("nan"), label="bad")  # the line the message must name
        line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]
        with pytest.raises(gt.AnomalyError) as info:
            x * bad
    msg = str(info.value)
    assert f"leaf 'bad' was made at {__file__}:{line}" in msg, msg
    assert "outside detect_anomaly" not in msg
    outside = gt.Value(float("inf"), label="far")
    with gt.detect_anomaly(), pytest.raises(gt.AnomalyError, match="leaf 'far' was made outside detect_anomaly"):
        x * outside
