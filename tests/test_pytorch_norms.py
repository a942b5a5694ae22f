"""``gt.pytorch.trace(model, stats="norms")`` (issue #28, item 2): the L2 norms of every value and
gradient, edge norms and exact non-finite counts alone, against torch itself (float64 recomputation,
``torch.isfinite``), on the models of tests/torch_models.py; what it does not record reads as not
recorded in every table and view, never as 0."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

torch = pytest.importorskip("torch")

from torch_models import GPT, ResNet18, lm_loss  # noqa: E402

import graphtrace as gt  # noqa: E402
from graphtrace.export.payload import tensor_info  # noqa: E402
from graphtrace.pytorch import tensors as _tensors  # noqa: E402
from graphtrace.pytorch.graph import scope_path  # noqa: E402

F = torch.nn.functional
NOT_RECORDED = ("mean", "std", "min", "max", "max_abs", "abs_mean")


def _bad(t: Any) -> int:
    """torch's own count of the NaN and infinite elements of ``t``."""
    return int((~torch.isfinite(t.detach())).sum())


def _norm64(t: Any) -> float:
    return float(t.detach().double().norm())


class _Truth:
    """What torch gives for the output of every leaf module called once: its float64 norm and
    non-finite count as the module returned it, and the same of its gradient (a tensor hook)."""

    def __init__(self, model: torch.nn.Module) -> None:
        root = type(model).__name__
        self.calls: dict[str, int] = {}
        self.data: dict[str, tuple[float, int]] = {}
        self.grad: dict[str, tuple[float, int]] = {}
        self.handles = []
        for dotted, m in model.named_modules():
            if dotted and not list(m.children()):
                self.handles.append(m.register_forward_hook(self._hook(scope_path(root, dotted))))

    def _hook(self, path: str) -> Any:
        def hook(_m: Any, _args: Any, out: Any) -> None:
            self.calls[path] = self.calls.get(path, 0) + 1
            if not isinstance(out, torch.Tensor) or not out.is_floating_point():
                return
            self.data[path] = (_norm64(out), _bad(out))
            if out.requires_grad:
                out.register_hook(lambda g: self.grad.__setitem__(path, (_norm64(g), _bad(g))))

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _outputs(G: nx.DiGraph) -> dict[str, dict[str, Any]]:
    """Per scope: the attributes of its last recorded op node (the module's output)."""
    out: dict[str, dict[str, Any]] = {}
    for _, a in sorted(G.nodes(data=True)):
        if a["op"]:
            out[a["scope"]] = a
    return out


def _resnet() -> tuple[torch.nn.Module, Any]:
    torch.manual_seed(0)
    model = ResNet18(classes=10)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    return model, lambda: F.cross_entropy(model(x), y)


def _gpt() -> tuple[torch.nn.Module, Any]:
    torch.manual_seed(0)
    model = GPT(vocab=100, d=32, heads=2, layers=2, context=16)
    idx = torch.randint(0, 100, (2, 17))
    return model, lambda: lm_loss(model, idx)


# ---- the option ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["fast", "Norms", "", None, 1, ("norms",)])
def test_stats_must_name_a_level(bad: Any) -> None:
    net = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match=r"stats must be one of 'full', 'norms'.*got " + re.escape(repr(bad))):
        gt.pytorch.trace(net, stats=bad)
    # nothing was recorded or left on: a trace made after it works as usual
    with gt.pytorch.trace(net) as tr:
        net(torch.ones(1, 2)).sum().backward()
    assert {a["stats"] for _, a in tr.graph.nodes(data=True)} == {"full"}


# ---- against torch -------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["resnet18", "gpt"])
def test_norms_of_values_gradients_and_parameters_match_float64(which: str) -> None:
    model, loss_of = _resnet() if which == "resnet18" else _gpt()
    truth = _Truth(model)
    model.zero_grad(set_to_none=True)
    with gt.pytorch.trace(model, stats="norms") as tr:
        loss = loss_of()
        loss.backward()
    truth.close()
    G = tr.graph
    outs = _outputs(G)
    checked = 0
    for path, (norm, bad) in truth.data.items():
        if truth.calls[path] != 1 or path not in outs:
            continue
        a = outs[path]
        assert a["data_norm"] == pytest.approx(norm, rel=1e-5), path
        assert a["data_nonfinite"] == bad == 0, path
        if path in truth.grad:
            g_norm, g_bad = truth.grad[path]
            assert a["grad_norm"] == pytest.approx(g_norm, rel=1e-5), path
            assert a["grad_nonfinite"] == g_bad, path
        checked += 1
    assert checked >= (15 if which == "resnet18" else 10), sorted(outs)
    # every parameter: its values and what the pass sent it (.grad), and the edge out of it
    names = dict(model.named_parameters())
    params = [(n, a) for n, a in G.nodes(data=True) if a["role"] == "parameter"]
    assert len(params) == len(names)
    for n, a in params:
        p = names[a["label"]]
        assert a["data_norm"] == pytest.approx(_norm64(p), rel=1e-5), a["label"]
        assert a["grad_norm"] == pytest.approx(_norm64(p.grad), rel=1e-5), a["label"]
        assert a["data_nonfinite"] == a["grad_nonfinite"] == 0
        if G.out_degree(n) == 1:  # used once: its edge carries its whole gradient
            (e,) = (e for _, _, e in G.out_edges(n, data=True))
            assert e["grad_norm"] == pytest.approx(_norm64(p.grad), rel=1e-5), a["label"]
    # the loss keeps its value, and nothing else was computed
    root = G.nodes[G.graph["root"]]
    assert root["data"] == pytest.approx(float(loss.detach()), rel=1e-6) and root["grad"] == 1.0
    for _, a in G.nodes(data=True):
        assert a["stats"] == "norms"
        for p in ("data", "grad"):
            assert all(math.isnan(a[f"{p}_{s}"]) for s in NOT_RECORDED), a
        assert a.get("dead_units") is None and a.get("units") is None


def test_edge_norms_of_a_tensor_used_twice_match_autograd_grad() -> None:
    class Shared(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(3, 5), torch.nn.Linear(5, 2)

        def forward(self, x: Any) -> Any:
            h = torch.tanh(self.fc1(x))
            return self.fc2(h), h

    torch.manual_seed(2)
    model = Shared()
    with gt.pytorch.trace(model, stats="norms") as tr:
        out, h = model(torch.randn(7, 3))
        h.retain_grad()
        (out.pow(2).mean() + 0.3 * h.pow(2).sum()).backward()
    G = tr.graph
    tanh = next(n for n, a in G.nodes(data=True) if a["op"] == "tanh")
    assert G.nodes[tanh]["data_norm"] == pytest.approx(_norm64(h), rel=1e-6)
    assert G.nodes[tanh]["grad_norm"] == pytest.approx(_norm64(h.grad), rel=1e-6)
    h2 = h.detach().requires_grad_()
    (via_fc2,) = torch.autograd.grad(model.fc2(h2).pow(2).mean(), h2)
    (via_penalty,) = torch.autograd.grad(0.3 * h2.pow(2).sum(), h2)
    by_op = {G.nodes[v]["op"]: e["grad_norm"] for _, v, e in G.out_edges(tanh, data=True)}
    assert by_op["addmm"] == pytest.approx(_norm64(via_fc2), rel=1e-6)
    assert by_op["pow"] == pytest.approx(_norm64(via_penalty), rel=1e-6)
    edges = gt.edges_frame(G)
    assert edges["grad_norm"].notna().all() and (edges["grad_nonfinite"] == 0).all()


# ---- exact non-finite counts ------------------------------------------------------------------------------
class _Planted(torch.nn.Module):
    """A large layer (its parameters above a batch: counted at the trace's exit), a small one (counted
    with its batch), and a division whose output has infinities where the input was 0 (a large output,
    of several chunks, and a small one)."""

    def __init__(self) -> None:
        super().__init__()
        self.big = torch.nn.Linear(600, 400)  # 240,000 weights > BATCH_MAX
        self.small = torch.nn.Linear(400, 3)

    def forward(self, x: Any, mask: Any, small_mask: Any) -> Any:
        h = self.big(x)
        wide = h.repeat(1, 3000) / mask  # 1,200,000 elements: two chunks of the count
        h = wide[:, :400]
        return self.small(h) / small_mask


def test_nonfinite_counts_are_exact_in_values_gradients_and_parameters() -> None:
    torch.manual_seed(1)
    model = _Planted()
    with torch.no_grad():
        model.big.weight[3, :7] = math.nan  # 7 NaNs in the large parameter
        model.big.weight[5, 2] = math.inf
        model.small.weight[1, 4] = -math.inf  # one in the small one
    x = torch.randn(1, 600)
    mask = torch.ones(1, 1_200_000)
    mask[0, torch.arange(5, 1_200_000, 997)] = 0.0  # x / 0: ±inf (or NaN where h is NaN already)
    small_mask = torch.tensor([[1.0, 0.0, 1.0]])
    seen: dict[str, Any] = {}
    model.big.register_forward_hook(lambda _m, _a, out: seen.__setitem__("big", out.detach().clone()))
    with gt.pytorch.trace(model, stats="norms") as tr:
        out = model(x, mask, small_mask)
        out.nan_to_num(0.0, 0.0, 0.0).sum().backward()
    G = tr.graph
    by_label = {a["label"]: a for _, a in G.nodes(data=True)}
    # parameters, values and gradients, against torch's own count
    for name, p in model.named_parameters():
        a = by_label[name]
        assert a["data_nonfinite"] == _bad(p), name
        assert a["grad_nonfinite"] == _bad(p.grad), name
    assert by_label["big.weight"]["data_nonfinite"] == 8 and by_label["small.weight"]["data_nonfinite"] == 1
    big_out = next(a for _, a in G.nodes(data=True) if a["op"] == "addmm" and a["scope"] == "_Planted/big")
    assert big_out["data_nonfinite"] == _bad(seen["big"]) > 0
    wide = seen["big"].repeat(1, 3000) / mask
    div = [a for _, a in sorted(G.nodes(data=True)) if a["op"] == "div"]
    assert div[0]["numel"] == 1_200_000 and div[0]["data_nonfinite"] == _bad(wide) > 1000
    assert div[1]["data_nonfinite"] == _bad(out)
    # the norm is NaN where a NaN is, inf where only infinities are: as torch's own norm
    for a, t in ((by_label["big.weight"], model.big.weight), (by_label["small.weight"], model.small.weight)):
        assert math.isnan(a["data_norm"]) == math.isnan(_norm64(t))
    assert by_label["small.weight"]["data_norm"] == math.inf


def test_a_gradient_changed_in_place_before_the_exit_says_its_count_is_not_recorded() -> None:
    lin = torch.nn.Linear(600, 400)
    with torch.no_grad():
        lin.weight[0, 0] = math.nan
    x = torch.randn(2, 600)
    x[1, 3] = math.nan  # the weight's gradient has NaNs in column 3
    with gt.pytorch.trace(lin, stats="norms") as tr:
        lin(x).sum().backward()
        assert _bad(lin.weight.grad) > 0
        lin.weight.grad.nan_to_num_(0.0)  # (clipping, zeroing: the values the pass sent are gone)
    a = next(a for _, a in tr.graph.nodes(data=True) if a["label"] == "weight")
    assert math.isnan(a["grad_norm"]) and a["grad_nonfinite"] == -1
    assert (
        "grad: norm nan (mean, std, min, max: not recorded, stats='norms'), non-finite elements (how many: "
        "not recorded)" in tensor_info(a)
    )
    # its values did not change: counted exactly
    assert a["data_nonfinite"] == 1


def test_a_parameter_fixed_through_data_before_the_exit_never_reads_as_finite() -> None:
    """A large parameter's non-finite count is taken at the exit if its norm is not finite; a write
    through ``.data`` leaves its version alone, so a NaN removed that way after the op read it was
    counted 0 beside its NaN norm (read as an overflow): some, how many not recorded."""
    lin = torch.nn.Linear(600, 300)  # 180,000 weights: more than a batch holds, counted at the exit
    with torch.no_grad():
        lin.weight[3, 4] = math.nan
    x = torch.randn(4, 600)
    with gt.pytorch.trace(lin, stats="norms") as tr:
        y = lin(x).sum()
        assert _bad(lin.weight) == 1  # what the op read
        lin.weight.data[3, 4] = 0.5
        y.backward()
    a = next(a for _, a in tr.graph.nodes(data=True) if a["label"] == "weight")
    assert math.isnan(a["data_norm"]) and a["data_nonfinite"] == -1
    assert "overflow" not in tensor_info(a)


def test_a_norm_that_overflows_float32_is_not_recorded_not_infinite() -> None:
    lin = torch.nn.Linear(4, 300)  # 900 outputs: their squares are summed in float32 by groups of 256
    with gt.pytorch.trace(lin, stats="norms") as tr:
        (lin(torch.full((3, 4), 1e21)) * 1e-30).sum().backward()  # outputs ~1e21: squares past float32
    G = tr.graph
    addmm = next(a for _, a in G.nodes(data=True) if a["op"] == "addmm")
    assert addmm["data_nonfinite"] == 0 and math.isnan(addmm["data_norm"])
    assert "norm not recorded (overflowed)" in tensor_info(addmm)


@pytest.mark.parametrize("scenario", ["log_of_zero", "planted_parameter", "division_by_zero"])
def test_the_nan_origin_is_named_as_with_every_statistic(scenario: str) -> None:
    """gt.analysis.anomalies names the op, module and count a NaN starts with from the norms alone."""

    class Middle(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return torch.log(x)

    torch.manual_seed(20)
    x = torch.randn(5, 3)
    if scenario == "log_of_zero":
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), Middle(), torch.nn.Linear(4, 1))
        with torch.no_grad():
            model[0].bias[2] = -100.0
        zeros = int((model[1](model[0](x)) == 0).sum())
        want = ("log", "Sequential/2", f"log in Sequential/2 of finite operands gave {zeros} non-finite elements")
    elif scenario == "planted_parameter":
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
        with torch.no_grad():
            model[2].weight[0, 1] = math.nan
        want = ("", "Sequential/2", "leaf with 1 non-finite elements")
    else:
        model = torch.nn.Linear(3, 2)
        want = ("div", "", "div of finite operands gave 10 non-finite elements of 5×2")  # each x / 0
    with gt.pytorch.trace(model, stats="norms") as tr:
        out = model(x)
        if scenario == "division_by_zero":
            out = (out - 1.0) ** 2 / (torch.ones(5, 2) - 1.0)
        out.sum().backward()
    df = gt.analysis.anomalies(tr.graph)
    origin = df[df["forward_origin"]]
    assert list(origin["op"]) == [want[0]] and list(origin["scope"]) == [want[1]], origin
    assert want[2] in origin["cause"].iloc[0]


# ---- what reads the trace -----------------------------------------------------------------------------------
def test_tables_and_files_say_not_recorded_never_zero(tmp_path: Path) -> None:
    model, loss_of = _resnet()
    with gt.pytorch.trace(model, stats="norms") as tr:
        loss_of().backward()
    G = tr.graph
    df = gt.nodes_frame(G)
    assert set(df["stats"]) == {"norms"}
    for p in ("data", "grad"):
        assert df[[f"{p}_{s}" for s in NOT_RECORDED]].isna().all().all()
        assert df[f"{p}_norm"].notna().all() and (df[f"{p}_nonfinite"] == 0).all()
    assert df["dead_units"].isna().all() and df["zero_share"].isna().all()
    scopes = gt.analysis.by_scope(G)
    with_params = scopes[scopes["param_count"] > 0]
    assert len(with_params) > 10
    for col in ("param_abs_grad_sum", "param_abs_grad_mean", "param_abs_grad_max", "relu_zero_share"):
        assert scopes[col].isna().all(), col
    assert scopes["dead_relu_units"].isna().all() and scopes["relu_units"].isna().all()
    with pytest.raises(ValueError, match=r"stats='norms'.*dead ReLUs.*gt.pytorch.trace\(model\)"):
        gt.analysis.health(G)
    # the level survives a file
    for suffix in ("parquet", "graphml"):
        path = tmp_path / f"t.{suffix}"
        gt.save(G, path)
        back = gt.nodes_frame(gt.load(path))
        assert set(back["stats"]) == {"norms"} and back["data_mean"].isna().all(), suffix
        assert back["data_norm"].tolist() == pytest.approx(df["data_norm"].tolist(), rel=1e-12)
    # the default level is unchanged: every statistic, and "full"
    model.zero_grad(set_to_none=True)
    with gt.pytorch.trace(model) as full:
        loss_of().backward()
    fd = gt.nodes_frame(full.graph)
    assert set(fd["stats"]) == {"full"} and fd["data_mean"].notna().all() and fd["grad_std"].notna().all()
    assert gt.analysis.health(full.graph)["relu_units"].sum() > 0


def test_the_panel_text_of_a_norms_node_has_no_nan_for_what_was_not_recorded() -> None:
    model, loss_of = _gpt()
    with gt.pytorch.trace(model, stats="norms") as tr:
        loss_of().backward()
    for _, a in tr.graph.nodes(data=True):
        text = tensor_info(a)
        assert "nan" not in text.lower(), text
        assert text.count("(mean, std, min, max: not recorded, stats='norms')") == 2, text


def test_the_batch_rows_keep_each_tensors_norm_before_an_in_place_op() -> None:
    """More outputs of one shape than a batch holds, each changed in place right after (ReLU(True)):
    every node's norm is that of the values the op made, against float64."""
    torch.manual_seed(0)
    layers = _tensors.BATCH_ROWS + 20
    model = torch.nn.Sequential(*(m for _ in range(layers) for m in (torch.nn.Linear(6, 6), torch.nn.ReLU(True))))
    outs: list[Any] = []
    for m in model:
        if isinstance(m, torch.nn.Linear):
            m.register_forward_hook(lambda _m, _a, out: outs.append(out.detach().clone()))
    with gt.pytorch.trace(model, stats="norms") as tr:
        model(torch.randn(5, 6) * 3).sum().backward()
    nodes = [a for _, a in sorted(tr.graph.nodes(data=True)) if a["op"] == "addmm"]
    assert len(nodes) == len(outs) == layers
    for a, out in zip(nodes, outs, strict=True):
        assert a["data_norm"] == pytest.approx(_norm64(out), rel=1e-6)


def test_a_large_parameters_gradient_is_still_made_its_grad_without_a_copy() -> None:
    """Autograd makes the incoming gradient ``.grad`` itself when nothing else holds it; a "norms" trace
    keeps the gradient to count its non-finite elements at the exit, by an alias, so it still does."""

    class Scale(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = torch.nn.Parameter(torch.randn(300_000))  # above a batch: counted at the exit

        def forward(self, x: Any) -> Any:
            return (x * self.p).sum()

    m = Scale()
    seen: dict[str, int] = {}
    m.p.register_hook(lambda g: seen.__setitem__("ptr", g.data_ptr()))
    with gt.pytorch.trace(m, stats="norms") as tr:
        m(torch.randn(300_000)).backward()
    assert m.p.grad is not None and m.p.grad.data_ptr() == seen["ptr"]
    a = next(a for _, a in tr.graph.nodes(data=True) if a["label"] == "p")
    assert a["grad_norm"] == pytest.approx(_norm64(m.p.grad), rel=1e-6) and a["grad_nonfinite"] == 0
