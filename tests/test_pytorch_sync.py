"""No host sync while a traced model runs (issue #28, item 1).

Every call that waits for the device (``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``, ``bool()``,
``float()``, ``int()`` of a tensor) made by graphtrace's code between a trace's enter and its exit is
counted by patching those methods; the counts must be zero on the ResNet-18 and GPT-style models. On a
machine with CUDA the same runs under ``torch.cuda.set_sync_debug_mode("error")``, which makes torch
itself raise at any synchronising call (skipped here: no GPU).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from torch_models import GPT, ResNet18, lm_loss  # noqa: E402

import graphtrace as gt  # noqa: E402
from graphtrace.pytorch import tensors as _tensors  # noqa: E402

_PACKAGE = str(Path(gt.__file__).resolve().parent)
_TORCH = str(Path(torch.__file__).resolve().parent)
_SYNCING = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")


def _caller_is_graphtrace() -> bool:
    """Whether the innermost frame outside torch's own code (above this check) is graphtrace's."""
    f = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_TORCH):
        f = f.f_back  # type: ignore[assignment]
    return f is not None and f.f_code.co_filename.startswith(_PACKAGE)


@contextmanager
def _counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Count the synchronising tensor calls made from graphtrace's code while the block runs."""
    calls: list[str] = []
    active = [True]
    for name in _SYNCING:
        original = getattr(torch.Tensor, name)

        def wrapper(self: Any, *args: Any, __name: str = name, __original: Any = original, **kwargs: Any) -> Any:
            if active[0] and _caller_is_graphtrace():
                main = threading.current_thread() is threading.main_thread()
                calls.append(__name if main else "writer")
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    try:
        yield calls
    finally:
        active[0] = False


def _models(device: str) -> list[tuple[str, Any, Any]]:
    torch.manual_seed(0)
    resnet = ResNet18(classes=10).to(device)
    x = torch.randn(2, 3, 32, 32, device=device)
    gpt = GPT(vocab=100, d=32, heads=2, layers=2, context=16).to(device)
    idx = torch.randint(0, 100, (2, 17), device=device)
    return [
        ("resnet18", resnet, lambda: torch.nn.functional.cross_entropy(resnet(x), torch.tensor([1, 2], device=device))),
        ("gpt", gpt, lambda: lm_loss(gpt, idx)),
    ]


@pytest.mark.parametrize("early", [False, True], ids=["", "batches-flushed-while-running"])
@pytest.mark.parametrize("stats", ["full", "norms"])
@pytest.mark.parametrize("which", ["resnet18", "gpt"])
def test_a_trace_never_waits_for_the_device_while_the_model_runs(
    which: str, stats: str, early: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if early:  # batches of two tensors: their statistics are launched while the model runs, not at the exit
        monkeypatch.setattr(_tensors, "BATCH_ROWS", 2)
    name, model, loss_of = next(m for m in _models("cpu") if m[0] == which)
    tr = gt.pytorch.trace(model, stats=stats)
    with _counting(monkeypatch) as calls:
        tr.__enter__()
        loss = loss_of()
        loss.backward()
        during = list(calls)
    tr.__exit__(None, None, None)  # one transfer here is the design
    assert during == [], f"{name}: graphtrace waited for the device {len(during)} times: {sorted(set(during))}"
    G = tr.graph
    assert G.number_of_nodes() > 50 and all(d["data_known"] for _, d in G.nodes(data=True) if d["op"] == "addmm")
    assert all(d["stats"] == stats and d["data_norm"] > 0 for _, d in G.nodes(data=True) if d["op"] == "addmm")


def test_the_counter_sees_a_sync_made_by_graphtrace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness itself: a summary (which may wait, outside a trace) is counted."""
    from graphtrace.pytorch import summary

    with _counting(monkeypatch) as calls:
        summary(torch.ones(3))
    assert "tolist" in calls


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
@pytest.mark.parametrize("stats", ["full", "norms"])
@pytest.mark.parametrize("which", ["resnet18", "gpt"])
def test_on_cuda_nothing_synchronises_while_the_model_runs(which: str, stats: str) -> None:
    name, model, loss_of = next(m for m in _models("cuda") if m[0] == which)
    tr = gt.pytorch.trace(model, stats=stats)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        tr.__enter__()
        loss_of().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    tr.__exit__(None, None, None)
    assert tr.graph.number_of_nodes() > 50, name


# ---- #28 item 3: recording a run -------------------------------------------------------------------
def test_run_log_of_a_torch_model_never_waits_for_the_device_in_the_training_thread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``run.log`` only copies the parameters on their device: every number comes to the host in the
    run's writer thread. The rows are still the parameters' statistics after each step (float64
    recomputation), and ``every=2`` writes them every other step while every step keeps its row."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    expected: dict[int, list[float]] = {}
    accs: dict[int, float] = {}
    for every, path in ((1, tmp_path / "all"), (2, tmp_path / "half")):
        with gt.record(path, model, every=every) as run, _counting(monkeypatch) as calls:
            in_log: list[str] = []
            for step in range(4):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                run.flush()
                del calls[:]
                acc = (model(x).argmax(1) == y).float().mean()  # tensors: read in the writer thread
                run.log(step, loss, accuracy=acc, learning_rate=torch.tensor(0.1 / (step + 1)))
                if every == 1:
                    accs[step] = float(acc)
                # (the writer thread's transfers come after the job is queued, the last thing log does)
                in_log += [c for c in calls if c != "writer"]
                if every == 1:
                    expected[step] = [float(p.detach().double().norm()) for p in model.parameters()]
        assert in_log == [], f"run.log waited for the device in the training thread: {in_log}"
        con = gt.open_run(path)
        params = con.sql("SELECT step, name, data FROM params ORDER BY step").df()
        steps = con.sql("SELECT step, loss, accuracy, learning_rate FROM steps ORDER BY step").df()
        assert steps["step"].tolist() == [0, 1, 2, 3] and steps["loss"].notna().all()
        assert steps["learning_rate"].tolist() == pytest.approx([0.1, 0.05, 0.1 / 3, 0.025])
        if every == 1:
            assert steps["accuracy"].tolist() == pytest.approx([accs[s] for s in range(4)])
        assert sorted(set(params["step"])) == ([0, 1, 2, 3] if every == 1 else [0, 2])
        if every == 1:
            names = [n for n, _ in model.named_parameters()]
            for step, want in expected.items():
                got = params[params["step"] == step].set_index("name").loc[names, "data"].tolist()
                assert got == pytest.approx(want, rel=1e-6)


@contextmanager
def _writer_held(run: Any) -> Iterator[None]:
    """The run's writer waits while the block logs: a bad accuracy it would read at once cannot be raised by
    the very call that logged it (the verdict would depend on the machine's pace)."""
    gate = threading.Event()
    run._writer.put([("call", lambda: gate.wait(timeout=60))])
    try:
        yield
    finally:
        gate.set()


def test_an_accuracy_tensor_outside_0_1_is_left_out_of_its_step_and_raised_by_the_next_call(tmp_path: Path) -> None:
    """Its value is known only in the writer thread: the step keeps its loss, loses the accuracy,
    and the next call says which step and why; the run goes on."""
    model = torch.nn.Linear(2, 1)
    run = gt.record(tmp_path / "r", model)
    run.log(0, torch.tensor(1.0), accuracy=torch.tensor(0.5))
    with _writer_held(run):
        run.log(1, torch.tensor(0.5), accuracy=torch.tensor(57.0))  # a percentage
    with pytest.raises(ValueError, match=r"accuracy is a share from 0 to 1, got 57.0 at step 1"):
        run.flush()
    run.log(2, torch.tensor(0.25), accuracy=torch.tensor(1.0))
    run.close()
    steps = gt.open_run(tmp_path / "r").sql("SELECT step, loss, accuracy FROM steps ORDER BY step").df()
    assert steps["step"].tolist() == [0, 1, 2]
    assert steps["loss"].tolist() == [1.0, 0.5, 0.25]
    assert steps["accuracy"].iloc[0] == 0.5 and steps["accuracy"].isna().iloc[1] and steps["accuracy"].iloc[2] == 1.0
    with pytest.raises(TypeError, match="accuracy must be one number, got a tensor of shape 2"):
        gt.record(tmp_path / "s", model).log(0, 1.0, accuracy=torch.tensor([0.5, 0.5]))


def test_run_log_refuses_the_trace_of_another_model_before_writing(tmp_path: Path) -> None:
    recorded = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
    x = torch.randn(2, 3)
    with gt.pytorch.trace(other) as wrong:
        other(x).sum().backward()
    with gt.pytorch.trace(recorded) as right:
        loss = recorded(x).sum()
        loss.backward()
    with gt.record(tmp_path / "r", recorded) as run:
        with pytest.raises(
            ValueError, match=r"graph is a trace of another model: its parameter '0.weight' .* is 4×3, not 2×3"
        ):
            run.log(0, loss, graph=wrong.graph)
        run.log(0, loss, graph=right.graph)  # step 0 was not taken by the refused call
    con = gt.open_run(tmp_path / "r")
    assert con.sql("SELECT count(*) AS n FROM steps").df()["n"][0] == 1
    assert con.sql("SELECT count(*) AS n FROM scopes").df()["n"][0] > 0


def test_late_accuracy_errors_never_drop_a_step_and_each_bad_step_is_named(tmp_path: Path) -> None:
    """The error about an earlier step comes from a later call, which still records its own step; two
    bad steps before it are both named; a dense one-element tensor is the only kind taken."""
    model = torch.nn.Linear(2, 1)
    run = gt.record(tmp_path / "r", model)
    with _writer_held(run):  # (else it may read step 0 before log(1) returns, and log(1) would name it)
        run.log(0, torch.tensor(1.0), accuracy=torch.tensor(2.0))
        run.log(1, torch.tensor(0.9), accuracy=torch.tensor(3.0))
    run._writer.flush()  # (the writer has read both)
    with pytest.raises(ValueError, match=r"got 2.0 at step 0; 3.0 at step 1 .*those steps were recorded"):
        run.flush()
    with _writer_held(run):
        run.log(2, torch.tensor(0.8), accuracy=torch.tensor(4.0))
    run._writer.flush()  # the writer read step 2; the next log names it and records its own step
    with pytest.raises(ValueError, match=r"4.0 at step 2 .*; step 3 \(this call\) was recorded"):
        run.log(3, torch.tensor(0.7), accuracy=torch.tensor(0.25))
    for bad, kind in (
        (torch.tensor([[0.5]]).to_sparse_csr(), "sparse_csr"),
        (torch.tensor([0.5]).to_sparse(), "sparse_coo"),
    ):
        with pytest.raises(TypeError, match=f"accuracy must be one number, got a {kind} tensor"):
            run.log(4, torch.tensor(0.6), accuracy=bad)
    run.close()
    steps = gt.open_run(tmp_path / "r").sql("SELECT step, loss, accuracy FROM steps ORDER BY step").df()
    assert steps["step"].tolist() == [0, 1, 2, 3]
    assert steps["accuracy"].isna().tolist() == [True, True, True, False]


def test_a_body_exception_is_not_replaced_by_the_runs_close(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 1)
    with pytest.raises(RuntimeError, match="the real failure") as caught, gt.record(tmp_path / "r", model) as run:
        with _writer_held(run):
            run.log(0, torch.tensor(1.0), accuracy=torch.tensor(50.0))
        run._writer.flush()
        raise RuntimeError("the real failure")
    assert any("closing the run" in n and "accuracy is a share" in n for n in caught.value.__notes__)
    assert gt.runs.status(tmp_path / "r") == "failed"


def test_run_log_checks_the_traced_parameters_shapes_and_the_kind_of_run(tmp_path: Path) -> None:
    recorded = torch.nn.Sequential(torch.nn.Linear(3, 2))
    same_names = torch.nn.Sequential(torch.nn.Linear(3, 50))
    with gt.pytorch.trace(same_names) as tr:
        same_names(torch.randn(1, 3)).sum().backward()
    shapes = r"parameter '0.weight' \(in 'Sequential/0'\) is 50×3, not 2×3"
    with gt.record(tmp_path / "r", recorded) as run, pytest.raises(ValueError, match=shapes):
        run.log(0, 1.0, graph=tr.graph)
    with gt.record(tmp_path / "s", gt.nn.MLP(1, [1])) as run, pytest.raises(ValueError, match="records a graphtrace"):
        run.log(0, 1.0, graph=tr.graph)
    assert gt.runs.complete_steps(tmp_path / "r") == [] and gt.runs.complete_steps(tmp_path / "s") == []
