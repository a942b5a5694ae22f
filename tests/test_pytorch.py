"""The PyTorch bridge (graphtrace.pytorch) on real torch models, against torch itself and torchviz."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

torch = pytest.importorskip("torch")

from torch_models import MLP, ResNet18, SmallCNN  # noqa: E402

import graphtrace as gt  # noqa: E402
from graphtrace.pytorch import summary  # noqa: E402

F = torch.nn.functional


def _trace(model: Any, x: Any, target: Any = None) -> nx.DiGraph:
    model.zero_grad()
    with gt.pytorch.trace(model) as tr:
        out = model(x)
        loss = F.cross_entropy(out, target) if target is not None else out.pow(2).mean()
        loss.backward()
    return tr.graph


def _by_label(G: nx.DiGraph) -> dict[str, dict[str, Any]]:
    return {f"{a['scope']}:{a['label']}": a for _, a in G.nodes(data=True)}


# ---- the optional dependency -------------------------------------------------------------------
def test_import_graphtrace_never_imports_torch() -> None:
    code = (
        "import sys, graphtrace as gt; gt.Value(1.0); gt.nodes_frame(gt.Value(2.0) * 3); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_without_torch_gt_pytorch_names_the_extra() -> None:
    code = "import sys; sys.modules['torch'] = None\nimport graphtrace as gt\ngt.pytorch"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "ImportError: graphtrace.pytorch needs PyTorch" in out.stderr and "graphtrace-nx[torch]" in out.stderr


# ---- oracles: torchviz's graph, torch's gradients ----------------------------------------------
def _make_dot_nodes(y: Any, params: dict[str, Any]) -> tuple[Counter[str], set[tuple[str, str]]]:
    """The grad_fn nodes torchviz's make_dot draws for ``y`` (by class name) and the edges between them."""
    torchviz = pytest.importorskip("torchviz")
    dot = torchviz.make_dot(y, params=params)
    labels: dict[str, str] = {}
    edges = []
    for line in dot.body:
        m = re.match(r"\s*(\d+) \[label=(\w+)\]$", line)  # grad_fn nodes: no fill colour
        if m:
            labels[m.group(1)] = m.group(2)
        e = re.match(r"\s*(\d+) -> (\d+)", line)
        if e:
            edges.append((e.group(1), e.group(2)))
    pairs = {(a, b) for a, b in edges if a in labels and b in labels}
    return Counter(labels.values()), pairs


@pytest.mark.parametrize("which", ["mlp", "cnn", "transformer"])
def test_the_graph_has_exactly_the_grad_fn_nodes_make_dot_finds(which: str) -> None:
    torch.manual_seed(0)
    if which == "mlp":
        model: Any = MLP()
        x = torch.randn(8, 2)
    elif which == "cnn":
        model = SmallCNN()
        x = torch.randn(4, 1, 28, 28)
    else:
        model = torch.nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
        x = torch.randn(3, 5, 16)
    y = model(x).pow(2).mean()
    G = gt.pytorch.from_tensor(y, model)
    labels, pairs = _make_dot_nodes(y, dict(model.named_parameters()))
    assert Counter(a["grad_fn"] for _, a in G.nodes(data=True)) == labels
    assert G.number_of_edges() == len(pairs)
    # and the same graph when traced as it runs
    model.zero_grad()
    with gt.pytorch.trace(model) as tr:
        y2 = model(x).pow(2).mean()
        y2.backward()
    assert Counter(a["grad_fn"] for _, a in tr.graph.nodes(data=True)) == labels
    assert tr.graph.number_of_edges() == len(pairs)


def test_every_parameter_summary_matches_torch() -> None:
    torch.manual_seed(1)
    model = SmallCNN()
    G = _trace(model, torch.randn(6, 1, 28, 28), torch.randint(0, 10, (6,)))
    nodes = {a["label"]: a for _, a in G.nodes(data=True) if a["role"] == "parameter"}
    assert set(nodes) == {name for name, _ in model.named_parameters()}
    for name, p in model.named_parameters():
        a, g, d = nodes[name], p.grad.double(), p.detach().double()
        assert a["shape"] == "×".join(map(str, p.shape)) and a["numel"] == p.numel() and a["dtype"] == "float32"
        assert a["scope"] == "SmallCNN/" + name.rpartition(".")[0]
        for prefix, t in (("data", d), ("grad", g)):
            assert a[f"{prefix}_norm"] == pytest.approx(float(t.norm()), rel=1e-5)
            assert a[f"{prefix}_mean"] == pytest.approx(float(t.mean()), rel=1e-4, abs=1e-7)
            assert a[f"{prefix}_std"] == pytest.approx(float(t.std(correction=0)), rel=1e-3, abs=1e-6)
            assert a[f"{prefix}_min"] == float(t.min()) and a[f"{prefix}_max"] == float(t.max())
            assert a[f"{prefix}_abs_mean"] == pytest.approx(float(t.abs().mean()), rel=1e-5)
            assert a[f"{prefix}_nonfinite"] == 0


class _Shared(torch.nn.Module):
    """h feeds two consumers: the second layer and a penalty."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(3, 5)
        self.fc2 = torch.nn.Linear(5, 2)

    def forward(self, x: Any) -> Any:
        h = torch.tanh(self.fc1(x))
        self.h = h
        return self.fc2(h), h


def test_values_node_gradients_and_edge_gradients_match_autograd() -> None:
    torch.manual_seed(2)
    model = _Shared()
    x = torch.randn(7, 3)
    with gt.pytorch.trace(model) as tr:
        out, h = model(x)
        h.retain_grad()
        loss = out.pow(2).mean() + 0.3 * h.pow(2).sum()
        loss.backward()
    G = tr.graph
    tanh = next(n for n, a in G.nodes(data=True) if a["op"] == "tanh")
    a = G.nodes[tanh]
    # the value and gradient of an intermediate
    assert a["shape"] == "7×5" and a["data_mean"] == pytest.approx(float(h.double().mean()), rel=1e-5)
    assert a["grad_norm"] == pytest.approx(float(h.grad.norm()), rel=1e-5)
    # the gradient along each edge out of h: what each consumer sends back, from autograd.grad of
    # that consumer's term alone
    h2 = h.detach().requires_grad_()
    (via_fc2,) = torch.autograd.grad(model.fc2(h2).pow(2).mean(), h2)
    (via_penalty,) = torch.autograd.grad(0.3 * h2.pow(2).sum(), h2)
    by_op = {G.nodes[v]["op"]: e["grad_norm"] for _, v, e in G.out_edges(tanh, data=True)}
    assert by_op["addmm"] == pytest.approx(float(via_fc2.norm()), rel=1e-5)
    assert by_op["pow"] == pytest.approx(float(via_penalty.norm()), rel=1e-5)
    # the root's gradient is 1 and every op node was seen forward and backward
    assert G.nodes[G.graph["root"]]["grad"] == 1.0
    assert all(a["data_known"] and a["grad_known"] for _, a in G.nodes(data=True))
    # every edge has a finite gradient norm (single-use edges carry their source's gradient)
    assert all(math.isfinite(e["grad_norm"]) for _, _, e in G.edges(data=True))


def test_scopes_follow_torch_module_names_with_call_indices() -> None:
    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x: Any) -> Any:
            return torch.relu(self.lin(x))

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList([Block(), Block()])
            self.shared = Block()

        def forward(self, x: Any) -> Any:
            for layer in self.layers:
                x = layer(x)
            return self.shared(self.shared(x))  # called twice

    torch.manual_seed(3)
    net = Net()
    G = _trace(net, torch.randn(2, 4))
    scopes = {a["scope"] for _, a in G.nodes(data=True) if a["op"] == "relu"}
    assert scopes == {"Net/layers[0]", "Net/layers[1]", "Net/shared", "Net/shared[1]"}
    params = {a["label"]: a["scope"] for _, a in G.nodes(data=True) if a["role"] == "parameter"}
    assert params["layers.1.lin.weight"] == "Net/layers[1]/lin" and params["shared.lin.bias"] == "Net/shared/lin"
    # by_scope reads them like graphtrace's own scopes
    table = gt.analysis.by_scope(G)
    assert {"Net/layers[0]/lin", "Net/shared[1]/lin"} <= set(table["scope"])


# ---- diagnostics ----------------------------------------------------------------------------------
def test_health_finds_a_dead_channel_of_a_cnn() -> None:
    torch.manual_seed(4)
    model = SmallCNN()
    with torch.no_grad():
        model.bn1.bias[3] = -100.0  # channel 3 of the first ReLU never fires
    G = _trace(model, torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,)))
    h = gt.analysis.health(G).set_index("layer")
    assert h.loc["SmallCNN/relu", "relu_units"] == 8 and h.loc["SmallCNN/relu", "dead_relu"] == 1
    assert h.loc["SmallCNN/relu_1", "dead_relu"] == 0
    # the parameters feeding each ReLU: its conv and batch norm
    conv1_bn1 = sum(p.numel() for p in (*model.conv1.parameters(), *model.bn1.parameters()))
    assert h.loc["SmallCNN/relu", "param_count"] == conv1_bn1


def test_health_reports_saturated_tanh() -> None:
    torch.manual_seed(5)
    model = _Shared()
    with torch.no_grad():
        model.fc1.weight.mul_(100.0)
    with gt.pytorch.trace(model) as tr:
        out, _ = model(torch.randn(32, 3))
        out.sum().backward()
    G = tr.graph
    h = gt.analysis.health(G)
    row = h[h["layer"] == "_Shared"].iloc[0]
    assert row["tanh_saturated_share"] > 0.9 and row["relu_units"] == 0


def test_anomalies_name_the_module_op_and_shape_where_a_nan_starts() -> None:
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Linear(3, 4)
            self.head = torch.nn.Linear(4, 1)

        def forward(self, x: Any) -> Any:
            return self.head(torch.log(self.body(x)))  # log of negative numbers: NaN

    torch.manual_seed(6)
    net = Net()
    G = _trace(net, torch.randn(5, 3))
    df = gt.analysis.anomalies(G)
    origin = df[df["forward_origin"]]
    assert list(origin["op"]) == ["log"] and list(origin["scope"]) == ["Net"]
    assert "log in Net of finite operands gave" in origin["cause"].iloc[0] and "of 5×4" in origin["cause"].iloc[0]


def test_anomalies_find_the_first_edge_whose_gradient_is_not_finite() -> None:
    torch.manual_seed(7)
    lin = torch.nn.Linear(3, 4)
    x = torch.randn(5, 3)
    with gt.pytorch.trace(lin) as tr:
        z = torch.relu(lin(x))  # zeros
        loss = torch.sqrt(z).sum()  # d sqrt / dz at 0 is inf
        loss.backward()
    df = gt.analysis.anomalies(tr.graph)
    assert not df["forward_origin"].any()
    origin = df[df["backward_origin"]]
    assert list(origin["op"]) == ["relu"], df
    assert "the gradient sqrt [5×4] (sqrt)" in origin["cause"].iloc[0]


def test_diff_compares_two_steps_by_module_path_and_op() -> None:
    torch.manual_seed(8)
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, graphs = torch.randn(16, 2), []
    for _ in range(2):
        graphs.append(_trace(model, x))
        opt.step()
    d = gt.diff(graphs[0], graphs[1])
    assert len(d) == graphs[0].number_of_nodes() == graphs[1].number_of_nodes()
    assert d["node_a"].notna().all() and d["node_b"].notna().all() and (d["side"] == "both").all()
    changed = d[d["label_a"] == "layers.0.weight"].iloc[0]
    assert changed["data_a"] != changed["data_b"]


# ---- every view ---------------------------------------------------------------------------------
def test_tables_html_dot_and_files_work_on_a_torch_trace(tmp_path: Path) -> None:
    torch.manual_seed(9)
    model = SmallCNN()
    G = _trace(model, torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,)))
    df = gt.nodes_frame(G)
    assert str(df["shape"].dtype) == "string" and df["numel"].dtype == "int64" and df["grad_norm"].dtype == "float64"
    assert df["dead_units"].dtype == "Int64" and df["dead_units"].notna().sum() == 2
    edges = gt.edges_frame(G)
    assert len(edges) == G.number_of_edges()
    html = gt.to_html(G, tmp_path / "cnn.html").read_text(encoding="utf-8")
    assert "4\\u00d78\\u00d728\\u00d728" in html  # shapes reach the page (JSON-escaped)
    assert "graphtrace-data" in html or "graphtrace-nodes" in html
    dot = gt.to_dot(G, depth=3)
    assert "convolution" in dot and "4×8×28×28" in dot
    for suffix in (".json", ".parquet", ".graphml"):
        H = gt.load(gt.save(G, tmp_path / f"cnn{suffix}"))
        assert H.graph.get("kind") == "torch", suffix
        assert gt.nodes_frame(H).equals(gt.nodes_frame(G)), suffix
        for u, v, e in G.edges(data=True):
            h = H.edges[u, v]
            assert h["grad_norm"] == e["grad_norm"] and h["grad_nonfinite"] == e["grad_nonfinite"]


def test_a_resnet18_traces_and_every_parameter_has_its_gradient() -> None:
    torch.manual_seed(10)
    model = ResNet18(classes=10)
    G = _trace(model, torch.randn(2, 3, 32, 32), torch.tensor([1, 2]))
    params = [a for _, a in G.nodes(data=True) if a["role"] == "parameter"]
    assert len(params) == len(list(model.parameters())) == 62
    assert all(a["grad_known"] and a["grad_norm"] > 0 for a in params)
    scopes = {a["scope"] for _, a in G.nodes(data=True)}
    assert {"ResNet18/layer1[0]/conv1", "ResNet18/layer2[0]/downsample[0]", "ResNet18/fc"} <= scopes
    assert nx.is_directed_acyclic_graph(G) and G.nodes[G.graph["root"]]["op"] == "nll_loss"


# ---- bad input ------------------------------------------------------------------------------------
def test_bad_inputs_get_clear_errors() -> None:
    with pytest.raises(TypeError, match=r"expected a torch\.Tensor, got str"):
        gt.pytorch.from_tensor("x")
    with pytest.raises(ValueError, match="no grad_fn and does not require grad"):
        gt.pytorch.from_tensor(torch.ones(3))
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module or None, got int"):
        gt.pytorch.trace(3)
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module or None, got str"):
        gt.pytorch.from_tensor(torch.ones(2, requires_grad=True) * 2, "model")
    tr = gt.pytorch.trace(MLP())
    with pytest.raises(RuntimeError, match="built when the"):
        tr.graph  # noqa: B018
    with tr:
        pass
    with pytest.raises(RuntimeError, match="already used"), tr:
        pass
    with pytest.raises(TypeError, match=r"expected a torch\.Tensor, got list"):
        summary([1.0])


def test_a_complex_or_meta_tensor_as_a_values_number_is_graphtraces_type_error() -> None:
    """A 0-d tensor is a number to a Value (``Value(torch.tensor(2.0))``, ``a * t``); a complex or a
    meta one is refused by graphtrace's own error (torch's RuntimeError came out of float())."""
    a = gt.Value(3.0)
    assert (a * torch.tensor(2.0)).data == 6.0
    for t in (torch.tensor(1 + 2j), torch.tensor(2.0, device="meta")):
        with pytest.raises(TypeError, match="Tensor"):
            gt.Value(t)
        with pytest.raises(TypeError):
            a * t


def test_a_leaf_tensor_is_a_one_node_graph() -> None:
    w = torch.ones(3, requires_grad=True)
    G = gt.pytorch.from_tensor(w)
    assert G.number_of_nodes() == 1 and G.nodes[0]["role"] == "leaf" and G.nodes[0]["shape"] == "3"


def test_another_librarys_hooks_keep_working_and_ours_are_removed() -> None:
    model = MLP()
    calls: list[str] = []
    handle = model.layers[0].register_forward_hook(lambda m, i, o: calls.append("theirs"))
    before = {k: len(m._forward_hooks) + len(m._forward_pre_hooks) for k, m in model.named_modules()}
    _trace(model, torch.randn(3, 2))
    assert calls == ["theirs"]
    after = {k: len(m._forward_hooks) + len(m._forward_pre_hooks) for k, m in model.named_modules()}
    assert after == before
    model(torch.randn(3, 2))
    assert calls == ["theirs", "theirs"]
    handle.remove()


def test_summaries_of_complex_sparse_integer_and_empty_tensors() -> None:
    z = summary(torch.tensor([3 + 4j, 0j]))
    assert z["data_max"] == 5.0 and z["data_mean"] == 2.5 and z["data_norm"] == 5.0  # over |z|
    s = summary(torch.sparse_coo_tensor([[0, 5]], [2.0, -1.0], (1000,)))
    assert (
        s["data_min"] == -1.0 and s["data_max"] == 2.0 and json.loads(s["data_values"]) == [2.0, -1.0]
    )  # stored values
    i = summary(torch.tensor([1, 2, 3]))
    assert i["data_mean"] == 2.0 and i["data_values"] == "[1.0, 2.0, 3.0]"
    e = summary(torch.zeros(0))
    assert e["data_norm"] == 0.0 and math.isnan(e["data_mean"]) and e["data_values"] == "[]"
    big = summary(torch.tensor([1e30, -1e30]))  # squares beyond float32: recomputed in float64
    assert big["data_norm"] == pytest.approx(math.sqrt(2) * 1e30, rel=1e-6) and big["data_nonfinite"] == 0
    nan = summary(torch.tensor([float("nan"), 1.0, float("inf")]))
    assert nan["data_nonfinite"] == 2 and nan["data_mean"] == 1.0 and math.isnan(nan["data_norm"])


def test_from_tensor_knows_values_only_where_autograd_saved_them() -> None:
    torch.manual_seed(11)
    lin = torch.nn.Linear(2, 3)
    y = torch.tanh(lin(torch.randn(4, 2))).sum()
    G = gt.pytorch.from_tensor(y, lin)
    ops = {a["op"]: a for _, a in G.nodes(data=True) if a["op"]}
    assert ops["tanh"]["data_known"] and ops["tanh"]["shape"] == "4×3"  # TanhBackward0 saves its result
    assert not ops["addmm"]["data_known"] and ops["addmm"]["numel"] == -1
    assert ops["sum"]["data"] == pytest.approx(float(y)) and ops["sum"]["role"] == "root"


# ---- runs ------------------------------------------------------------------------------------------
def test_a_torch_model_is_recorded_one_row_per_parameter_tensor(tmp_path: Path) -> None:
    torch.manual_seed(12)
    model = SmallCNN()
    with torch.no_grad():
        model.bn2.bias[:] = -50.0  # the second ReLU layer is dead: every channel 0 for every sample
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    path = tmp_path / "cnn"
    with gt.record(path, model, hparams={"lr": 0.1}) as run:
        for step in range(3):
            before = [p.detach().clone() for p in model.parameters()]
            opt.zero_grad()
            with gt.pytorch.trace(model) as tr:
                loss = F.cross_entropy(model(x), y)
                loss.backward()
            grads = [p.grad.clone() for p in model.parameters()]
            opt.step()
            run.log(step, loss, learning_rate=0.1, graph=tr.graph)
    con = gt.open_run(path)
    rows = con.sql("SELECT * FROM params WHERE step = 2 ORDER BY name").df().set_index("name")
    assert len(rows) == len(list(model.parameters()))
    for (name, p), b, g in zip(model.named_parameters(), before, grads, strict=True):
        r = rows.loc[name]
        assert r["shape"] == "×".join(map(str, p.shape)) and r["numel"] == p.numel()
        assert r["scope"] == "SmallCNN/" + name.rpartition(".")[0]
        assert r["data"] == pytest.approx(float(p.detach().double().norm()), rel=1e-5)
        assert r["grad"] == pytest.approx(float(g.double().norm()), rel=1e-5)
        update = (p.detach() - b).double()
        assert r["update"] == pytest.approx(float(update.norm()), rel=1e-4, abs=1e-9)
        if float(b.double().norm()) > 0:
            assert r["update_data"] == pytest.approx(float(update.norm() / b.double().norm()), rel=1e-4, abs=1e-12)
    assert con.sql("SELECT count(*) FROM steps").fetchall() == [(3,)]
    # the run's health: the dead layer shows (scopes from each step's trace), the gradient sizes are there
    h = gt.runs.health(path, depth=2)
    last = h[h["step"] == 2].set_index("layer")
    assert last.loc["SmallCNN/conv2", "param_abs_grad_mean"] == 0.0  # nothing flows back through dead ReLUs
    assert last.loc["SmallCNN/conv1", "param_abs_grad_mean"] == 0.0
    assert last.loc["SmallCNN/fc", "param_abs_grad_mean"] > 0
    assert math.isfinite(last.loc["SmallCNN/fc", "update_data_log10"])
    dead = gt.analysis.health(tr.graph).set_index("layer")
    assert dead.loc["SmallCNN/relu_1", "dead_relu_share"] == 1.0
    # and the run's report renders, naming the model's modules
    from graphtrace.report import report_html

    page = report_html(path)
    assert "SmallCNN/fc" in page and "<svg" in page
