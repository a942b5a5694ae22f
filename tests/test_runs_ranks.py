"""Runs of several processes: rank partitions, a lock and a manifest per rank, read as one dataset
(DuckDB with partition pruning, Dask, Spark); and what every run reads the same way (the rank column,
wall_time as a timestamp, no staged folder left, reading while the recorder merges)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import graphtrace as gt
from graphtrace.runs import complete_steps, rank_status, status
from graphtrace.train import moons_demo

ROOT = Path(__file__).parent.parent


def _model() -> Any:
    model, _, _ = moons_demo(samples=12, hidden=(4,))
    return model


def _ranked(path: Path, world: int = 2, steps: int = 5, chunk_steps: int = 3, **kwargs: Any) -> None:
    """Every rank of a ``world``-process run, recorded side by side in this process."""
    model = _model()
    runs = [gt.record(path, model, rank=k, world_size=world, chunk_steps=chunk_steps, **kwargs) for k in range(world)]
    for step in range(steps):
        for k, run in enumerate(runs):
            run.log(step, 1.0 + step + 10 * k)
    for run in runs:
        run.close()


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# ---- the layout ---------------------------------------------------------------------------------
def test_each_rank_writes_its_own_hive_partitions_lock_and_manifest(tmp_path: Path) -> None:
    path = tmp_path / "run"
    _ranked(path, world=2, steps=5, chunk_steps=3)
    files = _files(path)
    for table in ("steps", "params"):
        for k in (0, 1):
            assert f"{table}/rank={k}/part-0000000000000000000-0000000000000000002.parquet" in files
            assert f"{table}/rank={k}/part-0000000000000000003-0000000000000000004.parquet" in files
    assert "ranks/rank=0.lock" in files and "ranks/rank=1.lock" in files and ".lock" not in files
    assert not (path / ".staged").exists()  # merged at close, and the empty folders gone
    # no rank column inside the files: Spark refuses a column that is also a partition key
    assert "rank" not in pq.read_schema(path / "params" / "rank=1" / files[-1].split("/")[-1]).names
    run = json.loads((path / "manifest.json").read_text())
    assert run["format_version"] == 3 and run["world_size"] == 2 and "status" not in run
    mine = json.loads((path / "ranks" / "rank=1.json").read_text())
    assert mine["rank"] == 1 and mine["status"] == "finished" and mine["pid"] == os.getpid()
    assert status(path) == "finished" and rank_status(path) == {0: "finished", 1: "finished"}
    assert complete_steps(path) == complete_steps(path, 1) == [0, 1, 2, 3, 4]
    con = gt.open_run(path)
    assert con.sql("SELECT rank, count(*), min(loss) FROM steps GROUP BY ALL ORDER BY rank").fetchall() == [
        (0, 5, 1.0),
        (1, 5, 11.0),
    ]
    n = len(list(_model().parameters()))
    assert con.sql("SELECT rank, count(*) FROM params GROUP BY ALL ORDER BY rank").fetchall() == [
        (0, 5 * n),
        (1, 5 * n),
    ]
    for view in ("steps", "params", "scopes", "snapshots"):
        assert con.sql(f"SELECT * FROM {view} LIMIT 0").columns[:2] == ["step", "rank"], view


def test_ranks_never_share_a_lock(tmp_path: Path) -> None:
    """Rank 1 held by another process: rank 0 records at once; a second rank-1 recorder is refused."""
    path = tmp_path / "run"
    code = textwrap.dedent(
        f"""
        import sys; sys.path.insert(0, {str(ROOT)!r})
        import graphtrace as gt
        from graphtrace.train import moons_demo
        model, _, _ = moons_demo(samples=12, hidden=(4,))
        run = gt.record({str(path)!r}, model, rank=1, world_size=2)
        run.log(0, 2.0); run.flush()
        print("holding", flush=True)
        sys.stdin.readline()
        run.close()
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        model = _model()
        with gt.record(path, model, rank=0, world_size=2) as run:  # not waiting on rank 1
            run.log(0, 1.0)
            with pytest.raises(RuntimeError, match=r"rank 1 of .* another process"):
                gt.record(path, model, rank=1, world_size=2, mode="resume")
            with pytest.raises(RuntimeError, match=r"rank 0 of .* another recorder in this process"):
                gt.record(path, model, rank=0, world_size=2, mode="resume")
            assert rank_status(path) == {0: "running", 1: "running"}
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(120)
    assert holder.returncode == 0 and status(path) == "finished"
    assert gt.open_run(path).sql("SELECT rank, step, loss FROM steps ORDER BY rank").fetchall() == [
        (0, 0, 1.0),
        (1, 0, 2.0),
    ]


def test_new_resume_and_overwrite_apply_to_each_rank(tmp_path: Path) -> None:
    path = tmp_path / "run"
    _ranked(path, world=2, steps=3)
    model = _model()
    with pytest.raises(FileExistsError, match=r"rank 1 of .* already holds steps; pass mode='resume'"):
        gt.record(path, model, rank=1, world_size=2)
    before = _files(path)
    with gt.record(path, model, rank=1, world_size=2, mode="resume", hparams={"lr": 0.5}) as run:
        with pytest.raises(ValueError, match="step 2 is already recorded"):
            run.log(2, 0.0)
        run.log(3, 14.0)
    assert complete_steps(path, 0) == [0, 1, 2] and complete_steps(path, 1) == [0, 1, 2, 3]
    assert complete_steps(path) == [0, 1, 2]  # complete on every rank
    mine = json.loads((path / "ranks" / "rank=1.json").read_text())
    assert [r["hparams"] for r in mine["resumes"]] == [{"lr": 0.5}]
    assert all(f in _files(path) for f in before if f.startswith("params/rank=0"))
    with gt.record(path, model, rank=0, world_size=2, mode="overwrite") as run:  # rank 0 only
        run.log(7, 0.5)
    con = gt.open_run(path)
    assert con.sql("SELECT rank, list(step ORDER BY step) FROM steps GROUP BY rank ORDER BY rank").fetchall() == [
        (0, [7]),
        (1, [0, 1, 2, 3]),
    ]
    # a job of another world size or another model is refused before anything is written
    snapshot = {f: (path / f).read_bytes() for f in _files(path) if not f.endswith(".lock")}
    with pytest.raises(FileExistsError, match="world_size 2, this job has 4"):
        gt.record(path, model, rank=0, world_size=4)
    with pytest.raises(ValueError, match="world_size 2, this job has 3"):
        gt.record(path, model, rank=0, world_size=3, mode="resume")
    bigger, _, _ = moons_demo(samples=12, hidden=(6,))
    with pytest.raises(ValueError, match="different model"):
        gt.record(path, bigger, rank=1, world_size=2, mode="resume")
    with pytest.raises(ValueError, match="recorded by 2 processes"):
        gt.record(path, model, mode="resume")  # one process cannot resume a run of two
    assert {f: (path / f).read_bytes() for f in _files(path) if not f.endswith(".lock")} == snapshot
    # a new job of 3 ranks replaces it: rank 0 drops the ranks it no longer has
    _ranked(path, world=1 + 2, steps=2, mode="overwrite")
    assert json.loads((path / "manifest.json").read_text())["world_size"] == 3
    assert gt.open_run(path).sql("SELECT list(DISTINCT rank ORDER BY rank) FROM steps").fetchall() == [([0, 1, 2],)]
    _ranked(path, world=2, steps=1, mode="overwrite")
    assert gt.open_run(path).sql("SELECT list(DISTINCT rank ORDER BY rank) FROM steps").fetchall() == [([0, 1],)]
    assert not (path / "steps" / "rank=2").exists()


def test_bad_ranks_and_a_run_of_one_process_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    model = _model()
    for kwargs, match in (
        ({"rank": 1}, "both rank= and world_size="),
        ({"rank": 2, "world_size": 2}, "0 <= rank < world_size"),
        ({"rank": -1, "world_size": 2}, "0 <= rank < world_size"),
        ({"rank": True, "world_size": 2}, "rank must be an int"),
        ({"rank": 0, "world_size": 1.5}, "world_size must be an int"),
    ):
        with pytest.raises(ValueError, match=match):
            gt.record(tmp_path / "bad", model, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "bad").exists()
    single = tmp_path / "single"
    with gt.record(single, model) as run:
        run.log(0, 1.0)
    with pytest.raises(FileExistsError, match="recorded by one process"):
        gt.record(single, model, rank=0, world_size=2)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="no graphtrace run"):
        gt.record(foreign, model, rank=0, world_size=2)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_the_rank_comes_from_torchrun_s_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with gt.record(tmp_path / "run", _model()) as run:
        assert (run.rank, run.world_size) == (1, 2)
        run.log(0, 1.0)
    assert (tmp_path / "run" / "steps" / "rank=1").is_dir()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="RANK / WORLD_SIZE"):
        gt.record(tmp_path / "other", _model())
    monkeypatch.delenv("LOCAL_RANK")  # not torchrun: one process
    with gt.record(tmp_path / "plain", _model()) as run:
        assert (run.rank, run.world_size) == (0, 1)


def test_a_run_of_one_process_is_written_as_before_and_reads_as_rank_0(tmp_path: Path) -> None:
    path = tmp_path / "run"
    with gt.record(path, _model(), chunk_steps=2) as run:
        for step in range(3):
            run.log(step, 1.0)
    assert json.loads((path / "manifest.json").read_text())["format_version"] == 2
    assert sorted(p.name for p in path.iterdir()) == [".lock", "manifest.json", "params", "steps"]
    assert all(_files(path / t)[0].startswith("part-") for t in ("steps", "params"))
    con = gt.open_run(path)
    assert con.sql("SELECT DISTINCT rank FROM params").fetchall() == [(0,)]
    assert rank_status(path) == {0: "finished"}


# ---- wall_time, staged folders, reading while merging -----------------------------------------------
def test_wall_time_is_a_timestamp_in_duckdb_also_for_runs_written_as_text(tmp_path: Path) -> None:
    import datetime

    path = tmp_path / "run"
    t0 = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    with gt.record(path, _model()) as run:
        run.log(0, 1.0)
        run.log(1, 0.5)
    t1 = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    con = gt.open_run(path)
    assert con.sql("SELECT DISTINCT typeof(wall_time) FROM steps").fetchall() == [("TIMESTAMP",)]
    times = [t for (t,) in con.sql("SELECT wall_time FROM steps ORDER BY step").fetchall()]
    assert t0 <= times[0] <= times[1] <= t1  # UTC
    # a run written before (wall_time as ISO text) reads the same way
    chunk = next((path / "steps").glob("part-*.parquet"))
    t = pq.read_table(chunk)
    text = pa.array([w.isoformat(timespec="milliseconds") for w in t.column("wall_time").to_pylist()], pa.string())
    pq.write_table(t.set_column(t.schema.get_field_index("wall_time"), "wall_time", text), chunk)
    assert pa.types.is_string(pq.read_schema(chunk).field("wall_time").type)
    con = gt.open_run(path)
    assert con.sql("SELECT DISTINCT typeof(wall_time) FROM steps").fetchall() == [("TIMESTAMP",)]
    again = [t for (t,) in con.sql("SELECT wall_time FROM steps ORDER BY step").fetchall()]
    assert [abs((a - b).total_seconds()) < 1e-3 for a, b in zip(again, times, strict=True)] == [True, True]


def test_no_empty_staged_folder_is_left_after_close(tmp_path: Path) -> None:
    path = tmp_path / "run"
    with gt.record(path, _model(), chunk_steps=100) as run:
        run.log(0, 1.0)
        run.flush()
        assert (path / ".staged" / "steps").is_dir()  # staged while the run records
    assert not (path / ".staged").exists()


def test_a_query_after_the_recorder_merged_the_staged_files_it_listed(tmp_path: Path) -> None:
    """#26 item 13: the run was listed, the recorder merged its staged steps into a chunk (and removed
    them), then the query read: "Failed to open .staged/steps/step=50.parquet"."""
    path = tmp_path / "run"
    with gt.record(path, _model(), chunk_steps=1000) as run:
        for step in range(4):
            run.log(step, 1.0 + step)
        run.flush()
        con = gt.open_run(path)  # lists the four staged steps
        gt.runs.compact(path)  # what the recorder's writer does every chunk_steps steps
        assert not list((path / ".staged" / "steps").glob("*.parquet"))
        assert con.sql("SELECT count(*), count(DISTINCT step) FROM steps").fetchall() == [(4, 4)]
        n = len(list(_model().parameters()))
        assert con.sql("SELECT count(*) FROM params").fetchall() == [(4 * n,)]


def test_open_run_lists_again_when_a_file_vanishes_between_listing_and_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graphtrace.runs import read

    path = tmp_path / "run"
    with gt.record(path, _model(), chunk_steps=1000) as run:
        for step in range(3):
            run.log(step, 1.0)
        run.flush()
        real = read._chunk_files
        merged: list[str] = []

        def merge_after_listing(part: Any, table: str) -> list[Path]:
            files = real(part, table)
            if table == "params" and not merged:  # the staged files are listed: merge them now
                gt.runs.compact(path)
                merged.append(table)
            return files

        monkeypatch.setattr(read, "_chunk_files", merge_after_listing)
        con = gt.open_run(path)
        assert merged and con.sql("SELECT count(*), count(DISTINCT step) FROM steps").fetchall() == [(3, 3)]
        n = len(list(_model().parameters()))
        assert con.sql("SELECT count(*), count(DISTINCT step) FROM params").fetchall() == [(3 * n, 3)]


# ---- one dataset: pruning, Dask, Spark ---------------------------------------------------------------
class _Counting(pafs.FileSystemHandler):
    """The local file system, counting the files opened for reading."""

    def __init__(self) -> None:
        self.local = pafs.LocalFileSystem()
        self.opened: list[str] = []

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Counting)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return id(self)

    def get_type_name(self) -> str:
        return "counting"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: Any) -> Any:
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector: Any) -> Any:
        return self.local.get_file_info(selector)

    def open_input_file(self, path: str) -> Any:
        self.opened.append(path)
        return self.local.open_input_file(path)

    def open_input_stream(self, path: str) -> Any:
        self.opened.append(path)
        return self.local.open_input_stream(path)

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError("read-only")

    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _refuse
    move = copy_file = open_output_stream = open_append_stream = _refuse


def test_a_query_on_one_rank_opens_only_that_ranks_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from graphtrace.runs import read

    path = tmp_path / "run"
    _ranked(path, world=4, steps=6, chunk_steps=2)
    counting = _Counting()
    monkeypatch.setattr(read, "_FILESYSTEM", pafs.PyFileSystem(counting))
    con = gt.open_run(path)
    # (one DuckDB thread: the counting file system is Python, which DuckDB's scan threads call back into; with
    # several, a fresh-clone CI run hung in this query once, every thread idle)
    con.execute("SET threads = 1")
    counting.opened.clear()
    n = len(list(_model().parameters()))
    assert con.sql("SELECT count(*), sum(data) IS NOT NULL FROM params WHERE rank = 2").fetchall() == [(6 * n, True)]
    opened = sorted(Path(p).relative_to(path).as_posix() for p in counting.opened)
    assert opened == sorted(f"params/rank=2/{f}" for f in _files(path / "params" / "rank=2")), opened
    assert len(opened) == 3  # of 12 params files
    counting.opened.clear()
    assert con.sql("SELECT count(*) FROM params").fetchall() == [(4 * 6 * n,)]
    assert len({Path(p).parent.name for p in counting.opened}) == 4  # unfiltered: every rank's


def test_dask_reads_the_run_with_rank_as_a_partition_column(tmp_path: Path) -> None:
    dd = pytest.importorskip("dask.dataframe")
    path = tmp_path / "run"
    _ranked(path, world=2, steps=5)
    want = gt.open_run(path).sql("SELECT rank, step, sum(data) FROM params GROUP BY ALL ORDER BY ALL").fetchall()
    df = dd.read_parquet(str(path / "params")).compute()
    assert sorted(df["rank"].astype(int).unique()) == [0, 1]
    got = df.assign(rank=df["rank"].astype(int)).groupby(["rank", "step"])["data"].sum()
    assert [(r, s, pytest.approx(v, rel=1e-12)) for (r, s), v in sorted(got.items())] == want
    one = dd.read_parquet(str(path / "steps"), filters=[("rank", "==", 1)]).compute()
    assert sorted(one["loss"]) == [11.0, 12.0, 13.0, 14.0, 15.0]


def _java() -> str | None:
    return shutil.which("java")


def test_spark_reads_the_run_with_rank_as_a_partition_column(tmp_path: Path) -> None:
    pyspark = pytest.importorskip("pyspark")
    if _java() is None:
        pytest.skip("Spark needs a Java runtime (java on PATH)")
    path = tmp_path / "run"
    _ranked(path, world=2, steps=5)
    want = gt.open_run(path).sql("SELECT rank, count(*), sum(loss) FROM steps GROUP BY ALL ORDER BY ALL").fetchall()
    code = textwrap.dedent(
        f"""
        from pyspark.sql import SparkSession
        spark = (SparkSession.builder.master("local[1]").appName("graphtrace-test")
                 .config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1")
                 .config("spark.sql.session.timeZone", "UTC").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        steps = spark.read.parquet({str(path / "steps")!r})
        print("SCHEMA", steps.schema.simpleString())
        for r in steps.groupBy("rank").agg({{"step": "count", "loss": "sum"}}).orderBy("rank").collect():
            print("ROW", r["rank"], r["count(step)"], r["sum(loss)"])
        params = spark.read.parquet({str(path / "params")!r})
        print("PARAMS", params.filter("rank = 1").count())
        spark.stop()
        """
    )
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    schema = next(line for line in lines if line.startswith("SCHEMA"))
    assert "rank:int" in schema and "wall_time:timestamp" in schema and "step:bigint" in schema, schema
    rows = [tuple(float(x) for x in line.split()[1:]) for line in lines if line.startswith("ROW")]
    assert rows == [(float(r), float(n), pytest.approx(s)) for r, n, s in want]
    n = len(list(_model().parameters()))
    assert f"PARAMS {5 * n}" in lines
    assert pyspark.__version__


def test_each_rank_is_its_own_tensorboard_run(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from tensorboard.plugins.hparams import plugin_data_pb2

    path = tmp_path / "job"
    _ranked(path, world=2, steps=3, hparams={"lr": 0.1})
    gt.runs.to_tensorboard(path, tmp_path / "tb")
    assert sorted(p.name for p in (tmp_path / "tb" / "job").iterdir()) == ["rank=0", "rank=1"]
    for k in (0, 1):
        acc = ea.EventAccumulator(str(tmp_path / "tb" / "job" / f"rank={k}"))
        acc.Reload()
        assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(s, 1.0 + s + 10 * k) for s in range(3)]
        start = plugin_data_pb2.HParamsPluginData.FromString(
            acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        )
        assert start.session_start_info.hparams["rank"].number_value == k
        assert start.session_start_info.hparams["lr"].number_value == 0.1


def test_ranks_of_ranks_that_agree_and_of_a_run_of_one_process(tmp_path: Path) -> None:
    path = tmp_path / "job"
    model = _model()
    runs = [gt.record(path, model, rank=k, world_size=3) for k in range(3)]
    for step in range(4):
        for k, run in enumerate(runs):
            if (k, step) == (2, 2):  # rank 2's parameters move on their own: the two others agree
                next(iter(model.parameters())).data += 1.0
            run.log(step, 1.0 + k)
            if (k, step) == (2, 2):
                next(iter(model.parameters())).data -= 1.0
    for run in runs:
        run.close()
    found = gt.runs.ranks(path)
    assert found.first is not None and (found.first["step"], found.first["rank"]) == (2, 2)
    assert found.first["kind"] == "data" and found.first["name"] == next(iter(model.named_parameters()))[0]
    assert found.nonfinite.empty and set(found.layers["rank"]) == {0, 1, 2}
    assert "Rank 2 departs first: at step 2 the data of" in str(found)
    assert str(gt.runs.ranks(path, atol=2.0)) == "The 3 ranks agree at every step."
    single = tmp_path / "single"
    with gt.record(single, model) as run:
        run.log(0, 1.0)
    one = gt.runs.ranks(single)
    assert one.world_size == 1 and one.first is None and "no other rank" in str(one)
    assert "<h2>Ranks</h2>" not in gt.report.report_html(single)
    with pytest.raises(ValueError, match="rtol must be a number >= 0"):
        gt.runs.ranks(path, rtol=float("nan"))


def test_ranks_say_when_a_rank_stopped_early_or_never_logged(tmp_path: Path) -> None:
    model = _model()
    early, silent = tmp_path / "early", tmp_path / "silent"
    runs = [gt.record(early, model, rank=k, world_size=2) for k in range(2)]
    quiet = [gt.record(silent, model, rank=k, world_size=2) for k in range(2)]
    for step in range(6):
        runs[0].log(step, 1.0)
        quiet[0].log(step, 1.0)
        if step < 3:  # rank 1 stops after step 2; in the other run, rank 1 never logs
            runs[1].log(step, 1.0)
    for run in runs + quiet:
        run.close()
    found = gt.runs.ranks(early)
    assert found.first is None
    assert found.coverage.to_dict("records") == [
        {"rank": 0, "steps": 6, "last_step": 5, "missing": 0},
        {"rank": 1, "steps": 3, "last_step": 2, "missing": 3},
    ]
    assert str(found).splitlines() == [
        "The 2 ranks agree at every step they share.",
        "Rank 1 lacks 3 of the steps other ranks recorded (its last is step 2, the run's 5).",
    ]
    assert "agree at every step." not in str(gt.runs.ranks(silent))
    assert "Rank 1 recorded no step (the run's last step is 5)." in str(gt.runs.ranks(silent))
    page = gt.report.report_html(early)
    assert "Rank 1 lacks 3 of the steps" in page and "On rank 0, no parameter" in page


_KILLED_RANK = """
import sys
sys.path.insert(0, {root!r})
import graphtrace as gt
from graphtrace.train import moons_demo
model, X, y = moons_demo(samples=12, hidden=(4,))
run = gt.record({path!r}, model, rank=1, world_size=2, chunk_steps=3)
print("ready", flush=True)
for step in range(100_000):
    run.log(step, 1.0)
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_a_rank_killed_at_any_moment_keeps_each_complete_step_once(tmp_path: Path, seed: int) -> None:
    import random
    import signal
    import time

    path = tmp_path / "run"
    with gt.record(path, _model(), rank=0, world_size=2) as run:  # rank 0 finished before
        run.log(0, 1.0)
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RANK.format(root=str(ROOT), path=str(path))], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 120
    while len(complete_steps(path, 1)) < 10 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    random.seed(seed)
    time.sleep(random.random() * 0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    done = complete_steps(path, 1)
    assert done == list(range(len(done))) and len(done) >= 10
    assert rank_status(path) == {0: "finished", 1: "interrupted"} and status(path) == "interrupted"
    con = gt.open_run(path)
    assert con.sql("SELECT count(*), count(DISTINCT step) FROM steps WHERE rank = 1").fetchall() == [
        (len(done), len(done))
    ]
    n = len(list(_model().parameters()))
    assert con.sql("SELECT count(*) FROM params WHERE rank = 1").fetchall() == [(n * len(done),)]
    with gt.record(path, _model(), rank=1, world_size=2, mode="resume", chunk_steps=3) as run:
        run.log(len(done), 1.0)
    assert complete_steps(path, 1) == list(range(len(done) + 1)) and status(path) == "finished"


def test_a_stray_folder_in_a_ranked_table_is_named(tmp_path: Path) -> None:
    from graphtrace.cli import main

    path = tmp_path / "run"
    _ranked(path, world=2, steps=2)
    stray = path / "params" / "rank=x"
    stray.mkdir()
    with pytest.raises(ValueError, match=r"rank=x: not part of a graphtrace run"):
        gt.open_run(path)
    stray.rmdir()
    (path / "params" / "rank=1" / "notes.txt").write_text("?")
    with pytest.raises(ValueError, match=r"notes.txt: not part of a graphtrace run"):
        gt.open_run(path)
    (path / "params" / "rank=1" / "notes.txt").unlink()
    (path / "ranks" / "rank=1.json").write_text("{not json")
    assert main(["report", str(path)]) == 2
    with pytest.raises(ValueError, match=r"rank=1.json: not a readable graphtrace rank 1 manifest"):
        gt.runs.status(path)


def _two_ranks(
    path: Path,
    *,
    skip: tuple[int, int] | None = None,
    jolt: tuple[int, int] | None = None,
    nan_loss: tuple[int, int] | None = None,
) -> None:
    """Two ranks, each with its own copy of one model, taking the same SGD-like step every step."""
    models = []
    for _ in range(2):
        import random

        random.seed(3)
        models.append(gt.nn.MLP(1, [2]))
    runs = [gt.record(path, m, rank=k, world_size=2) for k, m in enumerate(models)]
    for step in range(4):
        for k, (m, run) in enumerate(zip(models, runs, strict=True)):
            for p in m.parameters():
                if (k, step) != skip:  # (rank, step) that skips its optimizer step
                    p.data -= 0.1
                if (k, step) == jolt:
                    p.data += 1.0
            run.log(step, float("nan") if (k, step) == nan_loss else 1.0)
    for run in runs:
        run.close()


def test_with_two_ranks_the_broken_one_is_named_also_when_it_is_rank_0(tmp_path: Path) -> None:
    _two_ranks(tmp_path / "loss", nan_loss=(0, 2))
    found = gt.runs.ranks(tmp_path / "loss")
    assert found.first is not None and (found.first["rank"], found.first["step"], found.first["kind"]) == (0, 2, "loss")
    assert str(found).startswith("Rank 0 departs first: at step 2 its loss is nan (the others': 1.0).")
    _two_ranks(tmp_path / "skip", skip=(0, 2))
    found = gt.runs.ranks(tmp_path / "skip")
    assert found.first is not None and (found.first["rank"], found.first["step"]) == (0, 2), found.first
    assert "(its parameters did not change at that step: no optimizer step?)" in str(found)
    _two_ranks(tmp_path / "skip1", skip=(1, 2))
    found = gt.runs.ranks(tmp_path / "skip1")
    assert found.first is not None and (found.first["rank"], found.first["step"]) == (1, 2), found.first
    _two_ranks(tmp_path / "jolt", jolt=(0, 2))  # one rank's values moved: nothing says which one is wrong
    said = str(gt.runs.ranks(tmp_path / "jolt"))
    assert said.startswith("Ranks 0 and 1 part at step 2: the data of ") and "do not tell which one" in said, said
