"""A training run as a dataset: Parquet files plus a JSON manifest, queried with DuckDB.

Layout of a run directory (format 2; every file is written whole to a hidden temporary name, then
renamed)::

    runs/NAME/
      manifest.json                            graphtrace version, model, hyper-parameters, times, status
      .lock                                    locked while a recorder has the run open (an OS file lock)
      steps/part-FIRST-LAST.parquet            one row per step: step, loss, accuracy, learning_rate, ...
      params/part-FIRST-LAST.parquet           one row per parameter and step: step, name, scope, data, grad, update
      scopes/part-FIRST-LAST.parquet           each step's gt.analysis.by_scope table (scopes_every=1)
      .staged/TABLE/step=K.parquet             a step written but not compacted yet
      snapshots/step=0/trace.parquet           (opt-in) the step's whole trace, in gt.save's Parquet layout

Every file of ``steps``, ``params`` and ``scopes`` has the ``step`` column. Each step is first
written as its own hidden staged files; every ``chunk_steps`` steps (100 by default) and at ``close``
the writer merges the staged complete steps into one ``part-FIRST-LAST.parquet`` per table (see
:func:`compact`), so a 10,000-step run has about 100 files per table. Dask
(``dask.dataframe.read_parquet``) and Spark (``spark.read.parquet``) read a table's folder as it is:
the staged files live outside it, so they see the compacted steps, each once (all of them once the
run is closed). A step's ``steps`` row is written last (and merged last): a step is complete once it has
one, and :func:`open_run`'s views show every complete step exactly once, staged or compacted, so a
run killed at any moment, a merge included, reads as its completed steps. Runs of format 1 (a
``step=K`` folder per step and table, the step as the hive partition key) still read and resume.

:meth:`Run.log` builds a step's tables, encodes them as Parquet in memory and hands the bytes to the
run's writer thread, which writes them in order (parameters, scopes, then the ``steps`` row) while
training goes on: file writes and ``fsync`` release the GIL, so the disk's latency stays off the
training loop (as with TensorBoard's event writer). Encoding stays in the training thread: pyarrow
writing into a Python file object takes the GIL for every chunk, and those hand-offs slowed the
training thread more than the encoding costs (about 1.5 ms for the demo step). :meth:`Run.flush`
waits for the writer; :meth:`Run.close` (and leaving the ``with`` block, and the interpreter's exit)
flushes. A write that fails is raised by the next ``log``, ``flush`` or ``close``, and nothing of
later steps is written after it. A snapshot is copied from the live store as columns in ``log``
(:class:`graphtrace.snapshot.TraceCopy`, under the store's lock: the next step changes the store) and
named, encoded and written by the writer thread, before the step's ``steps`` row.
"""

from __future__ import annotations

import atexit
import datetime
import json
import math
import operator
import os
import queue
import re
import shutil
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ._files import atomic_write
from ._real import as_float
from .analysis.scope_table import _SCOPE_SCHEMA, scope_columns
from .snapshot import TraceCopy
from .value import Value

__all__ = [
    "CHUNK_STEPS",
    "FORMAT",
    "FORMAT_VERSION",
    "Run",
    "compact",
    "complete_steps",
    "health",
    "open_run",
    "open_runs",
    "record",
    "run_names",
    "to_tensorboard",
]

#: ``manifest.json``'s ``format``; its ``format_version`` is :data:`FORMAT_VERSION`.
FORMAT = "graphtrace-run"
FORMAT_VERSION = 2
#: Steps per compacted file (format 2): a run keeps about one file per table per this many steps.
CHUNK_STEPS = 100
_MODES = ("new", "resume", "overwrite")
_TABLES = ("steps", "params", "scopes", "snapshots")
#: The ``scopes`` table: ``gt.analysis.by_scope``'s columns and dtypes, in Arrow.
_SCOPES_SCHEMA = pa.schema(
    [(n, pa.string() if n == "scope" else pa.from_numpy_dtype(np.dtype(t))) for n, t in _SCOPE_SCHEMA.items()]
)


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


def _check_every(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"record: {name} must be an int >= 0 (0: never), got {value!r}")
    return value


def _read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of run directory ``path``; ValueError naming the file if it is not a graphtrace run."""
    mf = path / "manifest.json"
    if not mf.is_file():
        raise ValueError(f"{path}: not a graphtrace run directory (no manifest.json)")
    try:
        m = json.loads(mf.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{mf}: not a readable graphtrace run manifest ({exc})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ValueError(f"{mf}: not a graphtrace run manifest (format is not {FORMAT!r})")
    version = m.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{mf}: format_version must be an int, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{mf}: written by a newer graphtrace (run format {version}; this one reads up to {FORMAT_VERSION})"
        )
    return m


def _write_table(path: Path, data: pa.Buffer) -> None:
    """Write a table's Parquet bytes (see :func:`_encode`) as the file ``path``, atomically."""
    atomic_write(path, lambda fh: fh.write(data), binary=True)


def _write_snapshot(path: Path, copy: TraceCopy, last: dict[str, Any]) -> None:
    """(In the writer thread.) Write a step's trace as ``gt.save``'s Parquet file ``path``. ``last``:
    the run's previous snapshot (its columns and Arrow string columns), whose names and string
    columns a step like it takes again instead of deriving them."""
    from .io import parquet_table

    cols = copy.columns(like=last.get("columns"))
    table = parquet_table(cols, last.setdefault("arrow", {}))
    last["columns"] = cols
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: pq.write_table(table, fh), binary=True)


def _encode(table: pa.Table) -> pa.Buffer:
    """The Parquet file of ``table``, in memory."""
    sink = pa.BufferOutputStream()
    # no dictionary pages: a step's file holds each name and scope path once (about a third faster)
    pq.write_table(table, sink, use_dictionary=False)
    return sink.getvalue()


class _Writer:
    """One thread writing a run's files, in the order they are queued; at most ``depth`` steps wait
    (``put`` blocks beyond that, so a slow disk slows the loop instead of filling memory)."""

    def __init__(self, depth: int = 8) -> None:
        self._jobs: queue.Queue[list[tuple[Path, pa.Buffer]] | None] = queue.Queue(depth)
        self.error: BaseException | None = None  # a failure not reported yet (the Run clears it)
        self.failed = False  # a write failed: nothing more is written, whatever was reported
        self._thread = threading.Thread(target=self._work, name="graphtrace-run-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # the interpreter's exit writes what is queued

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                if not self.failed:  # after a failure nothing more is written
                    for item in job:
                        if callable(item):  # a compaction, in order with the writes
                            item()
                        else:
                            _write_table(*item)
            except BaseException as exc:  # handed to the training thread
                self.failed = True
                self.error = exc
            finally:
                self._jobs.task_done()

    def put(self, job: list[Any]) -> None:
        self._jobs.put(job)

    def flush(self) -> None:
        """Wait until everything queued is written."""
        self._jobs.join()

    def close(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
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
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"record: path must be a str or path, got {type(path).__name__}: {path!r}")
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
            from .pytorch import TorchParams

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
        self.scopes_every = _check_every("scopes_every", scopes_every)
        self.snapshot_every = _check_every("snapshot_every", snapshot_every)
        self.path = Path(path)
        self.model = model
        self._params: list[tuple[str, Value]] = [] if self._torch is not None else list(named())
        self._last_data = [p.data for _, p in self._params]
        self._closed = False
        p = self.path
        if p.exists() and not p.is_dir():
            raise NotADirectoryError(f"record: {p} exists and is not a directory")
        exists = p.is_dir() and any(c.name != _LOCK for c in p.iterdir())
        if mode == "new" and exists:
            raise FileExistsError(
                f"record: {p} already holds files; pass mode='resume' to add steps to the run there "
                "or mode='overwrite' to replace it"
            )
        if mode != "new" and exists:
            _read_manifest(p)  # only ever resume or delete a graphtrace run
        if mode == "overwrite" and exists and p.is_symlink():
            raise ValueError(
                f"record: {p} is a symbolic link (to {os.readlink(p)}); mode='overwrite' does not delete "
                "through a link: pass the run directory itself"
            )
        shapes = self._shapes()
        p.mkdir(parents=True, exist_ok=True)
        self._lock = _RunLock(p)  # one recorder per run, in any process; released by close (or a crash)
        try:
            _remove_temporaries(p)  # what a killed writer left: nobody else writes here now
            if mode == "resume":
                self.manifest = _read_manifest(p)
                self._check_same_model(shapes, allow_model_change)
                self._done = set(_steps_on_disk(p))
                resumes = self.manifest.setdefault("resumes", [])
                resumes.append({"at": _now(), "hparams": hp_json})
                self.manifest.update(status="running", finished=None)
            else:
                if mode == "overwrite" and exists:
                    for child in p.iterdir():
                        if child.name != _LOCK:
                            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
                self._init_manifest(model, hp_json, shapes)
        except BaseException:
            self._lock.release()
            raise
        # format 2 stages each step in hidden files and compacts them; a resumed format-1 run keeps
        # its one folder per step
        self._compacting = self.manifest.get("format_version", 1) >= 2
        self._last_snapshot: dict[str, Any] = {}  # the writer thread's previous snapshot (see _write_snapshot)
        self._chunked: dict[str, set[int]] | None = None  # the steps in each table's chunks (known after a merge)
        self._staged = len(_staged_steps(p)) if self._compacting else 0
        self._write_manifest()
        self._writer = _Writer()
        weakref.finalize(self, self._writer.close)  # an unclosed run still writes what it logged
        weakref.finalize(self, self._lock.release)

    def _shapes(self) -> dict[str, list[int]]:
        """Each parameter's name and shape (``[]`` for a graphtrace scalar)."""
        if self._torch is not None:
            return {n: list(p.shape) for n, p in self._torch.named}
        return {n: [] for n, _ in self._params}

    def _check_same_model(self, shapes: dict[str, list[int]], allow: bool) -> None:
        before = self.manifest.get("shapes") or {n: [] for n in self.manifest.get("parameters", [])}
        if before == shapes:
            return
        if not allow:
            gone = [n for n in before if n not in shapes]
            new = [n for n in shapes if n not in before]
            reshaped = [n for n in shapes if n in before and before[n] != shapes[n]]
            raise ValueError(
                f"record: resuming {self.path} with a different model ({len(shapes)} parameters; the run has "
                f"{len(before)}; missing {gone[:3]}, new {new[:3]}, reshaped {reshaped[:3]}): the tables would mix "
                "two models. Pass allow_model_change=True to record it anyway, or record a new run"
            )
        self.manifest.setdefault("model_changes", []).append({"at": _now(), "parameters": list(shapes)})
        self.manifest.update(parameters=list(shapes), shapes=shapes)

    def _init_manifest(self, model: Any, hp_json: Any, shapes: dict[str, list[int]]) -> None:
        self._done = set()
        self.manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "graphtrace": _version(),
            "model": repr(model),
            "kind": "torch" if self._torch is not None else "graphtrace",
            "parameters": list(shapes),
            "shapes": shapes,
            "hparams": hp_json,
            "chunk_steps": self.chunk_steps,
            "started": _now(),
            "finished": None,
            "status": "running",
        }

    def _write_manifest(self) -> None:
        text = json.dumps(self.manifest, indent=2, allow_nan=False) + "\n"
        atomic_write(self.path / "manifest.json", lambda fh: fh.write(text))

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
        ``graph`` (the step's :func:`graphtrace.pytorch.trace` graph) when given.

        Raises
        ------
        ValueError
            If ``step`` is not an int >= 0 or was recorded already (nothing is ever rewritten), or
            ``accuracy`` / ``learning_rate`` is not a real number.
        TypeError
            If ``loss`` is neither a Value nor a real number.
        """
        if self._closed:
            raise ValueError(f"log: the run at {self.path} is closed")
        self._raise_write_error()
        step = _check_step(step)
        if step in self._done:
            raise ValueError(f"log: step {step} is already recorded in {self.path}; nothing is rewritten")
        detach = getattr(loss, "detach", None) if self._torch is not None else None
        if callable(detach):  # a torch loss tensor
            loss = detach()
        loss_value = loss.data if isinstance(loss, Value) else as_float(loss)
        if loss_value is None:
            raise TypeError(f"log: loss must be a Value or a real number, got {type(loss).__name__}: {loss!r}")
        extra = {}
        for name, v in (("accuracy", accuracy), ("learning_rate", learning_rate)):
            f = math.nan if v is None else as_float(v)
            if f is None:
                raise ValueError(f"log: {name} must be a real number, got {v!r}")
            extra[name] = f
        t0 = time.perf_counter()
        part = f"step={step}"
        data = [p.data for _, p in self._params]

        def where(table: str) -> Path:
            if self._compacting:  # format 2: staged until compacted; the step is a column of the file
                return self.path / _STAGED / table / f"{part}.parquet"
            return self.path / table / part / "part.parquet"

        def with_step(t: pa.Table) -> pa.Table:
            return t.add_column(0, "step", pa.array([step] * t.num_rows, pa.int64())) if self._compacting else t

        if self._torch is not None:
            params = self._torch.table()
        else:
            params = pa.table(
                {
                    "name": pa.array([n for n, _ in self._params], pa.string()),
                    "scope": pa.array([p.scope for _, p in self._params], pa.string()),
                    "data": pa.array(data, pa.float64()),
                    "grad": pa.array([p.grad for _, p in self._params], pa.float64()),
                    "update": pa.array([d - b for d, b in zip(data, self._last_data, strict=True)], pa.float64()),
                }
            )
        job: list[Any] = [(where("params"), _encode(with_step(params)))]
        traced = loss if isinstance(loss, Value) else graph
        if traced is not None and self.scopes_every and step % self.scopes_every == 0:
            cols = scope_columns(traced)
            table = pa.Table.from_arrays(
                [pa.array(cols[f.name], f.type) for f in _SCOPES_SCHEMA], schema=_SCOPES_SCHEMA
            )
            job.append((where("scopes"), _encode(with_step(table))))
        if isinstance(loss, Value) and self.snapshot_every and step % self.snapshot_every == 0:
            # copied here (the next step changes the store), named and encoded by the writer thread
            target = self.path / "snapshots" / part / "trace.parquet"
            job.append(partial(_write_snapshot, target, TraceCopy(loss), self._last_snapshot))
        steps = pa.table(
            {
                "loss": pa.array([loss_value], pa.float64()),
                "accuracy": pa.array([extra["accuracy"]], pa.float64()),
                "learning_rate": pa.array([extra["learning_rate"]], pa.float64()),
                "wall_time": pa.array([_now()], pa.string()),
                "record_seconds": pa.array([time.perf_counter() - t0], pa.float64()),
            }
        )
        job.append((where("steps"), _encode(with_step(steps))))  # last: the step is complete
        if self._compacting:
            self._staged += 1
            if self._staged >= self.chunk_steps:
                job.append(self._compact)
                self._staged = 0
        self._writer.put(job)
        self._done.add(step)
        self._last_data = data

    def _compact(self) -> None:
        """(In the writer thread.) Merge the staged complete steps into one file per table."""
        self._chunked = _compact(self.path, self._chunked)

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
        self._writer.flush()
        self._raise_write_error()

    def close(self, status: str = "finished") -> None:
        """Write what is queued, then mark the run finished (or ``"failed"``) in its manifest;
        further :meth:`log` calls fail. A failed write of a step is raised here (the manifest
        then says ``"failed"``)."""
        if self._closed:
            return
        self._closed = True
        if self._compacting and not self._writer.failed:
            self._writer.put([self._compact])  # the last steps too: a finished run is all chunks
        self._writer.close()
        self.manifest.update(status="failed" if self._writer.failed else status, finished=_now())
        try:
            self._write_manifest()
        finally:
            self._lock.release()
        self._raise_write_error(again=False)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close("finished" if exc_type is None else "failed")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, steps={len(self._done)}, status={self.manifest['status']!r})"


_LOCK = ".lock"
_HELD: set[str] = set()  # the runs this process records (a file lock is per process, not per recorder)
_HELD_GUARD = threading.Lock()


class _RunLock:
    """An exclusive lock on a run directory while a recorder has it open: the ``.lock`` file there,
    locked with ``filelock`` (an OS lock: released when the holder exits, crashed or not), plus this
    process's own list (a second recorder in the same process)."""

    def __init__(self, path: Path) -> None:
        import filelock

        self.key = str(path.resolve())
        with _HELD_GUARD:
            if self.key in _HELD:
                raise RuntimeError(
                    f"record: {path} is being recorded by another recorder in this process; close it first"
                )
            _HELD.add(self.key)
        self.file = filelock.FileLock(str(path / _LOCK), timeout=0)
        try:
            self.file.acquire()
        except filelock.Timeout:
            with _HELD_GUARD:
                _HELD.discard(self.key)
            raise RuntimeError(
                f"record: {path} is being recorded by another process (it holds {path / _LOCK}); "
                "wait for it to finish, or record into another directory"
            ) from None
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.file.release()
            with _HELD_GUARD:
                _HELD.discard(self.key)


def _remove_temporaries(path: Path) -> None:
    """Delete the hidden temporary files (``.NAME.XXXX.tmp``) that a writer killed mid-write left."""
    for t in path.rglob(".*.tmp"):
        if t.is_file() and not t.is_symlink():
            t.unlink(missing_ok=True)


def _version() -> str:
    from . import __version__

    return __version__


_STAGED = ".staged"  # format 2: a step's files until compaction, outside the tables' folders
_STAGED_FILE = re.compile(r"step=(0|[1-9][0-9]*)\.parquet")
_CHUNK_FILE = re.compile(r"part-([0-9]{19})-([0-9]{19})(?:-[0-9]+)?\.parquet")
_COMPACTED = ("params", "scopes", "steps")  # "steps" last: a step stays complete however a merge ends


def _staged_files(root: Path, table: str) -> dict[int, Path]:
    base = root / _STAGED / table
    if not base.is_dir():
        return {}
    out = {}
    for f in base.iterdir():
        m = _STAGED_FILE.fullmatch(f.name)
        if m and f.is_file():
            out[int(m.group(1))] = f
    return out


def _chunk_files(root: Path, table: str) -> list[Path]:
    base = root / table
    if not base.is_dir():
        return []
    return sorted(f for f in base.iterdir() if _CHUNK_FILE.fullmatch(f.name) and f.is_file())


def _chunk_steps(f: Path) -> set[int]:
    try:
        return {int(k) for k in pq.read_table(f, columns=["step"]).column("step").to_pylist()}
    except Exception as exc:  # a damaged or foreign file: name it
        raise ValueError(f"{f}: not a readable graphtrace chunk ({exc})") from None


def _staged_steps(root: Path, covered: set[int] | None = None) -> list[int]:
    """Complete steps not compacted yet (their ``steps`` row is staged, no chunk has them);
    ``covered``: the steps the ``steps`` chunks hold, when known."""
    if covered is None:
        covered = set()
        for f in _chunk_files(root, "steps"):
            covered |= _chunk_steps(f)
    return sorted(k for k in _staged_files(root, "steps") if k not in covered)


def compact(path: str | os.PathLike[str]) -> None:
    """Merge a run's staged complete steps into one Parquet file per table (format 2).

    For ``params``, ``scopes`` and then ``steps``: the staged files of the complete steps not yet in a
    chunk become one file ``part-FIRST-LAST.parquet`` (written whole, then renamed), then the staged
    files go. Killed at any moment, every complete step is still read exactly once: a step in a chunk
    is read from the chunk and its leftover staged files are ignored (and removed by the next
    compaction), and a step stays complete because its ``steps`` row is merged last. The recorder
    runs it every ``chunk_steps`` steps and at ``close``; call it only while no recorder has the run.
    """
    _compact(Path(path), None)


def _compact(root: Path, chunked: dict[str, set[int]] | None) -> dict[str, set[int]]:
    """:func:`compact`, given the steps each table's chunks hold (None: read them from the chunks);
    returns them, updated. The recorder keeps them between merges (it alone writes the run while it
    holds the lock), so a merge reads no chunk again: a run's merges cost what they merge."""
    if chunked is None:
        chunked = {table: set() for table in _COMPACTED}
        for table in _COMPACTED:
            for f in _chunk_files(root, table):
                chunked[table] |= _chunk_steps(f)
    todo = _staged_steps(root, chunked["steps"])
    done_steps = set(chunked["steps"])  # before this merge (steps are merged last)
    for table in _COMPACTED:
        staged = _staged_files(root, table)
        in_chunks = chunked[table]
        merging = [k for k in todo if k in staged and k not in in_chunks]
        if merging:
            merged = pa.concat_tables([pq.read_table(staged[k]) for k in merging], promote_options="default")
            first, last = min(todo), max(todo)
            name, n = f"part-{first:019d}-{last:019d}.parquet", 0
            while (root / table / name).exists():
                n += 1
                name = f"part-{first:019d}-{last:019d}-{n}.parquet"
            _write_table(root / table / name, _encode(merged))
        # the staged files now in a chunk (these, and any a killed merge left behind)
        for k, f in staged.items():
            if k in in_chunks or k in todo or (table != "steps" and k in done_steps):
                f.unlink(missing_ok=True)
        in_chunks.update(merging)
    return chunked


def _steps_on_disk(path: Path) -> list[int]:
    if _layout(path) >= 2:
        steps: set[int] = set(_staged_files(path, "steps"))
        for f in _chunk_files(path, "steps"):
            steps |= _chunk_steps(f)
        return sorted(steps)
    base = path / "steps"
    if not base.is_dir():
        return []
    return sorted(
        int(d.name.split("=", 1)[1])
        for d in base.iterdir()
        if _STEP_DIR.fullmatch(d.name) and (d / "part.parquet").is_file()
    )


def _layout(path: Path) -> int:
    """The run's format version (1: a folder per step; 2: compacted chunks)."""
    try:
        version = json.loads((path / "manifest.json").read_text(encoding="utf-8")).get("format_version", 1)
    except (OSError, ValueError, AttributeError):
        return 1
    return int(version) if isinstance(version, int) and not isinstance(version, bool) else 1


def _query(con: Any, sql: str, path: str | os.PathLike[str]) -> Any:
    """``con.execute(sql).df()``, with DuckDB's errors (a damaged file found while reading) as a
    ValueError naming the run and DuckDB's message (which names the file)."""
    import duckdb

    try:
        return con.execute(sql).df()
    except duckdb.Error as exc:
        raise ValueError(f"{path}: reading the run failed ({str(exc).splitlines()[0]})") from None


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
        Another recorder has the run open.

    Notes
    -----
    While a recorder is open the run is locked (the ``.lock`` file in it, an OS lock released when
    the process ends, crashed or not): a second recorder on the same run, in this process or another,
    gets a RuntimeError. Opening a run for writing removes the temporary files a killed writer left.

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
    )


_EMPTY = {
    "steps": "SELECT NULL::BIGINT AS step, NULL::DOUBLE AS loss, NULL::DOUBLE AS accuracy, "
    "NULL::DOUBLE AS learning_rate, NULL::VARCHAR AS wall_time, NULL::DOUBLE AS record_seconds WHERE false",
    "params": "SELECT NULL::BIGINT AS step, NULL::VARCHAR AS name, NULL::VARCHAR AS scope, NULL::DOUBLE AS data, "
    "NULL::DOUBLE AS grad, NULL::DOUBLE AS update WHERE false",
    "scopes": "SELECT NULL::BIGINT AS step, NULL::VARCHAR AS scope, NULL::BIGINT AS nodes, "
    "NULL::BIGINT AS output_node, NULL::DOUBLE AS output_data, NULL::DOUBLE AS output_grad, "
    "NULL::BIGINT AS param_count, "
    "NULL::DOUBLE AS param_abs_grad_sum, NULL::DOUBLE AS param_abs_grad_mean, NULL::DOUBLE AS param_abs_grad_max, "
    "NULL::DOUBLE AS relu_zero_share, NULL::DOUBLE AS tanh_saturated_share, NULL::BIGINT AS nonfinite WHERE false",
    "snapshots": "SELECT NULL::BIGINT AS step, NULL::VARCHAR AS kind WHERE false",
}
_FILES = {"steps": "part.parquet", "params": "part.parquet", "scopes": "part.parquet", "snapshots": "trace.parquet"}


#: Columns every file of a table must have (older files may lack later, optional ones).
_REQUIRED = {
    "steps": ("loss",),
    "params": ("name", "scope", "data", "grad", "update"),
    "scopes": ("scope", "nodes"),
    "snapshots": ("kind", "node_id"),
}
_STEP_DIR = re.compile(r"step=(0|[1-9][0-9]*)")


def _chunked_files(root: Path, name: str) -> list[Path]:
    """Format 2: the table's chunks, then its staged files of steps no chunk holds. Anything else
    visible in the table's folder is a ValueError naming it."""
    base = root / name
    for d in base.iterdir() if base.is_dir() else ():
        if not d.name.startswith(".") and not (_CHUNK_FILE.fullmatch(d.name) and d.is_file()):
            raise ValueError(f"{d}: not part of a graphtrace run (a table holds only part-FIRST-LAST.parquet files)")
    chunks = _chunk_files(root, name)
    covered: set[int] = set()
    for f in chunks:
        covered |= _chunk_steps(f)
    staged = _staged_files(root, name)
    return chunks + [staged[k] for k in sorted(staged) if k not in covered]


def _table_files(root: Path, name: str) -> list[Path]:
    """The files of table ``name``, one per ``step=K`` folder; a folder of another name, or a folder
    without its file but with other files, is a ValueError naming it (nothing there is read)."""
    base = root / name
    if not base.is_dir():
        return []
    files = []
    for d in sorted(base.iterdir()):
        if d.name.startswith("."):
            continue  # a killed writer's temporary file
        if not (d.is_dir() and _STEP_DIR.fullmatch(d.name)):
            raise ValueError(f"{d}: not part of a graphtrace run (a table holds only step=K folders, K >= 0)")
        f = d / _FILES[name]
        if f.is_file():
            files.append(f)
    return files


def open_run(path: str | os.PathLike[str], *, connection: Any = None, _prefix: str = "") -> Any:
    """A DuckDB connection with the run's tables as views: ``steps``, ``params``, ``scopes``, ``snapshots``.

    Each view has the ``step`` column (the partition key) and shows complete steps only (those with a
    ``steps`` row), whatever a killed writer left behind. ``steps``: ``loss``, ``accuracy``,
    ``learning_rate``, ``wall_time``, ``record_seconds``; ``params``: ``name``, ``scope``, ``data``,
    ``grad``, ``update``; ``scopes``: the columns of :func:`graphtrace.analysis.by_scope`;
    ``snapshots``: the rows of ``gt.save``'s Parquet layout (``kind`` = ``"node"`` / ``"edge"``).

    Parameters
    ----------
    path : str or path-like
        A directory written by :func:`record` (or ``graphtrace train --record``).
    connection : duckdb.DuckDBPyConnection, optional
        Where to create the views (default: a new in-memory database).

    Raises
    ------
    ValueError
        If ``path`` is not a graphtrace run, its manifest comes from a newer graphtrace, or one of its
        Parquet files cannot be read (the message names it).

    Examples
    --------
    See :func:`record`.
    """
    import duckdb
    import pyarrow.dataset as ds

    root = Path(path)
    _read_manifest(root)
    con = duckdb.connect() if connection is None else connection
    compacted = _layout(root) >= 2
    present = set(_steps_on_disk(root))
    complete = ", ".join(str(s) for s in sorted(present)) or "NULL"
    for name in _TABLES:
        chunked = compacted and name in _COMPACTED
        files = _chunked_files(root, name) if chunked else _table_files(root, name)
        view = f"{_prefix}{name}"
        if not files:
            con.execute(f"CREATE OR REPLACE VIEW {view} AS {_EMPTY[name]}")
            continue
        want = (*_REQUIRED[name], "step") if chunked else _REQUIRED[name]
        for f in files:
            try:
                have = pq.read_schema(f).names
            except Exception as exc:  # a truncated or foreign file: name it
                raise ValueError(f"{f}: not a readable Parquet file ({exc})") from None
            missing = [c for c in want if c not in have]
            if missing:
                raise ValueError(f"{f}: not a graphtrace {name} table (missing columns {', '.join(missing)})")
        # the files as a list, never a glob: a run's path is used literally ([, *, ?, \ and spaces)
        if chunked:  # format 2: the step is a column of every file
            dataset = ds.dataset([str(f) for f in files], format="parquet")
        else:
            step_field = pa.field("step", pa.int64())
            dataset = ds.dataset(
                [str(f) for f in files],
                format="parquet",
                partitioning=ds.partitioning(pa.schema([step_field]), flavor="hive"),
                partition_base_dir=str(root / name),
            )
        source = f"__graphtrace_{_prefix}{name}"
        con.register(source, dataset)
        if chunked and name == "steps":
            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {source}")
        elif chunked:  # the complete steps: those with a steps row
            con.execute(
                f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {source} "
                f"WHERE step IN (SELECT step FROM __graphtrace_{_prefix}steps)"
            )
        else:
            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {source} WHERE step IN ({complete})")
    return con


def run_names(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """A short distinct name per run: its folder's name, with its parent's when two share one."""
    roots = [Path(p) for p in paths]
    bare = [r.name for r in roots]
    names = [f"{r.parent.name}/{r.name}" if bare.count(r.name) > 1 else r.name for r in roots]
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        k = seen.get(n, 0)
        seen[n] = k + 1
        if k:
            names[i] = f"{n} ({k + 1})"
    return names


def open_runs(paths: Sequence[str | os.PathLike[str]], *, connection: Any = None) -> Any:
    """One DuckDB connection over several runs: the views of :func:`open_run`, each with a ``run``
    column first (the run's folder name, made distinct), the runs' rows one after another.

    Runs of different models or versions combine by column name (a column one run lacks is NULL).

    Parameters
    ----------
    paths : sequence of str or path-like
        Run directories (see :func:`record`), at least one.
    connection : duckdb.DuckDBPyConnection, optional
        Where to create the views (default: a new in-memory database).

    Raises
    ------
    ValueError
        If ``paths`` is empty, or one is not a readable run (the message names it).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import graphtrace as gt
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name, loss in (("a", 1.0), ("b", 2.0)):
    ...     with gt.record(root / name, gt.nn.MLP(1, [1])) as run:
    ...         run.log(0, loss)
    >>> gt.open_runs([root / "a", root / "b"]).sql("SELECT run, step, loss FROM steps ORDER BY run").fetchall()
    [('a', 0, 1.0), ('b', 0, 2.0)]
    """
    import duckdb

    if isinstance(paths, (str, os.PathLike)) or not len(paths):
        raise ValueError(f"open_runs: expected a non-empty list of run directories, got {paths!r}")
    con = duckdb.connect() if connection is None else connection
    names = run_names(paths)
    for i, p in enumerate(paths):
        open_run(p, connection=con, _prefix=f"__run{i}_")
    for name in _TABLES:
        parts = " UNION ALL BY NAME ".join(
            f"SELECT {_sql_literal(run)} AS run, * FROM __run{i}_{name}" for i, run in enumerate(names)
        )
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {parts}")
    return con


def to_tensorboard(path: str | os.PathLike[str], logdir: str | os.PathLike[str], depth: int = 2) -> Path:
    """Write run ``path`` as TensorBoard event files: see :func:`graphtrace.tensorboard_export.to_tensorboard`."""
    from .tensorboard_export import to_tensorboard as write

    return write(path, logdir, depth)


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def complete_steps(path: str | os.PathLike[str]) -> Sequence[int]:
    """The steps recorded completely in run ``path``, ascending (for tools that read the files directly:
    filter on them as :func:`open_run`'s views do).

    Examples
    --------
    See :func:`record`; ``complete_steps(path)`` there is ``[0, 1, 2]``.
    """
    root = Path(path)
    _read_manifest(root)
    return _steps_on_disk(root)


def health(path: str | os.PathLike[str], depth: int = 2) -> Any:
    """Per step and layer of a recorded run: gradient size, update:data ratio, dead and saturated units.

    The run's version of :func:`graphtrace.analysis.health`, from its ``params`` table (every step)
    and its ``scopes`` table (every step by default; NaN in steps recorded without one).

    Parameters
    ----------
    path : str or path-like
        A run directory (see :func:`record`).
    depth : int, optional
        How many scope segments name a layer (2 for ``gt.nn.MLP``: ``MLP/Layer0``).

    Returns
    -------
    pandas.DataFrame
        One row per (step, layer): ``step`` (int64), ``layer`` (str), ``param_abs_grad_mean``,
        ``param_abs_grad_max``, ``update_data_log10`` (float64: log10 of the mean |update| over the mean
        |data before the update| of its parameters, NaN when nothing moved; about -3 is healthy,
        Karpathy's rule of thumb),
        ``dead_relu_share`` (share of its ReLU units at exactly 0 for every sample of the step) and
        ``tanh_saturated_share`` (share of its tanh outputs with ``|t| > 0.97``).

    Examples
    --------
    >>> import pathlib, random, tempfile
    >>> import graphtrace as gt
    >>> from graphtrace.runs import health
    >>> random.seed(0)
    >>> model = gt.nn.MLP(2, [3, 1])
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> with gt.record(path, model) as run:
    ...     for step in range(2):
    ...         loss = sum((model([x, -x]) - 1.0) ** 2 for x in (0.5, 1.0))
    ...         model.zero_grad(); loss.backward()
    ...         for p in model.parameters():
    ...             p.data -= 0.01 * p.grad
    ...         run.log(step, loss)
    >>> health(path)[["step", "layer"]].values.tolist()
    [[0, 'MLP/Layer0'], [0, 'MLP/Layer1'], [1, 'MLP/Layer0'], [1, 'MLP/Layer1']]
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"health: depth must be a positive int, got {depth!r}")
    con = open_run(path)
    torch_run = _read_manifest(Path(path)).get("kind") == "torch"
    layer = f"array_to_string(string_split(scope, '/')[1:{depth}], '/')"
    # a torch run's rows are tensors: the mean |grad| weighted by size, the largest |grad|, and the
    # update:data ratio of the layer's tensors (‖update‖ / ‖data before‖, averaged)
    grads = (
        "sum(grad_abs_mean * numel) / sum(numel) AS param_abs_grad_mean, max(grad_max_abs) AS param_abs_grad_max, "
        "log10(nullif(avg(update_data), 0)) AS update_data_log10"
        if torch_run
        else "avg(abs(grad)) AS param_abs_grad_mean, max(abs(grad)) AS param_abs_grad_max, "
        'log10(nullif(avg(abs("update")), 0) / nullif(avg(abs(data - "update")), 0)) AS update_data_log10'
    )
    unit = "regexp_replace(scope, '\\[[0-9]+\\]', '', 'g')"
    sql = f"""
        WITH p AS (
            SELECT step, {layer} AS layer, {grads}
            FROM params GROUP BY ALL
        ), u AS (
            SELECT step, {unit} AS unit, min(relu_zero_share) AS relu_all_zero,
                   avg(tanh_saturated_share) AS tanh_share
            FROM scopes WHERE len(string_split({unit}, '/')) = {depth + 1} GROUP BY ALL
        ), s AS (
            SELECT step, array_to_string(string_split(unit, '/')[1:{depth}], '/') AS layer,
                   avg(CASE WHEN relu_all_zero IS NULL THEN NULL WHEN relu_all_zero = 1 THEN 1.0 ELSE 0.0 END)
                       AS dead_relu_share,
                   avg(tanh_share) AS tanh_saturated_share
            FROM u GROUP BY ALL
        )
        SELECT p.step, p.layer, param_abs_grad_mean, param_abs_grad_max, update_data_log10,
               dead_relu_share, tanh_saturated_share
        FROM p LEFT JOIN s ON p.step = s.step AND p.layer = s.layer
        ORDER BY p.step, p.layer
    """
    df = _query(con, sql, path)
    df["step"] = df["step"].astype("int64")
    df["layer"] = df["layer"].astype(str)
    for c in df.columns[2:]:
        df[c] = df[c].astype("float64")
    return df
