"""The run store against paths, a second recorder, a changed model, bad steps and damaged files."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphtrace as gt
from graphtrace.cli import main
from graphtrace.report import report_html
from graphtrace.runs import complete_steps
from graphtrace.train import moons_demo, train_steps

ROOT = Path(__file__).parent.parent


def _record(path: Path, steps: int = 2, hidden: tuple[int, ...] = (4,), **kwargs: object) -> None:
    model, X, y = moons_demo(samples=12, hidden=hidden)
    with gt.record(path, model, **kwargs) as run:  # type: ignore[arg-type]
        list(train_steps(model, X, y, steps, run=run))


@pytest.mark.parametrize("name", ["exp*", "lr[0.1]x", "with space", "back\\slash", "q?uote's"])
def test_run_paths_are_used_literally(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    _record(path, steps=2)
    # a neighbour that a glob of the name would match
    _record(tmp_path / "exp1", steps=3)
    _record(tmp_path / "lr0x", steps=3)
    con = gt.open_run(path)
    assert con.sql("SELECT count(DISTINCT step), count(*) FROM steps").fetchall() == [(2, 2)]
    assert gt.runs.health(path)["step"].max() == 1
    assert "<svg" in report_html(path)
    err = io.StringIO()
    assert main(["report", str(path)], stderr=err) == 0, err.getvalue()


def test_one_recorder_per_run_in_this_process_and_in_another(tmp_path: Path) -> None:
    path = tmp_path / "run"
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    run = gt.record(path, model)
    with pytest.raises(RuntimeError, match="another recorder in this process"):
        gt.record(path, model, mode="resume")
    code = textwrap.dedent(
        f"""
        import sys; sys.path.insert(0, {str(ROOT)!r})
        import graphtrace as gt
        from graphtrace.train import moons_demo
        model, _, _ = moons_demo(samples=12, hidden=(4,))
        try:
            gt.record({str(path)!r}, model, mode="resume")
        except RuntimeError as exc:
            print("refused:", exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "refused:" in out.stdout and "another process" in out.stdout, out
    run.log(0, 1.0)
    run.close()
    with gt.record(path, model, mode="resume") as again:  # closed: free again
        again.log(1, 0.5)
    assert complete_steps(path) == [0, 1]


def test_a_crashed_recorder_does_not_lock_the_run_forever(tmp_path: Path) -> None:
    path = tmp_path / "run"
    code = textwrap.dedent(
        f"""
        import os, sys; sys.path.insert(0, {str(ROOT)!r})
        import graphtrace as gt
        from graphtrace.train import moons_demo
        model, _, _ = moons_demo(samples=12, hidden=(4,))
        run = gt.record({str(path)!r}, model)
        run.log(0, 1.0); run.flush()
        print("holding", flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "holding" in proc.stdout and proc.returncode == -9
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    with gt.record(path, model, mode="resume") as run:
        run.log(1, 0.5)
    assert complete_steps(path) == [0, 1]


def test_resuming_with_another_model_is_refused_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "run"
    _record(path, steps=1, hparams={"lr": 0.1})
    bigger, _, _ = moons_demo(samples=12, hidden=(6,))
    before = (path / "manifest.json").read_text()
    with pytest.raises(ValueError, match=r"different model .*allow_model_change=True"):
        gt.record(path, bigger, mode="resume")
    assert (path / "manifest.json").read_text() == before  # nothing written
    same, _, _ = moons_demo(samples=12, hidden=(4,))
    with gt.record(path, same, mode="resume", hparams={"lr": 0.05}) as run:
        run.log(1, 0.5)
    with gt.record(path, bigger, mode="resume", allow_model_change=True) as run:
        run.log(2, 0.4)
    m = json.loads((path / "manifest.json").read_text())
    assert m["hparams"] == {"lr": 0.1} and [r["hparams"] for r in m["resumes"]] == [{"lr": 0.05}, {}]
    assert len(m["model_changes"]) == 1 and m["parameters"] == [n for n, _ in bigger.named_parameters()]


def test_steps_are_int64_integers_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "run"
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    with gt.record(path, model) as run:
        run.log(np.int64(0), 1.0)  # numpy integers are integers
        for bad in (10**20, -1, True, 1.0, "1", np.float64(2.0)):
            with pytest.raises(ValueError, match="step must be an int"):
                run.log(bad, 1.0)  # type: ignore[arg-type]
        run.log(2**63 - 1, 1.0)
    assert complete_steps(path) == [0, 2**63 - 1]
    assert gt.open_run(path).sql("SELECT max(step) FROM params").fetchall() == [(2**63 - 1,)]


def test_damaged_files_and_stray_folders_are_named(tmp_path: Path) -> None:
    path = tmp_path / "run"
    _record(path, steps=3)
    stray = path / "params" / "step=x1"
    stray.mkdir()
    with pytest.raises(ValueError, match=r"step=x1: not part of a graphtrace run"):
        gt.open_run(path)
    err = io.StringIO()
    assert main(["report", str(path)], stderr=err) == 2 and "step=x1" in err.getvalue()
    stray.rmdir()
    # a file of another table's schema
    wrong = path / "params" / "step=1" / "part.parquet"
    wrong.write_bytes((path / "steps" / "step=1" / "part.parquet").read_bytes())
    with pytest.raises(ValueError, match=r"step=1/part.parquet: not a graphtrace params table \(missing columns name"):
        gt.open_run(path)
    _record(path, steps=3, mode="overwrite")
    # a good footer over damaged data pages: found when the data is read, named, exit 2 from the CLI
    part = path / "params" / "step=2" / "part.parquet"
    raw = bytearray(part.read_bytes())
    footer = int.from_bytes(raw[-8:-4], "little")
    for i in range(4, len(raw) - 8 - footer):  # every data page, the footer left whole
        raw[i] ^= 0xFF
    part.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"reading the run failed"):
        gt.runs.health(path)
    err = io.StringIO()
    assert main(["report", str(path)], stderr=err) == 2 and "reading the run failed" in err.getvalue()


def test_a_killed_writers_temporaries_are_removed_when_the_run_is_opened_for_writing(tmp_path: Path) -> None:
    path = tmp_path / "run"
    _record(path, steps=1)
    leftovers = [path / "params" / "step=1" / ".part.parquet.abc123.tmp", path / ".manifest.json.x.tmp"]
    for t in leftovers:
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_bytes(b"half")
    assert gt.open_run(path).sql("SELECT count(*) FROM steps").fetchall() == [(1,)]  # reading ignores them
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    with gt.record(path, model, mode="resume") as run:
        run.log(1, 0.5)
    assert not any(t.exists() for t in leftovers)


def test_the_report_names_the_first_non_finite_loss(tmp_path: Path) -> None:
    path = tmp_path / "run"
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    with gt.record(path, model) as run:
        for step, loss in enumerate([1.0, 0.5, float("nan"), float("inf")]):
            run.log(step, loss)
    page = report_html(path)
    assert "First step whose loss is not finite: 2 (loss nan)" in page
    assert "Every parameter and gradient stayed finite." in page


def test_a_run_recorded_while_another_reads_it(tmp_path: Path) -> None:
    """open_run on a run being written reads its complete steps (the lock is the writers' only)."""
    path = tmp_path / "run"
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    with gt.record(path, model) as run:
        run.log(0, 1.0)
        run.flush()
        assert gt.open_run(path).sql("SELECT count(*) FROM steps").fetchall() == [(1,)]
