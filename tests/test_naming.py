"""Readable names and trace-relative scope instances (graphtrace.naming), in every view."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

import graphtrace as gt
from graphtrace import Value

LETTERS = re.compile(r"[a-z]{1,3}")  # the old generated names: a, b, ..., zz, baa
WORDS = {"add", "sub", "mul", "div", "pow", "neg", "exp", "log", "relu", "leaf", "tanh", "const", "param"}

STEP = """
import json, random, sys
sys.path.insert(0, {root!r})
import graphtrace as gt
random.seed(4)
model = gt.nn.MLP(2, [3, 1])
out = []
for step in range(2):
    loss = sum((model([gt.Value(0.5), gt.Value(-1.0 + k)]) - 1.0) ** 2 for k in range(3))
    model.zero_grad(); loss.backward()
    G = gt.to_networkx(loss)
    out.append(sorted((d["scope"], d["label"], d["op"]) for _, d in G.nodes(data=True) if d["role"] != "parameter"))
    for p in model.parameters():
        p.data -= 0.01 * p.grad
print(json.dumps(out))
"""


def _names(root: Path) -> list[list[list[str]]]:
    proc = subprocess.run(
        [sys.executable, "-c", STEP.format(root=str(root))], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_names_are_stable_across_steps_and_processes() -> None:
    root = Path(__file__).parent.parent
    first, second = _names(root), _names(root)
    assert first == second  # another process: the same names
    assert first[0] == first[1]  # step 2 names every node as step 1 did
    labels = {label for _, label, _ in first[0]}
    assert "mul" in labels and "add_1" in labels and "relu" in labels


def test_names_are_unique_per_scope_instance_and_never_letters() -> None:
    random.seed(1)
    model = gt.nn.MLP(2, [4, 4, 1])
    loss = sum(model([Value(0.1 * k), Value(-0.2 * k)]).relu() for k in range(5))
    loss.backward()
    G = gt.to_networkx(loss)
    seen: dict[tuple[str, str], int] = {}
    for n, d in G.nodes(data=True):
        key = (d["scope"], d["label"])
        assert key not in seen, (key, n, seen[key])
        seen[key] = n
        base = d["label"].rsplit("_", 1)[0]
        if d["role"] != "parameter":
            assert base in WORDS, d["label"]
    frames = gt.nodes_frame(G)
    odd = {s for s in frames["label"] if LETTERS.fullmatch(s)} - WORDS
    assert not odd, odd
    text = gt.to_dot(G) + gt.html_text(G, collapse=False) + gt.html_text(G, collapse=True)
    assert '"ij"' not in text and '"bgz"' not in text


def test_a_samples_trace_starts_at_call_0_after_ten_thousand_calls() -> None:
    random.seed(2)
    model = gt.nn.MLP(2, [2, 1])
    with gt.no_grad():
        for _ in range(10_000):
            model([0.1, 0.2])
    score = model([Value(1.0, label="x0"), Value(2.0, label="x1")])
    assert score.scope.startswith("MLP[10000]/")  # the live node keeps the process-wide count
    G = gt.to_networkx(score)
    scopes = {d["scope"] for _, d in G.nodes(data=True)}
    assert "MLP[0]/Layer1/Neuron0" in scopes and not any("10000" in s for s in scopes)
    table = gt.analysis.by_scope(score, depth=1)
    assert "MLP[0]" in set(table["scope"])
    dot = gt.to_dot(score)
    assert "subgraph" in dot and "MLP&#91;0&#93;" in dot and "10000" not in dot
    assert "MLP[0]" in gt.html_text(score, collapse=True)


def test_a_training_step_reads_mlp_0_to_99_in_sample_order() -> None:
    random.seed(3)
    model = gt.nn.MLP(2, [2, 1])
    with gt.no_grad():
        model([0.0, 0.0])  # one call before: the step must still start at 0
    scores = [model([Value(float(k)), Value(1.0)]) for k in range(100)]
    loss = sum(scores)
    loss.backward()
    G = gt.to_networkx(loss)
    outs = {
        d["scope"]: d["data"]
        for _, d in G.nodes(data=True)
        if d["scope"].endswith("Layer1/Neuron0") and d["role"] != "parameter"
    }
    assert set(outs) == {f"MLP[{k}]/Layer1/Neuron0" for k in range(100)}
    by = gt.analysis.by_scope(loss, depth=1)
    assert [s for s in by["scope"] if s.startswith("MLP[")] == [f"MLP[{k}]" for k in range(100)]


def test_an_unlabelled_root_writes_a_file_named_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = (Value(2.0) * 3.0).relu()
    monkeypatch.chdir(tmp_path)
    written = gt.to_html(out)
    assert written == Path("exports") / "relu.html"
    assert "graphtrace: relu" in written.read_text()


def test_names_of_a_plain_graph_come_from_its_labels() -> None:
    G = nx.DiGraph()
    G.add_node(0, label="x", op="", role="leaf", scope="", data=1.0, grad=0.0)
    assert gt.nodes_frame(G)["label"].tolist() == ["x"]
