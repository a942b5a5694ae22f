"""The run store against paths, a second recorder, a changed model, bad steps and damaged files."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

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
    # a run of two ranks there too (its partitions are read as a list of files, never a glob)
    ranked = tmp_path / f"{name}-ranks"
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    for k in (0, 1):
        with gt.record(ranked, model, rank=k, world_size=2) as run:
            run.log(0, 1.0 + k)
    con = gt.open_run(ranked)
    assert con.sql("SELECT rank, loss FROM steps ORDER BY rank").fetchall() == [(0, 1.0), (1, 2.0)]


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
    wrong = next((path / "params").glob("part-*.parquet"))
    wrong.write_bytes(next((path / "steps").glob("part-*.parquet")).read_bytes())
    with pytest.raises(ValueError, match=rf"{wrong.name}: not a graphtrace params table \(missing columns name"):
        gt.open_run(path)
    _record(path, steps=3, mode="overwrite")
    # a good footer over damaged data pages: found when the data is read, named, exit 2 from the CLI
    part = next((path / "params").glob("part-*.parquet"))
    raw = bytearray(part.read_bytes())
    footer = int.from_bytes(raw[-8:-4], "little")
    for i in range(4, len(raw) - 8 - footer):  # every data page, the footer left whole
        raw[i] ^= 0xFF
    part.write_bytes(bytes(raw))
    # (the chunk's step column is read when the run opens, so the damage is found there already)
    with pytest.raises(ValueError, match=rf"{part.name}: not a readable|reading the run failed"):
        gt.runs.health(path)
    err = io.StringIO()
    assert main(["report", str(path)], stderr=err) == 2 and part.name in err.getvalue()


def test_a_killed_writers_temporaries_are_removed_when_the_run_is_opened_for_writing(tmp_path: Path) -> None:
    path = tmp_path / "run"
    _record(path, steps=1)
    leftovers = [path / ".staged" / "params" / ".step=1.parquet.abc123.tmp", path / ".manifest.json.x.tmp"]
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


# ---- long runs in few files (format 2) ------------------------------------------------------------
def _files(path: Path, table: str) -> list[Path]:
    return [p for p in (path / table).rglob("*") if p.is_file()]


def test_steps_are_compacted_into_a_file_per_chunk_and_read_once(tmp_path: Path) -> None:
    dd = pytest.importorskip("dask.dataframe")
    path = tmp_path / "run"
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    with gt.record(path, model, chunk_steps=100) as run:
        for step in range(250):
            run.log(step, 1.0 / (step + 1))
            if step == 120:
                run.flush()
                # mid-run: a chunk of 0..99 plus staged steps; open_run sees every complete step once,
                # Dask the compacted ones only, once each
                assert gt.open_run(path).sql("SELECT count(*), count(DISTINCT step) FROM steps").fetchall() == [
                    (121, 121)
                ]
                seen = dd.read_parquet(str(path / "params"))["step"].compute()
                assert sorted(set(seen)) == list(range(100)) and len(seen) == 100 * len(list(model.parameters()))
    for table in ("steps", "params", "scopes"):
        names = sorted(p.name for p in _files(path, table))
        assert len(names) <= 3, (table, names)  # 0-99, 100-199, 200-249; nothing staged is left
    con = gt.open_run(path)
    assert con.sql("SELECT count(*), count(DISTINCT step) FROM steps").fetchall() == [(250, 250)]
    n = len(list(model.parameters()))
    assert con.sql("SELECT count(*) FROM params").fetchall() == [(250 * n,)]
    seen = dd.read_parquet(str(path / "params"))["step"].compute()
    assert len(seen) == 250 * n and seen.nunique() == 250


def test_a_recorders_merges_read_no_chunk_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorder keeps the steps its chunks hold: after the resume's first merge (which reads the
    chunks already there), merging reads only the staged files, so a run's merges cost what they merge."""
    from graphtrace.runs import layout as runs

    path = tmp_path / "run"
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    with gt.record(path, model, chunk_steps=2) as run:
        for step in range(6):
            run.log(step, 1.0)
    read: list[str] = []
    real = runs._chunk_steps
    monkeypatch.setattr(runs, "_chunk_steps", lambda f: read.append(f.name) or real(f))
    with gt.record(path, model, mode="resume", chunk_steps=2) as run:
        read.clear()  # opening the run read the chunks' steps
        for step in range(6, 16):
            run.log(step, 1.0)
        run.flush()
        # five merges: the first reads each chunk that was on disk (params and steps: 3 chunks each; a
        # float loss has no scope table), the others none
        assert len(read) == 6, read
    con = gt.open_run(path)
    assert con.sql("SELECT count(*), count(DISTINCT step) FROM steps").fetchall() == [(16, 16)]
    assert len(_files(path, "steps")) == 8


_COMPACTING_WRITER = """
import sys
sys.path.insert(0, {root!r})
import graphtrace as gt
from graphtrace.train import moons_demo
model, X, y = moons_demo(samples=12, hidden=(4,))
run = gt.record({path!r}, model, chunk_steps=3)
print("ready", flush=True)
for step in range(100_000):
    run.log(step, 1.0)
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_during_compaction_leaves_every_step_once(tmp_path: Path, seed: int) -> None:
    dd = pytest.importorskip("dask.dataframe")
    import random
    import signal

    path = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", _COMPACTING_WRITER.format(root=str(ROOT), path=str(path))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 120
    while len(complete_steps(path)) < 10 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    random.seed(seed)
    time.sleep(random.random() * 0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    done = complete_steps(path)
    assert done == list(range(len(done))) and len(done) >= 10
    con = gt.open_run(path)
    assert con.sql("SELECT count(*), count(DISTINCT step) FROM steps").fetchall() == [(len(done), len(done))]
    n = con.sql("SELECT count(*) FROM params WHERE step = 0").fetchall()[0][0]
    assert con.sql("SELECT count(*) FROM params").fetchall() == [(n * len(done),)]
    for table in ("params", "steps"):  # what Dask sees: no step twice
        seen = dd.read_parquet(str(path / table))["step"].compute() if _files(path, table) else []
        per_step = {k: list(seen).count(k) for k in set(seen)}
        assert all(c == (n if table == "params" else 1) for c in per_step.values()), per_step
    # resumed and closed: everything compacted, each step once
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    with gt.record(path, model, mode="resume", chunk_steps=3) as run:
        run.log(len(done), 1.0)
    assert not any(p.name.endswith(".parquet") for p in (path / ".staged" / "steps").glob("*"))
    seen = dd.read_parquet(str(path / "steps"))["step"].compute()
    assert sorted(seen) == list(range(len(done) + 1))


def test_a_format_1_run_still_reads_and_resumes(tmp_path: Path) -> None:
    """A run written before compaction (a step=K folder per step, the step as hive key) reads as before,
    and a resume keeps its layout."""
    import pyarrow.parquet as pq

    path = tmp_path / "run"
    _record(path, steps=3)
    old = tmp_path / "old"
    old.mkdir()
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 1
    (old / "manifest.json").write_text(json.dumps(manifest))
    for table in ("steps", "params", "scopes"):
        for chunk in (path / table).glob("part-*.parquet"):
            t = pq.read_table(chunk)
            for k in sorted(set(t.column("step").to_pylist())):
                rows = t.filter(pq.ParquetFile(chunk).read().column("step").to_pandas().eq(k).to_numpy())
                (old / table / f"step={k}").mkdir(parents=True)
                pq.write_table(rows.drop(["step"]), old / table / f"step={k}" / "part.parquet")
    want = gt.open_run(path).sql("SELECT step, name, data FROM params ORDER BY step, name").fetchall()
    assert gt.open_run(old).sql("SELECT step, name, data FROM params ORDER BY step, name").fetchall() == want
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    with gt.record(old, model, mode="resume") as run:
        run.log(3, 0.5)
    assert (old / "params" / "step=3" / "part.parquet").is_file() and not (old / ".staged").exists()
    assert complete_steps(old) == [0, 1, 2, 3]
    assert len(gt.runs.health(old)) > 0


# ---- several runs side by side ---------------------------------------------------------------------
def test_open_runs_puts_several_runs_side_by_side_with_a_run_column(tmp_path: Path) -> None:
    _record(tmp_path / "lr-0.1", steps=3, hparams={"lr": 0.1, "batch": 12})
    _record(tmp_path / "lr-0.5", steps=2, hparams={"lr": 0.5, "batch": 12})
    con = gt.open_runs([tmp_path / "lr-0.1", tmp_path / "lr-0.5"])
    assert con.sql("SELECT run, count(*) FROM steps GROUP BY run ORDER BY run").fetchall() == [
        ("lr-0.1", 3),
        ("lr-0.5", 2),
    ]
    one = gt.open_run(tmp_path / "lr-0.5").sql("SELECT step, name, data FROM params ORDER BY step, name").fetchall()
    both = con.sql("SELECT step, name, data FROM params WHERE run = 'lr-0.5' ORDER BY step, name").fetchall()
    assert both == one
    with pytest.raises(ValueError, match="non-empty list"):
        gt.open_runs([])
    # two runs of the same folder name in different places get distinct names
    _record(tmp_path / "x" / "run", steps=1)
    _record(tmp_path / "y" / "run", steps=1)
    names = [
        r
        for (r,) in gt.open_runs([tmp_path / "x" / "run", tmp_path / "y" / "run"])
        .sql("SELECT DISTINCT run FROM steps ORDER BY run")
        .fetchall()
    ]
    assert names == ["x/run", "y/run"]


def test_the_report_of_several_runs_overlays_them_and_lists_the_hparams_that_differ(tmp_path: Path) -> None:
    _record(tmp_path / "a", steps=3, hparams={"lr": 0.1, "batch": 12})
    _record(tmp_path / "b", steps=3, hparams={"lr": 0.5, "batch": 12})
    err = io.StringIO()
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b")], stderr=err) == 0, err.getvalue()
    page = (tmp_path / "compare.html").read_text(encoding="utf-8")
    assert "2 runs compared" in page and page.count('class="plot"') == 5
    table = page[page.index('class="dataframe hparams"') :]
    table = table[: table.index("</table>")]
    assert "lr" in table and "batch" not in table and "0.5" in table


# ---- TensorBoard --------------------------------------------------------------------------------
def test_a_run_exported_to_tensorboard_reads_back_with_tensorboards_own_reader(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    path = tmp_path / "run"
    _record(path, steps=4)
    err = io.StringIO()
    assert main(["export", str(path), "--to", "tensorboard", "--out", str(tmp_path / "tb")], stderr=err) == 0, (
        err.getvalue()
    )
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["run"]  # the run's own name
    acc = ea.EventAccumulator(str(tmp_path / "tb" / "run"), size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0})
    acc.Reload()
    con = gt.open_run(path)
    want = con.sql("SELECT step, loss FROM steps ORDER BY step").fetchall()
    got = [(e.step, e.value) for e in acc.Scalars("loss")]
    assert [s for s, _ in got] == [s for s, _ in want]
    assert all(v == pytest.approx(w, rel=1e-6) for (_, v), (_, w) in zip(got, want, strict=True))  # float32 in events
    tags = acc.Tags()
    assert "grad_flow/MLP/Layer0" in tags["scalars"] and "update_data_log10/MLP/Layer1" in tags["scalars"]
    hist = acc.Histograms("grad/MLP/Layer0")
    n = con.sql("SELECT count(*) FROM params WHERE step = 0 AND scope LIKE 'MLP/Layer0%'").fetchall()[0][0]
    assert [h.step for h in hist] == [0, 1, 2, 3] and hist[0].histogram_value.num == n
    lo, hi = con.sql("SELECT min(grad), max(grad) FROM params WHERE step = 2 AND scope LIKE 'MLP/Layer0%'").fetchall()[
        0
    ]
    assert hist[2].histogram_value.min == pytest.approx(lo, rel=1e-6) and hist[2].histogram_value.max == pytest.approx(
        hi, rel=1e-6
    )
    # a saved trace is not a run: told, exit 2
    assert main(["export", str(tmp_path / "nowhere"), "--to", "tensorboard"], stderr=io.StringIO()) == 2


def test_a_nan_loss_reaches_tensorboard_and_an_unlogged_accuracy_does_not(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    path = tmp_path / "run"
    with gt.record(path, gt.nn.MLP(1, [1])) as run:
        for step, loss in enumerate([1.0, 0.5, float("nan"), float("inf")]):
            run.log(step, loss, accuracy=0.5 if step == 0 else None)
    assert main(["export", str(path), "--to", "tensorboard", "--out", str(tmp_path / "tb")], stderr=io.StringIO()) == 0
    acc = ea.EventAccumulator(str(tmp_path / "tb" / "run"), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    loss = [(e.step, e.value) for e in acc.Scalars("loss")]
    assert [s for s, _ in loss] == [0, 1, 2, 3]  # the step where it broke is on the chart
    assert math.isnan(loss[2][1]) and loss[3][1] == math.inf
    assert [e.step for e in acc.Scalars("accuracy")] == [0]


# ---- the live view ----------------------------------------------------------------------------------
def test_watch_rewrites_the_report_as_steps_land_until_the_run_finishes(tmp_path: Path) -> None:
    import threading

    from graphtrace.report import watch

    path = tmp_path / "run"
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    run = gt.record(path, model)
    run.log(0, 1.0)
    run.flush()
    pages: list[str] = []
    logged = threading.Event()

    def on_write(page: str) -> None:
        pages.append(page)
        if len(pages) == 1:  # the first page is written: record two more steps, then finish
            run.log(1, 0.5)
            run.log(2, 0.25)
            run.flush()
            logged.set()
        elif logged.is_set() and len(pages) == 2:
            run.close()

    out = watch(path, interval=0.05, on_write=on_write)
    assert out == path / "report.html"
    assert '<meta http-equiv="refresh"' in pages[0] and "1 complete steps" in pages[0]
    assert '<meta http-equiv="refresh"' not in pages[-1] and "3 complete steps" in pages[-1]
    assert out.read_text(encoding="utf-8") == pages[-1]
    err = io.StringIO()
    assert main(["report", str(path), str(path), "--watch"], stderr=err) == 2 and "one run" in err.getvalue()


def _events(logdir: Path, tag: str) -> dict[str, list[Any]]:
    """Every scalar event of ``tag`` under ``logdir``, per TensorBoard run (folder holding event files)."""
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    runs = sorted({f.parent for f in logdir.rglob("events.out.tfevents.*")})
    out = {}
    for d in runs:
        acc = ea.EventAccumulator(str(d), size_guidance={ea.SCALARS: 0})
        acc.Reload()
        out[d.relative_to(logdir).as_posix()] = acc.Scalars(tag) if tag in acc.Tags()["scalars"] else []
    return out


def test_tensorboard_events_keep_each_steps_wall_time_the_runs_own_name_and_its_hparams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#29 item 5: every event was stamped with the export's time, a run exported from its own folder
    was named ".", and no hyper-parameter reached the HParams tab."""
    pytest.importorskip("tensorboardX")
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from tensorboard.plugins.hparams import plugin_data_pb2

    path = tmp_path / "lr-0.1"
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    with gt.record(path, model, hparams={"lr": 0.1, "hidden": [4], "opt": "sgd"}) as run:
        for step in range(3):
            run.log(step, 1.0 / (step + 1))
            time.sleep(0.3)  # the steps' own pace, unlike an export's
    monkeypatch.chdir(path)
    err = io.StringIO()
    assert main(["export", ".", "--to", "tensorboard", "--out", str(tmp_path / "tb")], stderr=err) == 0, err.getvalue()
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["lr-0.1"]
    want = gt.open_run(path).sql("SELECT step, epoch(wall_time) FROM steps ORDER BY step").fetchall()
    got = _events(tmp_path / "tb", "loss")["lr-0.1"]
    assert [(e.step, e.wall_time) for e in got] == [(s, pytest.approx(w, abs=1e-3)) for s, w in want]
    assert got[-1].wall_time - got[0].wall_time > 0.5
    acc = ea.EventAccumulator(str(tmp_path / "tb" / "lr-0.1"))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["lr"].number_value == 0.1 and hp["opt"].string_value == "sgd" and hp["hidden"].string_value == "[4]"


def test_exporting_twice_into_one_logdir_replaces_the_runs_earlier_events(tmp_path: Path) -> None:
    """#26 item 16: two exports left two event files and TensorBoard showed every step twice."""
    pytest.importorskip("tensorboardX")
    path = tmp_path / "run"
    _record(path, steps=3)
    (tmp_path / "tb" / "other").mkdir(parents=True)
    (tmp_path / "tb" / "other" / "notes.txt").write_text("not ours")
    for _ in range(2):
        assert main(["export", str(path), "--to", "tensorboard", "--out", str(tmp_path / "tb")]) == 0
        time.sleep(1.1)  # an event file's name has the second it was made in: another second, another file
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    # every event written, file by file (EventAccumulator drops a restarted run's older steps; the
    # TensorBoard server shows them all)
    written = [
        e.step
        for f in (tmp_path / "tb").rglob("events.out.tfevents.*")
        for e in LegacyEventFileLoader(str(f)).Load()
        if any(v.tag == "loss" for v in e.summary.value)
    ]
    assert sorted(written) == [0, 1, 2]  # each step once
    events = _events(tmp_path / "tb", "loss")
    assert list(events) == ["run"]
    assert len(list((tmp_path / "tb" / "run").glob("events.out.tfevents.*"))) == 1
    assert (tmp_path / "tb" / "other" / "notes.txt").read_text() == "not ours"
    assert not [p for p in (tmp_path / "tb").iterdir() if p.name.startswith(".")]  # no staging left


# ---- #28 item 3: a batch of steps per staged file -----------------------------------------------------
def test_the_steps_of_the_last_second_are_staged_as_one_file_per_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer keeps the steps of the last second in memory and stages them as one file per
    table (a file per table and step, each fsynced, was most of the writer's time): every step is
    read from it. (FLUSH_SECONDS raised: the batch's end does not depend on the machine's speed.)"""
    from graphtrace.runs import recorder

    monkeypatch.setattr(recorder, "FLUSH_SECONDS", 3600.0)
    path = tmp_path / "run"
    model, X, y = moons_demo(samples=12, hidden=(4,))
    with gt.record(path, model, chunk_steps=1000) as run:
        list(train_steps(model, X, y, 20, run=run))
        run.flush()
        staged = sorted(f.relative_to(path).as_posix() for f in (path / ".staged").rglob("*.parquet"))
        assert staged == [f".staged/{t}/step=0.parquet" for t in ("params", "scopes", "steps")]
        assert complete_steps(path) == list(range(20))
        con = gt.open_run(path)
        assert con.sql("SELECT count(*), count(DISTINCT step) FROM steps").fetchall() == [(20, 20)]
        n = len(model.parameters())
        assert con.sql("SELECT count(*), count(DISTINCT step) FROM params").fetchall() == [(20 * n, 20)]
        run.log(20, 0.5)  # the next batch: its own file
        run.flush()
        assert (path / ".staged" / "steps" / "step=20.parquet").is_file() and complete_steps(path)[-1] == 20
    assert not (path / ".staged").exists()  # merged at close
    con = gt.open_run(path)
    assert con.sql("SELECT count(*), count(DISTINCT step) FROM steps").fetchall() == [(21, 21)]


def test_a_batch_whose_steps_file_was_never_written_is_removed_when_the_run_is_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between a batch's params file and its steps file, the batch's steps are incomplete; a
    resumed run that logs some of them again must read its own rows, never the killed batch's."""
    from graphtrace.runs import recorder

    monkeypatch.setattr(recorder, "FLUSH_SECONDS", 3600.0)
    killed, path = tmp_path / "killed", tmp_path / "run"
    other, _, _ = moons_demo(samples=12, hidden=(4,), seed=1)
    with gt.record(killed, other) as run:  # a batch of steps 4-11 with other numbers
        for step in range(4, 12):
            run.log(step, 1.0)
        run.flush()
        orphan = (killed / ".staged" / "params" / "step=4.parquet").read_bytes()
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    with gt.record(path, model) as run:
        for step in range(4):
            run.log(step, 1.0)
    (path / ".staged" / "params").mkdir(parents=True)
    (path / ".staged" / "params" / "step=4.parquet").write_bytes(orphan)  # its steps file never came
    assert complete_steps(path) == [0, 1, 2, 3]
    with gt.record(path, model, mode="resume") as run:
        for step in (10, 11):  # (their batch, step=10, lists before step=4)
            run.log(step, 1.0)
        run.flush()
        mine = [p.data for p in model.parameters()]
        con = gt.open_run(path)
        for step in (10, 11):
            got = [d for (d,) in con.sql(f"SELECT data FROM params WHERE step = {step}").fetchall()]
            assert sorted(got) == sorted(mine)
        assert not (path / ".staged" / "params" / "step=4.parquet").exists()
