"""A run's files: the manifest, the tables' layout (staged steps and compacted chunks), the lock.

See :mod:`graphtrace.runs` for the layout of a run directory. Everything here is about files on
disk; the recorder (:mod:`graphtrace.runs.record`) writes them, the readers (:mod:`graphtrace.runs.read`)
read them.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._files import atomic_write
from ..analysis.scope_table import _SCOPE_SCHEMA

#: ``manifest.json``'s ``format``; its ``format_version`` is :data:`FORMAT_VERSION`.
FORMAT = "graphtrace-run"


FORMAT_VERSION = 2


#: Steps per compacted file (format 2): a run keeps about one file per table per this many steps.
CHUNK_STEPS = 100


_TABLES = ("steps", "params", "scopes", "snapshots")


#: The ``scopes`` table: ``gt.analysis.by_scope``'s columns and dtypes, in Arrow.
_SCOPES_SCHEMA = pa.schema(
    [
        (n, pa.string() if n == "scope" else pa.int64() if t == "Int64" else pa.from_numpy_dtype(np.dtype(t)))
        for n, t in _SCOPE_SCHEMA.items()
    ]
)


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


def _encode(table: pa.Table) -> pa.Buffer:
    """The Parquet file of ``table``, in memory."""
    sink = pa.BufferOutputStream()
    # no dictionary pages: a step's file holds each name and scope path once (about a third faster)
    pq.write_table(table, sink, use_dictionary=False)
    return sink.getvalue()


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


#: Columns every file of a table must have (older files may lack later, optional ones).
_REQUIRED = {
    "steps": ("loss",),
    "params": ("name", "scope", "data", "grad", "update"),
    "scopes": ("scope", "nodes"),
    "snapshots": ("kind", "node_id"),
}


_STEP_DIR = re.compile(r"step=(0|[1-9][0-9]*)")
