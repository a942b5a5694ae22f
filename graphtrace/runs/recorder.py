"""The recorder: :func:`record` and :class:`Run`, whose writer thread writes each logged step in order."""

from __future__ import annotations

import atexit
import collections
import datetime
import json
import math
import operator
import os
import queue
import shutil
import socket
import sys
import tempfile
import threading
import time
import weakref
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .._files import atomic_write
from .._real import as_float
from ..analysis.scope_table import scope_columns
from ..snapshot import TraceCopy
from ..value import Value
from .layout import (
    _ANOMALIES_SCHEMA,
    _LOCK,
    _RANK_DIR,
    _RANKS,
    _SCOPES_SCHEMA,
    _TABLES,
    CHUNK_STEPS,
    FORMAT,
    FORMAT_VERSION,
    SINGLE_FORMAT,
    WALL_TIME,
    Part,
    _compact,
    _encode,
    _load_json,
    _lock_free,
    _own_folders,
    _read_manifest,
    _remove_empty_staged,
    _remove_orphans,
    _remove_part,
    _remove_temporaries,
    _run_manifest,
    _RunLock,
    _staged_steps,
    _steps_on_disk,
    _write_table,
)
from .rows import Rows, to_table

_MODES = ("new", "resume", "overwrite")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


#: The largest step: the ``step`` column is a BIGINT (int64) in every table.
MAX_STEP = 2**63 - 1


def _check_step(step: Any) -> int:
    """``step`` as an int (numpy integers too), or ValueError before anything is written."""
    if isinstance(step, bool):
        raise ValueError(f"log: step must be an int >= 0, got {step!r}")
    try:
        k = operator.index(step)
    except TypeError:
        raise ValueError(f"log: step must be an int >= 0, got {step!r}") from None
    if not 0 <= k <= MAX_STEP:
        raise ValueError(f"log: step must be an int from 0 to 2**63 - 1 (the step column is int64), got {k}")
    return k


def _rank_and_world(rank: Any, world_size: Any) -> tuple[int, int]:
    """This recorder's (rank, world size): as given, else the initialised ``torch.distributed``
    process group's, else ``torchrun``'s environment (``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``
    set), else (0, 1). ValueError before anything is written if they do not make sense."""
    source = "record"
    if rank is None and world_size is None:
        torch = sys.modules.get("torch")  # never imported here: a torch job has imported it
        dist = getattr(torch, "distributed", None) if torch is not None else None
        if dist is not None and dist.is_available() and dist.is_initialized():
            return int(dist.get_rank()), int(dist.get_world_size())
        env = os.environ
        if not all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
            return 0, 1
        source = "record: the environment's RANK / WORLD_SIZE (torchrun)"
        try:
            rank, world_size = int(env["RANK"]), int(env["WORLD_SIZE"])
        except ValueError:
            raise ValueError(f"{source} must be integers, got {env['RANK']!r} / {env['WORLD_SIZE']!r}") from None
    if rank is None or world_size is None:
        raise ValueError(f"record: give both rank= and world_size= (or neither), got {rank!r} and {world_size!r}")
    for name, v in (("rank", rank), ("world_size", world_size)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{source}: {name} must be an int, got {v!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"{source}: expected 0 <= rank < world_size, got rank {rank} of world_size {world_size}")
    return rank, world_size


#: The steps of one recording session whose anomaly origins are written (a diverged run's every later
#: step is non-finite: the first ones tell where it started).
MAX_ANOMALY_STEPS = 100


def _origins(traced: Any) -> pa.Table:
    """The ``anomalies`` rows of a trace with non-finite values: its forward and backward origins
    (:func:`graphtrace.analysis.anomalies`), in topological order."""
    from ..analysis import anomalies

    df = anomalies(traced)
    df = df[df["forward_origin"] | df["backward_origin"]]
    cols = {
        "node_id": [operator.index(n) if hasattr(n, "__index__") else -1 for n in df["node_id"]],
        **{c: [str(v) for v in df[c]] for c in ("label", "op", "scope")},
        **{c: df[c].astype("float64").tolist() for c in ("data", "grad")},
        **{c: df[c].astype(bool).tolist() for c in ("forward_origin", "backward_origin")},
        "cause": [str(v) for v in df["cause"]],
    }
    return pa.Table.from_arrays([pa.array(cols[f.name], f.type) for f in _ANOMALIES_SCHEMA], schema=_ANOMALIES_SCHEMA)


def _check_every(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"record: {name} must be an int >= 0 (0: never), got {value!r}")
    return value


def _write_snapshot(path: Path, copy: TraceCopy, last: dict[str, Any]) -> None:
    """(In the writer thread.) Write a step's trace as ``gt.save``'s Parquet file ``path``. ``last``:
    the run's previous snapshot (its columns and Arrow string columns), whose names and string
    columns a step like it takes again instead of deriving them."""
    from ..io import parquet_table

    cols = copy.columns(like=last.get("columns"))
    table = parquet_table(cols, last.setdefault("arrow", {}))
    last["columns"] = cols
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: pq.write_table(table, fh), binary=True)


#: Seconds a logged step may wait in the writer's memory before its rows are written: the steps of
#: the last second or so are what a SIGKILL of the recorder can lose (each step on disk stays whole).
FLUSH_SECONDS = 1.0


def _write_batch(part: Part, first: int, rows: dict[str, list[Rows | pa.Table]]) -> None:
    """(In the writer thread.) The kept rows of several steps as one staged file per table,
    ``.staged/TABLE/step=FIRST.parquet``; the steps table last (its rows complete the steps)."""
    for name in ("params", "scopes", "anomalies", "steps"):
        tables = rows.get(name)
        if tables:
            t = to_table(tables)
            _write_table(part.staged(name) / f"step={first}.parquet", _encode(t))


class _Writer:
    """One thread writing a run's files, in the order they are queued; at most ``depth`` steps wait
    (``put`` blocks beyond that, so a slow disk slows the loop instead of filling memory).

    A job is a list of items: ``("rows", step, make)`` (``make()`` gives the step's ``(table,
    rows)`` pairs, rows a :class:`~graphtrace.runs.rows.Rows` or a ``pa.Table``), ``("call", f)``
    (a snapshot's file), ``("barrier", f)`` (the rows kept so far are written first, then ``f()``
    runs: a compaction) or ``(path, bytes)`` (a format-1 file).
    Rows are kept in memory and written as one staged file per table for several steps (``write``,
    the steps table last: it completes them), at least every :data:`FLUSH_SECONDS` and before every
    barrier; a step's files are written once per batch instead of once per step.
    """

    def __init__(self, write: Any = None, depth: int = 8) -> None:
        self._jobs: queue.Queue[list[Any] | None] = queue.Queue(depth)
        self.error: BaseException | None = None  # a failure not reported yet (the Run clears it)
        self.failed = False  # a write failed: nothing more is written, whatever was reported
        self._write = write  # write(first_step, {table: [pa.Table, ...]}): one batch's staged files
        self._rows: dict[str, list[Rows | pa.Table]] = {}
        self._first: int | None = None  # the first step of the rows kept (names the batch's files)
        self._since = 0.0  # when the first of them came
        self._thread = threading.Thread(target=self._work, name="graphtrace-run-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # the interpreter's exit writes what is queued

    def _work(self) -> None:
        while True:
            try:
                wait = None if self._first is None else max(self._since + FLUSH_SECONDS - time.monotonic(), 0.0)
                job = self._jobs.get(timeout=wait)
            except queue.Empty:  # rows kept for FLUSH_SECONDS: write them
                self._guarded(self._write_rows)
                continue
            try:
                if job is None:
                    self._guarded(self._write_rows)
                    return
                self._guarded(lambda job=job: self._run(job))
            finally:
                self._jobs.task_done()

    def _guarded(self, work: Any) -> None:
        if self.failed:  # after a failure nothing more is written
            self._rows, self._first = {}, None
            return
        try:
            work()
        except BaseException as exc:  # handed to the training thread
            self.failed = True
            self.error = exc
            self._rows, self._first = {}, None

    def _run(self, job: list[Any]) -> None:
        for item in job:
            if item[0] == "rows":
                _, step, make = item
                if self._first is None:
                    self._first, self._since = step, time.monotonic()
                for table, rows in make():
                    self._rows.setdefault(table, []).append(rows)
            elif item[0] == "call":
                item[1]()
            elif item[0] == "barrier":
                self._write_rows()
                if item[1] is not None:
                    item[1]()
            else:
                _write_table(*item)
        if self._first is not None and time.monotonic() - self._since >= FLUSH_SECONDS:
            self._write_rows()

    def _write_rows(self) -> None:
        if self._first is not None:
            rows, first = self._rows, self._first
            self._rows, self._first = {}, None
            self._write(first, rows)

    def put(self, job: list[Any]) -> None:
        self._jobs.put(job)

    def flush(self) -> None:
        """Wait until everything queued is written."""
        self._jobs.put([("barrier", None)])
        self._jobs.join()

    def close(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            # (an unclosed run's finalizer may run in this very thread, when the garbage collector runs
            # there: it cannot wait for itself; the thread ends after what is queued)
            if threading.current_thread() is not self._thread:
                self._thread.join()
        atexit.unregister(self.close)


class Run:
    """A training run being recorded; made by :func:`record` (see there)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        model: Any,
        *,
        hparams: dict[str, Any] | None = None,
        scopes_every: int = 1,
        snapshot_every: int = 0,
        mode: str = "new",
        allow_model_change: bool = False,
        chunk_steps: int = CHUNK_STEPS,
        rank: int | None = None,
        world_size: int | None = None,
        every: int = 1,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"record: path must be a str or path, got {type(path).__name__}: {path!r}")
        if not str(path):
            raise ValueError("record: path is empty; name the run's directory (e.g. 'runs/demo')")
        if mode not in _MODES:
            raise ValueError(f"record: mode must be one of {_MODES}, got {mode!r}")
        named = getattr(model, "named_parameters", None)
        if not callable(named):
            raise TypeError(
                f"record: model must be a graphtrace.nn.Module or a torch.nn.Module, got {type(model).__name__}"
            )
        self._torch: Any = None  # a torch model's parameter tensors (graphtrace.pytorch.TorchParams)
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(model, torch.nn.Module):
            from ..pytorch import TorchParams

            self._torch = TorchParams(model)
        hp = {} if hparams is None else hparams
        if not isinstance(hp, dict) or not all(isinstance(k, str) for k in hp):
            raise TypeError(f"record: hparams must be a dict with str keys, got {hparams!r}")
        try:
            hp_json = json.loads(json.dumps(hp, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"record: hparams must be JSON numbers, strings, lists and dicts ({exc})") from None
        if isinstance(chunk_steps, bool) or not isinstance(chunk_steps, int) or chunk_steps < 1:
            raise ValueError(f"record: chunk_steps must be an int >= 1, got {chunk_steps!r}")
        self.chunk_steps = chunk_steps
        self.rank, self.world_size = _rank_and_world(rank, world_size)
        self.scopes_every = _check_every("scopes_every", scopes_every)
        self.every = _check_every("every", every)
        self.snapshot_every = _check_every("snapshot_every", snapshot_every)
        self.path = Path(path)
        self.model = model
        self._params: list[tuple[str, Value]] = [] if self._torch is not None else list(named())
        self._last_data = [p.data for _, p in self._params]
        self._closed = False
        self._pid = os.getpid()  # the process that may write (a forked child may not: see _check_process)
        p = self.path
        if p.exists() and not p.is_dir():
            raise NotADirectoryError(f"record: {p} exists and is not a directory")
        if mode == "overwrite" and p.is_symlink():
            raise ValueError(
                f"record: {p} is a symbolic link (to {os.readlink(p)}); mode='overwrite' does not delete "
                "through a link: pass the run directory itself"
            )
        shapes = self._shapes()
        if self.world_size > 1:
            self._part = Part(p, self.rank)
            self._open_rank(mode, model, hp_json, shapes, allow_model_change)
        else:
            self._part = Part(p)
            self._open_single(mode, model, hp_json, shapes, allow_model_change)
        # format 2 stages each step in hidden files and compacts them; a resumed format-1 run keeps
        # its one folder per step
        self._compacting = self._part.rank is not None or self.manifest.get("format_version", 1) >= 2
        self._anomaly_steps = 0  # steps of this session whose anomaly origins were written
        self._last_snapshot: dict[str, Any] = {}  # the writer thread's previous snapshot (see _write_snapshot)
        self._chunked: dict[str, set[int]] | None = None  # the steps in each table's chunks (known after a merge)
        self._staged = len(_staged_steps(self._part)) if self._compacting else 0
        self._write_manifest()
        self._writer = _Writer(partial(_write_batch, self._part))  # (not a method: no cycle)
        self._graphs_checked: weakref.WeakSet[Any] = weakref.WeakSet()  # trace graphs given to log, checked
        # values found wrong by the writer thread (an accuracy tensor outside [0, 1]): raised by the next call
        self._late: collections.deque[str] = collections.deque()
        self._log_lock = threading.Lock()
        weakref.finalize(self, self._writer.close)  # an unclosed run still writes what it logged
        weakref.finalize(self, self._lock.release)

    def _open_single(
        self, mode: str, model: Any, hp_json: Any, shapes: dict[str, list[int]], allow_model_change: bool
    ) -> None:
        """Open (make, resume or replace) a run of one process, and lock it."""
        p = self.path
        exists = p.is_dir() and any(c.name != _LOCK for c in p.iterdir())
        if mode == "new" and exists:
            raise FileExistsError(
                f"record: {p} already holds files; pass mode='resume' to add steps to the run there "
                "or mode='overwrite' to replace it"
            )
        if mode != "new" and exists:
            before = _run_manifest(p)  # only ever resume or delete a graphtrace run
            if before["format_version"] >= 3:
                ranks = int(before["world_size"])
                if mode == "resume":
                    raise ValueError(
                        f"record: {p} was recorded by {ranks} processes (ranks): resume it from each rank of a "
                        "torch.distributed job, or pass rank= and world_size="
                    )
                held = [k for k in range(ranks) if not _lock_free(Part(p, k))]
                if held:
                    raise RuntimeError(f"record: rank {held[0]} of {p} is being recorded; it cannot be overwritten")
        p.mkdir(parents=True, exist_ok=True)
        self._lock = _RunLock(self._part)  # one recorder per run, in any process; released by close (or a crash)
        try:
            _remove_temporaries(self._part)  # what a killed writer left: nobody else writes here now
            _remove_orphans(self._part)
            if mode == "resume":
                self.manifest = _read_manifest(p)
                if self._check_same_model(self.manifest, shapes, allow_model_change):
                    self.manifest.setdefault("model_changes", []).append({"at": _now(), "parameters": list(shapes)})
                    self.manifest.update(parameters=list(shapes), shapes=shapes)
                self._done = set(_steps_on_disk(self._part))
                resumes = self.manifest.setdefault("resumes", [])
                resumes.append({"at": _now(), "hparams": hp_json})
                self.manifest.update(status="running", finished=None)
            else:
                if mode == "overwrite" and exists:
                    for child in p.iterdir():
                        if child.name != _LOCK:
                            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
                self._done = set()
                self.manifest = {
                    **self._run_fields(model, hp_json, shapes, SINGLE_FORMAT),
                    **self._rank_fields(hp_json),
                }
        except BaseException:
            self._lock.release()
            raise

    def _open_rank(
        self, mode: str, model: Any, hp_json: Any, shapes: dict[str, list[int]], allow_model_change: bool
    ) -> None:
        """Open rank ``self.rank``'s part of a run of ``self.world_size`` processes (format 3), and
        lock that rank only. The run's ``manifest.json`` is created by the first rank to come (an
        atomic link: exactly one wins) and checked by the others; each rank writes its own manifest."""
        p, part, rank, world = self.path, self._part, self.rank, self.world_size
        ours = self._run_fields(model, hp_json, shapes, FORMAT_VERSION)
        before = self._joinable(mode, shapes, allow_model_change)
        p.mkdir(parents=True, exist_ok=True)
        self._lock = _RunLock(part)  # this rank's lock only: ranks never wait on each other
        try:
            mine = part.manifest.is_file() or any(d.is_dir() and any(d.iterdir()) for d in _own_folders(part))
            if mode == "new" and mine:
                raise FileExistsError(
                    f"record: rank {rank} of {p} already holds steps; pass mode='resume' to add steps to it "
                    "or mode='overwrite' to replace it"
                )
            _remove_temporaries(part)  # what a killed writer of this rank left: nobody else writes them
            _remove_orphans(part)
            if before is None and not _create(p / "manifest.json", ours):  # another rank was first: it must agree
                before = self._joinable(mode, shapes, allow_model_change)
            # a replaced manifest has the same content from every rank of the job: whichever replaces it
            # last, it reads the same
            if before is not None and mode == "overwrite":
                _write_json(p / "manifest.json", ours)
            elif before is not None and before.get("shapes") != shapes:  # resume, allow_model_change=True
                _write_json(p / "manifest.json", {**before, "parameters": list(shapes), "shapes": shapes})
            self.manifest = self._rank_fields(hp_json)
            if mode == "resume" and mine:
                if part.manifest.is_file():
                    self.manifest = {**_load_json(part.manifest, f"rank {rank} manifest"), "rank": rank}
                self._done = set(_steps_on_disk(part))
                self.manifest.setdefault("resumes", []).append({"at": _now(), "hparams": hp_json})
                self.manifest.update(status="running", finished=None, host=ours["host"], pid=os.getpid())
                if before is not None and before.get("shapes") != shapes:
                    self.manifest.setdefault("model_changes", []).append({"at": _now(), "parameters": list(shapes)})
            else:
                if mode == "overwrite":
                    _remove_part(part)
                    if rank == 0:
                        self._remove_ranks_beyond(world)
                self._done = set()
        except BaseException:
            self._lock.release()
            raise

    def _joinable(self, mode: str, shapes: dict[str, list[int]], allow: bool) -> dict[str, Any] | None:
        """The run manifest this rank joins (None: none yet), or the error of a run it cannot join
        (raised before anything is written)."""
        p, world = self.path, self.world_size
        if not (p / "manifest.json").is_file():
            # a folder with only "ranks" in it: a run another rank is starting
            foreign = (
                [c.name for c in p.iterdir() if not c.name.startswith(".") and c.name != _RANKS] if p.is_dir() else []
            )
            if foreign and mode == "new":
                raise FileExistsError(f"record: {p} already holds files ({foreign[0]}, ...) and no graphtrace run")
            if foreign or mode == "resume":
                _run_manifest(p)  # the ValueError naming what is missing
            return None
        before = _run_manifest(p)
        if before["format_version"] < 3:
            raise (FileExistsError if mode == "new" else ValueError)(
                f"record: {p} holds a run recorded by one process (format {before['format_version']}); "
                f"rank {self.rank} of {world} records into another directory, or delete that run first"
            )
        if mode == "overwrite":
            return before
        if before["world_size"] != world:
            raise (FileExistsError if mode == "new" else ValueError)(
                f"record: {p} holds a run of world_size {before['world_size']}, this job has {world}: "
                "pass mode='overwrite' to replace it, or record into another directory"
            )
        if before.get("shapes") != shapes:
            if mode == "new":
                raise FileExistsError(
                    f"record: {p} holds a run of another model; pass mode='overwrite' to replace it, or record "
                    "into another directory"
                )
            self._check_same_model(before, shapes, allow)
        return before

    def _remove_ranks_beyond(self, world: int) -> None:
        """(Rank 0, overwriting.) Delete the partitions of ranks the new world does not have."""
        base = self.path / _RANKS
        found = {int(m.group(1)) for f in base.iterdir() if (m := _RANK_DIR.fullmatch(f.name.split(".")[0]))}
        for table in _TABLES:
            folder = self.path / table
            for d in folder.iterdir() if folder.is_dir() else ():
                if m := _RANK_DIR.fullmatch(d.name):
                    found.add(int(m.group(1)))
        for k in sorted(k for k in found if k >= world):
            old = Part(self.path, k)
            if _lock_free(old):
                _remove_part(old)

    def _run_fields(self, model: Any, hp_json: Any, shapes: dict[str, list[int]], version: int) -> dict[str, Any]:
        """What the run's manifest holds: the same for every rank of a job."""
        fields: dict[str, Any] = {
            "format": FORMAT,
            "format_version": version,
            "graphtrace": _version(),
            "model": repr(model),
            "kind": "torch" if self._torch is not None else "graphtrace",
            "parameters": list(shapes),
            "shapes": shapes,
            "hparams": hp_json,
            "world_size": self.world_size,
        }
        if version >= 3:
            fields.update(created=_now(), host=socket.gethostname())
        return fields

    def _rank_fields(self, hp_json: Any) -> dict[str, Any]:
        """What this recorder's own manifest holds (format 3: the rank's; format 2: the run's)."""
        fields: dict[str, Any] = {
            "chunk_steps": self.chunk_steps,
            "started": _now(),
            "finished": None,
            "status": "running",
        }
        if self.world_size > 1:
            fields = {"rank": self.rank, "hparams": hp_json, **fields, "host": socket.gethostname(), "pid": os.getpid()}
        return fields

    def _shapes(self) -> dict[str, list[int]]:
        """Each parameter's name and shape (``[]`` for a graphtrace scalar)."""
        if self._torch is not None:
            return {n: list(p.shape) for n, p in self._torch.named}
        return {n: [] for n, _ in self._params}

    def _check_same_model(self, manifest: dict[str, Any], shapes: dict[str, list[int]], allow: bool) -> bool:
        """Whether the model differs from the run's (allowed); ValueError if it differs, not allowed."""
        before = manifest.get("shapes") or {n: [] for n in manifest.get("parameters", [])}
        if before == shapes:
            return False
        if not allow:
            gone = [n for n in before if n not in shapes]
            new = [n for n in shapes if n not in before]
            reshaped = [n for n in shapes if n in before and before[n] != shapes[n]]
            raise ValueError(
                f"record: resuming {self.path} with a different model ({len(shapes)} parameters; the run has "
                f"{len(before)}; missing {gone[:3]}, new {new[:3]}, reshaped {reshaped[:3]}): the tables would mix "
                "two models. Pass allow_model_change=True to record it anyway, or record a new run"
            )
        return True

    def _write_manifest(self) -> None:
        _write_json(self._part.manifest, self.manifest)

    def log(
        self,
        step: int,
        loss: Value | float,
        *,
        accuracy: float | None = None,
        learning_rate: float | None = None,
        graph: Any = None,
    ) -> None:
        """Record step ``step``: call it after the optimizer's update of that step.

        Writes the step's parameters (``data`` after the update, the step's ``grad``, and ``update``:
        the change of ``data`` since the previous logged step, i.e. the update actually applied), the
        ``by_scope`` table and the whole trace when due, then the ``steps`` row that completes it.

        For a torch model, ``loss`` is its loss tensor (or a number), each parameter tensor is one
        row (see :class:`graphtrace.pytorch.TorchParams`), and the ``scopes`` table is written from
        ``graph`` (the step's :func:`graphtrace.pytorch.trace` graph) when given. The writer thread reads
        ``graph`` after ``log`` returns (the training thread does not wait for its tables): a graph
        changed after ``log`` shows the change in that step's rows, so leave it as the trace made it.

        A torch run's ``loss``, ``accuracy`` and ``learning_rate`` may be one-element tensors on any
        device: they are copied there and read in the writer thread, so ``log`` never waits for the
        device. An accuracy tensor outside [0, 1] is known only then: that step is recorded without
        its accuracy, and a later call raises the ValueError naming it (``log`` once the writer has
        read it, after recording its own step; ``flush`` and ``close`` always).

        Raises
        ------
        ValueError
            If ``step`` is not an int >= 0 or was recorded already (nothing is ever rewritten),
            ``accuracy`` / ``learning_rate`` is not a real number, ``accuracy`` is outside [0, 1],
            ``graph`` is given with a Value loss (which carries its own graph) or to the run of a
            graphtrace model, or ``graph`` is the trace of another model (a parameter the recorded
            model does not have, or of another shape).
        TypeError
            If ``loss`` is neither a Value nor a real number (nor, for a torch model, a one-element
            tensor), ``accuracy`` / ``learning_rate`` is a tensor that is not one real number (sparse,
            nested, complex, on ``meta``, several elements), or ``graph`` is not a
            :func:`graphtrace.pytorch.trace` graph.
        RuntimeError
            If called in a process forked from the one that opened the run.
        """
        with self._log_lock:  # (one call at a time: two threads logging one step record it once)
            self._check_process("log")
            if self._closed:
                raise ValueError(f"log: the run at {self.path} is closed")
            self._raise_write_error()
            step = _check_step(step)
            if step in self._done:
                raise ValueError(f"log: step {step} is already recorded in {self.path}; nothing is rewritten")
            # a torch tensor (the loss, an accuracy, a learning rate) comes to the host in the writer thread
            on_device: dict[int, Any] = {}  # position in the steps row -> the tensor copied on its device
            loss_tensor = self._tensor_number("loss", loss)
            if loss_tensor is not None:
                on_device[0] = loss_tensor
            loss_value = (
                math.nan if loss_tensor is not None else loss.data if isinstance(loss, Value) else as_float(loss)
            )
            if loss_value is None:
                raise TypeError(f"log: loss must be a Value or a real number, got {type(loss).__name__}: {loss!r}")
            extra = {}
            for i, (name, v) in enumerate((("accuracy", accuracy), ("learning_rate", learning_rate)), start=1):
                t = self._tensor_number(name, v)
                if t is not None:
                    on_device[i] = t
                f = math.nan if v is None or t is not None else as_float(v)
                if f is None:
                    raise ValueError(f"log: {name} must be a real number, got {v!r}")
                extra[name] = f
            if not (math.isnan(extra["accuracy"]) or 0.0 <= extra["accuracy"] <= 1.0):
                raise ValueError(
                    f"log: accuracy is a share from 0 to 1, got {accuracy!r} (a percentage: divide it by 100)"
                )
            if graph is not None:
                import networkx as nx

                if isinstance(loss, Value):
                    raise ValueError(
                        "log: graph= is a torch model's trace (gt.pytorch.trace(...).graph); a Value loss "
                        "carries its own graph: leave graph out"
                    )
                if not isinstance(graph, nx.DiGraph) or graph.graph.get("kind") != "torch":
                    raise TypeError(
                        "log: graph must be the graph of gt.pytorch.trace (tr.graph, a networkx.DiGraph "
                        f"with graph['kind'] == 'torch'), got {type(graph).__name__}"
                    )
                self._check_model(graph)
            t0 = time.perf_counter()
            data = [p.data for _, p in self._params]
            job: list[Any] = []

            def rows(make: Any) -> None:
                """``make()``: the step's ``(table, rows)`` pairs, made in the writer thread."""
                if self._compacting:  # format 2 and 3: kept, then staged with the next batch; the step is a column
                    job.append(("rows", step, partial(self._with_step, make, step)))
                else:  # a resumed format-1 run: a folder per step, written at once
                    job.append(("call", partial(self._write_folders, make, step)))

            if self._torch is not None:
                # the training thread copies the parameters on their device; the writer thread
                # summarises, encodes and writes them
                if self.every and step % self.every == 0:
                    rows(partial(self._params_rows, self._capture()))
            elif self.every and step % self.every == 0:
                params = pa.table(
                    {
                        "name": pa.array([n for n, _ in self._params], pa.string()),
                        "scope": pa.array([p.scope for _, p in self._params], pa.string()),
                        "data": pa.array(data, pa.float64()),
                        "grad": pa.array([p.grad for _, p in self._params], pa.float64()),
                        "update": pa.array([d - b for d, b in zip(data, self._last_data, strict=True)], pa.float64()),
                    }
                )
                rows(partial(list, [("params", params)]))
                self._last_data = data
            traced = loss if isinstance(loss, Value) else graph
            if (
                traced is not None
                and not isinstance(loss, Value)
                and self.scopes_every
                and step % self.scopes_every == 0
            ):
                # a torch trace's graph does not change: its tables are made in the writer thread
                rows(partial(self._scopes_rows, traced))
            elif traced is not None and self.scopes_every and step % self.scopes_every == 0:
                cols = scope_columns(traced)
                table = pa.Table.from_arrays(
                    [pa.array(cols[f.name], f.type) for f in _SCOPES_SCHEMA], schema=_SCOPES_SCHEMA
                )
                made = [("scopes", table)]
                if self._anomaly_steps < MAX_ANOMALY_STEPS and any(cols["nonfinite"]):
                    self._anomaly_steps += 1
                    made.append(("anomalies", _origins(traced)))
                rows(partial(list, made))
            if isinstance(loss, Value) and self.snapshot_every and step % self.snapshot_every == 0:
                # copied here (the next step changes the store), named and encoded by the writer thread
                target = self._part.snapshot(step)
                job.append(("call", partial(_write_snapshot, target, TraceCopy(loss), self._last_snapshot)))
            row = (loss_value, extra["accuracy"], extra["learning_rate"], datetime.datetime.now(datetime.UTC))
            if on_device:
                rows(partial(self._steps_rows, on_device, row, t0, step))
            else:
                rows(partial(list, [("steps", _steps_table(row, time.perf_counter() - t0))]))
            if self._compacting:
                self._staged += 1
                if self._staged >= self.chunk_steps:
                    job.append(("barrier", self._compact))
                    self._staged = 0
            self._writer.put(job)
            self._done.add(step)
            self._raise_late(f"step {step} (this call) was recorded")

    def _capture(self) -> Any:
        """A torch model's parameters copied for the writer; a writer that failed meanwhile (it gives no
        slot back) is raised here, as by the next call, instead of waiting for it forever."""
        from ..pytorch.record import CaptureStopped

        try:
            return self._torch.capture(stop=lambda: self._writer.failed)
        except CaptureStopped:
            self._raise_write_error()
            raise

    def _with_step(self, make: Any, step: int) -> list[tuple[str, Rows | pa.Table]]:
        """(In the writer thread.) ``make()``'s rows with the ``step`` column first."""
        return [
            (
                name,
                t.with_step(step)
                if isinstance(t, Rows)
                else t.add_column(0, "step", pa.array([step] * t.num_rows, pa.int64())),
            )
            for name, t in make()
        ]

    def _write_folders(self, make: Any, step: int) -> None:
        """(In the writer thread.) A format-1 run's step: a ``TABLE/step=K/part.parquet`` per table."""
        for name, t in make():
            _write_table(self.path / name / f"step={step}" / "part.parquet", _encode(to_table([t])))

    def _params_rows(self, capture: Any) -> list[tuple[str, Rows]]:
        """(In the writer thread.) Summarise a torch model's parameters as copied at ``log``."""
        from ..pytorch.record import SCHEMA

        return [("params", Rows(SCHEMA, self._torch.columns(capture)))]

    def _scopes_rows(self, graph: Any) -> list[tuple[str, pa.Table]]:
        """(In the writer thread.) A torch trace's scope table, and its anomaly origins if any."""
        cols = scope_columns(graph)
        table = pa.Table.from_arrays([pa.array(cols[f.name], f.type) for f in _SCOPES_SCHEMA], schema=_SCOPES_SCHEMA)
        out = [("scopes", table)]
        if self._anomaly_steps < MAX_ANOMALY_STEPS and any(cols["nonfinite"]):
            self._anomaly_steps += 1
            out.append(("anomalies", _origins(graph)))
        return out

    def _steps_rows(self, late: dict[int, Any], row: tuple[Any, ...], t0: float, step: int) -> list[tuple[str, Rows]]:
        """(In the writer thread.) The steps row of a torch run, whose tensors (``late``: the loss, an
        accuracy, a learning rate, by position in ``row``) come to the host here. An accuracy outside
        [0, 1], known only now, is left out of the row (NaN: not logged) and raised by the next call."""
        seconds = time.perf_counter() - t0  # (includes the wait for the writer: an upper bound)
        values = list(row)
        for i, t in late.items():
            values[i] = float(t)
        if 1 in late and not (math.isnan(values[1]) or 0.0 <= values[1] <= 1.0):
            self._late.append(f"{values[1]!r} at step {step}")  # (deque.append: safe across threads)
            values[1] = math.nan
        return [("steps", _steps_table(tuple(values), seconds))]

    def _check_model(self, graph: Any) -> None:
        """Refuse the trace of another model: each of its parameters must be one of the run's, by
        name, module scope and shape (a trace of ``model=None`` names none: it cannot be told).
        Checked once per graph."""
        if self._torch is None:
            raise ValueError(
                "log: graph= is a torch model's trace (gt.pytorch.trace(...).graph), and this run records a "
                "graphtrace model: give its loss Value (it carries its own graph) and leave graph out"
            )
        if graph in self._graphs_checked:
            return
        from ..pytorch.tensors import shape_text

        ours = {
            (name, scope): shape_text(p.shape)
            for (name, p), scope in zip(self._torch.named, self._torch.scopes, strict=True)
        }
        for _, d in graph.nodes(data=True):
            if d.get("role") != "parameter":
                continue
            shape = ours.get((d.get("label"), d.get("scope")))
            if shape != d.get("shape"):
                what = "is not one of the recorded model's" if shape is None else f"is {d.get('shape')}, not {shape}"
                raise ValueError(
                    f"log: graph is a trace of another model: its parameter {d.get('label')!r} (in "
                    f"{d.get('scope')!r}) {what}; trace the model given to gt.record (gt.pytorch.trace(model))"
                )
        self._graphs_checked.add(graph)

    def _tensor_number(self, name: str, v: Any) -> Any:
        """``v`` copied on its device if it is a torch tensor of a torch run (None otherwise): its value
        is read in the writer thread, so that ``log`` never waits for the device."""
        if self._torch is None:
            return None
        import torch  # (a torch run: torch is imported already)

        if not isinstance(v, torch.Tensor):
            return None
        if v.is_nested or v.layout != torch.strided:
            kind = "nested" if v.is_nested else str(v.layout).removeprefix("torch.")
            raise TypeError(f"log: {name} must be one number, got a {kind} tensor (give a dense tensor, or a float)")
        numel = v.numel()
        if numel != 1:
            shape = "×".join(str(d) for d in v.shape)
            hint = "; log the value the optimizer minimises, e.g. loss.mean()" if name == "loss" else ""
            raise TypeError(f"log: {name} must be one number, got a tensor of shape {shape} ({numel} elements){hint}")
        if v.is_complex() or v.device.type == "meta":
            raise TypeError(f"log: {name} must be a real number, got a {v.dtype} tensor on {v.device}")
        return v.detach().clone()

    def _compact(self) -> None:
        """(In the writer thread.) Merge the staged complete steps into one file per table."""
        self._chunked = _compact(self._part, self._chunked)

    def _raise_late(self, after: str = "") -> None:
        """Raise (once) the accuracy tensors the writer found outside [0, 1], every one since the last
        call: their steps were recorded without an accuracy; the run goes on."""
        found = []
        while self._late:
            found.append(self._late.popleft())
        if found:
            raise ValueError(
                f"log: accuracy is a share from 0 to 1, got {'; '.join(found)} (a percentage: divide it by 100); "
                f"{'that step was' if len(found) == 1 else 'those steps were'} recorded without an accuracy"
                + (f"; {after}" if after else "")
            )

    def _raise_write_error(self, *, again: bool = True) -> None:
        """Raise the writer's failure (once), then (``again``) refuse to go on."""
        exc = self._writer.error
        if exc is not None:
            self._writer.error = None  # raised once; the writer stays failed: nothing more is written
            exc.add_note(f"graphtrace: writing run {self.path} failed; no later step was written")
            raise exc
        if self._writer.failed and again:
            raise RuntimeError(f"the run at {self.path} stopped writing after an earlier error")

    def flush(self) -> None:
        """Wait until every logged step is written (a failed write is raised here).

        Examples
        --------
        >>> import pathlib, tempfile
        >>> import graphtrace as gt
        >>> run = gt.record(pathlib.Path(tempfile.mkdtemp()) / "r", gt.nn.MLP(1, [1]))
        >>> run.log(0, 1.0)
        >>> run.flush()
        >>> gt.runs.complete_steps(run.path)
        [0]
        >>> run.close()
        """
        self._check_process("flush")
        self._writer.flush()
        self._raise_write_error()
        self._raise_late()

    def close(self, status: str = "finished") -> None:
        """Write what is queued, then mark the run finished (or ``"failed"``) in its manifest;
        further :meth:`log` calls fail. A failed write of a step is raised here (the manifest
        then says ``"failed"``)."""
        if self._closed:
            return
        self._check_process("close")
        self._closed = True
        if self._compacting and not self._writer.failed:
            # the last steps too: a finished run is all chunks, and no empty staged folder is left
            self._writer.put([("barrier", self._compact), ("call", partial(_remove_empty_staged, self._part))])
        self._writer.close()
        self.manifest.update(status="failed" if self._writer.failed else status, finished=_now())
        try:
            self._write_manifest()
        finally:
            self._lock.release()
        self._raise_write_error(again=False)
        self._raise_late()

    def _check_process(self, what: str) -> None:
        """Refuse ``what`` in a process forked from the one that opened the run: its writer thread did
        not survive the fork, so its steps would vanish, and its close would mark the run finished."""
        if os.getpid() != self._pid:
            raise RuntimeError(
                f"{what}: the run at {self.path} was opened by process {self._pid}, and this is process "
                f"{os.getpid()} (forked from it); a forked process cannot write into it: log from process "
                f"{self._pid}, or call gt.record in this process (with rank= and world_size= for one run "
                "of several processes)"
            )

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close("finished")
            return
        try:  # the body's exception is the one raised: a failure of the close goes with it as a note
            self.close("failed")
        except Exception as also:
            exc.add_note(f"graphtrace: closing the run at {self.path} also failed: {also!r}")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, steps={len(self._done)}, status={self.manifest['status']!r})"


_STEPS_SCHEMA = pa.schema(
    [
        ("loss", pa.float64()),
        ("accuracy", pa.float64()),
        ("learning_rate", pa.float64()),
        ("wall_time", WALL_TIME),
        ("record_seconds", pa.float64()),
    ]
)


def _steps_table(row: tuple[Any, ...], seconds: float) -> Rows:
    """A ``steps`` row: loss, accuracy, learning rate, wall time and the seconds ``log`` took."""
    loss, accuracy, lr, wall = row
    return Rows(
        _STEPS_SCHEMA,
        {
            "loss": [loss],
            "accuracy": [accuracy],
            "learning_rate": [lr],
            "wall_time": [wall],
            "record_seconds": [seconds],
        },
    )


def _write_json(path: Path, value: dict[str, Any]) -> None:
    text = json.dumps(value, indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda fh: fh.write(text))


def _create(path: Path, value: dict[str, Any]) -> bool:
    """Create the file ``path`` whole with ``value`` (JSON) unless it exists; False if it did (another
    process created it first: a hard link to a complete temporary file either wins or fails, atomically)."""
    text = json.dumps(value, indent=2, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def _version() -> str:
    from .. import __version__

    return __version__


def record(
    path: str | os.PathLike[str],
    model: Any,
    *,
    hparams: dict[str, Any] | None = None,
    scopes_every: int = 1,
    snapshot_every: int = 0,
    mode: str = "new",
    allow_model_change: bool = False,
    chunk_steps: int = CHUNK_STEPS,
    rank: int | None = None,
    world_size: int | None = None,
    every: int = 1,
) -> Run:
    """Record a training run into directory ``path``: use as a context manager, call ``log`` each step.

    Parameters
    ----------
    path : str or path-like
        The run directory (made if missing).
    model : graphtrace.nn.Module
        Its ``named_parameters()`` are logged every step.
    hparams : dict, optional
        Hyper-parameters stored in the manifest (JSON values).
    scopes_every : int, optional
        Write the step's ``gt.analysis.by_scope`` table every this many steps (default 1: every
        step; 0: never). When the loss is the live store's only sink (a training step), it is read
        from the store without a snapshot: about 5% of micrograd's demo step (``make bench``).
    snapshot_every : int, optional
        Also write the step's whole trace every this many steps (0, the default: never). ``log``
        copies it from the store as columns; the writer thread names and encodes it. Every step:
        about +50% of the demo step (``make bench``).
    mode : {"new", "resume", "overwrite"}
        ``"new"`` refuses a directory that already holds files; ``"resume"`` adds steps to the run
        there (steps already recorded are refused, never rewritten); ``"overwrite"`` deletes the run
        there first (only a graphtrace run: a directory with its manifest).
    allow_model_change : bool, optional
        Let ``"resume"`` continue a run with a model whose parameters (names, shapes) differ from the
        run's; the manifest then lists the change. By default such a resume is refused: the tables
        would mix two models. Each resume's ``hparams`` are kept in the manifest's ``resumes``.
    chunk_steps : int, optional
        Merge the steps into one file per table every this many steps (100: a 10,000-step run keeps
        about 100 files per table; see the module docstring).
    rank, world_size : int, optional
        This process's rank and the number of processes recording the run, for a run of several
        processes (``0 <= rank < world_size``). By default they come from the initialised
        ``torch.distributed`` process group (``get_rank()``, ``get_world_size()``), else from
        ``torchrun``'s environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), else a run of one
        process (rank 0 of 1). With ``world_size`` > 1 each rank writes its own Hive partitions
        (``steps/rank=K/``, ...), holds its own lock and writes its own manifest
        (``ranks/rank=K.json``): ranks never wait on each other, and ``mode`` applies to the rank's
        own steps (``"overwrite"`` replaces this rank's; rank 0 also removes ranks beyond the new
        world). The run's ``manifest.json`` (model, parameters, ``world_size``) is made by the first
        rank and must agree with every other rank's (the same ``world_size`` and model).
    every : int, optional
        Write the ``params`` rows every this many steps (default 1: every step; 0: never); the
        ``steps`` row is written at every ``log``. For a torch model ``log`` only copies the
        parameters and gradients on their device and the writer thread summarises them (see
        :class:`graphtrace.pytorch.TorchParams`), so the default costs about 2% of a ResNet-18
        step on a CPU, more for small fast models (+57% of a 5 ms MLP step on a shared 2-core
        machine: see docs/performance.md).

    Returns
    -------
    Run

    Raises
    ------
    FileExistsError
        ``mode="new"`` and ``path`` holds files.
    ValueError
        A bad mode or count, or (``resume`` / ``overwrite``) ``path`` is not a graphtrace run or was
        written by a newer graphtrace.
    TypeError
        ``model`` is not a graphtrace Module, ``path`` or ``hparams`` of the wrong type.
    RuntimeError
        Another recorder has the run (or this rank of it) open.

    Notes
    -----
    While a recorder is open the run is locked (the ``.lock`` file in it, or ``ranks/rank=K.lock``
    for rank K; an OS lock released when the process ends, crashed or not): a second recorder on the
    same run (rank), in this process or another, gets a RuntimeError. Opening a run for writing
    removes the temporary files a killed writer (of the same rank) left.

    Examples
    --------
    >>> import pathlib, tempfile, random
    >>> import graphtrace as gt
    >>> random.seed(0)
    >>> model = gt.nn.MLP(2, [3, 1])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "demo"
    >>> with gt.record(path, model, hparams={"lr": 0.1}) as run:
    ...     for step in range(3):
    ...         loss = (model([1.0, -1.0]) - 1.0) ** 2
    ...         model.zero_grad(); loss.backward()
    ...         for p in model.parameters():
    ...             p.data -= 0.1 * p.grad
    ...         run.log(step, loss, learning_rate=0.1)
    >>> con = gt.open_run(path)
    >>> con.sql("SELECT step, count(*) AS n FROM params GROUP BY step ORDER BY step").fetchall()
    [(0, 13), (1, 13), (2, 13)]
    """
    return Run(
        path,
        model,
        hparams=hparams,
        scopes_every=scopes_every,
        snapshot_every=snapshot_every,
        mode=mode,
        allow_model_change=allow_model_change,
        chunk_steps=chunk_steps,
        rank=rank,
        world_size=world_size,
        every=every,
    )
