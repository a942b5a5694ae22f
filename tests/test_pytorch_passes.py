"""What a parameter of a traced graph shows when a trace holds several backward passes of any kind
(issue #26, third hostile pass, findings 1, 7, 8): the sum of what the trace's own passes sent it,
read from each pass (never from ``.grad``), against ``torch.autograd.grad`` as the oracle."""

from __future__ import annotations

import threading
import warnings
from typing import Any

import networkx as nx
import pytest

torch = pytest.importorskip("torch")

import graphtrace as gt  # noqa: E402


def _node(G: nx.DiGraph, label: str) -> Any:
    return next(n for n, d in G.nodes(data=True) if d["label"] == label)


def _net() -> Any:
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))


def test_an_autograd_grad_pass_and_a_backward_pass_sum_in_every_parameter() -> None:
    torch.manual_seed(0)
    net = _net()
    x = torch.randn(5, 3)
    params = list(net.parameters())
    truth = torch.autograd.grad(3 * net(x).pow(2).mean(), params)  # loss + 2 * loss
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: autograd.grad leaves .grad alone
        with gt.pytorch.trace(net) as tr:
            loss = net(x).pow(2).mean()
            torch.autograd.grad(loss, params, retain_graph=True)  # a probe: does not touch .grad
            (2 * loss).backward()
    G = tr.graph
    for (name, _), g in zip(net.named_parameters(), truth, strict=True):
        n = _node(G, name)
        assert G.nodes[n]["grad_norm"] == pytest.approx(float(g.norm()), rel=1e-5), name
        assert G.nodes[n]["grad_abs_mean"] == pytest.approx(float(g.abs().mean()), rel=1e-5), name
        (edge,) = G.out_edges(n, data=True)  # used once: its edge carries all of it
        assert edge[2]["grad_norm"] == pytest.approx(float(g.norm()), rel=1e-5), name


def test_gradients_accumulated_before_the_trace_are_not_the_traces() -> None:
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    xs = [torch.randn(8, 4) for _ in range(3)]
    net(xs[0]).pow(2).mean().backward()  # micro-batch 0, untraced: .grad is not zero at the start
    truth = [sum(torch.autograd.grad(net(x).pow(2).mean(), [p])[0] for x in xs[1:]) for p in net.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with gt.pytorch.trace(net) as tr:  # micro-batches 1 and 2
            net(xs[1]).pow(2).mean().backward()
            net(xs[2]).pow(2).mean().backward()
    G = tr.graph
    for (name, _), g in zip(net.named_parameters(), truth, strict=True):
        assert G.nodes[_node(G, name)]["grad_norm"] == pytest.approx(float(g.norm()), rel=1e-5), name
    # the weight reaches each pass through its own view: each edge carries its pass's gradient
    w = _node(G, "0.weight")
    per_pass = sorted(float(torch.autograd.grad(net(x).pow(2).mean(), [net[0].weight])[0].norm()) for x in xs[1:])
    edges = sorted(e["grad_norm"] for _, _, e in G.out_edges(w, data=True))
    assert edges == pytest.approx(per_pass, rel=1e-5)


def test_another_threads_backward_never_enters_the_traced_parameters() -> None:
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    x = torch.randn(8, 4)
    truth = torch.autograd.grad(net(x).pow(2).mean(), list(net.parameters()))
    go, done = threading.Event(), threading.Event()

    def other() -> None:
        go.wait()
        net(100 * torch.randn(8, 4)).pow(2).mean().backward()  # the same model, untraced
        done.set()

    th = threading.Thread(target=other)
    th.start()
    with gt.pytorch.trace(net) as tr:
        loss = net(x).pow(2).mean()
        go.set()
        assert done.wait(60)  # the other thread's backward runs while the trace is open
        loss.backward()
    th.join()
    G = tr.graph
    for (name, _), g in zip(net.named_parameters(), truth, strict=True):
        n = _node(G, name)
        assert G.nodes[n]["grad_norm"] == pytest.approx(float(g.norm()), rel=1e-5), name
        for _, _, e in G.out_edges(n, data=True):
            assert e["grad_norm"] == pytest.approx(float(g.norm()), rel=1e-5), name


class _Log(torch.utils._python_dispatch.TorchDispatchMode):
    """A user's dispatch mode: the ops it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_a_users_dispatch_mode_sees_the_same_ops_with_a_trace_open() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    x = torch.randn(8, 16)

    def step() -> None:
        net.zero_grad()  # (.grad None: the first pass's gradient becomes .grad, as in every run below)
        loss = net(x).pow(2).mean()
        loss.backward(retain_graph=True)
        torch.autograd.grad(loss, list(net.parameters()))
        net(x).sum().backward()  # a second forward after the backward passes

    with FlopCounterMode(display=False) as alone, _Log() as seen:
        step()
    # the user's modes entered inside the trace (above its mode) and outside it (below)
    with gt.pytorch.trace(net), FlopCounterMode(display=False) as inside, _Log() as seen_inside:
        step()
    with FlopCounterMode(display=False) as outside, _Log() as seen_outside, gt.pytorch.trace(net):
        step()
    assert alone.get_total_flops() > 0
    assert inside.get_total_flops() == outside.get_total_flops() == alone.get_total_flops()
    assert seen_inside.ops == seen.ops  # not one op more (the trace's summaries) or less
    assert seen_outside.ops == seen.ops
    assert torch.utils._python_dispatch._get_current_dispatch_mode_stack() == []


class _Calls(torch.overrides.TorchFunctionMode):
    """A user's function mode: the torch functions it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.calls.append(getattr(func, "__qualname__", str(func)))
        return func(*args, **(kwargs or {}))


def test_a_users_function_mode_sees_the_same_calls_with_a_trace_open() -> None:
    """Entered outside the trace (below its function mode) or inside it, a user's function mode sees
    the model's calls and none of the trace's own (its kernels after a backward call, at the exit)."""
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    x = torch.randn(8, 16)

    def step() -> None:
        net.zero_grad()
        loss = net(x).pow(2).mean()
        loss.backward(retain_graph=True)
        torch.autograd.grad(loss, list(net.parameters()))
        net(x).sum().backward()

    step()  # (every run below starts with gradients in .grad: zero_grad's calls are the same)
    for stats in ("full", "norms"):
        with _Calls() as alone:
            step()
        with _Calls() as outside, gt.pytorch.trace(net, stats=stats) as tr:
            step()
        with gt.pytorch.trace(net, stats=stats), _Calls() as inside:
            step()
        assert alone.calls
        assert outside.calls == alone.calls, stats
        assert inside.calls == alone.calls, stats
        assert any(a["op"] == "addmm" for _, a in tr.graph.nodes(data=True))
    assert torch.overrides._get_current_function_mode_stack() == []


@pytest.mark.parametrize("stats", ["full", "norms"])
def test_meta_and_fake_tensors_in_a_trace_are_left_out_and_the_model_is_recorded(stats: str) -> None:
    """A model run on the meta device (for its shapes) or under ``FakeTensorMode`` inside a trace:
    its tensors hold no values, so its ops are not recorded (the trace's exit copied a meta tensor's
    statistics to the host and raised; a fake one's were copied into a real buffer as the op ran)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    torch.manual_seed(5)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    x = torch.randn(16, 4)
    with gt.pytorch.trace(net, stats=stats) as tr:
        loss = net(x).pow(2).mean()
        with torch.device("meta"):
            shadow = torch.nn.Linear(300, 300)
            shadow(torch.randn(2, 300)).sum().backward()
        with FakeTensorMode():
            fake = torch.nn.Linear(4, 2)
            fake(torch.randn(3, 4)).sum()
        loss.backward()
    G = tr.graph
    assert [a["op"] for _, a in G.nodes(data=True) if a["op"]] == ["t", "addmm", "relu", "t", "addmm", "pow", "mean"]
    mean = next(a for _, a in G.nodes(data=True) if a["op"] == "mean")
    assert mean["data"] == pytest.approx(loss.item(), rel=1e-6)
    for name, p in net.named_parameters():
        n = _node(G, name)
        assert G.nodes[n]["grad_norm"] == pytest.approx(float(p.grad.double().norm()), rel=1e-5), name


def test_a_gradient_penalty_records_the_backward_of_backward_ops() -> None:
    torch.manual_seed(4)
    net = _net()
    x = torch.randn(5, 3, requires_grad=True)
    with gt.pytorch.trace(net) as tr:
        out = net(x)
        (gx,) = torch.autograd.grad(out.sum(), x, create_graph=True)  # pass 1 builds a graph of its own
        loss = out.pow(2).mean() + gx.pow(2).sum()
        loss.backward()  # pass 2 runs through it
    G = tr.graph
    # the oracle: the same passes with torch alone
    x2 = x.detach().requires_grad_()
    out2 = net(x2)
    (g1,) = torch.autograd.grad(out2.sum(), x2, create_graph=True)
    (sent1,) = torch.autograd.grad(out2.sum(), x2, retain_graph=True)
    penalty = out2.pow(2).mean() + g1.pow(2).sum()
    sent2 = torch.autograd.grad(penalty, [x2, *net.parameters()])
    g1 = g1.detach()
    inp = _node(G, "input")
    assert G.nodes[inp]["grad_norm"] == pytest.approx(float((sent1 + sent2[0]).norm()), rel=1e-5)
    for (name, _), g in zip(net.named_parameters(), sent2[1:], strict=True):
        assert G.nodes[_node(G, name)]["grad_norm"] == pytest.approx(float(g.norm()), rel=1e-5), name
    # every node and edge known; a node used once sends all of its gradient along its one edge
    for n, a in G.nodes(data=True):
        assert a["data_known"] and a["grad_known"] and a["numel"] > 0, a["label"]
        out_edges = list(G.out_edges(n, data=True))
        assert all(e["grad_norm"] == e["grad_norm"] for _, _, e in out_edges), a["label"]
        if len(out_edges) == 1:
            assert out_edges[0][2]["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-6), a["label"]
    # the backward ops: values and shapes, the scope of the op whose backward made them, gradients
    ops = {(a["op"], a["scope"]): a for _, a in G.nodes(data=True)}
    mm = ops[("mm", "Sequential/0")]  # grad(out.sum(), x): the gradient times the first weight
    assert mm["shape"] == "5×3" and mm["data_norm"] == pytest.approx(float(g1.norm()), rel=1e-5)
    assert mm["grad_norm"] == pytest.approx(float((2 * g1).norm()), rel=1e-5)  # d(|gx|²)/d gx
    h = torch.tanh(net[0](x2)).detach()
    dtanh = (1 - h**2) * net[2].weight.detach()  # tanh_backward: the gradient at tanh's input
    tb = ops[("tanh_backward", "Sequential/1")]
    assert tb["shape"] == "5×4" and tb["data_norm"] == pytest.approx(float(dtanh.norm()), rel=1e-5)


def test_an_edge_keeps_what_it_carried_before_its_source_got_another_user() -> None:
    torch.manual_seed(7)
    lin = torch.nn.Linear(3, 5)
    x = torch.randn(4, 3)
    w = torch.randn(5, requires_grad=True)
    with gt.pytorch.trace(lin) as tr:
        h = torch.tanh(lin(x))
        h.sin().sum().backward(retain_graph=True)  # h and w have one user each so far
        a = (lin(x) * w).sum()
        a.backward(retain_graph=True)
        (3.0 * h.cos()).sum().backward(retain_graph=True)  # second users, after the passes
        b = (lin(x) * w * 2).sum()
        (a + b).backward()
    G = tr.graph
    h2 = torch.tanh(lin(x)).detach().requires_grad_()
    (via_sin,) = torch.autograd.grad(h2.sin().sum(), h2)
    (via_cos,) = torch.autograd.grad((3.0 * h2.cos()).sum(), h2)
    tanh = next(n for n, d in G.nodes(data=True) if d["op"] == "tanh")
    edges = {G.nodes[v]["op"]: e["grad_norm"] for _, v, e in G.out_edges(tanh, data=True)}
    assert edges["sin"] == pytest.approx(float(via_sin.norm()), rel=1e-5)
    assert edges["cos"] == pytest.approx(float(via_cos.norm()), rel=1e-5)
    (ga,) = torch.autograd.grad((lin(x).detach() * w).sum(), w)  # what one use of w is sent per pass
    inp = _node(G, "input")
    # the first mul reached twice (a, then a + b), the second once with twice the weight
    assert sorted(e["grad_norm"] for _, _, e in G.out_edges(inp, data=True)) == pytest.approx(
        [float((2 * ga).norm())] * 2, rel=1e-5
    )
    assert G.nodes[inp]["grad_norm"] == pytest.approx(float((4 * ga).norm()), rel=1e-5)
