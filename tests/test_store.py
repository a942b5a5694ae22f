"""The live store: networkx internals it relies on, node lifetime, memory, threads."""

from __future__ import annotations

import gc
import random
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import networkx as nx
import pytest

import graphtrace as gt
from graphtrace import Value, store


def test_a_node_lives_while_a_live_value_depends_on_it(no_cyclic_gc: None) -> None:
    base = len(store.GRAPH)
    x = Value(1.0, label="x")
    h = (x * 2).tanh()  # the Value of x * 2 is dropped at once; its node lives on under h
    root = h + x.exp()
    assert len(store.GRAPH) == base + 6  # x, 2, x*2, tanh, exp, +
    G = gt.to_networkx(root)
    assert sorted(d["op"] for _, d in G.nodes(data=True)) == ["", "", "*", "+", "exp", "tanh"]
    del G, root  # the root and the exp branch go; h keeps its own ancestors
    assert len(store.GRAPH) == base + 4
    ops = {d["op"] for _, d in gt.to_networkx(h).nodes(data=True)}
    assert ops == {"", "*", "tanh"}
    parent = h.operands[0]  # a new handle on the x * 2 node keeps it alive on its own
    del h
    assert len(store.GRAPH) == base + 3 and parent.op == "*"
    del parent
    assert len(store.GRAPH) == base + 1  # only x
    del x
    assert len(store.GRAPH) == base


def test_networkx_internals_have_the_shape_store_py_relies_on() -> None:
    # store.py and backward.py write DiGraph._node/_succ/_pred directly; fail loudly if that changes.
    G = nx.DiGraph()
    assert G._adj is G._succ
    G.add_node(1, data=1.0)
    G.add_edge(1, 2, local_grad=3.0)
    assert G._node == {1: {"data": 1.0}, 2: {}}
    assert G._succ == {1: {2: {"local_grad": 3.0}}, 2: {}}
    assert G._pred == {1: {}, 2: {1: {"local_grad": 3.0}}}
    assert G._succ[1][2] is G._pred[2][1]
    # and a graph written that way is a normal graph to networkx
    H = nx.DiGraph()
    H._node[1] = {"data": 1.0}
    H._node[2] = {}
    H._succ[1] = {2: {"local_grad": 3.0}}
    H._succ[2] = {}
    H._pred[1] = {}
    H._pred[2] = {1: H._succ[1][2]}
    assert nx.utils.graphs_equal(G, H)
    assert list(nx.topological_sort(H)) == [1, 2]


def test_store_matches_what_networkx_would_build() -> None:
    a = Value(2.0, label="a")
    b = a * a + a
    first = b.operands[0].node_id
    G = store.GRAPH
    with store.graph_lock():
        assert G.has_edge(a.node_id, first)
        assert G.in_degree(b.node_id) == 2
        assert G.nodes[b.node_id]["op"] == "+"
        assert nx.is_directed_acyclic_graph(G.subgraph(nx.ancestors(G, b.node_id) | {b.node_id}))


def test_nodes_live_exactly_as_long_as_their_values(no_cyclic_gc: None) -> None:
    base = len(store.GRAPH)
    a = Value(1.0)
    b = a * 2
    c = b + 1
    assert len(store.GRAPH) == base + 5  # a, 2, b, 1, c
    del a, b  # c keeps its ancestors alive
    assert len(store.GRAPH) == base + 5
    del c
    assert len(store.GRAPH) == base


def _train_steps(model: gt.nn.MLP, data: list[tuple[list[float], float]], steps: int) -> None:
    for _ in range(steps):
        scores = [model(x) for x, _ in data]
        loss = sum(((1 + -y * s).relu() for (_, y), s in zip(data, scores, strict=True)), Value(0.0))
        loss = loss + 1e-4 * sum(p * p for p in model.parameters())
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= 0.05 * p.grad
        del scores, loss


def test_a_training_step_is_freed_by_reference_counting_alone(no_cyclic_gc: None) -> None:
    random.seed(0)
    model = gt.nn.MLP(2, [8, 8, 1])
    data = [([random.uniform(-1, 1), random.uniform(-1, 1)], random.choice([-1.0, 1.0])) for _ in range(20)]
    unrelated = Value(5.0) * 3  # forces backward's subgraph path too
    base = len(store.GRAPH)
    _train_steps(model, data, 3)
    assert len(store.GRAPH) == base
    g = gt.to_networkx(unrelated)
    del g
    assert gc.collect() == 0, "the engine left cyclic garbage"


def test_pooled_adjacency_dicts_stay_tracked_and_old_through_a_full_collection() -> None:
    # CPython's full collections untrack the exact dicts that hold no container, as an emptied pooled
    # adjacency dict is. Reused, each was tracked again as a new object and promoted anew: on 3.12
    # micrograd's demo loop ran one full collection per step for most steps (see AdjacencyDict).
    random.seed(2)
    model = gt.nn.MLP(2, [8, 8, 1])
    data = [([random.uniform(-1, 1), random.uniform(-1, 1)], random.choice([-1.0, 1.0])) for _ in range(20)]
    _train_steps(model, data, 2)
    with store.graph_lock():
        pooled = store._pool[-1000:]
    assert len(pooled) == 1000 and not any(pooled)
    gc.collect()
    assert all(gc.is_tracked(d) for d in pooled)
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert all(id(d) in oldest for d in pooled)
    del pooled, oldest
    # a live node's adjacency dicts are the store's type too (the ones a freed node leaves to the pool)
    y = model([0.5, -0.5])
    with store.graph_lock():
        assert type(store.SUCC[y.node_id]) is type(store.PRED[y.node_id]) is store.AdjacencyDict
    # and a snapshot holds plain dicts
    G = gt.to_networkx(y)
    assert all(type(d) is dict for d in (*G._succ.values(), *G._pred.values()))


def _memory_at_100_and_1000_steps() -> tuple[int, int]:
    random.seed(1)
    model = gt.nn.MLP(2, [4, 1])
    data = [([random.uniform(-1, 1), random.uniform(-1, 1)], random.choice([-1.0, 1.0])) for _ in range(4)]
    _train_steps(model, data, 20)
    tracemalloc.start()
    try:
        _train_steps(model, data, 100)
        at_100 = tracemalloc.get_traced_memory()[0]
        _train_steps(model, data, 900)
        at_1000 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return at_100, at_1000


def test_memory_stays_flat_over_1000_training_steps() -> None:
    # In a fresh interpreter: the store's hash tables never shrink, so after an earlier test's big
    # graph their first resize (to a small table) would land inside the measured window.
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_store as t; "
    code += "print(*t._memory_at_100_and_1000_steps())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    at_100, at_1000 = map(int, out.stdout.split())
    assert at_1000 - at_100 < 20_000, (at_100, at_1000)


def test_eight_threads_get_exactly_the_serial_results() -> None:
    random.seed(2)
    model = gt.nn.MLP(3, [6, 6, 1], activation="tanh")
    inputs = [[random.uniform(-1, 1) for _ in range(3)] for _ in range(8)]

    def job(i: int) -> tuple[float, list[float], list[float]]:
        out = None
        for _ in range(30):  # many graphs built and freed while the other threads work
            xs = [Value(v) for v in inputs[i]]
            out = model(xs) * (i + 1)
            h = out.tanh() * out
            h.backward()
        assert out is not None
        return h.data, [x.grad for x in xs], [out.grad]

    serial = [job(i) for i in range(8)]
    for p in model.parameters():
        p.grad = 0.0
    results: list[tuple[float, list[float], list[float]] | None] = [None] * 8
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = job(i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == serial
    with store.graph_lock() as G:
        # the store is still a consistent DAG: every edge is mirrored and every node has its dicts
        assert set(G._node) == set(G._succ) == set(G._pred)
        for v, preds in G._pred.items():
            for u, e in preds.items():
                assert G._succ[u][v] is e


def test_the_live_sort_view_reads_the_store_itself_and_sorts_like_it() -> None:
    """store.LIVE_SORT (what backward hands to networkx.topological_sort for a whole-store sort)."""
    a = Value(2.0, label="a")
    y = (a * 3 + a).relu()
    view = store.LIVE_SORT
    with store.graph_lock() as G:
        assert view._node is store.NODE and view._succ is store.SUCC and view._pred is store.PRED
        assert list(nx.topological_sort(view)) == list(nx.topological_sort(G))
        assert y.node_id in view and -1 not in view
        assert list(view.neighbors(a.node_id)) == list(G.neighbors(a.node_id))


def test_edges_with_one_nonzero_local_grad_share_one_dict_until_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    """store._SHARED_EDGES: the live store's edges share attribute dicts by value, never a zero's."""
    import math

    w, x1, x2 = Value(0.75, label="w"), Value(2.5, label="x1"), Value(-1.5, label="x2")
    y1, y2 = w * x1, w * x2  # the edges x1 -> y1 and x2 -> y2 both carry w's 0.75
    z0, zn = Value(3.0) * 0.0, Value(3.0) * -0.0  # local grads 0.0 and -0.0: never shared
    with store.graph_lock():
        pred = store.PRED
        assert pred[y1.node_id][x1.node_id] is pred[y2.node_id][x2.node_id]  # both 0.75
        assert pred[y1.node_id][x1.node_id] == {"local_grad": 0.75}
        assert pred[y1.node_id][w.node_id] == {"local_grad": 2.5}
        zero = next(e for u, e in pred[z0.node_id].items() if store.NODE[u]["role"] != "constant")
        negzero = next(e for u, e in pred[zn.node_id].items() if store.NODE[u]["role"] != "constant")
        assert zero is not negzero and math.copysign(1.0, negzero["local_grad"]) == -1.0
    G = gt.to_networkx(y1)  # a snapshot's edge dicts are its own
    G.edges[x1.node_id, y1.node_id]["local_grad"] = 9.0
    with store.graph_lock():
        assert store.PRED[y2.node_id][x2.node_id] == {"local_grad": 0.75}
    assert 0.75 in store._SHARED_EDGES
    (y1 + y2).backward()  # a backward pass of the live store forgets the values, not the constants
    assert store._SHARED_EDGES == store._FLYWEIGHTS and (w.grad, x1.grad) == (1.0, 0.75)
    monkeypatch.setattr(store, "_SHARED_MAX", 4)  # a long forward pass without backward: bounded
    vs = [Value(float(k)) * (k + 0.5) for k in range(10)]  # 20 new values, then the flush below
    assert len(vs) == 10 and store.live_count() > 0 and store._SHARED_EDGES == store._FLYWEIGHTS


def test_the_held_flag_marks_exactly_the_locked_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    """store._held: what other threads poll instead of sleeping on the lock (a sleeper makes a convoy)."""
    assert not store._held
    with store.graph_lock():
        assert store._held and store.LOCK.locked()
    assert not store._held and not store.LOCK.locked()
    with pytest.raises(RuntimeError), store.graph_lock():
        raise RuntimeError("inside a locked section")
    assert not store._held and not store.LOCK.locked()
    # an op meeting another thread's locked section polls until it ends, then records
    polls: list[float] = []
    real = store._sleep
    monkeypatch.setattr(store, "_sleep", lambda s: (polls.append(s), real(s)))
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.graph_lock():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    assert inside.wait(5)
    threading.Timer(0.05, release.set).start()
    y = Value(2.0) * 3.0
    t.join()
    assert y.data == 6.0 and polls and not store._held
