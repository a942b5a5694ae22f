"""A run's files: the manifests, the tables' layout (staged steps and compacted chunks, per rank), the locks.

See :mod:`graphtrace.runs` for the layout of a run directory. Everything here is about files on
disk; the recorder (:mod:`graphtrace.runs.recorder`) writes them, the readers (:mod:`graphtrace.runs.read`)
read them.

A run recorded by one process (format 2) keeps each table's files in the table's folder and has one
lock and one manifest. A run recorded by several processes (format 3: ``world_size`` > 1, one
recorder per rank) keeps each rank's files in a Hive partition ``TABLE/rank=K/``, each rank with its
own lock (``ranks/rank=K.lock``) and its own small manifest (``ranks/rank=K.json``: status, times,
resumes), written by that rank alone; the run's ``manifest.json`` holds what every rank shares (the
model, its parameters, ``world_size``) and is only ever created whole or replaced whole by a rank
with the same content, so no lock is shared between ranks. A :class:`Part` is one recorder's share.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .._files import atomic_write
from ..analysis.scope_table import _SCOPE_SCHEMA

#: ``manifest.json``'s ``format``; its ``format_version`` is at most :data:`FORMAT_VERSION`.
FORMAT = "graphtrace-run"


#: The newest run format: 3 (rank partitions, written by a run of several processes). A run of one
#: process is still written as format 2 (:data:`SINGLE_FORMAT`), which graphtrace versions before
#: rank partitions read too.
FORMAT_VERSION = 3


SINGLE_FORMAT = 2


#: Steps per compacted file (format 2): a run keeps about one file per table per this many steps.
CHUNK_STEPS = 100


_TABLES = ("steps", "params", "scopes", "anomalies", "snapshots")


#: The ``anomalies`` table: the origins of a step's non-finite values (``gt.analysis.anomalies`` rows
#: with ``forward_origin`` or ``backward_origin``), written for the steps whose trace has any.
_ANOMALIES_SCHEMA = pa.schema(
    [
        ("node_id", pa.int64()),
        ("label", pa.string()),
        ("op", pa.string()),
        ("scope", pa.string()),
        ("data", pa.float64()),
        ("grad", pa.float64()),
        ("forward_origin", pa.bool_()),
        ("backward_origin", pa.bool_()),
        ("cause", pa.string()),
    ]
)


#: The ``scopes`` table: ``gt.analysis.by_scope``'s columns and dtypes, in Arrow.
_SCOPES_SCHEMA = pa.schema(
    [
        (n, pa.string() if n == "scope" else pa.int64() if t == "Int64" else pa.from_numpy_dtype(np.dtype(t)))
        for n, t in _SCOPE_SCHEMA.items()
    ]
)


_RANKS = "ranks"  # format 3: each rank's manifest and lock


@dataclass(frozen=True)
class Part:
    """One recorder's share of run ``root``: the whole run (``rank`` None: one process) or rank
    ``rank``'s partitions (format 3)."""

    root: Path
    rank: int | None = None

    def table(self, name: str) -> Path:
        """The folder of table ``name``'s compacted files (format 1: its ``step=K`` folders)."""
        return self.root / name if self.rank is None else self.root / name / f"rank={self.rank}"

    def staged(self, name: str) -> Path:
        """The folder of table ``name``'s staged steps."""
        if self.rank is None:
            return self.root / _STAGED / name
        return self.root / _STAGED / f"rank={self.rank}" / name

    def snapshot(self, step: int) -> Path:
        return self.table("snapshots") / f"step={step}" / "trace.parquet"

    @property
    def lock(self) -> Path:
        return self.root / _LOCK if self.rank is None else self.root / _RANKS / f"rank={self.rank}.lock"

    @property
    def manifest(self) -> Path:
        """The manifest this part's recorder writes (format 3: the rank's own)."""
        return self.root / "manifest.json" if self.rank is None else self.root / _RANKS / f"rank={self.rank}.json"

    def name(self) -> str:
        return str(self.root) if self.rank is None else f"rank {self.rank} of {self.root}"


def _load_json(mf: Path, what: str) -> dict[str, Any]:
    try:
        m = json.loads(mf.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{mf}: not a readable graphtrace {what} ({exc})") from None
    if not isinstance(m, dict):
        raise ValueError(f"{mf}: not a graphtrace {what} (not a JSON object)")
    return m


def _run_manifest(path: Path) -> dict[str, Any]:
    """The run's own ``manifest.json``, checked; ValueError naming the file if it is not a graphtrace run."""
    mf = path / "manifest.json"
    if not mf.is_file():
        raise ValueError(f"{path}: not a graphtrace run directory (no manifest.json)")
    m = _load_json(mf, "run manifest")
    if m.get("format") != FORMAT:
        raise ValueError(f"{mf}: not a graphtrace run manifest (format is not {FORMAT!r})")
    version = m.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{mf}: format_version must be an int, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{mf}: written by a newer graphtrace (run format {version}; this one reads up to {FORMAT_VERSION})"
        )
    if version >= 3:
        world = m.get("world_size")
        if isinstance(world, bool) or not isinstance(world, int) or world < 1:
            raise ValueError(f"{mf}: world_size must be an int >= 1, got {world!r}")
    return m


def _rank_manifests(path: Path, world: int) -> dict[int, dict[str, Any]]:
    """Format 3: each rank's manifest that exists (a rank not started yet has none)."""
    out = {}
    for k in range(world):
        mf = path / _RANKS / f"rank={k}.json"
        if mf.is_file():
            out[k] = _load_json(mf, f"rank {k} manifest")
    return out


def _combined_status(statuses: list[str]) -> str:
    if not statuses or "running" in statuses:
        return "running"
    if "interrupted" in statuses:
        return "interrupted"
    return "failed" if "failed" in statuses else "finished"


def _read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of run directory ``path``; ValueError naming the file if it is not a graphtrace run.

    Format 3 (several ranks): the run's manifest with ``ranks`` (rank -> its manifest, for the ranks
    started) and the run's ``status`` (``running`` while a rank runs, else ``failed`` if one failed,
    else ``finished``), ``started`` (the first rank's) and ``finished`` (the last rank's) added."""
    m = _run_manifest(path)
    if m["format_version"] < 3:
        return m
    ranks = _rank_manifests(path, m["world_size"])
    statuses = [str(r.get("status")) for r in ranks.values()]
    started = sorted(str(r["started"]) for r in ranks.values() if r.get("started"))
    finished = sorted(str(r["finished"]) for r in ranks.values() if r.get("finished"))
    status = _combined_status(statuses)
    return {
        **m,
        "ranks": ranks,
        "status": status,
        "started": started[0] if started else None,
        "finished": finished[-1] if finished and status != "running" else None,
    }


def _parts(path: Path, manifest: dict[str, Any] | None = None) -> list[Part]:
    """The parts of run ``path``: the whole run (format <= 2), or one per rank of its world (format 3)."""
    m = _run_manifest(path) if manifest is None else manifest
    if m.get("format_version", 1) < 3:
        return [Part(path)]
    return [Part(path, k) for k in range(int(m["world_size"]))]


def _write_table(path: Path, data: pa.Buffer) -> None:
    """Write a table's Parquet bytes (see :func:`_encode`) as the file ``path``, atomically."""
    atomic_write(path, lambda fh: fh.write(data), binary=True)


#: ``steps.wall_time``: a UTC timestamp (text in ISO 8601 in the files of graphtrace before rank partitions).
WALL_TIME = pa.timestamp("us", tz="UTC")


def _normalized(t: pa.Table) -> pa.Table:
    """A staged or merged table with an older file's ``wall_time`` text as a timestamp."""
    i = t.schema.get_field_index("wall_time")
    if i >= 0 and pa.types.is_string(t.schema.field(i).type):
        t = t.set_column(i, "wall_time", t.column(i).cast(WALL_TIME))
    return t


def _encode(table: pa.Table) -> pa.Buffer:
    """The Parquet file of ``table``, in memory."""
    sink = pa.BufferOutputStream()
    # no dictionary pages: a step's file holds each name and scope path once (about a third faster)
    pq.write_table(table, sink, use_dictionary=False)
    return sink.getvalue()


_LOCK = ".lock"


_HELD: set[str] = set()  # the runs (ranks) this process records (a file lock is per process, not per recorder)


_HELD_GUARD = threading.Lock()


class _RunLock:
    """An exclusive lock on a run (or on one rank of it) while a recorder has it open: the part's lock
    file (``.lock``, or ``ranks/rank=K.lock``), locked with ``filelock`` (an OS lock: released when
    the holder exits, crashed or not), plus this process's own list (a second recorder in the same
    process)."""

    #: Seconds a recorder waits for a lock held by someone else before it is refused: a reader that
    #: checks whether the lock is free (:func:`_lock_free`) holds it for a moment only.
    WAIT = 1.0

    def __init__(self, part: Part) -> None:
        import filelock

        lock = part.lock
        what = part.name()
        self.key = str(lock.resolve())
        with _HELD_GUARD:
            if self.key in _HELD:
                raise RuntimeError(
                    f"record: {what} is being recorded by another recorder in this process; close it first"
                )
            _HELD.add(self.key)
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            self.file = filelock.FileLock(str(lock), timeout=self.WAIT)
            self.file.acquire()
        except filelock.Timeout:
            with _HELD_GUARD:
                _HELD.discard(self.key)
            raise RuntimeError(
                f"record: {what} is being recorded by another process (it holds {lock}); "
                "wait for it to finish, or record into another directory"
            ) from None
        except BaseException:
            with _HELD_GUARD:
                _HELD.discard(self.key)
            raise
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.file.release()
            with _HELD_GUARD:
                _HELD.discard(self.key)


def _lock_free(part: Part) -> bool:
    """Whether no recorder holds ``part``'s lock (in this process or another, on this machine or
    another one sharing the folder): the lock is taken and released at once (a recorder starting in
    that moment waits :attr:`_RunLock.WAIT` for it)."""
    import filelock

    lock = part.lock
    if not lock.is_file():
        return True  # never recorded by a recorder that locks
    with _HELD_GUARD:
        if str(lock.resolve()) in _HELD:
            return False
    probe = filelock.FileLock(str(lock), timeout=0)
    try:
        probe.acquire()
    except filelock.Timeout:
        return False
    probe.release()
    return True


def _own_folders(part: Part) -> list[Path]:
    """The folders only ``part``'s recorder writes (format 3: its rank's partitions)."""
    if part.rank is None:
        return [part.root]
    return [part.root / _STAGED / f"rank={part.rank}", *(part.table(t) for t in _TABLES)]


def _remove_temporaries(part: Part) -> None:
    """Delete the hidden temporary files (``.NAME.XXXX.tmp``) that a writer of ``part`` killed
    mid-write left (of a rank: in its own folders only; the other ranks may be writing theirs)."""
    for folder in _own_folders(part):
        for t in folder.rglob(".*.tmp") if folder.is_dir() else ():
            if t.is_file() and not t.is_symlink():
                t.unlink(missing_ok=True)
    if part.rank is not None and (part.root / _RANKS).is_dir():
        for t in (part.root / _RANKS).glob(f".rank={part.rank}.json.*.tmp"):
            t.unlink(missing_ok=True)


def _remove_empty_staged(part: Part) -> None:
    """Remove ``part``'s staged folders once empty (and ``.staged`` itself when nothing is left in it)."""
    base = part.root / _STAGED
    folders = [part.staged(t) for t in _COMPACTED]
    if part.rank is not None:
        folders.append(base / f"rank={part.rank}")
    for d in [*folders, base]:
        with contextlib.suppress(OSError):  # not empty (another rank's, a later step's), or gone
            d.rmdir()


def _remove_part(part: Part) -> None:
    """Delete the files of ``part`` (format 3: a rank's partitions, staged files and manifest; the
    lock file stays: its holder is the caller)."""
    import shutil

    for d in _own_folders(part):
        if d.is_dir() and not d.is_symlink():
            shutil.rmtree(d)
    part.manifest.unlink(missing_ok=True)


_STAGED = ".staged"  # format 2: a step's files until compaction, outside the tables' folders


_STAGED_FILE = re.compile(r"step=(0|[1-9][0-9]*)\.parquet")


_CHUNK_FILE = re.compile(r"part-([0-9]{19})-([0-9]{19})(?:-[0-9]+)?\.parquet")


_RANK_DIR = re.compile(r"rank=(0|[1-9][0-9]*)")


_COMPACTED = ("params", "scopes", "anomalies", "steps")  # "steps" last: a step stays complete however a merge ends


def _staged_files(part: Part, table: str) -> dict[int, Path]:
    """Each staged step of ``table`` and its file. A staged file ``step=K.parquet`` holds the rows of
    one batch of steps, the first of them K (graphtrace before batches: step K only); its ``step``
    column says which. A file merged away while this reads is left out (its steps are in a chunk)."""
    base = part.staged(table)
    if not base.is_dir():
        return {}
    out = {}
    for f in sorted(base.iterdir(), key=lambda f: f.name):
        m = _STAGED_FILE.fullmatch(f.name)
        if m and f.is_file():
            try:
                steps = pq.read_table(f, columns=["step"]).column("step").to_pylist()
            except FileNotFoundError:
                continue
            except Exception as exc:  # a damaged or foreign file: name it
                raise ValueError(f"{f}: not a readable staged graphtrace file ({exc})") from None
            for k in steps or [int(m.group(1))]:
                out[int(k)] = f
    return out


def _files_of(steps: dict[int, Path]) -> dict[Path, list[int]]:
    """The steps of each staged file (:func:`_staged_files` inverted), in the order of their first step."""
    out: dict[Path, list[int]] = {}
    for k in sorted(steps):
        out.setdefault(steps[k], []).append(k)
    return out


def _remove_orphans(part: Part) -> None:
    """Delete the staged files of a batch whose steps file was never written (a recorder killed in
    between): their steps are not complete, and a resumed run may log those steps again. (Only while
    no recorder writes ``part``: a batch's steps file comes last.)"""
    done = {f.name for f in part.staged("steps").iterdir()} if part.staged("steps").is_dir() else set()
    for table in _COMPACTED:
        base = part.staged(table)
        if table != "steps" and base.is_dir():
            for f in base.iterdir():
                if _STAGED_FILE.fullmatch(f.name) and f.name not in done and f.is_file():
                    f.unlink(missing_ok=True)


def _chunk_files(part: Part, table: str) -> list[Path]:
    base = part.table(table)
    if not base.is_dir():
        return []
    return sorted(f for f in base.iterdir() if _CHUNK_FILE.fullmatch(f.name) and f.is_file())


def _chunk_steps(f: Path) -> set[int]:
    try:
        return {int(k) for k in pq.read_table(f, columns=["step"]).column("step").to_pylist()}
    except Exception as exc:  # a damaged or foreign file: name it
        raise ValueError(f"{f}: not a readable graphtrace chunk ({exc})") from None


def _staged_steps(part: Part, covered: set[int] | None = None) -> list[int]:
    """Complete steps not compacted yet (their ``steps`` row is staged, no chunk has them);
    ``covered``: the steps the ``steps`` chunks hold, when known."""
    if covered is None:
        covered = set()
        for f in _chunk_files(part, "steps"):
            covered |= _chunk_steps(f)
    return sorted(k for k in _staged_files(part, "steps") if k not in covered)


def compact(path: str | os.PathLike[str]) -> None:
    """Merge a run's staged complete steps into one Parquet file per table (format 2 and 3).

    For ``params``, ``scopes`` and then ``steps`` (of each rank): the staged files of the complete
    steps not yet in a chunk become one file ``part-FIRST-LAST.parquet`` (written whole, then
    renamed), then the staged files go. Killed at any moment, every complete step is still read
    exactly once: a step in a chunk is read from the chunk and its leftover staged files are ignored
    (and removed by the next compaction), and a step stays complete because its ``steps`` row is
    merged last. The recorder runs it every ``chunk_steps`` steps and at ``close``; call it only
    while no recorder has the run.
    """
    root = Path(path)
    for part in _parts(root):
        _compact(part, None)


def _compact(part: Part, chunked: dict[str, set[int]] | None) -> dict[str, set[int]]:
    """:func:`compact` of one part, given the steps each table's chunks hold (None: read them from the
    chunks); returns them, updated. The recorder keeps them between merges (it alone writes its part
    while it holds the lock), so a merge reads no chunk again: a run's merges cost what they merge."""
    if chunked is None:
        chunked = {table: set() for table in _COMPACTED}
        for table in _COMPACTED:
            for f in _chunk_files(part, table):
                chunked[table] |= _chunk_steps(f)
    todo = _staged_steps(part, chunked["steps"])
    done_steps = set(chunked["steps"])  # before this merge (steps are merged last)
    for table in _COMPACTED:
        staged = _staged_files(part, table)
        in_chunks = chunked[table]
        merging = [k for k in todo if k in staged and k not in in_chunks]
        if merging:
            wanted = set(merging)
            tables = []
            for f in _files_of({k: staged[k] for k in merging}):
                t = _normalized(pq.read_table(f))
                if not set(t.column("step").to_pylist()) <= wanted:  # (a file of steps merged before)
                    t = t.filter(pc.is_in(t.column("step"), pa.array(merging, pa.int64())))
                tables.append(t)
            merged = pa.concat_tables(tables, promote_options="default")
            first, last = min(todo), max(todo)
            folder = part.table(table)
            name, n = f"part-{first:019d}-{last:019d}.parquet", 0
            while (folder / name).exists():
                n += 1
                name = f"part-{first:019d}-{last:019d}-{n}.parquet"
            _write_table(folder / name, _encode(merged))
        # the staged files now in a chunk (these, and any a killed merge left behind)
        for f, steps in _files_of(staged).items():
            if all(k in in_chunks or k in todo or (table != "steps" and k in done_steps) for k in steps):
                f.unlink(missing_ok=True)
        in_chunks.update(merging)
    return chunked


def _steps_on_disk(part: Part) -> list[int]:
    """The complete steps of ``part``: those with a ``steps`` row, staged or compacted."""
    if part.rank is not None or _layout(part.root) >= 2:
        steps: set[int] = set(_staged_files(part, "steps"))
        for f in _chunk_files(part, "steps"):
            steps |= _chunk_steps(f)
        return sorted(steps)
    base = part.root / "steps"
    if not base.is_dir():
        return []
    return sorted(
        int(d.name.split("=", 1)[1])
        for d in base.iterdir()
        if _STEP_DIR.fullmatch(d.name) and (d / "part.parquet").is_file()
    )


def _layout(path: Path) -> int:
    """The run's format version (1: a folder per step; 2: compacted chunks; 3: rank partitions)."""
    try:
        version = json.loads((path / "manifest.json").read_text(encoding="utf-8")).get("format_version", 1)
    except (OSError, ValueError, AttributeError):
        return 1
    return int(version) if isinstance(version, int) and not isinstance(version, bool) else 1


#: Columns every file of a table must have (older files may lack later, optional ones).
_REQUIRED = {
    "steps": ("loss",),
    "params": ("name", "scope", "data", "grad", "update"),
    "scopes": ("scope", "nodes"),
    "anomalies": ("scope", "op", "forward_origin", "backward_origin"),
    "snapshots": ("kind", "node_id"),
}


_STEP_DIR = re.compile(r"step=(0|[1-9][0-9]*)")
