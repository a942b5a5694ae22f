"""Recorded runs: hive-partitioned Parquet + manifest, DuckDB views, Dask, crash safety, bad input."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import graphtrace as gt
from graphtrace.cli import main
from graphtrace.runs import complete_steps
from graphtrace.train import moons_demo, train_steps


def _record(path: Path, steps: int = 4, **kwargs: object) -> list[gt.train.StepResult]:  # type: ignore[name-defined]
    model, X, y = moons_demo(samples=12, hidden=(4,))
    with gt.record(path, model, hparams={"lr": "micrograd schedule"}, **kwargs) as run:  # type: ignore[arg-type]
        return list(train_steps(model, X, y, steps, run=run))


def test_a_recorded_run_reads_back_with_duckdb(tmp_path: Path) -> None:
    history = _record(tmp_path / "run")
    con = gt.open_run(tmp_path / "run")
    steps = con.execute("SELECT step, loss, accuracy, learning_rate FROM steps ORDER BY step").fetchall()
    assert steps == [(r.step, r.loss, r.accuracy, r.learning_rate) for r in history]
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    names = [n for n, _ in model.named_parameters()]
    rows = con.execute("SELECT step, name, scope, data, grad, update FROM params ORDER BY step").fetchall()
    assert len(rows) == 4 * len(names)
    assert [r[1] for r in rows[: len(names)]] == sorted(names) or {r[1] for r in rows} == set(names)
    by = {(r[0], r[1]): r for r in rows}
    for name in names:  # SGD: update = -lr * grad (up to the rounding of data - old data)
        for k in range(1, 4):
            _, _, scope, data, grad, update = by[(k, name)]
            assert update == pytest.approx(-history[k].learning_rate * grad, rel=1e-9, abs=1e-15)
            assert update == data - by[(k - 1, name)][3]
            assert scope.startswith("MLP/Layer")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["format"] == "graphtrace-run"
    assert manifest["hparams"] == {"lr": "micrograd schedule"} and manifest["parameters"] == names


def test_the_readme_queries(tmp_path: Path) -> None:
    _record(tmp_path / "run", steps=5)
    con = gt.open_run(tmp_path / "run")
    fell = con.execute(
        """
        SELECT split_part(scope, '/', 2) AS layer,
               avg(abs(grad)) FILTER (WHERE step = 0) - avg(abs(grad)) FILTER (WHERE step = 4) AS fell_by
        FROM params GROUP BY layer ORDER BY fell_by DESC LIMIT 1
        """
    ).fetchall()
    assert fell[0][0] in {"Layer0", "Layer1"}
    ratios = con.execute(
        """
        SELECT step, name, abs(update) / nullif(abs(data - update), 0) AS ratio FROM params
        WHERE NOT (abs(update) / nullif(abs(data - update), 0) BETWEEN 1e-4 AND 1e-2)
        """
    ).fetchall()
    assert all(r[2] is None or not 1e-4 <= r[2] <= 1e-2 for r in ratios)
    first_bad = con.execute("SELECT min(step) FROM params WHERE NOT (isfinite(data) AND isfinite(grad))").fetchone()
    assert first_bad == (None,)


def test_snapshots_and_scope_tables_when_asked(tmp_path: Path) -> None:
    _record(tmp_path / "run", steps=5, snapshot_every=2, scopes_every=4)
    con = gt.open_run(tmp_path / "run")
    assert con.execute("SELECT DISTINCT step FROM snapshots ORDER BY step").fetchall() == [(0,), (2,), (4,)]
    assert con.execute("SELECT DISTINCT step FROM scopes ORDER BY step").fetchall() == [(0,), (4,)]
    cols = [d[0] for d in con.execute("SELECT * FROM scopes").description]
    assert {"step", "scope", "nodes", "param_abs_grad_mean", "relu_zero_share"} <= set(cols)
    G = gt.load(tmp_path / "run" / "snapshots" / "step=2" / "trace.parquet")
    nodes = con.execute("SELECT count(*) FROM snapshots WHERE step = 2 AND kind = 'node'").fetchone()
    assert nodes == (len(G),)


def test_a_snapshot_is_the_steps_trace_as_it_was_when_logged(tmp_path: Path) -> None:
    """The snapshot is copied from the store in ``run.log`` and written later by the writer thread:
    it equals ``gt.to_networkx`` of the step at the time of the call, whatever changes after it."""
    model, X, y = moons_demo(samples=6, hidden=(3,))
    with gt.scope("outer"):
        loss, _ = gt.train.svm_loss(model, X, y)
    model.zero_grad()
    loss.backward()
    lonely = gt.Value(1.5, label="lonely") * 2.0  # a second sink: the store holds more than the trace
    want = gt.to_networkx(loss)
    params = model.parameters()
    with gt.record(tmp_path / "run", model, snapshot_every=1, scopes_every=0) as run:
        run.log(0, loss)
        # after log: parameters move, gradients are zeroed, a label is set, a node is rescoped
        for p in params:
            p.data += 1.0
        model.zero_grad()
        params[0].label = "renamed"
        loss.label = "relabelled"
        with gt.scope("later"):
            more = loss * 3.0
        del more, lonely
    got = gt.load(tmp_path / "run" / "snapshots" / "step=0" / "trace.parquet")
    assert got.graph["root"] == loss.node_id
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(gt.nodes_frame(got), gt.nodes_frame(want))
    pd_testing.assert_frame_equal(
        gt.edges_frame(got).sort_values(["source", "target"]).reset_index(drop=True),
        gt.edges_frame(want).sort_values(["source", "target"]).reset_index(drop=True),
    )
    assert not any(a["label"] in {"renamed", "relabelled"} for _, a in got.nodes(data=True))
    assert {a["scope"].split("/")[0] for _, a in got.nodes(data=True)} >= {"outer"}


def test_each_snapshot_is_its_own_steps_trace_when_steps_look_alike(tmp_path: Path) -> None:
    """A run's snapshots take names and string columns from the previous one when the step has the same
    ops, roles, labels and scopes: every snapshot must still equal its own step's ``to_networkx``."""
    model, X, y = moons_demo(samples=6, hidden=(3,))
    params = model.parameters()
    want = []
    with gt.record(tmp_path / "run", model, snapshot_every=1, scopes_every=0) as run:
        for step in range(5):
            if step == 2:
                params[1].label = "renamed"  # the same structure, one label differs
            n = 4 if step == 3 else 6  # a smaller batch: another structure
            loss, _ = gt.train.svm_loss(model, X[:n], y[:n])
            model.zero_grad()
            loss.backward()
            want.append(gt.to_networkx(loss))
            run.log(step, loss)
            for p in params:
                p.data -= 0.1 * p.grad
    pd_testing = pytest.importorskip("pandas.testing")
    for step, G in enumerate(want):
        got = gt.load(tmp_path / "run" / "snapshots" / f"step={step}" / "trace.parquet")
        pd_testing.assert_frame_equal(gt.nodes_frame(got), gt.nodes_frame(G))
        assert sorted(got.edges(data="local_grad")) == sorted(G.edges(data="local_grad"))
    assert "renamed" not in {a["label"] for _, a in want[1].nodes(data=True)}
    assert "renamed" in {a["label"] for _, a in want[2].nodes(data=True)}


def test_the_same_answers_from_dask_on_a_local_cluster(tmp_path: Path) -> None:
    dd = pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    _record(tmp_path / "run", steps=3)
    con = gt.open_run(tmp_path / "run")
    want = dict(con.execute("SELECT step, avg(abs(grad)) FROM params GROUP BY step").fetchall())
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster),
    ):
        df = dd.read_parquet(str(tmp_path / "run" / "params"))
        df = df.assign(step=df["step"].astype("int64"), abs_grad=df["grad"].abs())
        got = df.groupby("step")["abs_grad"].mean().compute().to_dict()
    assert set(got) == set(want) == {0, 1, 2}
    assert all(got[k] == pytest.approx(want[k], rel=1e-12) for k in want)


_WRITER = """
import sys, time
sys.path.insert(0, {root!r})
import graphtrace as gt
from graphtrace.train import moons_demo, train_steps
model, X, y = moons_demo(samples=30, hidden=(8,))
run = gt.record({path!r}, model, snapshot_every=3)
print("ready", flush=True)
for r in train_steps(model, X, y, 10_000, run=run):
    pass
"""


@pytest.mark.parametrize("delay", [0.9, 1.7, 2.6])
def test_sigkill_at_any_moment_leaves_every_completed_step_readable(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "run"
    code = _WRITER.format(root=str(Path(__file__).parent.parent), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    # at least one step completed before the kill, however loaded the machine (then a random moment)
    deadline = time.monotonic() + 120
    while not complete_steps(path) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(delay + random.random() * 0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    done = complete_steps(path)
    assert done == list(range(len(done))) and len(done) >= 1
    con = gt.open_run(path)
    assert con.execute("SELECT count(*) FROM steps").fetchone() == (len(done),)
    assert con.execute("SELECT count(DISTINCT step) FROM params").fetchone() == (len(done),)
    n_params = con.execute("SELECT count(*) FROM params WHERE step = 0").fetchone()
    assert con.execute("SELECT count(*) FROM params").fetchone() == (n_params[0] * len(done),)  # type: ignore[index]
    for f in path.rglob("*.parquet"):  # every visible file is whole
        pq.read_metadata(f)
    assert all(p.name.startswith(".") for p in path.rglob("*.tmp"))  # temporaries stay hidden
    assert json.loads((path / "manifest.json").read_text())["status"] == "running"


def test_reopening_needs_an_explicit_choice_and_nothing_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "run"
    _record(path, steps=2)
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    with pytest.raises(FileExistsError, match="mode='resume'"):
        gt.record(path, model)
    before = {p: p.read_bytes() for p in path.rglob("*.parquet")}
    with gt.record(path, model, mode="resume") as run:
        with pytest.raises(ValueError, match="step 1 is already recorded"):
            run.log(1, 0.5)
        run.log(2, 0.25, accuracy=1.0, learning_rate=0.1)
    assert all(p.read_bytes() == b for p, b in before.items())
    assert complete_steps(path) == [0, 1, 2]
    with gt.record(path, model, mode="overwrite") as run:
        run.log(0, 1.0)
    assert complete_steps(path) == [0]
    other = tmp_path / "not-a-run"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    for mode in ("resume", "overwrite"):
        with pytest.raises(ValueError, match="not a graphtrace run"):
            gt.record(other, model, mode=mode)
    assert (other / "precious.txt").read_text() == "keep me"
    link = tmp_path / "link"
    link.symlink_to(path, target_is_directory=True)
    with pytest.raises(ValueError, match=f"{link} is a symbolic link .*does not delete through a link"):
        gt.record(link, model, mode="overwrite")
    assert complete_steps(path) == [0]  # the run behind the link is untouched


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    cases = [
        (lambda: gt.record(tmp_path / "a", model, mode="append"), ValueError, "mode"),
        (lambda: gt.record(tmp_path / "b", object()), TypeError, "nn.Module"),
        (lambda: gt.record(tmp_path / "c", model, snapshot_every=-1), ValueError, "snapshot_every"),
        (lambda: gt.record(tmp_path / "d", model, hparams={"lr": float("nan")}), ValueError, "hparams"),
        (lambda: gt.record(tmp_path / "e", model, hparams={1: 2}), TypeError, "hparams"),
        (lambda: gt.record(123, model), TypeError, "path"),
    ]
    for make, exc, words in cases:
        with pytest.raises(exc, match=words):
            make()
    with gt.record(tmp_path / "f", model) as run:
        for args, exc, words in [((-1, 1.0), ValueError, "step"), ((0, "x"), TypeError, "loss")]:
            with pytest.raises(exc, match=words):
                run.log(*args)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="accuracy"):
            run.log(0, 1.0, accuracy="high")  # type: ignore[arg-type]
        import numpy as np

        for arr in (np.array([0.5, 0.6]), np.array([0.5])):  # an array is named, not numpy's own TypeError
            with pytest.raises(ValueError, match=r"log: accuracy must be a real number, got array"):
                run.log(0, 1.0, accuracy=arr)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match=r"log: learning_rate must be a real number, got array"):
                run.log(0, 1.0, learning_rate=arr)  # type: ignore[arg-type]
        for acc in (-1e300, 87.5, math.inf):  # a share: a percentage is named, not drawn off the chart
            with pytest.raises(ValueError, match="accuracy is a share from 0 to 1"):
                run.log(0, 1.0, accuracy=acc)
        with pytest.raises(TypeError, match=r"graph must be the graph of gt\.pytorch\.trace"):
            run.log(0, 1.0, graph="not a graph")
        x = gt.Value(1.0)
        with pytest.raises(ValueError, match="carries its own graph"):
            run.log(0, x * 2, graph=gt.to_networkx(x * 2))
        run.log(0, 1.0, accuracy=0.5)  # none of the refused calls took step 0
    with pytest.raises(ValueError, match="closed"):
        run.log(0, 1.0)
    assert gt.runs.complete_steps(tmp_path / "f") == [0]
    with pytest.raises(ValueError, match="path is empty"):
        gt.record("", model)
    assert not (tmp_path / "a").exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_forked_process_cannot_log_into_its_parents_run(tmp_path: Path) -> None:
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    path = tmp_path / "run"
    run = gt.record(path, model)
    run.log(0, 1.0)
    run.flush()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: every write is refused with the reason, and exiting unlocks nothing
        said = []
        for call in (lambda: run.log(1, 0.5), run.flush, run.close):
            try:
                call()
                said.append("accepted")
            except RuntimeError as exc:
                said.append("forked" if "forked from it" in str(exc) else str(exc))
        run._lock.release()  # what the interpreter's exit does (weakref.finalize)
        os.write(write, json.dumps(said).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        said = json.loads(fh.read())
    os.waitpid(pid, 0)
    assert said == ["forked", "forked", "forked"]
    assert json.loads((path / "manifest.json").read_text())["status"] == "running"
    probe = textwrap.dedent(
        f"""
        import graphtrace as gt
        from graphtrace.train import moons_demo
        try:
            gt.record({str(path)!r}, moons_demo(samples=12, hidden=(4,))[0], mode="resume")
        except RuntimeError as exc:
            print(exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "being recorded by another process" in out.stdout, out  # the parent still holds its lock
    run.log(1, 0.5)
    run.close()
    assert gt.runs.complete_steps(path) == [0, 1]
    assert json.loads((path / "manifest.json").read_text())["status"] == "finished"


def test_open_run_names_the_file_that_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no manifest\.json"):
        gt.open_run(tmp_path)
    path = tmp_path / "run"
    _record(path, steps=2)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ValueError, match=r"manifest.json: written by a newer graphtrace"):
        gt.open_run(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"manifest\.json: not a readable"):
        gt.open_run(path)
    (path / "manifest.json").write_text(json.dumps(manifest))
    part = next((path / "params").glob("part-*.parquet"))
    part.write_bytes(part.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"{part.name}: not a readable"):
        gt.open_run(path)


def test_cli_train_records_a_run(tmp_path: Path) -> None:
    out, run = tmp_path / "out", tmp_path / "runs" / "demo"
    args = ["train", "--steps", "3", "--samples", "10", "--hidden", "4", "--out", str(out), "--record", str(run)]
    assert main([*args, "--snapshot-every", "2"]) == 0
    con = gt.open_run(run)
    assert con.execute("SELECT count(*) FROM steps").fetchone() == (3,)
    assert con.execute("SELECT DISTINCT step FROM snapshots ORDER BY step").fetchall() == [(0,), (2,)]
    errors: list[str] = []

    class Err:
        def write(self, s: str) -> None:
            errors.append(s)

    assert main(args, stderr=Err()) == 2  # type: ignore[arg-type]
    assert "--overwrite" in "".join(errors)
    assert main([*args, "--overwrite"]) == 0
    assert main(["train", "--steps", "1", "--out", str(out), "--overwrite"], stderr=Err()) == 2  # type: ignore[arg-type]
    assert "need --record" in "".join(errors)


def test_recording_module_docstring_layout_matches_the_files(tmp_path: Path) -> None:
    _record(tmp_path / "run", steps=1, snapshot_every=1, scopes_every=1)
    files = sorted(str(p.relative_to(tmp_path / "run")) for p in (tmp_path / "run").rglob("*") if p.is_file())
    doc = textwrap.dedent(gt.runs.__doc__ or "")  # type: ignore[attr-defined]
    chunk = "part-0000000000000000000-0000000000000000000.parquet"
    assert files == [
        ".lock",
        "manifest.json",
        f"params/{chunk}",
        f"scopes/{chunk}",
        "snapshots/step=0/trace.parquet",
        f"steps/{chunk}",
    ]
    # the docstring names each file by its pattern (FIRST-LAST for the chunk's step range)
    assert all(f.replace(chunk, "part-FIRST-LAST.parquet") in doc for f in files)
    # a run of several ranks: each rank's partition, manifest and lock (a NaN loss: an anomalies table)
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    ranked = tmp_path / "ranked"
    for k in (0, 1):
        with gt.record(ranked, model, rank=k, world_size=2, snapshot_every=1) as run:
            loss = sum(p * float("nan") if k else p for p in model.parameters())
            loss.backward()
            run.log(0, loss)
    files = sorted(str(p.relative_to(ranked)) for p in ranked.rglob("*") if p.is_file())
    assert "ranks/rank=1.json" in files and "ranks/rank=1.lock" in files and f"anomalies/rank=1/{chunk}" in files
    assert f"anomalies/rank=0/{chunk}" not in files  # rank 0's step was finite
    patterns = {
        f.replace("rank=1", "rank=K").replace("rank=0", "rank=K").replace(chunk, "part-FIRST-LAST.parquet")
        for f in files
    }
    patterns = {p.replace("step=0", "step=S") if p.startswith("snapshots") else p for p in patterns}
    assert {p for p in patterns if "/" in p and not p.startswith(("steps/", "ranks/", "snapshots/"))} <= {
        f"{t}/rank=K/part-FIRST-LAST.parquet" for t in ("params", "scopes", "anomalies")
    }
    assert all(p in doc for p in patterns if p.startswith(("steps/", "ranks/", "snapshots/")) or "/" not in p)


def test_health_of_one_trace_and_of_a_run_agree_on_dead_units(tmp_path: Path) -> None:
    random.seed(3)
    model = gt.nn.MLP(2, [4, 4, 1])
    dead = model.layers[0].neurons[1]
    dead.b.data = -50.0  # never fires for inputs in [-1, 1]: dead for every sample
    data = [[random.uniform(-1, 1), random.uniform(-1, 1)] for _ in range(8)]
    with gt.record(tmp_path / "run", model, scopes_every=2) as run:
        for step in range(3):
            loss = sum((model(x) - 1.0) ** 2 for x in data) * (1.0 / len(data))
            model.zero_grad()
            loss.backward()
            one = gt.analysis.health(loss)
            for p in model.parameters():
                p.data -= 0.05 * p.grad
            run.log(step, loss, learning_rate=0.05)
    row = one.set_index("layer").loc["MLP/Layer0"]
    assert row["relu_units"] == 4 and row["dead_relu"] >= 1  # the killed unit at least
    assert all(g == 0.0 for g in (w.grad for w in dead.w))  # no gradient reaches a dead unit
    h = gt.runs.health(tmp_path / "run")  # type: ignore[attr-defined]
    assert list(h.columns) == [
        "step", "layer", "param_abs_grad_mean", "param_abs_grad_max", "update_data_log10",
        "dead_relu_share", "tanh_saturated_share",
    ]  # fmt: skip
    assert sorted(set(h["layer"])) == ["MLP/Layer0", "MLP/Layer1", "MLP/Layer2"]
    by = h.set_index(["step", "layer"])
    assert by.loc[(2, "MLP/Layer0"), "dead_relu_share"] == pytest.approx(row["dead_relu_share"])
    assert math.isnan(by.loc[(1, "MLP/Layer0"), "dead_relu_share"])  # no scope table at step 1
    assert by.loc[(2, "MLP/Layer0"), "update_data_log10"] < 0  # updates are small next to the weights
    # the output layer is linear: no ReLU, no tanh, so its shares are not applicable (NaN), never 0
    assert math.isnan(by.loc[(2, "MLP/Layer2"), "dead_relu_share"])
    assert math.isnan(by.loc[(2, "MLP/Layer2"), "tanh_saturated_share"])
    with pytest.raises(ValueError, match="depth"):
        gt.analysis.health(loss, depth=0)


def test_log_returns_before_the_disk_and_flush_close_wait_for_it(tmp_path: Path) -> None:
    model, X, y = moons_demo(samples=12, hidden=(4,))
    run = gt.record(tmp_path / "run", model)
    results = list(train_steps(model, X, y, 3, run=run))
    run.flush()
    assert complete_steps(tmp_path / "run") == [0, 1, 2]
    con = gt.open_run(tmp_path / "run")
    assert con.execute("SELECT count(DISTINCT step) FROM scopes").fetchone() == (3,)  # every step by default
    assert con.execute("SELECT loss FROM steps ORDER BY step").fetchall() == [(r.loss,) for r in results]
    run.close()
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "finished"


def test_a_failed_write_is_raised_by_the_next_call_and_nothing_later_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graphtrace.runs import recorder as runs

    real = runs._write_table

    def failing(path: Path, table: object) -> None:
        if path.name == "step=1.parquet" and path.parts[-2] == "scopes":
            raise OSError(28, "No space left on device", str(path))
        real(path, table)  # type: ignore[arg-type]

    monkeypatch.setattr(runs, "_write_table", failing)
    monkeypatch.setattr(runs, "FLUSH_SECONDS", 0.0)  # each step staged apart (as a batch of one step)
    model, X, y = moons_demo(samples=12, hidden=(4,))
    run = gt.record(tmp_path / "run", model)
    with pytest.raises(OSError, match="No space left") as info:  # raised by a later log, else by flush
        for _ in train_steps(model, X, y, 4, run=run):
            pass
        run.flush()
    assert ".staged/scopes/step=1.parquet" in str(info.value)
    assert any("no later step was written" in n for n in info.value.__notes__)
    with pytest.raises(RuntimeError, match="stopped writing"):
        run.log(99, 1.0)
    run.close()
    assert complete_steps(tmp_path / "run") == [0]
    assert not (tmp_path / "run" / ".staged" / "params" / "step=2.parquet").exists()
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "failed"


def test_an_unclosed_runs_finalizer_running_in_its_writer_thread_neither_fails_nor_loses_steps(tmp_path: Path) -> None:
    """The garbage collector may collect an unclosed run in its own writer thread: the finalizer's close
    cannot wait for that thread (it raised "cannot join current thread"); what was logged is written."""
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    run = gt.record(tmp_path / "r", model)
    run.log(0, 1.0)
    writer = run._writer
    writer.put([("call", writer.close)])  # the finalizer, as the collector would run it in the writer thread
    writer._thread.join(timeout=60)
    assert not writer._thread.is_alive() and not writer.failed, writer.error
    run._lock.release()
    assert gt.runs.complete_steps(tmp_path / "r") == [0]
