"""Names and scopes: named_parameters, default labels, gt.scope, module-call scopes, by_scope, DOT clusters."""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import graphtrace as gt
from graphtrace import Value, store


def _model(seed: int = 0) -> gt.nn.MLP:
    random.seed(seed)
    return gt.nn.MLP(2, [3, 2, 1])


def test_named_parameters_follow_parameters_order_with_dotted_names() -> None:
    m = _model()
    named = list(m.named_parameters())
    assert [p for _, p in named] == m.parameters()
    names = [n for n, _ in named]
    assert names[:3] == ["layers.0.neurons.0.w.0", "layers.0.neurons.0.w.1", "layers.0.neurons.0.b"]
    assert names[-1] == "layers.2.neurons.0.b" and len(set(names)) == len(names)
    assert [n for n, _ in m.named_modules()][:3] == ["", "layers.0", "layers.0.neurons.0"]
    assert dict(m.named_modules())["layers.1.neurons.1"] is m.layers[1].neurons[1]


def test_default_labels_are_short_unique_and_never_replace_a_users_label() -> None:
    m = _model()
    labels = [p.label for p in m.parameters()]
    assert labels[:3] == ["L0.N0.w0", "L0.N0.w1", "L0.N0.b"] and labels[-1] == "L2.N0.b"
    assert len(set(labels)) == len(labels)
    layer = gt.nn.Layer(2, 2)
    assert [p.label for p in layer.parameters()] == ["N0.w0", "N0.w1", "N0.b", "N1.w0", "N1.w1", "N1.b"]
    layer.neurons[0].b.label = "my_bias"

    class Wrapper(gt.nn.Module):
        def __init__(self) -> None:
            self.blocks = [layer]

        def __call__(self, x: list[float]) -> Value:
            return sum(self.blocks[0](x), Value(0.0))  # type: ignore[no-any-return]

        def parameters(self) -> list[Value]:
            return layer.parameters()

    w = Wrapper()
    assert [p.label for p in w.parameters()][:3] == ["B0.N0.w0", "B0.N0.w1", "my_bias"]
    assert w.parameters()[0].scope == "Wrapper/Layer0/Neuron0"
    out = w([1.0, 2.0])
    assert out.scope == "Wrapper[0]" and {p.scope for p in layer.parameters()} == {
        "Wrapper/Layer0/Neuron0",
        "Wrapper/Layer0/Neuron1",
    }


def test_every_model_call_is_its_own_scope_instance() -> None:
    m = _model()
    xs = [[Value(0.1 * i), Value(-0.2 * i)] for i in range(4)]
    outs = [m(x) for x in xs]
    assert [o.scope for o in outs] == [f"MLP[{k}]/Layer2/Neuron0" for k in range(4)]
    assert {x.scope for row in xs for x in row} == {""}  # inputs made outside any scope
    loss = sum(outs, Value(0.0))
    G = gt.to_networkx(loss)
    scopes = {d["scope"] for _, d in G.nodes(data=True)}
    assert {s.split("/")[0] for s in scopes if s.startswith("MLP[")} == {f"MLP[{k}]" for k in range(4)}
    assert "MLP/Layer1/Neuron1" in scopes  # the parameters' module path
    assert "MLP[2]/Layer1/Neuron1" in scopes and "MLP[2]/Layer0" not in scopes


def test_user_scopes_nest_number_calls_and_are_per_thread() -> None:
    m = _model()
    x = [Value(1.0), Value(2.0)]
    with gt.scope("step"):
        a, b = m(x), m(x)
        with gt.scope("eval"):
            c = m(x) * 2
    assert (a.scope, b.scope, c.scope) == ("step/MLP[0]/Layer2/Neuron0", "step/MLP[1]/Layer2/Neuron0", "step/eval")
    seen: dict[str, str] = {}

    def other() -> None:
        seen["scope"] = (Value(1.0) + 1).scope

    with gt.scope("main-only"):
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen["scope"] == "" and gt.current_scope() == ""


@pytest.mark.parametrize(("name", "error"), [(3, TypeError), (None, TypeError), ("", ValueError), ("a/b", ValueError)])
def test_bad_scope_names_are_refused_before_anything_is_recorded(name: object, error: type[Exception]) -> None:
    before = store.live_count()
    with pytest.raises(error, match="scope name"), gt.scope(name):  # type: ignore[arg-type]
        Value(1.0)
    assert store.live_count() == before and gt.current_scope() == ""


@pytest.mark.parametrize("suffix", [".json", ".graphml", ".parquet"])
def test_scopes_and_labels_survive_snapshots_files_and_copies(tmp_path: Path, suffix: str) -> None:
    m = _model()
    with gt.scope('hostile <"&> \\'):
        y = m([Value(0.5), Value(-1.5)])
    y.backward()
    G = gt.to_networkx(y)
    H = gt.load(gt.save(G, tmp_path / f"t{suffix}"))
    for n, d in G.nodes(data=True):
        assert (H.nodes[n]["scope"], H.nodes[n]["label"]) == (d["scope"], d["label"])
    clone = copy.deepcopy(m)
    assert [(p.label, p.scope) for p in clone.parameters()] == [(p.label, p.scope) for p in m.parameters()]


def test_old_files_without_scopes_still_load(tmp_path: Path) -> None:
    L = Value(2.0, label="a") * 3
    doc = json.loads(gt.save(L, tmp_path / "new.json").read_text())
    for node in doc["nodes"]:
        del node["scope"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    G = gt.load(old)
    assert {d["scope"] for _, d in G.nodes(data=True)} == {""}
    assert gt.nodes_frame(G)["scope"].tolist() == ["", "", ""]


def _trained_trace() -> tuple[Value, gt.nn.MLP]:
    m = _model(3)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(6):
        x = [Value(float(v)) for v in rng.uniform(-2, 2, size=2)]
        losses.append((1 + -1.0 * m(x)).relu())
    loss = sum(losses, Value(0.0))
    loss.backward()
    return loss, m


def test_by_scope_matches_a_hand_computation_from_nodes_frame() -> None:
    loss, m = _trained_trace()
    nodes = gt.nodes_frame(loss)
    table = gt.analysis.by_scope(loss)
    assert table.dtypes.to_dict() == {
        "scope": pd.StringDtype(),
        "nodes": np.dtype("int64"),
        "output_node": np.dtype("int64"),
        "output_data": np.dtype("float64"),
        "output_grad": np.dtype("float64"),
        "param_count": np.dtype("int64"),
        "param_abs_grad_sum": np.dtype("float64"),
        "param_abs_grad_mean": np.dtype("float64"),
        "param_abs_grad_max": np.dtype("float64"),
        "relu_zero_share": np.dtype("float64"),
        "tanh_saturated_share": np.dtype("float64"),
        "nonfinite": np.dtype("int64"),
    }
    assert table["nodes"].sum() == len(nodes) and set(table["scope"]) == set(nodes["scope"])
    row = table.set_index("scope").loc["MLP[4]/Layer0/Neuron1"]
    mine = nodes[nodes["scope"] == "MLP[4]/Layer0/Neuron1"]
    assert row["nodes"] == len(mine) and row["output_node"] == mine["node_id"].iloc[-1]
    assert row["output_data"] == mine["data"].iloc[-1] and row["output_grad"] == mine["grad"].iloc[-1]
    relu = mine[mine["op"] == "relu"]
    assert row["relu_zero_share"] == (relu["data"] == 0.0).mean()
    neuron = m.layers[0].neurons[1]
    grads = [abs(p.grad) for p in neuron.parameters()]
    assert row["param_count"] == 3 and row["param_abs_grad_max"] == max(grads)
    assert math.isclose(row["param_abs_grad_sum"], sum(grads), rel_tol=1e-12)
    pooled = gt.analysis.by_scope(loss, depth=2, pool=True).set_index("scope")
    assert pooled.loc["MLP/Layer0", "nodes"] == len(nodes[nodes["scope"].str.match(r"MLP(\[\d+\])?/Layer0")])
    assert pooled.loc["MLP/Layer0", "param_count"] == 9
    assert pooled.loc["", "nodes"] == (nodes["scope"] == "").sum()
    with pytest.raises(ValueError, match="depth"):
        gt.analysis.by_scope(loss, depth=0)


def test_by_scope_counts_saturation_and_non_finite_values() -> None:
    with gt.scope("t"):
        ts = [Value(v).tanh() for v in (0.1, 3.0, -4.0, 0.5)]
        bad = Value(float("inf")) * 0.0  # nan
    root = sum(ts, bad)
    row = gt.analysis.by_scope(root).set_index("scope").loc["t"]
    assert row["tanh_saturated_share"] == 0.5
    assert row["nonfinite"] >= 2  # the inf leaf and the nan product
    assert math.isnan(row["relu_zero_share"]) and math.isnan(row["param_abs_grad_mean"])


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
def test_dot_puts_scopes_in_nested_escaped_clusters() -> None:
    m = _model()
    with gt.scope('<b>"x"&amp;\\'):
        y = m([Value(1.0), Value(2.0)])
    text = gt.to_dot(y)
    assert "subgraph cluster_" in text and "label=<MLP&#91;0&#93;>" in text
    # the call: user scope, MLP[0], 3 layers, 6 neurons; the parameters' module paths: MLP, 3 layers, 6 neurons
    assert text.count("subgraph cluster_") == (1 + 1 + 3 + 6) + (1 + 3 + 6)
    svg = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True, check=True).stdout
    assert "&lt;b&gt;&quot;x&quot;&amp;amp;\\</text>" in svg
