"""backward: bookkeeping, deep graphs, snapshots, gt.backward on any DiGraph, no_grad."""

from __future__ import annotations

import math

import networkx as nx
import pytest

import graphtrace as gt
from graphtrace import Value, store


def test_million_node_chain_backpropagates_without_recursion() -> None:
    x = Value(1.0, label="x")
    k = Value(1.0, label="k")
    y = x
    for _ in range(1_000_000):
        y = y * k
    y.backward()
    assert x.grad == 1.0
    assert k.grad == 1_000_000.0
    del y  # freeing the chain is iterative too (no RecursionError, no crash)


def test_backward_twice_doubles_leaves_but_not_intermediates() -> None:
    a, b = Value(2.0), Value(-3.0)
    e = a * b
    L = e + a
    L.backward()
    assert (a.grad, b.grad, e.grad, L.grad) == (-2.0, 2.0, 1.0, 1.0)
    L.backward()
    assert (a.grad, b.grad) == (-4.0, 4.0)
    assert (e.grad, L.grad) == (1.0, 1.0)  # exactly d(L)/d(node) of the last call


def test_non_leaf_grads_are_those_of_the_last_root() -> None:
    x = Value(3.0)
    h = x * x
    out1 = h * 2
    out2 = h + 1
    out1.backward()
    assert h.grad == 2.0
    out2.backward()
    assert h.grad == 1.0  # not 3.0
    assert x.grad == 2 * 6.0 + 6.0


def test_seed_grad_and_bad_seed() -> None:
    x = Value(3.0)
    y = x * 4
    y.backward(grad=0.5)
    assert (y.grad, x.grad) == (0.5, 2.0)
    with pytest.raises(TypeError, match="grad must be a real number"):
        y.backward(grad="1")  # type: ignore[arg-type]


def test_backward_only_touches_ancestors() -> None:
    a = Value(1.0)
    b = a * 2
    other = a * 3
    other.grad = 7.0
    b.backward()
    assert other.grad == 7.0 and a.grad == 2.0


def test_snapshot_backward_reproduces_live_grads_exactly() -> None:
    xs = [Value(0.1 * i - 0.3, label=f"x{i}") for i in range(6)]
    h = [(xs[i] * xs[(i + 1) % 6] + xs[i]).tanh() for i in range(6)]
    out = sum(h[i] * h[(i + 2) % 6] for i in range(6)).sigmoid() / (xs[0] ** 2 + 1)
    G = gt.to_networkx(out)
    for n in G:
        G.nodes[n]["grad"] = 0.0
    gt.backward(G)  # root from G.graph["root"]
    out.backward()
    for v in xs + h + [out]:
        assert G.nodes[v.node_id]["grad"] == v.grad  # bit-exact: same graph, same arithmetic


def test_backward_on_a_plain_networkx_graph() -> None:
    G = nx.DiGraph()
    G.add_node("x", data=2.0, grad=0.0)
    G.add_node("y", data=3.0, grad=0.0)
    G.add_node("z", data=6.0, grad=5.0)
    G.add_edge("x", "z", local_grad=3.0)
    G.add_edge("y", "z", local_grad=2.0)
    gt.backward(G, "z")
    assert [G.nodes[n]["grad"] for n in "xyz"] == [3.0, 2.0, 1.0]


def test_gt_backward_bad_input_leaves_graph_unchanged() -> None:
    G = nx.DiGraph()
    G.add_edge("a", "b", local_grad=1.0)
    G.add_edge("b", "c")  # no local_grad
    before = nx.node_link_data(G, edges="edges")
    with pytest.raises(ValueError, match=r"\('b', 'c'\).*local_grad"):
        gt.backward(G, "c")
    with pytest.raises(ValueError, match="not a node"):
        gt.backward(G, "nope")
    with pytest.raises(ValueError, match="no root"):
        gt.backward(G)
    with pytest.raises(TypeError, match="DiGraph"):
        gt.backward(nx.Graph(), "a")
    with pytest.raises(TypeError, match="real number"):
        gt.backward(G, "b", grad="x")  # type: ignore[arg-type]
    C = nx.DiGraph()
    C.add_edge(1, 2, local_grad=1.0)
    C.add_edge(2, 1, local_grad=1.0)
    with pytest.raises(ValueError, match="cycle"):
        gt.backward(C, 1)
    assert nx.node_link_data(G, edges="edges") == before
    assert all("grad" not in d for _, d in C.nodes(data=True))


def test_backward_accepts_a_value_as_root_on_the_live_store() -> None:
    a = Value(2.0)
    b = a * a
    gt.backward(store.GRAPH, b)
    assert a.grad == 4.0


def test_no_grad_records_plain_leaves_and_keeps_nothing_alive() -> None:
    w = Value(3.0, role="parameter")
    before = store.GRAPH.number_of_edges()
    with gt.no_grad():
        y = (w * 2.0 + 1.0).tanh()
        z = y.exp()
    assert y.op == "" and z.op == "" and y.operands == ()
    assert store.GRAPH.number_of_edges() == before
    assert z.data == pytest.approx(math.exp(math.tanh(7.0)))
    z.backward()
    assert w.grad == 0.0
    v = w * 2  # recording resumes outside the block
    assert v.op == "*"


def test_no_grad_is_per_thread_and_nests() -> None:
    import threading

    seen: list[str] = []
    w = Value(1.0)
    with gt.no_grad():
        with gt.no_grad():
            pass
        assert (w * 2).op == ""
        t = threading.Thread(target=lambda: seen.append((w * 2).op))
        t.start()
        t.join()
    assert seen == ["*"]


def _frozen(G: nx.DiGraph) -> str:
    return repr((sorted(G.nodes(data=True), key=repr), sorted(G.edges(data=True), key=repr)))


def test_gt_backward_is_atomic_when_a_grad_or_local_grad_is_bad() -> None:
    a = Value(2.0, label="a")
    L = (a * 3 + 1) * 2
    G = gt.to_networkx(L)
    leaf = a.node_id
    G.nodes[leaf]["grad"] = "zero"  # a leaf's grad to accumulate into is not a number
    before = _frozen(G)
    with pytest.raises(ValueError, match=rf"node {leaf}.*'zero'"):
        gt.backward(G)
    assert _frozen(G) == before
    G.nodes[leaf]["grad"] = 0.0
    u, v = next(iter(G.in_edges(G.graph["root"])))
    G.edges[u, v]["local_grad"] = 10**400  # no float can hold it
    before = _frozen(G)
    with pytest.raises(ValueError, match="no float can hold"):
        gt.backward(G)
    assert _frozen(G) == before


def test_numpy_local_grads_of_any_width_are_accepted_as_floats() -> None:
    np = pytest.importorskip("numpy")
    G = nx.DiGraph()
    G.add_edge("x", "y", local_grad=np.float32(0.1))
    G.add_edge("y", "z", local_grad=np.float64(3.0))
    G.add_edge("w", "z", local_grad=np.int64(2))
    gt.backward(G, "z")
    assert G.nodes["x"]["grad"] == float(np.float32(0.1)) * 3.0
    assert type(G.nodes["x"]["grad"]) is float and G.nodes["w"]["grad"] == 2.0


def _sorted_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the graphs backward hands to networkx.topological_sort, recorded as it runs."""
    sizes: list[int] = []
    real = nx.topological_sort

    def recording(G: nx.DiGraph) -> object:
        sizes.append(len(G._node))
        return real(G)

    monkeypatch.setattr(nx, "topological_sort", recording)
    return sizes


def test_backward_sorts_only_the_roots_ancestors_beside_a_big_unrelated_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    big = Value(1.0)
    for _ in range(50_000):
        big = big * 1.0
    sizes = _sorted_sizes(monkeypatch)
    a, b = Value(2.0), Value(3.0)
    y = a * b + 1  # a, b, a*b, 1, + : 5 nodes
    y.backward()
    assert (a.grad, b.grad) == (3.0, 2.0)
    G = gt.to_networkx(big)
    H = nx.union(G, gt.to_networkx(y))
    gt.backward(H, y.node_id)
    assert sizes == [5, 5]
    del big


def test_a_loop_that_keeps_every_loss_sorts_one_step_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    model = gt.nn.MLP(2, [3, 1])
    sizes = _sorted_sizes(monkeypatch)
    history = []
    for k in range(5):
        loss = (model([0.5, -0.25 * k]) - 1.0) ** 2
        model.zero_grad()
        loss.backward()
        history.append(loss)  # keeps every step's graph alive in the store
    assert len(set(sizes)) == 1, sizes
    assert store.live_count() >= 5 * (sizes[0] - len(model.parameters()))  # all five steps are alive
