"""gt.analysis.diff: two traces matched node by node."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphtrace as gt


def test_diff_of_two_training_steps_shows_the_update_on_every_parameter() -> None:
    random.seed(5)
    model = gt.nn.MLP(2, [3, 1])
    xs = [[0.5, -1.0], [1.5, 0.25]]
    snaps, grads = [], []
    for _ in range(2):
        loss = sum((model(x) - 1.0) ** 2 for x in xs)
        model.zero_grad()
        loss.backward()
        snaps.append(gt.to_networkx(loss))  # data and grads as they are now
        grads.append({p.label: p.grad for p in model.parameters()})
        for p in model.parameters():
            p.data -= 0.1 * p.grad
    d = gt.analysis.diff(*snaps)
    assert set(d["side"]) == {"both"} and len(d) == len(snaps[0]) == len(snaps[1])
    params = d[d["role"] == "parameter"].set_index("label_a")
    assert len(params) == len(model.parameters())
    for label, g in grads[0].items():  # the step between the snapshots moved each weight by -lr * grad
        assert params.loc[label, "d_data"] == pytest.approx(-0.1 * g, rel=1e-9, abs=1e-15)
        assert params.loc[label, "d_grad"] == pytest.approx(grads[1][label] - g, rel=1e-9, abs=1e-15)
    root = d.iloc[-1]
    assert root["d_data"] == pytest.approx(root["data_b"] - root["data_a"]) and root["d_data"] < 0
    assert str(d["node_a"].dtype) == "Int64" and str(d["d_data"].dtype) == "float64"


def test_diff_lists_nodes_found_in_one_trace_only() -> None:
    x = gt.Value(2.0, label="x")
    a = x * 3.0
    a.label = "y"
    b = (x * 3.0).tanh()
    b.label = "y"
    d = gt.analysis.diff(a, b)
    assert list(d["side"]) == ["both", "both", "both", "b"]  # x, the constant 3.0, x * 3.0; then tanh
    only = d.iloc[-1]
    assert (only["op"], only["label_b"], only["label_a"]) == ("tanh", "y", "")
    assert pd.isna(only["node_a"]) and only["node_b"] == b.node_id and pd.isna(only["d_data"])
    c = gt.analysis.diff(b, a)
    assert list(c["side"]) == ["both", "both", "both", "a"]


def test_diff_rejects_what_is_not_a_trace() -> None:
    with pytest.raises(TypeError, match=r"Value or a networkx\.DiGraph"):
        gt.analysis.diff(gt.Value(1.0), "trace.json")


def test_color_by_is_validated_before_anything_is_written(tmp_path: Path) -> None:
    x = gt.Value(2.0, label="x")
    y = x * 3.0
    target = tmp_path / "y.html"
    cases = [
        ("nope", ValueError, "no node has the attribute 'nope'"),
        ("", ValueError, "must not be empty"),
        (3, TypeError, "attribute name, a mapping"),
        ({10**9: 1.0}, ValueError, "is not a node of the graph"),
        ({x.node_id: "high"}, TypeError, "is not a number"),
        ("label", TypeError, "non-numeric 'label'"),
        ({x.node_id: 10**400}, ValueError, f"value for node {x.node_id} does not fit a float"),
    ]
    for color_by, exc, words in cases:
        with pytest.raises(exc, match=words):
            gt.to_html(y, target, color_by=color_by)
        assert not target.exists()
    page = gt.html_text(y, color_by=pd.Series({x.node_id: -1.0, y.node_id: float("nan")}, name="<b>Δ</b>"))
    assert '<option value="value" selected>&lt;b&gt;Δ&lt;/b&gt;</option>' in page
    assert "<b>Δ</b>" not in page.split("</script>")[-1]


def _every_node_once(d: pd.DataFrame, A: object, B: object) -> None:
    A, B = gt.snapshot.as_graph(A), gt.snapshot.as_graph(B)
    assert sorted(d["node_a"].dropna().tolist()) == sorted(A.nodes)
    assert sorted(d["node_b"].dropna().tolist()) == sorted(B.nodes)


def test_two_models_with_the_same_labels_in_one_trace_lose_no_node() -> None:
    random.seed(3)
    m1, m2 = gt.nn.MLP(2, [2, 1]), gt.nn.MLP(2, [2, 1])  # both label their parameters L0.N0.w0, ...
    x = [gt.Value(0.5, label="x0"), gt.Value(-1.0, label="x1")]
    out = m1(x) + m2(x)
    out.backward()
    G1 = gt.to_networkx(out)
    for p in m1.parameters() + m2.parameters():
        p.data += 0.1
    out2 = m1(x) + m2(x)
    G2 = gt.to_networkx(out2)
    d = gt.analysis.diff(G1, G2)
    assert len(d) == G1.number_of_nodes() == G2.number_of_nodes()
    assert set(d["side"]) == {"both"}
    _every_node_once(d, G1, G2)
    params = d[d["role"] == "parameter"]
    assert len(params) == len(m1.parameters()) + len(m2.parameters())
    assert params["d_data"].to_numpy() == pytest.approx(0.1)  # each matched with its own counterpart


def test_two_hand_made_parameters_with_one_label_are_both_kept() -> None:
    p1 = gt.Value(1.0, label="w", role="parameter")
    p2 = gt.Value(2.0, label="w", role="parameter")
    a = p1 * p2
    b = p1 * p2 + 1.0
    d = gt.analysis.diff(a, b)
    _every_node_once(d, a, b)
    w = d[d["op"] == "w"]
    assert list(w["data_a"]) == [1.0, 2.0] and list(w["side"]) == ["both", "both"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["w", "b", ""]), st.sampled_from(["parameter", "leaf"])), min_size=1, max_size=6
    ),
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.sampled_from(["+", "*"])), max_size=8),
    st.sampled_from(["", "s", "t"]),
)
def test_every_node_of_each_side_appears_exactly_once(
    leaves: list[tuple[str, str]], ops: list[tuple[int, int, str]], scope: str
) -> None:
    def build(shift: float) -> gt.Value:
        vals = [gt.Value(float(i) + shift, label=lab, role=role) for i, (lab, role) in enumerate(leaves)]
        for i, j, op in ops:
            x, y = vals[i % len(vals)], vals[j % len(vals)]
            if scope:
                with gt.scope(scope):
                    vals.append(x + y if op == "+" else x * y)
            else:
                vals.append(x + y if op == "+" else x * y)
        return sum(vals[1:], vals[0])

    a, b = build(0.0), build(0.5)
    _every_node_once(gt.analysis.diff(a, b), a, b)
