"""Every number on a PyTorch graph, against torch itself (issue #26, items 1-12): float64
recomputation and ``torch.autograd.grad`` of the same quantities are the oracles."""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

import graphtrace as gt  # noqa: E402
from graphtrace.pytorch import summary  # noqa: E402
from graphtrace.pytorch import tensors as _tensors  # noqa: E402

CHUNK = getattr(_tensors, "CHUNK", 1 << 17)  # a tensor longer than this takes several passes


def _truth(t: Any) -> dict[str, float]:
    """The statistics of ``t``'s values (as stored), recomputed in float64 (scaled by a power of two
    so that float64 values near 1e200 do not overflow the oracle itself)."""
    d = t.detach().double().reshape(-1)
    scale = 2.0 ** math.frexp(float(d.abs().max()) or 1.0)[1]
    d = d / scale
    return {
        "mean": float(d.mean()) * scale,
        "std": float(d.std(correction=0)) * scale,
        "norm": float(d.norm()) * scale,
        "min": float(d.min()) * scale,
        "max": float(d.max()) * scale,
        "abs_mean": float(d.abs().mean()) * scale,
    }


def _close(a: dict[str, Any], prefix: str, t: Any, rel: float = 1e-4, scaled: bool = False) -> None:
    """``a``'s summary of ``t`` is its float64 truth to ``rel`` (``scaled``: or to ``rel * max |t|``,
    for values whose mean cancels)."""
    truth = _truth(t)
    tol = rel * max(abs(truth["min"]), abs(truth["max"])) if scaled else 0.0
    for s, v in truth.items():
        got = a[f"{prefix}_{s}"]
        if s == "abs_mean" and math.isnan(got):
            continue
        assert got == pytest.approx(v, rel=rel, abs=tol), (prefix, s, got, v)


# ---- item 4: statistics that keep their digits ----------------------------------------------------
@pytest.mark.parametrize("offset", [1e2, 1e3, 1e4, 1e5, 1e6])
@pytest.mark.parametrize("n", [1000, CHUNK * 2 + 17])
def test_std_of_float32_values_with_a_common_offset_matches_float64(offset: float, n: int) -> None:
    g = torch.Generator().manual_seed(int(offset) + n)
    x = (offset + 0.01 * torch.randn(n, generator=g, dtype=torch.float64)).float()
    s = summary(x)
    truth = float(x.double().std(correction=0))
    assert truth > 0
    assert s["data_std"] == pytest.approx(truth, rel=1e-3)
    _close(s, "data", x)
    # and with the offset negative, in float64, and as float16 / bfloat16 sums
    assert summary(-x)["data_std"] == pytest.approx(truth, rel=1e-3)
    assert summary(x.double())["data_std"] == pytest.approx(truth, rel=1e-6)


@pytest.mark.parametrize("n", [CHUNK + 1, CHUNK * 3, 1_000_000])
def test_the_std_and_norm_of_a_large_relu_output_keep_float32s_digits(n: int) -> None:
    """A ReLU output of several chunks: half its elements are 0, the same shifted value, squared and
    summed 65,536 times a chunk; a float32 BLAS dot added them in a few lanes, off by ~1e-5."""
    g = torch.Generator().manual_seed(n)
    x = torch.relu(torch.randn(n, generator=g))
    s = summary(x)
    x64 = x.double()
    assert s["data_std"] == pytest.approx(float(x64.std(correction=0)), rel=1e-6)
    assert s["data_norm"] == pytest.approx(float(x64.norm()), rel=1e-6)
    assert s["data_mean"] == pytest.approx(float(x64.mean()), rel=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_tensors_summarised_traced_and_recorded_match_float64(dtype: str, tmp_path: Path) -> None:
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(3)
    for n in (5, 1000, CHUNK * 2 + 17):  # every value kept, a batch of one shape, several chunks
        x = (1.0 + 3.0 * torch.randn(n, generator=g)).to(dt)
        _close(summary(x), "data", x, rel=1e-5)
        _close(summary(x, "grad"), "grad", x, rel=1e-5)
    sparse = (torch.randn(6, 6, generator=g) * (torch.rand(6, 6, generator=g) > 0.5)).to(dt).to_sparse()
    _close(summary(sparse), "data", sparse.coalesce().values(), rel=1e-5)
    inf = summary(torch.tensor([1.0, float("inf"), -2.0], dtype=dt))
    assert inf["data_nonfinite"] == 1 and inf["data_min"] == -2.0
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(8, 300), torch.nn.ReLU(), torch.nn.Linear(300, 1)).to(dt)
    x = torch.randn(64, 8).to(dt)
    with gt.pytorch.trace(net) as tr:
        h = net[1](net[0](x))
        loss = net[2](h).float().pow(2).mean()
        loss.backward()
    G = tr.graph
    relu = next(a for _, a in G.nodes(data=True) if a["op"] == "relu")
    assert relu["dtype"] == dtype
    _close(relu, "data", h, rel=1e-5)
    for name, p in net.named_parameters():
        a = G.nodes[_param(G, name)]
        _close(a, "data", p, rel=1e-5)
        _close(a, "grad", p.grad, rel=1e-5)
    with gt.record(tmp_path / "run", net) as run:
        run.log(0, loss)
    rows = gt.open_run(tmp_path / "run").sql("SELECT name, data, grad FROM params").df().set_index("name")
    for name, p in net.named_parameters():
        assert rows.loc[name, "data"] == pytest.approx(float(p.detach().double().norm()), rel=1e-5)
        assert rows.loc[name, "grad"] == pytest.approx(float(p.grad.double().norm()), rel=1e-5)


def test_a_one_element_tensor_has_std_zero_and_its_value() -> None:
    for v in (0.1, 77.7, 12345.678, 1e5 + 0.1, -3.25e20, 7.0):
        s = summary(torch.tensor([v], dtype=torch.float32))
        assert s["data_std"] == 0.0 and s["data"] == float(torch.tensor(v, dtype=torch.float32))
        assert s["data_mean"] == s["data_min"] == s["data_max"] == s["data"]


def test_traced_values_and_gradients_with_an_offset_match_float64() -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 16)
    with torch.no_grad():
        lin.bias.fill_(1000.0)  # addmm's output: 1000 + a small spread
    x = torch.randn(32, 8) * 0.01
    with gt.pytorch.trace(lin) as tr:
        out = lin(x)
        out.retain_grad()
        loss = ((out - 999.0) ** 2).sum() * 1e-3  # its gradient: about 2e-3 + a small spread
        loss.backward()
    a = next(a for _, a in tr.graph.nodes(data=True) if a["op"] == "addmm")
    assert a["data_std"] == pytest.approx(float(out.detach().double().std(correction=0)), rel=1e-3)
    _close(a, "data", out)
    _close(a, "grad", out.grad)


def test_the_runs_params_rows_keep_their_digits(tmp_path: Path) -> None:
    class Offset(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(1)
            self.w = torch.nn.Parameter((1000.0 + 0.01 * torch.randn(5000, generator=g, dtype=torch.float64)).float())
            self.c = (1000.0 + 0.01 * torch.randn(5000, generator=g, dtype=torch.float64)).float()

        def forward(self) -> Any:
            return (self.w * self.c).sum()  # d/dw = c: 1000 + a small spread

    model = Offset()
    with gt.record(tmp_path / "run", model) as run:
        model.zero_grad()
        loss = model()
        loss.backward()
        run.log(0, loss)
    row = gt.open_run(tmp_path / "run").sql("SELECT * FROM params").df().iloc[0]
    assert row["grad_std"] == pytest.approx(float(model.w.grad.double().std(correction=0)), rel=1e-3)
    assert row["data_std"] == pytest.approx(float(model.w.detach().double().std(correction=0)), rel=1e-3)
    assert row["grad_mean"] == pytest.approx(float(model.w.grad.double().mean()), rel=1e-6)
    assert row["grad"] == pytest.approx(float(model.w.grad.double().norm()), rel=1e-6)


def test_norms_never_overflow_and_huge_values_keep_their_statistics() -> None:
    for x in (
        torch.full((1000,), 3e25) + torch.randn(1000) * 1e24,
        torch.tensor([1e200, -2e200, 3e200], dtype=torch.float64),
        torch.tensor([3.0e38, -3.0e38, 1.0], dtype=torch.float32),
    ):
        s = summary(x)
        assert s["data_nonfinite"] == 0 and math.isfinite(s["data_norm"])
        _close(s, "data", x, rel=1e-5, scaled=True)


def test_the_nonfinite_count_is_exact_beside_huge_finite_values() -> None:
    g = torch.Generator().manual_seed(4)
    cases = [
        torch.tensor([8e36, 1.6e38, float("inf")]),
        torch.tensor([1e300, -1.7e308, float("nan"), 2.0], dtype=torch.float64),
        torch.cat([torch.full((2000,), 3e38), torch.tensor([float("nan"), -float("inf")])]),  # a batch
    ]
    big = torch.full((CHUNK * 3 + 5,), -3.3e38)  # several chunks
    big[torch.randperm(big.numel(), generator=g)[:777]] = float("nan")
    big[:5] = float("inf")
    cases.append(big)
    cases.append(torch.full(((1 << 24) + 3,), float("nan")))  # more than float32 counts exactly
    for x in cases:
        s = summary(x)
        assert s["data_nonfinite"] == int((~torch.isfinite(x)).sum()), x.shape
        finite = x[torch.isfinite(x)]  # summary() alone also gives the finite elements' statistics
        if not finite.numel():
            continue
        assert s["data_max_abs"] == float(finite.abs().max())
        assert s["data_abs_mean"] == pytest.approx(float(finite.double().abs().mean()), rel=1e-6)


def test_a_trace_of_an_overflow_counts_it_and_never_dies() -> None:
    w = torch.tensor([50.0, 44.0, 1.0, 89.0], requires_grad=True)
    with gt.pytorch.trace() as tr:
        y = (w * 2.0).exp()  # e**100, e**88 overflow float32; e**2 does not
        z = y * 1e-30  # huge finite values beside the infinities
        z.sum().backward()
    G = tr.graph
    by_label = {a["label"]: a for _, a in G.nodes(data=True)}
    truth = (w.detach() * 2.0).exp()
    assert by_label["exp"]["data_nonfinite"] == int((~torch.isfinite(truth)).sum()) == 2
    assert by_label["mul_1"]["data_nonfinite"] == 2 and by_label["mul_1"]["data_min"] == pytest.approx(
        7.389e-30, rel=1e-3
    )
    assert by_label["sum"]["data_nonfinite"] == 1
    assert G.nodes[_param(G, "input")]["grad_nonfinite"] == 2


# ---- item 1: ops with several outputs ---------------------------------------------------------------
def _split_ab(h: Any) -> tuple[Any, Any]:
    a, b = h.split(2)
    return a, b


def _chunk_ab(h: Any) -> tuple[Any, Any]:
    a, b = h.chunk(2)
    return a, b


def _unbind_ab(h: Any) -> tuple[Any, Any]:
    a, b = h.view(2, 2).unbind(0)
    return a, b


@pytest.mark.parametrize("op", [_split_ab, _chunk_ab, _unbind_ab], ids=["split", "chunk", "unbind"])
def test_one_op_using_two_outputs_of_a_multi_output_node(op: Any) -> None:
    torch.manual_seed(3)
    w = torch.randn(4, requires_grad=True)
    with gt.pytorch.trace() as tr:
        h = w * 1.5
        a, b = op(h)
        y = (a * b).sum()
        y.backward()
    G = tr.graph
    name = {"_split_ab": "split", "_chunk_ab": "split", "_unbind_ab": "unbind"}[op.__name__]
    node = next(n for n, d in G.nodes(data=True) if d["op"].startswith(name))
    (mul,) = [v for v in G.successors(node)]
    # torch's gradient to the node: the gradients of all its outputs, concatenated
    with torch.no_grad():
        h2 = (w * 1.5).detach()
    h2.requires_grad_()
    a2, b2 = op(h2)
    ga, gb = torch.autograd.grad((a2 * b2).sum(), [a2, b2])
    want = torch.cat([ga.reshape(-1), gb.reshape(-1)])
    d = G.nodes[node]
    assert d["grad_norm"] == pytest.approx(float(want.double().norm()), rel=1e-6)
    assert d["grad_mean"] == pytest.approx(float(want.double().mean()), rel=1e-6)
    assert G.edges[node, mul]["grad_norm"] == pytest.approx(float(want.double().norm()), rel=1e-6)
    # its value: the outputs' values, concatenated
    values = torch.cat([a2.detach().reshape(-1), b2.detach().reshape(-1)])
    assert d["numel"] == 4 and d["shape"] == " + ".join(["2"] * 2)
    assert d["data_norm"] == pytest.approx(float(values.double().norm()), rel=1e-6)
    assert [round(v, 5) for v in json.loads(d["data_values"])] == [round(v, 5) for v in values.tolist()]


def test_outputs_of_one_node_used_by_different_ops_and_one_left_unused() -> None:
    torch.manual_seed(4)
    w = torch.randn(6, requires_grad=True)
    with gt.pytorch.trace() as tr:
        a, b, _c = (w * 2.0).split(2)  # _c is never used: its gradient is zeros
        loss = a.exp().sum() + (b.sin() * 3).sum()
        loss.backward()
    G = tr.graph
    node = next(n for n, d in G.nodes(data=True) if d["op"] == "split")
    h2 = (w * 2.0).detach().requires_grad_()
    a2, b2, _c2 = h2.split(2)
    ga, gb = torch.autograd.grad(a2.exp().sum() + (b2.sin() * 3).sum(), [a2, b2])
    edges = {G.nodes[v]["op"]: e["grad_norm"] for _, v, e in G.out_edges(node, data=True)}
    assert edges["exp"] == pytest.approx(float(ga.norm()), rel=1e-6)
    assert edges["sin"] == pytest.approx(float(gb.norm()), rel=1e-6)
    d = G.nodes[node]
    whole = torch.cat([ga, gb, torch.zeros(2)]).double()
    assert d["grad_norm"] == pytest.approx(float(whole.norm()), rel=1e-6)
    assert d["grad_mean"] == pytest.approx(float(whole.mean()), rel=1e-6)
    assert d["grad_min"] == pytest.approx(float(whole.min())) and d["grad_max"] == pytest.approx(float(whole.max()))


# ---- items 2 and 3: several backward passes in one trace --------------------------------------------
def _edge_norms(G: nx.DiGraph, node: Any) -> dict[str, float]:
    return {G.nodes[v]["op"]: e["grad_norm"] for _, v, e in G.out_edges(node, data=True)}


def test_every_forward_and_backward_pass_of_a_trace_has_its_edge_gradients() -> None:
    torch.manual_seed(5)
    w = torch.randn(5, requires_grad=True)
    hs = []
    with gt.pytorch.trace() as tr:
        for k in range(3):
            h = w * (k + 1.0)
            hs.append(h.detach())
            y = (h.sin() + 2.0 * h.cos()).sum()  # h feeds sin and cos
            y.backward()
    G = tr.graph
    muls = sorted(n for n, d in G.nodes(data=True) if d["op"] == "mul" and G.nodes[next(G.predecessors(n))]["op"] == "")
    assert len(muls) == 3
    for node, h in zip(muls, hs, strict=True):
        h2 = h.clone().requires_grad_()
        (via_sin,) = torch.autograd.grad(h2.sin().sum(), h2)
        (via_cos,) = torch.autograd.grad((2.0 * h2.cos()).sum(), h2)
        (whole,) = torch.autograd.grad((h2.sin() + 2.0 * h2.cos()).sum(), h2)
        edges = _edge_norms(G, node)
        assert edges["sin"] == pytest.approx(float(via_sin.norm()), rel=1e-6)
        assert edges["cos"] == pytest.approx(float(via_cos.norm()), rel=1e-6)
        assert G.nodes[node]["grad_norm"] == pytest.approx(float(whole.norm()), rel=1e-6)


def _node(G: nx.DiGraph, op: str) -> Any:
    return next(n for n, d in G.nodes(data=True) if d["op"] == op)


def _param(G: nx.DiGraph, name: str) -> Any:
    return next(n for n, d in G.nodes(data=True) if d["label"] == name)


def test_repeated_backward_calls_on_a_kept_graph_record_their_sum() -> None:
    torch.manual_seed(6)
    lin = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with gt.pytorch.trace(lin) as tr:
        out = lin(x)
        loss = out.pow(2).sum()
        loss.backward(retain_graph=True)
        (2 * loss).backward()  # a trace records the sum: the gradient of loss + 2 * loss
    G = tr.graph
    # the oracle: torch.autograd.grad of the sum of what backward was called on
    out2 = lin(x)
    (g_out,) = torch.autograd.grad(3 * out2.pow(2).sum(), out2)
    gw, gb = torch.autograd.grad(3 * lin(x).pow(2).sum(), [lin.weight, lin.bias])
    addmm, t, w = _node(G, "addmm"), _node(G, "t"), _param(G, "weight")
    assert G.nodes[addmm]["grad_norm"] == pytest.approx(float(g_out.norm()), rel=1e-6)
    assert G.nodes[t]["grad_norm"] == pytest.approx(float(gw.norm()), rel=1e-6)
    assert G.nodes[w]["grad_norm"] == pytest.approx(float(gw.norm()), rel=1e-6)
    assert G.nodes[w]["grad_norm"] == pytest.approx(float(lin.weight.grad.norm()), rel=1e-6)  # as .grad sums
    assert G.edges[w, t]["grad_norm"] == pytest.approx(float(gw.norm()), rel=1e-6)
    assert G.edges[_param(G, "bias"), addmm]["grad_norm"] == pytest.approx(float(gb.norm()), rel=1e-6)
    # and the loss's own nodes: pow got 1 + 2 from the two passes (its output is the sum's input)
    assert G.nodes[_node(G, "pow")]["grad_mean"] == pytest.approx(3.0)


def test_two_losses_backpropagated_one_after_the_other_through_a_kept_graph() -> None:
    torch.manual_seed(7)
    lin = torch.nn.Linear(3, 5)
    x = torch.randn(4, 3)
    with gt.pytorch.trace(lin) as tr:
        h = torch.tanh(lin(x))
        l1 = h.sin().sum()
        l2 = (3.0 * h.cos()).sum()
        l1.backward(retain_graph=True)
        l2.backward()
    G = tr.graph
    h2 = torch.tanh(lin(x)).detach().requires_grad_()
    (whole,) = torch.autograd.grad(h2.sin().sum() + (3.0 * h2.cos()).sum(), h2)
    (via_sin,) = torch.autograd.grad(h2.sin().sum(), h2)
    (via_cos,) = torch.autograd.grad((3.0 * h2.cos()).sum(), h2)
    tanh = _node(G, "tanh")
    assert G.nodes[tanh]["grad_norm"] == pytest.approx(float(whole.norm()), rel=1e-6)
    edges = _edge_norms(G, tanh)
    assert edges["sin"] == pytest.approx(float(via_sin.norm()), rel=1e-6)
    assert edges["cos"] == pytest.approx(float(via_cos.norm()), rel=1e-6)
    w = _param(G, "weight")
    assert G.nodes[w]["grad_norm"] == pytest.approx(float(lin.weight.grad.norm()), rel=1e-6)


def test_autograd_grad_in_a_trace_gives_the_leaves_what_it_computed() -> None:
    torch.manual_seed(8)
    lin = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with gt.pytorch.trace(lin) as tr:
        loss = lin(x).pow(2).sum()
        gw, gb = torch.autograd.grad(loss, [lin.weight, lin.bias])
    assert lin.weight.grad is None  # autograd.grad does not accumulate
    G = tr.graph
    w, b = _param(G, "weight"), _param(G, "bias")
    assert G.nodes[w]["grad_norm"] == pytest.approx(float(gw.norm()), rel=1e-6)
    assert G.edges[w, _node(G, "t")]["grad_norm"] == pytest.approx(float(gw.norm()), rel=1e-6)
    assert G.nodes[b]["grad_norm"] == pytest.approx(float(gb.norm()), rel=1e-6)


def test_a_parameter_shows_what_the_trace_sent_it_not_gradients_from_before() -> None:
    torch.manual_seed(9)
    lin = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    lin(x).sum().backward()  # an earlier micro-batch's gradient stays in .grad (accumulation)
    before = lin.weight.grad.clone()
    with gt.pytorch.trace(lin) as tr:
        lin(x).pow(2).sum().backward()
    G = tr.graph
    sent = lin.weight.grad - before
    w = _param(G, "weight")
    assert G.nodes[w]["grad_norm"] == pytest.approx(float(sent.norm()), rel=1e-5)
    assert G.edges[w, _node(G, "t")]["grad_norm"] == pytest.approx(float(sent.norm()), rel=1e-5)


def test_two_steps_in_one_trace_record_the_sum_of_their_passes_without_a_warning() -> None:
    torch.manual_seed(10)
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    x = torch.randn(4, 3)
    sent = torch.zeros_like(lin.weight)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero_grad (to None) between the passes loses nothing
        with gt.pytorch.trace(lin) as tr:
            for _ in range(2):  # two training steps in one trace, zero_grad between them
                opt.zero_grad()
                (gw,) = torch.autograd.grad(lin(x).sum(), [lin.weight])  # the oracle: what this step sends
                sent += gw
                lin(x).sum().backward()
                opt.step()
    w = _param(tr.graph, "weight")
    # the trace saw two backward passes (autograd.grad's and backward's) per step
    assert tr.graph.nodes[w]["grad_norm"] == pytest.approx(2 * float(sent.norm()), rel=1e-6)


def test_passes_whose_sum_cannot_be_kept_are_named_in_a_warning() -> None:
    torch.manual_seed(10)
    lin = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    warns = pytest.warns(RuntimeWarning, match=r"the gradient 2 parameters \(weight, bias\) received from a pass")
    with warns, gt.pytorch.trace(lin) as tr:
        loss = lin(x).sum()
        gw, gb = torch.autograd.grad(loss, [lin.weight, lin.bias], retain_graph=True)
        gw.zero_(), gb.zero_()  # what the first pass sent, changed in place before the next one
        (2 * loss).backward()
    assert tr.graph.nodes[_param(tr.graph, "weight")]["grad_norm"] == pytest.approx(float(lin.weight.grad.norm()))
    w = torch.randn(3, requires_grad=True)
    warns = pytest.warns(RuntimeWarning, match="reached again by a backward pass after one that did not keep")
    with warns, gt.pytorch.trace():
        y = (w + 1.0).sum()  # no op here saves a tensor: the graph can be walked twice
        y.backward()
        y.backward()


def test_by_scope_parameter_gradients_of_a_torch_graph_are_element_wise(tmp_path: Path) -> None:
    torch.manual_seed(12)
    model = _Units()
    x = torch.randn(16, 4)
    with gt.record(tmp_path / "run", model) as run:
        with gt.pytorch.trace(model) as tr:
            loss = model(x).pow(2).mean()
            loss.backward()
        run.log(0, loss, graph=tr.graph)
    table = gt.analysis.by_scope(tr.graph).set_index("scope")
    con = gt.open_run(tmp_path / "run")
    rows = con.sql("SELECT * FROM scopes WHERE step = 0").df().set_index("scope")
    health = gt.analysis.health(tr.graph).set_index("layer")
    for module in ("fc1", "fc2", "fc3"):
        g = torch.cat([p.grad.double().reshape(-1) for p in getattr(model, module).parameters()]).abs()
        for t in (table, rows):
            r = t.loc[f"_Units/{module}"]
            assert r["param_count"] == g.numel()
            assert r["param_abs_grad_sum"] == pytest.approx(float(g.sum()), rel=1e-5)
            assert r["param_abs_grad_mean"] == pytest.approx(float(g.mean()), rel=1e-5)
            assert r["param_abs_grad_max"] == pytest.approx(float(g.max()), rel=1e-6)
    # and health's layers (an activation with the parameters that feed it) read the same numbers
    g = torch.cat([p.grad.double().reshape(-1) for p in model.fc1.parameters()]).abs()
    assert health.loc["_Units/act1", "param_count"] == table.loc["_Units/fc1", "param_count"] == g.numel()
    assert health.loc["_Units/act1", "param_abs_grad_mean"] == pytest.approx(
        table.loc["_Units/fc1", "param_abs_grad_mean"], rel=1e-12
    )


# ---- item 5: unit shares of a torch graph, in by_scope, the run's scopes table, health, the report ----
class _Units(torch.nn.Module):
    """One of 8 ReLU units dead (bias -100), a tanh layer a little saturated."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 8)
        self.act1 = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(8, 16)
        self.act2 = torch.nn.Tanh()
        self.fc3 = torch.nn.Linear(16, 1)
        with torch.no_grad():
            self.fc1.bias[5] = -100.0
            self.fc2.weight.mul_(4.0)

    def forward(self, x: Any) -> Any:
        self.r = self.act1(self.fc1(x))
        self.t = self.act2(self.fc2(self.r))
        return self.fc3(self.t)


def test_unit_shares_of_a_torch_graph_count_elements_and_units(tmp_path: Path) -> None:
    torch.manual_seed(11)
    model = _Units()
    x = torch.randn(32, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    truths = []
    with gt.record(tmp_path / "run", model) as run:
        for step in range(2):
            opt.zero_grad()
            with gt.pytorch.trace(model) as tr:
                loss = model(x).pow(2).mean()
                loss.backward()
            r, t = model.r.detach().double(), model.t.detach().double()
            truths.append((float((r == 0).double().mean()), float((t.abs() > 0.97).double().mean())))
            opt.step()
            run.log(step, loss, graph=tr.graph)
    zero, saturated = truths[-1]
    assert 0.5 < zero < 0.75 and 0 < saturated < 0.5  # neither 0 nor 1: the old readings
    table = gt.analysis.by_scope(tr.graph).set_index("scope")
    assert table.loc["_Units/act1", "relu_zero_share"] == pytest.approx(zero, rel=1e-9)
    assert table.loc["_Units/act1", "relu_units"] == 8 and table.loc["_Units/act1", "dead_relu_units"] == 1
    assert table.loc["_Units/act2", "tanh_saturated_share"] == pytest.approx(saturated, rel=1e-9)
    assert pd.isna(table.loc["_Units/act2", "relu_units"]) and math.isnan(
        table.loc["_Units/act1", "tanh_saturated_share"]
    )
    # the run's scopes table holds the same rows
    con = gt.open_run(tmp_path / "run")
    rows = con.sql("SELECT * FROM scopes WHERE step = 1").df().set_index("scope")
    assert rows.loc["_Units/act1", "relu_zero_share"] == pytest.approx(zero, rel=1e-9)
    assert rows.loc["_Units/act1", "dead_relu_units"] == 1
    # runs.health: one of 8 units dead, at every depth
    for depth, layer in ((2, "_Units/act1"), (1, "_Units")):
        h = gt.runs.health(tmp_path / "run", depth=depth)
        last = h[h["step"] == 1].set_index("layer")
        assert last.loc[layer, "dead_relu_share"] == pytest.approx(1 / 8), depth
    h = gt.runs.health(tmp_path / "run", depth=2)
    assert h[h["step"] == 1].set_index("layer").loc["_Units/act2", "tanh_saturated_share"] == pytest.approx(saturated)
    # and the report's unit charts have those points
    from graphtrace.report import report_html

    page = report_html(tmp_path / "run")
    specs = json.loads(page.split('<script type="application/json" id="vl-specs">')[1].split("</script>")[0])
    dead = next(sp for sp in specs if json.dumps(sp).count('"dead_relu_share"') and "data" in sp)
    points = [v for v in dead["data"]["values"] if v.get("dead_relu_share") is not None]
    assert {(v["layer"], v["dead_relu_share"]) for v in points if v["step"] == 1} >= {("_Units/act1", 0.125)}


# ---- item 6: anomalies are non-finite elements, and an input outside the graph is named -------------
def test_huge_finite_values_are_not_anomalies() -> None:
    torch.manual_seed(12)
    lin = torch.nn.Linear(3, 4).double()
    x = torch.randn(5, 3, dtype=torch.float64) * 1e200
    with gt.pytorch.trace(lin) as tr:
        lin(x).mean().backward()
    G = tr.graph
    assert gt.analysis.anomalies(G).empty
    assert all(math.isfinite(a["data"]) and a["data_nonfinite"] == 0 for _, a in G.nodes(data=True))
    out = lin(x).detach()
    addmm = _node(G, "addmm")
    assert G.nodes[addmm]["data_norm"] == pytest.approx(_truth(out)["norm"], rel=1e-9)
    # float32 values near 1e25: every edge's gradient norm is finite and right
    lin32 = torch.nn.Linear(3, 4)
    x32 = torch.randn(5, 3) * 1e25
    with gt.pytorch.trace(lin32) as tr:
        y = lin32(x32)
        y.retain_grad()
        y.sum().backward()  # the weight gets about 1e25: its square is beyond float32
    G = tr.graph
    assert gt.analysis.anomalies(G).empty
    assert all(math.isfinite(e["grad_norm"]) and e["grad_nonfinite"] == 0 for _, _, e in G.edges(data=True))
    w = _param(G, "weight")
    assert G.edges[w, _node(G, "t")]["grad_norm"] == pytest.approx(_truth(lin32.weight.grad)["norm"], rel=1e-5)


def test_a_nan_in_an_input_outside_the_graph_is_named_as_such() -> None:
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Linear(3, 4)

        def forward(self, x: Any) -> Any:
            return self.body(x)

    torch.manual_seed(13)
    net = Net()
    x = torch.randn(5, 3)
    x[1, 0] = math.nan  # the data: it does not require grad, so it is not a node
    with gt.pytorch.trace(net) as tr:
        net(x).sum().backward()
    df = gt.analysis.anomalies(tr.graph)
    origin = df[df["forward_origin"]]
    assert list(origin["op"]) == ["addmm"]
    cause = origin["cause"].iloc[0]
    assert cause.startswith("input of addmm in Net/body not recorded: 1 non-finite elements"), cause
    assert "finite operands" not in cause and "gave 4 non-finite elements of 5×4" in cause


# ---- item 7: the edge ledger of a torch graph -------------------------------------------------------
def test_edges_frame_of_a_torch_graph_shows_the_recorded_norms() -> None:
    torch.manual_seed(14)
    lin = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with gt.pytorch.trace(lin) as tr:
        s = lin(x).pow(2).sum()
        loss = 3.0 * s  # s and loss have one element: their edge's gradient is a number
        loss.backward()
    G = tr.graph
    df = gt.edges_frame(G)
    assert len(df) == G.number_of_edges() and df["grad_norm"].dtype == "float64"
    for row in df.itertuples():
        assert row.grad_norm == G.edges[row.source, row.target]["grad_norm"]
    assert df["grad_norm"].notna().all() and (df["grad_nonfinite"] == 0).all()
    # a number where the chain rule's term is one: d(3 s)/ds = 3, times grad(loss) = 1
    s_node = _node(G, "sum")
    row = df[(df["source"] == s_node)].iloc[0]
    assert row["grad_contribution"] == pytest.approx(3.0) and row["local_grad"] == pytest.approx(3.0)
    # and NA (not NaN) where the source is a tensor: its Jacobian is not recorded
    w_row = df[df["source_label"] == "weight"].iloc[0]
    assert pd.isna(w_row["grad_contribution"]) and pd.isna(w_row["local_grad"])
    assert str(df["grad_contribution"].dtype) == "Float64"
    assert df["grad_contribution"].notna().sum() == 1


# ---- item 8: a reentrant checkpoint ---------------------------------------------------------------
class _Checkpointed(torch.nn.Module):
    def __init__(self, reentrant: bool) -> None:
        super().__init__()
        self.block = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
        self.head = torch.nn.Linear(4, 1)
        self.reentrant = reentrant

    def forward(self, x: Any) -> Any:
        from torch.utils.checkpoint import checkpoint

        return self.head(checkpoint(self.block, x, use_reentrant=self.reentrant))


def test_a_reentrant_checkpoint_is_named_with_its_fix() -> None:
    torch.manual_seed(15)
    x = torch.randn(3, 4, requires_grad=True)
    model = _Checkpointed(reentrant=True)
    warns = pytest.warns(RuntimeWarning, match="use_reentrant=True\\) ran _Checkpointed/block without autograd")
    with warns as record, gt.pytorch.trace(model):
        model(x).sum().backward()
    message = str(record[0].message)
    assert "block.0.weight, block.0.bias" in message and "use_reentrant=False" in message
    # with use_reentrant=False every parameter is recorded, with its gradient, and nothing is said
    model = _Checkpointed(reentrant=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with gt.pytorch.trace(model) as tr:
            model(x).sum().backward()
    params = {a["label"]: a for _, a in tr.graph.nodes(data=True) if a["role"] == "parameter"}
    assert set(params) == {n for n, _ in model.named_parameters()}
    for name, p in model.named_parameters():
        assert params[name]["grad_norm"] == pytest.approx(float(p.grad.norm()), rel=1e-6)


# ---- items 9 and 10: nested traces, other threads ----------------------------------------------------
def test_nested_traces_record_into_both() -> None:
    torch.manual_seed(16)
    lin = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with gt.pytorch.trace(lin) as outer:
        y0 = lin(x).sum()
        with gt.pytorch.trace(lin) as inner:
            y1 = lin(x).pow(2).sum()
            y1.backward()
        y0.backward()
    A, B = outer.graph, inner.graph
    ops_a = sorted(d["op"] for _, d in A.nodes(data=True) if d["op"])
    ops_b = sorted(d["op"] for _, d in B.nodes(data=True) if d["op"])
    assert ops_b == ["addmm", "pow", "sum", "t"]
    assert ops_a == ["addmm", "addmm", "pow", "sum", "sum", "t", "t"]
    # the model's second call is its call 1 in the outer trace, its first in the inner one
    assert sorted(d["scope"] for _, d in A.nodes(data=True) if d["op"] == "addmm") == ["Linear", "Linear[1]"]
    assert [d["scope"] for _, d in B.nodes(data=True) if d["op"] == "addmm"] == ["Linear"]
    # the inner trace saw the inner pass; the outer both (the weight: what the two passes sent it)
    gw1, _ = torch.autograd.grad(lin(x).pow(2).sum(), [lin.weight, lin.bias])
    assert B.nodes[_param(B, "weight")]["grad_norm"] == pytest.approx(float(gw1.norm()), rel=1e-6)
    assert A.nodes[_param(A, "weight")]["grad_norm"] == pytest.approx(float(lin.weight.grad.norm()), rel=1e-6)
    pow_a, pow_b = _node(A, "pow"), _node(B, "pow")
    for s in ("data_norm", "grad_norm", "grad_mean"):
        assert A.nodes[pow_a][s] == B.nodes[pow_b][s]


class _Gate(torch.nn.Module):
    """Holds another thread inside the model (its pre-hooks have run) until told to go on."""

    def __init__(self) -> None:
        super().__init__()
        import threading

        self.inside, self.go = threading.Event(), threading.Event()
        self.main = threading.get_ident()

    def forward(self, x: Any) -> Any:
        import threading

        if threading.get_ident() != self.main:
            self.inside.set()
            assert self.go.wait(60)
        return x


@pytest.mark.parametrize("other_traced", [False, True])
def test_another_threads_calls_of_the_model_never_enter_a_trace(other_traced: bool) -> None:
    import threading

    torch.manual_seed(17)
    gate = _Gate()
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), gate, torch.nn.Linear(4, 1))
    x = torch.randn(2, 3)
    other: dict[str, Any] = {}

    def run() -> None:
        if other_traced:
            with gt.pytorch.trace(model) as tr:
                model(x).sum().backward()
            other["graph"] = tr.graph
        else:
            model(x)

    with gt.pytorch.trace(model) as tr:
        thread = threading.Thread(target=run)
        thread.start()
        assert gate.inside.wait(60)  # the other thread is inside Sequential/1 now
        model(x).sum().backward()
        gate.go.set()
        thread.join(60)
    scopes = {d["scope"] for _, d in tr.graph.nodes(data=True) if d["op"] in ("addmm", "t")}
    assert scopes == {"Sequential/0", "Sequential/2"}
    if other_traced:
        scopes = {d["scope"] for _, d in other["graph"].nodes(data=True) if d["op"] in ("addmm", "t")}
        assert scopes == {"Sequential/0", "Sequential/2"}
        assert other["graph"].number_of_nodes() == tr.graph.number_of_nodes()


# ---- item 11: a trace keeps summaries, not the tensors ----------------------------------------------
def _mlp512() -> Any:
    layers: list[Any] = []
    for _ in range(4):
        layers += [torch.nn.Linear(512, 512), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers)


def test_a_forward_only_loop_in_a_trace_frees_each_pass() -> None:
    import weakref

    torch.manual_seed(18)
    model = _mlp512()
    x = torch.randn(64, 512)

    class Token:
        """Stands for a saved tensor (without holding it: no backward runs here) as long as the
        autograd node that saved it lives."""

    alive: weakref.WeakSet[Token] = weakref.WeakSet()

    def pack(t: Any) -> Token:
        token = Token()
        alive.add(token)
        return token

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda token: None):
        y = model(x)
        per_pass = len(alive)  # the tensors autograd saves for one forward pass (freed with its graph)
        assert per_pass >= 8
        del y
        assert len(alive) == 0
        with gt.pytorch.trace(model) as tr:
            for _ in range(20):
                model(x)  # the outputs are dropped: so is each pass's graph
            model(x[:1])  # (the last pass's output waits for the next op to be matched to its node)
            assert len(alive) <= per_pass
    G = tr.graph
    assert sum(1 for _, d in G.nodes(data=True) if d["op"] == "addmm") == 84  # and every op is recorded
    assert all(d["data_known"] for _, d in G.nodes(data=True) if d["op"])


def test_a_forward_only_loop_in_a_trace_stays_within_a_memory_bound(tmp_path: Path) -> None:
    import subprocess
    import sys

    tests = str(Path(__file__).parent)
    code = f"""
import sys, torch, graphtrace as gt
sys.path.insert(0, {tests!r})
from test_pytorch_numbers import _mlp512
torch.set_num_threads(1)
torch.manual_seed(0)
model = _mlp512()
x = torch.randn(256, 512)
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096
with gt.pytorch.trace(model):  # the first trace's one-time costs (imports, kernels) out of the count
    for _ in range(3):
        model(x)
before = rss()
with gt.pytorch.trace(model) as tr:
    for _ in range(60):
        model(x)
    inside = rss() - before
print(inside)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    grew = int(out.stdout.strip().splitlines()[-1])
    # one pass saves about 4 MiB of activations (256 x 512 floats, 8 tensors): 60 kept would be 240 MiB
    assert grew < 48 * 2**20, f"RSS grew by {grew / 2**20:.0f} MiB inside the trace"


# ---- item 12: a loss of several elements ------------------------------------------------------------
def test_logging_a_loss_of_several_elements_is_a_clear_type_error(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 1)
    with gt.record(tmp_path / "run", model) as run:
        with pytest.raises(TypeError, match=r"log: loss must be one number, got a tensor of shape 5×1 \(5 elements\)"):
            run.log(0, model(torch.randn(5, 3)))
        for odd in (torch.tensor(1 + 2j), torch.empty((), device="meta")):  # refused at the call, not later
            with pytest.raises(TypeError, match="log: loss must be a real number, got a"):
                run.log(0, odd)
        run.log(0, model(torch.randn(5, 3)).mean())  # nothing was recorded for step 0 before
        run.log(1, 0.5)  # and the run goes on
    assert gt.open_run(tmp_path / "run").sql("SELECT step FROM steps ORDER BY step").fetchall() == [(0,), (1,)]


# ---- a view or copy reuses its input's statistics: check them against torch ------------------------
def test_views_and_copies_have_the_values_and_gradients_torch_gives() -> None:
    torch.manual_seed(19)
    lin = torch.nn.Linear(6, 8)
    x = torch.randn(5, 6)
    w = torch.randn(4, 10)
    with gt.pytorch.trace(lin) as tr:
        h = lin(x)  # t, addmm
        v = h.view(5, 2, 4)
        p = v.permute(2, 0, 1)
        c = p.clone()
        r = c.reshape(4, 10)
        for t in (h, v, p, c, r):
            t.retain_grad()
        loss = (r * w).sum() + (h**2).sum()  # h is used twice: its gradient is not the view's
        loss.backward()
    G = tr.graph
    by_op = {d["op"]: d for _, d in G.nodes(data=True) if d["op"]}
    for op, t in (("addmm", h), ("view", v), ("permute", p), ("clone", c)):
        a = by_op[op]
        _close(a, "data", t)
        _close(a, "grad", t.grad)
    w_node = _param(G, "weight")
    assert G.nodes[w_node]["grad_norm"] == pytest.approx(float(lin.weight.grad.norm()), rel=1e-6)
    assert G.nodes[w_node]["grad_abs_mean"] == pytest.approx(float(lin.weight.grad.abs().mean()), rel=1e-6)
    assert G.edges[w_node, _node(G, "t")]["grad_norm"] == pytest.approx(float(lin.weight.grad.norm()), rel=1e-6)
    # an in-place change after a view: the view keeps the values it had, the changed tensor its own
    with gt.pytorch.trace() as tr:
        a = torch.randn(6, requires_grad=True) * 1.0
        b = a.view(2, 3)
        b_values = b.detach().clone()
        a.mul_(3.0)
        (a.sum() + b.sum()).backward()
    ops = {d["op"]: d for _, d in tr.graph.nodes(data=True) if d["op"]}
    assert ops["view"]["data_norm"] == pytest.approx(float(b_values.norm()), rel=1e-6)


def _linear_twice(lin: Any, x: Any, w1: Any, w2: Any) -> Any:  # an unrolled RNN's weight: a ``t`` per call
    F = torch.nn.functional
    if w1 is lin.weight and w2 is lin.weight:
        return lin(torch.tanh(lin(x))).pow(2).sum()
    return F.linear(torch.tanh(F.linear(x, w1, lin.bias)), w2, lin.bias).pow(2).sum()


def _matmul_twice(lin: Any, x: Any, w1: Any, w2: Any) -> Any:
    return ((x @ w1.t()) @ w2.t()).sum()


def _sequential_twice(lin: Any, x: Any, w1: Any, w2: Any) -> Any:
    F = torch.nn.functional
    if w1 is lin.weight and w2 is lin.weight:
        net = torch.nn.Sequential(lin, torch.nn.Tanh())
        return net(net(x)).pow(2).sum()
    return torch.tanh(F.linear(torch.tanh(F.linear(x, w1, lin.bias)), w2, lin.bias)).pow(2).sum()


@pytest.mark.parametrize("f", [_linear_twice, _matmul_twice, _sequential_twice])
def test_a_parameter_read_through_two_views_gets_both_uses_gradients(f: Any) -> None:
    # each use's ``t`` sends the weight its own gradient; autograd sums them into the weight's:
    # the weight's node shows the sum torch accumulates, each edge its own use's gradient
    for seed in range(3):  # (a wrong match of the two tensors may depend on where Python puts them)
        torch.manual_seed(seed)
        lin = torch.nn.Linear(4, 4)
        x = torch.randn(3, 4)
        w = lin.weight
        (truth,) = torch.autograd.grad(f(lin, x, w, w), [w])
        copies = [w.detach().clone().requires_grad_(True) for _ in range(2)]  # one per use
        per_use = torch.autograd.grad(f(lin, x, *copies), copies)
        with gt.pytorch.trace(lin) as tr:
            f(lin, x, w, w).backward()
        G = tr.graph
        node = _param(G, "weight")
        assert G.nodes[node]["grad_norm"] == pytest.approx(float(truth.norm()), rel=1e-5)
        assert G.nodes[node]["grad_abs_mean"] == pytest.approx(float(truth.abs().mean()), rel=1e-5)
        edges = sorted(G.edges[node, t]["grad_norm"] for t in G.successors(node))
        assert edges == pytest.approx(sorted(float(g.norm()) for g in per_use), rel=1e-5)


def _data_update(net: Any) -> None:
    for p in net.parameters():
        p.data -= 0.5 * p.grad  # micrograd's update: ``.data`` leaves the parameter's ``_version`` alone


def _data_copy(net: Any) -> None:
    with torch.no_grad():
        net.weight.abs().max()  # a read outside autograd (an optimizer's, a log's) before the update
    net.weight.data.copy_(torch.ones_like(net.weight))


def _sgd_step(net: Any) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p -= 0.5 * p.grad


@pytest.mark.parametrize("update", [_data_update, _data_copy, _sgd_step])
def test_ops_after_a_parameter_update_in_a_trace_read_the_new_values(update: Any) -> None:
    # forward, backward, an update, forward again in one trace: each op shows what it read, the
    # parameters' nodes their values as the last ops read them (here: as at the exit)
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    x = torch.randn(5, 3)
    read = []
    with gt.pytorch.trace(net) as tr:
        for _ in range(2):
            read.append(net.weight.detach().clone())
            net(x).pow(2).mean().backward()
            if len(read) == 1:  # between the two forward passes
                update(net)
    G = tr.graph
    ts = sorted(n for n, d in G.nodes(data=True) if d["op"] == "t")
    assert len(ts) == 2
    for n, w in zip(ts, read, strict=True):
        _close(G.nodes[n], "data", w.t())
    _close(G.nodes[_param(G, "weight")], "data", net.weight)
    _close(G.nodes[_param(G, "bias")], "data", net.bias)


# ---- #28 item 5: where a NaN starts, named by op and module, at the trace's own cost -----------------
def _origin(G: nx.DiGraph) -> Any:
    df = gt.analysis.anomalies(G)
    return df[df["forward_origin"]]


def test_nan_origin_log_of_a_zero_in_a_middle_module() -> None:
    class Middle(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return torch.log(x)

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), Middle(), torch.nn.Linear(4, 1))
    with torch.no_grad():
        model[0].bias[2] = -100.0  # unit 2 is 0 after the ReLU: log gives -inf there
    torch.manual_seed(20)
    x = torch.randn(5, 3)
    zeros = int((model[1](model[0](x)) == 0).sum())  # each gives -inf
    with gt.pytorch.trace(model) as tr:
        model(x).sum().backward()
    origin = _origin(tr.graph)
    assert list(origin["op"]) == ["log"] and list(origin["scope"]) == ["Sequential/2"]
    assert f"log in Sequential/2 of finite operands gave {zeros} non-finite elements of 5×4" in origin["cause"].iloc[0]


def test_nan_origin_a_half_precision_overflow_in_a_matmul_under_autocast() -> None:
    # float16 autocast on CPU exists in torch 2.13 (bfloat16 would not overflow at these values)
    lin = torch.nn.Linear(64, 8)
    with torch.no_grad():
        lin.weight.fill_(100.0)
    x = torch.full((2, 64), 20.0)  # 64 * 100 * 20 = 128,000 > 65,504, float16's largest
    with gt.pytorch.trace(lin) as tr, torch.autocast("cpu", dtype=torch.float16):
        y = lin(x)
        assert y.dtype == torch.float16
        y.float().sum().backward()
    origin = _origin(tr.graph)
    assert list(origin["op"]) == ["addmm"] and list(origin["scope"]) == ["Linear"], origin
    assert "gave 16 non-finite elements of 2×8" in origin["cause"].iloc[0]
    assert tr.graph.nodes[origin["node_id"].iloc[0]]["dtype"] == "float16"


def test_nan_origin_a_division_by_zero_in_a_custom_loss() -> None:
    def loss_fn(out: Any, target: Any) -> Any:
        return ((out - target) ** 2 / (target - target)).mean()  # divides by zero

    lin = torch.nn.Linear(3, 2)
    with gt.pytorch.trace(lin) as tr:
        loss_fn(lin(torch.randn(4, 3)), torch.ones(4, 2)).backward()
    origin = _origin(tr.graph)
    assert list(origin["op"]) == ["div"] and list(origin["scope"]) == [""]
    assert "div of finite operands gave 8 non-finite elements of 4×2" in origin["cause"].iloc[0]


def test_nan_origin_a_nan_planted_in_one_parameter() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    with torch.no_grad():
        model[2].weight[0, 1] = math.nan
    with gt.pytorch.trace(model) as tr:
        model(torch.randn(5, 3)).sum().backward()
    origin = _origin(tr.graph)
    assert list(origin["label"]) == ["2.weight"] and list(origin["scope"]) == ["Sequential/2"]
    assert origin["cause"].iloc[0] == "leaf with 1 non-finite elements"


# ---- #28 item 2: small tensors summarised in batches ------------------------------------------------
def test_batched_summaries_keep_each_tensors_values_before_an_in_place_op() -> None:
    """Many outputs of one shape (more than a batch holds, so batches fill and are summarised while
    the model runs), each changed in place right after (``ReLU(inplace=True)``): every node keeps its
    own values as the op made them, and every gradient is its own, against float64."""
    torch.manual_seed(0)
    layers = _tensors.BATCH_ROWS + 20
    model = torch.nn.Sequential(*(m for _ in range(layers) for m in (torch.nn.Linear(6, 6), torch.nn.ReLU(True))))
    outs: list[Any] = []
    for m in model:
        if isinstance(m, torch.nn.Linear):
            m.register_forward_hook(lambda _m, _a, out: outs.append(out.detach().clone()))
    x = torch.randn(5, 6) * 3
    with gt.pytorch.trace(model) as tr:
        model(x).sum().backward()
    nodes = [a for _, a in sorted(tr.graph.nodes(data=True)) if a["op"] == "addmm"]
    assert len(nodes) == len(outs) == layers
    for a, out in zip(nodes, outs, strict=True):
        _close(a, "data", out)
        assert a["data_min"] < 0 or out.min() >= 0  # the values before the ReLU changed them
    weights = [a for _, a in tr.graph.nodes(data=True) if a["role"] == "parameter" and a["shape"] == "6×6"]
    for a, m in zip(weights, [m for m in model if isinstance(m, torch.nn.Linear)], strict=True):
        _close(a, "data", m.weight)
        _close(a, "grad", m.weight.grad)


def test_a_causal_attention_mask_is_contained_not_a_nan_origin() -> None:
    # GPT's -inf above the diagonal: softmax turns it finite; the NaN planted after it is the origin
    torch.manual_seed(0)
    q = torch.randn(4, 4, requires_grad=True)
    mask = torch.tril(torch.ones(4, 4, dtype=torch.bool))
    with gt.pytorch.trace() as tr:
        att = (q @ q.T).masked_fill(~mask, float("-inf")).softmax(-1)
        assert torch.isfinite(att).all()  # the oracle: torch's own values past the mask
        p = torch.tensor([-1.0, 2.0], requires_grad=True)
        (att.sum() + p.log().sum()).backward()  # a NaN on another branch: its own origin
    table = gt.analysis.anomalies(tr.graph)
    fill = table[table["op"] == "masked_fill"].iloc[0]
    assert not fill["forward_origin"] and "contained" in fill["cause"]
    assert list(_origin(tr.graph)["op"]) == ["log"]  # where the NaN starts


def test_a_failed_write_of_a_torch_run_is_raised_and_never_hangs_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from graphtrace.runs import recorder as runs

    real = runs._write_table
    writes = []

    def failing(path: Path, table: Any) -> None:  # a full disk from the 6th file on
        writes.append(path)
        if len(writes) >= 6:
            raise OSError(28, "No space left on device", str(path))
        real(path, table)

    monkeypatch.setattr(runs, "_write_table", failing)
    monkeypatch.setattr(runs, "FLUSH_SECONDS", 0.0)  # every step its own batch of files
    model = torch.nn.Linear(3, 1)
    x = torch.randn(4, 3)
    outcome: list[BaseException | None] = []

    def loop() -> None:
        run = gt.record(tmp_path / "run", model)
        try:
            for step in range(40):
                loss = model(x).square().mean()
                loss.backward()
                run.log(step, loss)
            run.flush()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            with contextlib.suppress(BaseException):
                run.close()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "run.log waits forever for a writer that failed"
    assert isinstance(outcome[0], OSError) and "No space left" in str(outcome[0]), outcome


# ---- #28 item 3: a recorded run's rows, from the writer's batched passes -----------------------------
def test_every_params_row_of_a_recorded_run_is_its_float64_recomputation_step_after_step(tmp_path: Path) -> None:
    """The writer summarises all parameters in a few passes (min/max/sum, then Σx², then an offset
    tensor around its mean; huge, tiny and non-finite tensors scaled) and keeps the logged values as
    the next step's "before" (no copy): every column, every step, against float64 recomputation,
    to the digits the per-tensor summaries gave."""

    class Mixed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(3)
            self.w = torch.nn.Parameter(torch.randn(300, 200, generator=g))
            self.off = torch.nn.Parameter((1000.0 + 0.01 * torch.randn(5000, generator=g, dtype=torch.float64)).float())
            self.huge = torch.nn.Parameter(torch.tensor([3e38, -3e38, 1.0]))
            self.zero = torch.nn.Parameter(torch.zeros(7))  # its gradient is zero: an update of zeros
            self.frozen = torch.nn.Parameter(torch.randn(4, generator=g))  # never gets a gradient

        def forward(self, x: Any) -> Any:
            return (
                (self.w.sum(1) * x).sum()
                + 1e-3 * self.off.square().sum()
                + (self.huge * 1e-38).sum()
                + 0 * self.zero.sum()
            )

    model = Mixed()
    opt = torch.optim.SGD([p for n, p in model.named_parameters() if n != "frozen"], lr=1e-3, momentum=0.9)
    g = torch.Generator().manual_seed(4)
    truth: list[dict[str, dict[str, float]]] = []
    with gt.record(tmp_path / "run", model) as run:
        before = {n: p.detach().double().clone() for n, p in model.named_parameters()}
        for step in range(3):
            opt.zero_grad()
            loss = model(torch.randn(300, generator=g))
            loss.backward()
            if step == 2:
                with torch.no_grad():
                    model.w.grad[5, 5] = float("nan")
            opt.step() if step < 2 else None
            rows: dict[str, dict[str, float]] = {}
            for n, p in model.named_parameters():
                x, u = p.detach().double(), p.detach().double() - before[n]
                r = {"data": x.norm(), "data_mean": x.mean(), "data_std": x.std(correction=0)}
                r |= {"data_max_abs": x.abs().max(), "update": u.norm(), "update_max_abs": u.abs().max()}
                if p.grad is not None:
                    gr = p.grad.double()
                    r |= {"grad": gr.norm(), "grad_mean": gr.mean(), "grad_std": gr.std(correction=0)}
                    r |= {"grad_abs_mean": gr.abs().mean(), "grad_max_abs": gr.abs().max()}
                rows[n] = {k: float(v) for k, v in r.items()}
                before[n] = x.clone()
            truth.append(rows)
            run.log(step, loss)
    df = gt.open_run(tmp_path / "run").sql("SELECT * FROM params").df()
    for step, rows in enumerate(truth):
        for n, want in rows.items():
            got = df[(df["step"] == step) & (df["name"] == n)].iloc[0]
            scale = max(abs(want["data_max_abs"]), 1.0)
            for k, v in want.items():
                if step == 2 and n == "w" and k.startswith("grad"):
                    assert math.isnan(got[k]), (step, n, k, got[k])  # a NaN in the gradient
                elif n == "huge" and k in ("data_mean", "data_std"):
                    assert got[k] == pytest.approx(v, abs=1e-6 * scale), (step, n, k)  # (its mean cancels)
                else:
                    # (norms: float32 dot products, as torch's own float32 norm)
                    rel = (
                        1e-4 if k.endswith("std") or k.startswith("update") else 1e-5 if k in ("data", "grad") else 1e-6
                    )
                    assert got[k] == pytest.approx(v, rel=rel, abs=1e-30), (step, n, k, got[k], v)
            if n == "frozen":
                assert pd.isna(got["grad"]) and pd.isna(got["grad_mean"])


def test_transposed_permuted_expanded_and_sliced_tensors_are_summarised_as_their_values() -> None:
    """A batch row holds a dense tensor's elements in memory order (a transpose is copied as the
    block it is) and tensors of any shape with one element count share a batch: every statistic is
    still the tensor's own, at both levels, for small (batched) and large (direct) tensors, with the
    values of a small one in their own order."""
    g = torch.Generator().manual_seed(5)
    base = torch.randn(64, 96, generator=g) * 3 + 1
    big = torch.randn(8, 96, 256, generator=g)  # 196,608 elements: summarised directly
    big[1, 2, 3] = float("nan")
    cases = {
        "transpose": base.t(),
        "permute": base.reshape(4, 16, 96).permute(2, 0, 1),
        "expanded": base[:1].expand(64, 96),
        "sliced": base[:, ::2],
        "same count, other shape": base.reshape(96, 64),
        "big permuted": big.permute(2, 0, 1),
        "big sliced": big[:, :, 1::2],
    }
    batches = [(_tensors.raw(t, l1=True), t) for t in cases.values()]
    norms = [(_tensors.raw(t, norms=True), t) for t in cases.values()]
    full = _tensors.finish([r for r, _ in batches], "data")
    light = _tensors.finish([r for r, _ in norms], "data")
    for name, (t, a, b) in zip(cases, zip(cases.values(), full, light, strict=True), strict=True):
        bad = int((~torch.isfinite(t)).sum())
        assert a["data_nonfinite"] == b["data_nonfinite"] == bad, name
        if bad:
            assert math.isnan(a["data_norm"]) and math.isnan(b["data_norm"]), name
            continue
        _close(a, "data", t, rel=1e-5)
        assert b["data_norm"] == pytest.approx(float(t.double().norm()), rel=1e-6), name
    small = torch.arange(12.0).reshape(3, 4).t()  # kept values: in the tensor's own order
    s = _tensors.finish([_tensors.raw(small)], "data")[0]
    assert json.loads(s["data_values"]) == small.reshape(-1).tolist()
