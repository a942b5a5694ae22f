"""nn: micrograd's initialisation, outputs and loss curve, reproduced exactly."""

from __future__ import annotations

import random

import pytest
from micrograd import engine as mg_engine
from micrograd import nn as mg_nn

import graphtrace as gt
from graphtrace import Value


def test_same_seed_gives_micrograds_weights() -> None:
    random.seed(1337)
    ours = gt.nn.MLP(2, [16, 16, 1])
    random.seed(1337)
    theirs = mg_nn.MLP(2, [16, 16, 1])
    assert [p.data for p in ours.parameters()] == [float(p.data) for p in theirs.parameters()]
    assert all(p.role == "parameter" for p in ours.parameters())
    assert repr(ours) == repr(theirs)


def _hinge_step(model, V, X, y, k):  # type: ignore[no-untyped-def]
    scores = [model([V(a), V(b)]) for a, b in X]
    losses = [(1 + -yi * s).relu() for yi, s in zip(y, scores, strict=True)]
    loss = sum(losses) * (1.0 / len(losses)) + 1e-4 * sum(p * p for p in model.parameters())
    model.zero_grad()
    loss.backward()
    lr = 1.0 - 0.9 * k / 100
    for p in model.parameters():
        p.data -= lr * p.grad
    return loss.data, [p.grad for p in model.parameters()]


def test_loss_curve_and_grads_match_micrograd() -> None:
    rng = random.Random(7)
    X = [(rng.uniform(-1.5, 2.5), rng.uniform(-1, 1.5)) for _ in range(12)]
    y = [1 if a + b > 0.5 else -1 for a, b in X]
    random.seed(1337)
    ours = gt.nn.MLP(2, [8, 8, 1])
    random.seed(1337)
    theirs = mg_nn.MLP(2, [8, 8, 1])
    for k in range(8):
        l1, g1 = _hinge_step(ours, Value, X, y, k)
        l2, g2 = _hinge_step(theirs, mg_engine.Value, X, y, k)
        assert l1 == pytest.approx(l2, abs=1e-12)
        assert g1 == pytest.approx(g2, rel=1e-9, abs=1e-12)


def test_activation_choices_and_layer_output() -> None:
    random.seed(0)
    for act, op in [("relu", "relu"), ("tanh", "tanh"), ("linear", "+")]:
        n = gt.nn.Neuron(3, activation=act)
        assert n([1.0, 2.0, 3.0]).op == op
    assert gt.nn.Neuron(2, nonlin=False)([1.0, 1.0]).op == "+"
    layer = gt.nn.Layer(2, 3, activation="tanh")
    assert len(layer([0.5, -0.5])) == 3
    assert isinstance(gt.nn.Layer(2, 1)([0.5, -0.5]), Value)
    m = gt.nn.MLP(2, [3, 1], activation="tanh")
    assert m.layers[0].neurons[0].activation == "tanh"
    assert m.layers[-1].neurons[0].activation == "linear"
    assert repr(gt.nn.Neuron(2, activation="tanh")) == "TanhNeuron(2)"


def test_zero_grad_resets_every_parameter() -> None:
    m = gt.nn.MLP(2, [3, 1])
    out = m([1.0, -1.0])
    out.backward()
    assert any(p.grad != 0.0 for p in m.parameters())
    m.zero_grad()
    assert all(p.grad == 0.0 for p in m.parameters())


def test_nn_bad_arguments() -> None:
    with pytest.raises(ValueError, match="activation"):
        gt.nn.Neuron(2, activation="gelu")
    with pytest.raises(ValueError, match="nin"):
        gt.nn.Neuron(0)
    with pytest.raises(ValueError, match="nouts"):
        gt.nn.MLP(2, [])
    with pytest.raises(ValueError, match="expects 2 inputs"):
        gt.nn.Neuron(2)([1.0])


def test_width_one_layers_anywhere_in_an_mlp() -> None:
    random.seed(5)
    model = gt.nn.MLP(2, [4, 1, 1])
    out = model([0.5, -1.0])
    assert isinstance(out, gt.Value)
    out.backward()
    assert all(isinstance(p.grad, float) for p in model.parameters())
    assert len(gt.nn.MLP(3, [1]).parameters()) == 4


def test_the_demo_loss_is_named_loss_and_its_two_terms_are_named() -> None:
    """A newcomer looking for the loss on the training step's page (or in its nodes frame) finds a
    node called ``loss``, made of ``data_loss`` and ``reg_loss``."""
    from graphtrace.train import moons_demo, svm_loss

    model, X, y = moons_demo(samples=8, hidden=(4,))
    loss, _ = svm_loss(model, X, y)
    nodes = gt.nodes_frame(loss)
    assert nodes.loc[nodes["label"] == "loss", "data"].tolist() == [loss.data]
    terms = nodes[nodes["label"].isin(["data_loss", "reg_loss"])]
    assert len(terms) == 2
    assert sum(terms["data"]) == pytest.approx(loss.data, rel=1e-12)
