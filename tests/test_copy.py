"""Copies and pickles: copy.copy is another counted handle; deepcopy and pickle give detached leaves."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
import random
import subprocess
import sys
import textwrap

import graphtrace as gt
from graphtrace import Value, store


def test_copy_is_another_handle_that_keeps_the_node(no_cyclic_gc: None) -> None:
    base = store.live_count()
    v = Value(2.0, label="v")
    w = copy.copy(v)
    assert w is not v and w.node_id == v.node_id and w.label == "v"
    del v
    y = w * 3  # the node outlived the original handle
    y.backward()
    assert (y.data, w.grad) == (6.0, 3.0)
    w.data = 5.0  # both handles are the same node
    del y, w
    assert store.live_count() == base, "a copied handle leaked its node"


def test_copies_of_an_intermediate_keep_its_ancestors(no_cyclic_gc: None) -> None:
    base = store.live_count()
    x = Value(3.0)
    y = x * x
    c1, c2 = copy.copy(y), copy.copy(y)
    del x, y, c1
    assert store.live_count() == base + 2
    c2.backward()
    assert c2.operands[0].grad == 6.0
    del c2
    assert store.live_count() == base


def test_deepcopy_and_pickle_give_detached_leaves_with_the_same_attributes() -> None:
    x = Value(1.5, label="x", role="parameter")
    y = (x * 2).tanh()
    y.label = "y"
    y.backward()
    for clone in (copy.deepcopy(y), pickle.loads(pickle.dumps(y))):
        assert clone.node_id != y.node_id
        assert (clone.data, clone.grad, clone.label, clone.role, clone.op) == (y.data, y.grad, "y", "intermediate", "")
        assert clone.operands == ()
        z = clone * 2
        z.backward()
        assert clone.grad == y.grad + 2.0  # a leaf now: it accumulates
    p = pickle.loads(pickle.dumps(x))
    assert (p.data, p.grad, p.label, p.role) == (x.data, x.grad, "x", "parameter")


def test_deepcopy_of_a_model_works_after_the_original_is_gone(no_cyclic_gc: None) -> None:
    random.seed(3)
    model = gt.nn.MLP(2, [4, 1])
    x = [0.3, -0.7]
    out = model(x).data
    best = copy.deepcopy(model)
    assert [p.data for p in best.parameters()] == [p.data for p in model.parameters()]
    assert not {p.node_id for p in best.parameters()} & {p.node_id for p in model.parameters()}
    del model
    y = best(x)
    assert y.data == out
    y.backward()
    assert any(p.grad != 0.0 for p in best.parameters())


def test_a_pickled_value_never_lands_grads_on_another_process_node() -> None:
    payload = pickle.dumps(Value(4.0, label="x"))
    script = textwrap.dedent(
        """
        import pickle, sys
        import graphtrace as gt
        other = gt.Value(100.0, label="other")   # node 0 of this process
        y = pickle.loads(sys.stdin.buffer.read())
        z = y * 2
        z.backward()
        print(other.node_id, y.node_id, other.grad, y.grad, y.label)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], input=payload, capture_output=True, check=True, timeout=60)
    other_id, y_id, other_grad, y_grad, label = proc.stdout.decode().split()
    assert other_id == "0" and y_id != "0"
    assert (float(other_grad), float(y_grad), label) == (0.0, 2.0, "x")


def _evaluate(model: gt.nn.MLP, x: list[float]) -> float:
    return float(model(x).data)


def test_a_pickled_model_evaluates_the_same_in_a_process_pool() -> None:
    random.seed(11)
    model = gt.nn.MLP(2, [8, 8, 1])
    inputs = [[random.uniform(-1, 1), random.uniform(-1, 1)] for _ in range(6)]
    expected = [model(x).data for x in inputs]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        got = pool.starmap(_evaluate, [(model, x) for x in inputs])
    assert got == expected


def test_restoring_from_forged_pickle_arguments_is_refused() -> None:
    from graphtrace.value import _restore

    for args in [("a", 0.0, "", "leaf"), (1.0, 0.0, 3, "leaf"), (1.0, 0.0, "", "weird")]:
        try:
            _restore(*args)
        except TypeError as exc:
            assert "cannot restore a Value" in str(exc)
        else:
            raise AssertionError(f"accepted {args}")
