"""gt.analysis on real traces, and make_moons against scikit-learn."""

from __future__ import annotations

import math
import random

import networkx as nx
import numpy as np
import pytest
from sklearn.datasets import make_moons as sk_make_moons

import graphtrace as gt
from graphtrace import Value
from graphtrace.datasets import make_moons


def mlp_trace() -> tuple[Value, list[Value], gt.nn.MLP]:
    random.seed(5)
    model = gt.nn.MLP(3, [4, 4, 1], activation="tanh")
    xs = [Value(v, label=f"x{i}") for i, v in enumerate([0.5, -1.0, 0.25])]
    out = model(xs)
    loss = (out - 1.0) ** 2
    loss.label = "loss"
    loss.backward()
    return loss, xs, model


def test_path_sums_equal_every_leaf_grad() -> None:
    loss, xs, model = mlp_trace()
    for leaf in [*xs, *model.parameters()[:6]]:
        df = gt.analysis.path_contributions(loss, leaf)
        assert math.isclose(df["contribution"].sum(), leaf.grad, rel_tol=1e-9, abs_tol=1e-12)
    # an input reaches the loss through every hidden unit of both layers: 4 * 4 paths
    assert len(gt.analysis.path_contributions(loss, xs[0])) == 16


def test_path_contributions_on_a_snapshot_and_bad_leaf() -> None:
    a = Value(2.0, label="a")
    b = a * a
    c = b * a + b
    c.backward()
    G = gt.to_networkx(c)
    df = gt.analysis.path_contributions(G, a.node_id)
    assert df["contribution"].sum() == pytest.approx(a.grad)
    with pytest.raises(ValueError, match="not a node"):
        gt.analysis.path_contributions(G, 10**9)


def test_influence_ranks_leaves_by_abs_grad() -> None:
    loss, xs, model = mlp_trace()
    df = gt.analysis.influence(loss)
    leaves = [n for n in gt.to_networkx(loss) if gt.to_networkx(loss).in_degree(n) == 0]
    assert len(df) == len(leaves)
    # the constant exponent of (out - 1) ** 2 has a NaN grad (d/dy x**y is undefined for x < 0, as in
    # torch and autograd); sorting puts it last
    assert df["abs_grad"].iloc[:-1].is_monotonic_decreasing and math.isnan(df["abs_grad"].iloc[-1])
    assert set(df["role"]) <= {"leaf", "parameter", "constant"}
    top = df.iloc[0]
    assert top["abs_grad"] == max(abs(p.grad) for p in [*xs, *model.parameters()])


def test_op_counts_critical_path_depth_fan_out() -> None:
    loss, _, _ = mlp_trace()
    G = gt.to_networkx(loss)
    counts = gt.analysis.op_counts(loss)
    assert counts.sum() == G.number_of_nodes()
    assert counts["tanh"] == 8 and counts["**"] == 1
    path = gt.analysis.critical_path(loss)
    assert len(path) - 1 == gt.analysis.depth(loss) == nx.dag_longest_path_length(G)
    assert path["label"].iloc[-1] == "loss"
    fan = gt.analysis.fan_out(loss)
    assert fan["fan_out"].iloc[0] == 4  # each input feeds four neurons
    assert fan["fan_out"].is_monotonic_decreasing


def test_make_moons_matches_scikit_learn() -> None:
    np.random.seed(1337)
    X1, y1 = sk_make_moons(n_samples=100, noise=0.1)
    np.random.seed(1337)
    X2, y2 = make_moons(100, noise=0.1)
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    X1, y1 = sk_make_moons(n_samples=31, noise=0.3, random_state=7)
    X2, y2 = make_moons(31, noise=0.3, random_state=7)
    assert np.array_equal(X1, X2) and np.array_equal(y1, y2)
    with pytest.raises(ValueError, match="n_samples"):
        make_moons(1)
