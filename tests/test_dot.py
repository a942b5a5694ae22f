"""to_dot / draw_dot, checked with the real Graphviz `dot` when installed."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

import graphtrace as gt
from graphtrace import Value


def test_dot_text_in_draw_dot_style() -> None:
    a, b = Value(2.0, label="a"), Value(-3.0, label="b")
    L = a * b + 1
    L.label = "L"
    L.backward()
    text = gt.to_dot(L)
    assert text.startswith("digraph graphtrace {") and "rankdir=LR" in text
    assert '[label="{ a | data 2.0000 | grad -3.0000 }", shape=record]' in text
    assert text.count("_op [label=<") == 2  # the op nodes: "*" and "+" (edges into them carry local_grad labels)
    assert "rankdir=TB" in gt.to_dot(L, rankdir="TB")
    with pytest.raises(ValueError, match="rankdir"):
        gt.to_dot(L, rankdir="XX")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
def test_dot_is_valid_for_graphviz_even_with_hostile_labels() -> None:
    x = Value(1.0, label='{a|b} <c> "d" \\ e\nf')
    out = (x * 2).tanh()
    svg = subprocess.run(["dot", "-Tsvg"], input=gt.to_dot(out), capture_output=True, text=True, check=True).stdout
    assert "<svg" in svg and "tanh" in svg


def test_draw_dot_returns_a_graphviz_digraph() -> None:
    graphviz = pytest.importorskip("graphviz")
    dot = gt.draw_dot(Value(1.0, label="x") + 2)
    assert isinstance(dot, graphviz.Digraph)
    assert "data 1.0000" in dot.source


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
@pytest.mark.parametrize("op", ["x\\", 'a"b\\', '\\"', "<b>&amp;\n\x01", "]\\\\", "tanh"])
def test_dot_escapes_backslashes_and_quotes_in_every_field(op: str) -> None:
    x = Value(1.0, label="end\\")
    G = gt.to_networkx((x * 2).tanh())
    for n in G:
        if G.nodes[n]["op"]:
            G.nodes[n]["op"] = op  # possible in a loaded file
    svg = subprocess.run(["dot", "-Tsvg"], input=gt.to_dot(G), capture_output=True, text=True, check=True).stdout
    assert "<svg" in svg
    shown = op.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    if "\n" not in op:
        assert f">{shown}</text>" in svg, "the op is not shown literally"
    assert ">end\\</text>" in svg, "the label lost its trailing backslash"


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
@pytest.mark.parametrize("label", ["a\x00b", "\x07bell\x1b[31m", "tab\there", "del\x7f"])
def test_control_characters_in_labels_show_as_escapes(label: str) -> None:
    out = Value(1.0, label=label) * 2
    proc = subprocess.run(["dot", "-Tsvg"], input=gt.to_dot(out), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in label)
    assert f">{shown}</text>" in proc.stdout.replace("&#45;", "-"), proc.stdout


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
def test_deeply_nested_scopes_export_without_recursion(deep_scopes: Any) -> None:
    outs = deep_scopes(10_000, ("s0", "s999", "s9999"))
    root = outs[0] + outs[1] + outs[2]
    text = gt.to_dot(root, depth=None)  # every level drawn
    assert text.count("subgraph cluster_") == 10_000
    assert len(text) < 5_000_000  # indentation stops growing: linear in the depth
    shallow = outs[0] + outs[1]  # 1,000 levels: rendered by Graphviz too
    svg = subprocess.run(
        ["dot", "-Tsvg"], input=gt.to_dot(shallow, depth=None), capture_output=True, text=True, check=True
    )
    assert "<svg" in svg.stdout
    assert gt.analysis.by_scope(root, depth=None)["nodes"].sum() >= 3


def test_edges_carry_their_local_grad() -> None:
    a, b = Value(2.0, label="a"), Value(-3.0, label="b")
    L = a * b
    text = gt.to_dot(L)
    assert 'n0 -> n2_op [label="-3", fontsize=10];' in text  # d(ab)/da = b
    assert 'n1 -> n2_op [label="2", fontsize=10];' in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
def test_depth_folds_deeper_scopes_into_boxes_that_dot_renders(demo_sample: Value) -> None:
    loss = demo_sample
    G = gt.to_networkx(loss)
    assert G.number_of_nodes() == 984
    text = gt.to_dot(loss)  # depth 1: the call's cluster, one box per layer (and per layer's parameters)
    assert text.count("shape=Mrecord") == 6
    assert "Layer1 [528 nodes]" in text and "×256" in text  # 16 x 16 edges merged, with their count
    svg = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True, check=True, timeout=60).stdout
    assert "<svg" in svg and "Layer2 [32 nodes]" in svg
    two = gt.to_dot(loss, depth=2)
    assert two.count("shape=Mrecord") == 66  # a box per neuron call and per neuron's parameters
    assert gt.to_dot(loss, depth=None).count("shape=Mrecord") == 0
    with pytest.raises(ValueError, match="depth"):
        gt.to_dot(loss, depth=-1)


def test_repeated_instances_fold_into_one_stack() -> None:
    import random

    random.seed(3)
    model = gt.nn.MLP(2, [3, 1])
    outs = [model([Value(0.1 * k), Value(1.0)]) for k in range(12)]
    total = sum(outs)
    total.backward()
    text = gt.to_dot(total)
    assert text.count("MLP ×12") == 1 and "nodes each" in text
    lo, med, hi = sorted(o.data for o in outs)[0], sorted(o.data for o in outs)[5], max(o.data for o in outs)
    assert f"data {lo:.4g} … {med:.4g} … {hi:.4g}" in text
