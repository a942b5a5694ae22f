"""Recording a torch model's parameters (gt.record + run.log): odd models and calls (hostile pass)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import graphtrace as gt  # noqa: E402


def test_a_sparse_gradient_is_recorded_with_its_norm_and_stored_values_statistics(tmp_path: Path) -> None:
    """nn.Embedding(sparse=True) gives a sparse gradient: log used to fail copying it into a dense buffer. Its
    norm and max |g| are the dense tensor's; its means are over its stored values (as ``summary`` has them)."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4, sparse=True), torch.nn.Linear(4, 2))
    with gt.record(tmp_path / "run", model) as run:
        for step in range(2):
            model.zero_grad(set_to_none=True)
            model(torch.tensor([1, 2, 2, 7])).sum().backward()
            grads = [p.grad for p in model.parameters()]
            assert grads[0].is_sparse and not any(g.is_sparse for g in grads[1:])
            stored = {
                n: p.grad.coalesce().values() if p.grad.is_sparse else p.grad for n, p in model.named_parameters()
            }
            expected = {n: g.double() for n, g in stored.items()}
            run.log(step, 1.0)
    rows = gt.open_run(tmp_path / "run").sql("SELECT * FROM params WHERE step = 1").df().set_index("name")
    for name, g in expected.items():
        r = rows.loc[name]
        assert r["grad"] == pytest.approx(float(g.norm()), rel=1e-6)
        assert r["grad_abs_mean"] == pytest.approx(float(g.abs().mean()), rel=1e-6)
        assert r["grad_max_abs"] == pytest.approx(float(g.abs().max()), rel=1e-6)


def test_a_model_without_parameters_records_its_steps(tmp_path: Path) -> None:
    with gt.record(tmp_path / "run", torch.nn.ReLU()) as run:
        run.log(0, 1.5)
        run.log(1, torch.tensor(0.5))
    con = gt.open_run(tmp_path / "run")
    assert con.sql("SELECT step, loss FROM steps ORDER BY step").fetchall() == [(0, 1.5), (1, 0.5)]


def test_a_parameter_replaced_or_reshaped_after_the_run_opened_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    model = torch.nn.Linear(3, 2)
    run = gt.record(tmp_path / "run", model)
    run.log(0, 1.0)
    original = model.weight
    model.weight = torch.nn.Parameter(torch.full((2, 3), 7.0))
    with pytest.raises(ValueError, match="parameter 'weight' was replaced"):
        run.log(1, 1.0)
    model.weight = original  # the model as recorded again: the run goes on
    run.log(1, 1.0)
    model.weight.data = torch.zeros(5, 5)  # (.data: the same Parameter, another shape)
    with pytest.raises(ValueError, match=r"parameter 'weight' changed shape .*2×3 -> 5×5"):
        run.log(2, 1.0)
    model.weight.data = torch.ones(2, 3)
    run.log(2, 1.0)
    run.close()
    con = gt.open_run(tmp_path / "run")
    assert con.sql("SELECT step FROM steps ORDER BY step").fetchall() == [(0,), (1,), (2,)]
    data = con.sql("SELECT data FROM params WHERE step = 2 AND name = 'weight'").fetchall()
    assert data == [(pytest.approx(6**0.5),)]


def test_two_threads_logging_the_same_steps_record_each_once(tmp_path: Path) -> None:
    """The check that a step is new and its recording were two moments: two threads could both pass it."""
    model = torch.nn.Linear(50, 50)
    run = gt.record(tmp_path / "run", model, chunk_steps=5)
    both = threading.Barrier(2)
    accepted: list[int] = []
    refused: list[int] = []

    def logger() -> None:
        for step in range(60):
            both.wait()
            try:
                run.log(step, 1.0)
                accepted.append(step)
            except ValueError:
                refused.append(step)

    threads = [threading.Thread(target=logger) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.close()
    assert sorted(accepted) == list(range(60)) and sorted(refused) == list(range(60))
    con = gt.open_run(tmp_path / "run")
    assert con.sql("SELECT count(*), count(DISTINCT step) FROM steps").fetchall() == [(60, 60)]
    assert con.sql("SELECT count(*), count(DISTINCT step) FROM params").fetchall() == [(120, 60)]
