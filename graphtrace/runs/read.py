"""Reading recorded runs: :func:`open_run` / :func:`open_runs` (DuckDB views), :func:`complete_steps`
and :func:`health`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .layout import (
    _CHUNK_FILE,
    _RANK_DIR,
    _REQUIRED,
    _STEP_DIR,
    _TABLES,
    Part,
    _chunk_files,
    _files_of,
    _layout,
    _lock_free,
    _normalized,
    _parts,
    _read_manifest,
    _staged_files,
    _steps_on_disk,
)


def _query(con: Any, sql: str, path: str | os.PathLike[str]) -> Any:
    """``con.execute(sql).df()``, with DuckDB's errors (a damaged file found while reading) as a
    ValueError naming the run and DuckDB's message (which names the file)."""
    import duckdb

    try:
        return con.execute(sql).df()
    except duckdb.Error as exc:
        raise ValueError(f"{path}: reading the run failed ({str(exc).splitlines()[0]})") from None


_EMPTY = {
    "steps": "SELECT NULL::BIGINT AS step, NULL::INTEGER AS rank, NULL::DOUBLE AS loss, NULL::DOUBLE AS accuracy, "
    "NULL::DOUBLE AS learning_rate, NULL::TIMESTAMP AS wall_time, NULL::DOUBLE AS record_seconds WHERE false",
    "params": "SELECT NULL::BIGINT AS step, NULL::INTEGER AS rank, NULL::VARCHAR AS name, NULL::VARCHAR AS scope, "
    "NULL::DOUBLE AS data, NULL::DOUBLE AS grad, NULL::DOUBLE AS update WHERE false",
    "scopes": "SELECT NULL::BIGINT AS step, NULL::INTEGER AS rank, NULL::VARCHAR AS scope, NULL::BIGINT AS nodes, "
    "NULL::BIGINT AS output_node, NULL::DOUBLE AS output_data, NULL::DOUBLE AS output_grad, "
    "NULL::BIGINT AS param_count, "
    "NULL::DOUBLE AS param_abs_grad_sum, NULL::DOUBLE AS param_abs_grad_mean, NULL::DOUBLE AS param_abs_grad_max, "
    "NULL::DOUBLE AS relu_zero_share, NULL::DOUBLE AS tanh_saturated_share, NULL::BIGINT AS nonfinite, "
    "NULL::DOUBLE AS relu_units, NULL::DOUBLE AS dead_relu_units WHERE false",
    "anomalies": "SELECT NULL::BIGINT AS step, NULL::INTEGER AS rank, NULL::BIGINT AS node_id, NULL::VARCHAR AS label, "
    "NULL::VARCHAR AS op, NULL::VARCHAR AS scope, NULL::DOUBLE AS data, NULL::DOUBLE AS grad, "
    "NULL::BOOLEAN AS forward_origin, NULL::BOOLEAN AS backward_origin, NULL::VARCHAR AS cause WHERE false",
    "snapshots": "SELECT NULL::BIGINT AS step, NULL::INTEGER AS rank, NULL::VARCHAR AS kind WHERE false",
}


_FILES = {
    "steps": "part.parquet",
    "params": "part.parquet",
    "scopes": "part.parquet",
    "anomalies": "part.parquet",
    "snapshots": "trace.parquet",
}


#: The file system the readers open a run's files with (None: the local one). The tests count the
#: files a query opens through it.
_FILESYSTEM: Any = None


#: How many times :func:`open_run` lists a part of a run again when a file it listed vanished before
#: it was read (the recorder merged it into a chunk in between).
_RETRIES = 100


#: ``steps.wall_time`` as a DuckDB TIMESTAMP (UTC): files before rank partitions hold ISO 8601 text.
_WALL_TIME = "timezone('UTC', wall_time::TIMESTAMPTZ)"


class _Vanished(Exception):
    """A file listed a moment ago is gone (the recorder merged it): list again."""


class _Found:
    """What :func:`open_run` found of one table: files read lazily by DuckDB (never removed by a
    recorder: compacted chunks, snapshots) and rows read at once (staged steps, which a merge removes)."""

    def __init__(self) -> None:
        self.files: list[tuple[Path, pa.Schema, int]] = []  # (file, its schema, rank)
        self.rows: list[pa.Table] = []


def _check_folder(part: Part, name: str) -> None:
    """Anything visible in a table's folder but its chunks (format 3: its ``rank=K`` folders) is a
    ValueError naming it."""
    base = part.root / name
    for d in base.iterdir() if base.is_dir() else ():
        if d.name.startswith("."):
            continue
        if part.rank is not None:
            if not (d.is_dir() and _RANK_DIR.fullmatch(d.name)):
                raise ValueError(f"{d}: not part of a graphtrace run (a table holds only rank=K folders, K >= 0)")
            continue
        if not (_CHUNK_FILE.fullmatch(d.name) and d.is_file()):
            raise ValueError(f"{d}: not part of a graphtrace run (a table holds only part-FIRST-LAST.parquet files)")
    mine = part.table(name)
    if part.rank is not None and mine.is_dir():
        for d in mine.iterdir():
            if not d.name.startswith(".") and not (_CHUNK_FILE.fullmatch(d.name) and d.is_file()):
                raise ValueError(f"{d}: not part of a graphtrace run (a rank's folder holds only part-*.parquet files)")


def _checked(f: Path, name: str, have: list[str]) -> None:
    missing = [c for c in (*_REQUIRED[name], "step") if c not in have]
    if missing:
        raise ValueError(f"{f}: not a graphtrace {name} table (missing columns {', '.join(missing)})")


def _chunk_info(f: Path, name: str) -> tuple[pa.Schema, set[int]]:
    """A chunk's schema and steps; ValueError naming it if it is damaged or of another table."""
    try:
        pf = pq.ParquetFile(f)
        schema = pf.schema_arrow
    except FileNotFoundError:
        raise _Vanished from None
    except Exception as exc:  # a truncated or foreign file: name it
        raise ValueError(f"{f}: not a readable Parquet file ({exc})") from None
    _checked(f, name, schema.names)
    try:
        steps = {int(k) for k in pf.read(columns=["step"]).column("step").to_pylist()}
    except Exception as exc:
        raise ValueError(f"{f}: not a readable graphtrace chunk ({exc})") from None
    return schema, steps


def _staged_rows(f: Path, name: str) -> pa.Table:
    try:
        t = pq.read_table(f)
    except FileNotFoundError:
        raise _Vanished from None
    except Exception as exc:
        raise ValueError(f"{f}: not a readable Parquet file ({exc})") from None
    _checked(f, name, t.column_names)
    return _normalized(t)


def _with_rank(t: pa.Table, rank: int) -> pa.Table:
    return t.append_column("rank", pa.array([rank] * t.num_rows, pa.int32()))


def _read_part(part: Part, found: dict[str, _Found]) -> set[int]:
    """Add what ``part`` holds (format 2 or 3) to ``found``; return its complete steps. Raises
    :class:`_Vanished` when a file it listed was merged away before it was read."""
    rank = part.rank or 0
    complete: set[int] = set()
    for name in ("steps", "params", "scopes", "anomalies"):  # steps first: its rows say which are complete
        _check_folder(part, name)
        staged = _staged_files(part, name)  # listed before the chunks: a step merged in between is in a chunk
        covered: set[int] = set()
        files = []
        for f in _chunk_files(part, name):
            schema, steps = _chunk_info(f, name)
            covered |= steps
            files.append((f, schema, steps))
        if name == "steps":
            complete = covered | set(staged)
        for f, schema, steps in files:
            if steps <= complete:
                found[name].files.append((f, schema, rank))
            else:  # merged after the steps were listed: only its steps that were complete then
                rows = _staged_rows(f, name)
                keep = pa.array(sorted(complete), pa.int64())
                found[name].rows.append(_with_rank(rows.filter(pc.is_in(rows.column("step"), keep)), rank))
        for f, batch in _files_of(staged).items():  # a staged file holds a batch of steps
            wanted = [k for k in batch if k not in covered and k in complete]
            if wanted:
                rows = _staged_rows(f, name)
                if len(wanted) < len(set(rows.column("step").to_pylist())):
                    rows = rows.filter(pc.is_in(rows.column("step"), pa.array(wanted, pa.int64())))
                found[name].rows.append(_with_rank(rows, rank))
    base = part.table("snapshots")
    if base.is_dir():
        for d in sorted(base.iterdir()):
            if d.name.startswith("."):
                continue
            if not (d.is_dir() and _STEP_DIR.fullmatch(d.name)):
                raise ValueError(f"{d}: not part of a graphtrace run (snapshots holds only step=K folders, K >= 0)")
            f = d / "trace.parquet"
            if int(d.name[5:]) in complete and f.is_file():
                try:
                    schema = pq.read_schema(f)
                except Exception as exc:
                    raise ValueError(f"{f}: not a readable Parquet file ({exc})") from None
                missing = [c for c in _REQUIRED["snapshots"] if c not in schema.names]
                if missing:
                    raise ValueError(f"{f}: not a graphtrace snapshots table (missing columns {', '.join(missing)})")
                found["snapshots"].files.append((f, schema, rank))
    return complete


def _table_files(root: Path, name: str) -> list[Path]:
    """Format 1: the files of table ``name``, one per ``step=K`` folder; a folder of another name, or a
    folder without its file but with other files, is a ValueError naming it (nothing there is read)."""
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


def _open_format_1(root: Path, con: Any, prefix: str) -> None:
    """Format 1: a ``step=K`` folder per step and table, the step as the hive partition key."""
    import pyarrow.dataset as ds

    present = set(_steps_on_disk(Part(root)))
    complete = ", ".join(str(s) for s in sorted(present)) or "NULL"
    for name in _TABLES:
        files = _table_files(root, name)
        view = f"{prefix}{name}"
        if not files:
            con.execute(f"CREATE OR REPLACE VIEW {view} AS {_EMPTY[name]}")
            continue
        for f in files:
            try:
                have = pq.read_schema(f).names
            except Exception as exc:  # a truncated or foreign file: name it
                raise ValueError(f"{f}: not a readable Parquet file ({exc})") from None
            missing = [c for c in _REQUIRED[name] if c not in have]
            if missing:
                raise ValueError(f"{f}: not a graphtrace {name} table (missing columns {', '.join(missing)})")
        dataset = ds.dataset(
            [str(f) for f in files],
            format="parquet",
            filesystem=_FILESYSTEM,
            partitioning=ds.partitioning(pa.schema([pa.field("step", pa.int64())]), flavor="hive"),
            partition_base_dir=str(root / name),
        )
        source = f"__graphtrace_{prefix}{name}"
        con.register(source, dataset)
        select = f"SELECT *, 0::INTEGER AS rank FROM {source} WHERE step IN ({complete})"
        if name == "steps":
            select = f"SELECT * REPLACE ({_WALL_TIME} AS wall_time) FROM ({select})"
        con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT step, rank, * EXCLUDE (step, rank) FROM ({select})")


def open_run(path: str | os.PathLike[str], *, connection: Any = None, _prefix: str = "") -> Any:
    """A DuckDB connection with the run's tables as views: ``steps``, ``params``, ``scopes``, ``snapshots``.

    Each view has the ``step`` and ``rank`` columns first and shows complete steps only (those with a
    ``steps`` row), whatever a killed writer left behind, each once, however the recorder merges
    files while it is read. ``rank`` is the process that recorded the row (0 for a run of one
    process; ``rank=K`` partitions of a run of several, see :func:`graphtrace.record`): a query on
    one rank (``WHERE rank = 1``) reads only that rank's files. ``steps``: ``loss``, ``accuracy``,
    ``learning_rate``, ``wall_time`` (TIMESTAMP, UTC), ``record_seconds``; ``params``: ``name``,
    ``scope``, ``data``, ``grad``, ``update``; ``scopes``: the columns of
    :func:`graphtrace.analysis.by_scope`; ``snapshots``: the rows of ``gt.save``'s Parquet layout
    (``kind`` = ``"node"`` / ``"edge"``).

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

    root = Path(path)
    manifest = _read_manifest(root)
    con = duckdb.connect() if connection is None else connection
    version = _layout(root)
    if version < 2:
        _open_format_1(root, con, _prefix)
        return con
    found = {name: _Found() for name in _TABLES}
    for part in _parts(root, manifest):
        for _ in range(_RETRIES):
            attempt = {name: _Found() for name in _TABLES}
            try:
                _read_part(part, attempt)
            except _Vanished:
                continue
            for name in _TABLES:
                found[name].files += attempt[name].files
                found[name].rows += attempt[name].rows
            break
        else:
            raise ValueError(f"{part.name()}: the run's files changed on each of {_RETRIES} tries to read them")
    for name in _TABLES:
        _create_view(con, root, name, found[name], f"{_prefix}{name}", ranked=version >= 3)
    return con


def _create_view(con: Any, root: Path, name: str, found: _Found, view: str, *, ranked: bool) -> None:
    """The view ``view`` over table ``name``: its files (one Arrow dataset per schema, ``rank`` the
    Hive partition key of a run of several ranks, so a filter on it skips the other ranks' files) and
    the rows read at once."""
    import pyarrow.dataset as ds

    selects = []
    groups: dict[pa.Schema, list[Path]] = {}
    for f, schema, rank in found.files:
        groups.setdefault(schema, []).append(f)
        if not ranked and rank != 0:
            raise AssertionError("a run of one process has rank 0 only")
    keys = [("rank", pa.int32())] if ranked else []
    if name == "snapshots":
        keys.append(("step", pa.int64()))
    for i, files in enumerate(groups.values()):
        dataset = ds.dataset(
            [str(f) for f in files],
            format="parquet",
            filesystem=_FILESYSTEM,
            partitioning=ds.partitioning(pa.schema(keys), flavor="hive") if keys else None,
            partition_base_dir=str(root / name),
        )
        source = f"__graphtrace_{view}_{i}"
        con.register(source, dataset)
        selects.append(f"SELECT * FROM {source}" if ranked else f"SELECT *, 0::INTEGER AS rank FROM {source}")
    if found.rows:
        source = f"__graphtrace_{view}_rows"
        con.register(source, pa.concat_tables(found.rows, promote_options="permissive"))
        selects.append(f"SELECT * FROM {source}")
    if not selects:
        con.execute(f"CREATE OR REPLACE VIEW {view} AS {_EMPTY[name]}")
        return
    if name == "steps":  # wall_time as a TIMESTAMP (UTC), whether a file holds it as text or as a timestamp
        selects = [f"SELECT * REPLACE ({_WALL_TIME} AS wall_time) FROM ({s})" for s in selects]
    union = " UNION ALL BY NAME ".join(f"({s})" for s in selects)
    con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT step, rank, * EXCLUDE (step, rank) FROM ({union})")


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


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def complete_steps(path: str | os.PathLike[str], rank: int | None = None) -> Sequence[int]:
    """The steps recorded completely in run ``path``, ascending (for tools that read the files directly:
    filter on them as :func:`open_run`'s views do).

    Of a run of several ranks: the steps complete on rank ``rank``, or (``rank`` None) the steps
    complete on every rank that has started.

    Examples
    --------
    See :func:`record`; ``complete_steps(path)`` there is ``[0, 1, 2]``.
    """
    root = Path(path)
    manifest = _read_manifest(root)
    parts = _parts(root, manifest)
    if rank is not None:
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < len(parts):
            raise ValueError(f"complete_steps: rank must be an int from 0 to {len(parts) - 1}, got {rank!r}")
        return _steps_on_disk(parts[rank])
    if len(parts) == 1:
        return _steps_on_disk(parts[0])
    started = [p for p in parts if p.rank in manifest["ranks"]]
    sets = [set(_steps_on_disk(p)) for p in started]
    return sorted(set.intersection(*sets)) if sets else []


def rank_status(path: str | os.PathLike[str]) -> dict[int, str]:
    """Each rank's state (see :func:`status`): rank -> ``"running"``, ``"finished"``, ``"failed"``,
    ``"interrupted"``, or ``"not started"`` (a rank of the world that has no manifest yet). A run of
    one process is rank 0."""
    root = Path(path)
    manifest = _read_manifest(root)
    parts = _parts(root, manifest)
    mine = {0: manifest} if len(parts) == 1 and parts[0].rank is None else manifest["ranks"]
    out = {}
    for part in parts:
        m = mine.get(part.rank or 0)
        state = "not started" if m is None else str(m.get("status"))
        if state == "running" and _lock_free(part):
            state = "interrupted"
        out[part.rank or 0] = state
    return out


def status(path: str | os.PathLike[str]) -> str:
    """The run's state: ``"running"``, ``"finished"``, ``"failed"`` or ``"interrupted"``.

    The manifest's ``status``, except that a run whose manifest says ``"running"`` while no recorder
    holds its lock is ``"interrupted"``: its recorder was killed (SIGKILL, a lost machine) before it
    could write the end of the run. Its complete steps read as usual. Of a run of several ranks
    (:func:`rank_status` gives each one's): running while a rank runs, else interrupted if one was,
    else failed if one failed, else finished.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import graphtrace as gt
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> run = gt.record(path, gt.nn.MLP(1, [1]))
    >>> gt.runs.status(path)
    'running'
    >>> run.close()
    >>> gt.runs.status(path)
    'finished'
    """
    from .layout import _combined_status

    return _combined_status([s for s in rank_status(path).values() if s != "not started"])


def _torch_health(con: Any, path: Any, layer: str, grads: str, unit: str, depth: int, rank: int) -> Any:
    """:func:`health` of a torch run: a layer's dead ReLU share is its dead units (features or
    channels 0 for every sample) over its ReLU units, summed over its scopes' rows; its saturated
    tanh share the mean of its scopes' (each the share of their tanh outputs' elements)."""
    have = set(_query(con, "SELECT * FROM scopes LIMIT 0", path).columns)
    units = "relu_units" if "relu_units" in have else "NULL::DOUBLE"
    dead = "dead_relu_units" if "dead_relu_units" in have else "NULL::DOUBLE"
    scope_layer = f"array_to_string(string_split({unit}, '/')[1:{depth}], '/')"
    sql = f"""
        WITH p AS (
            SELECT step, {layer} AS layer, {grads}
            FROM params WHERE rank = {rank} GROUP BY ALL
        ), s AS (
            SELECT step, {scope_layer} AS layer,
                   sum({dead}) FILTER (WHERE NOT isnan({dead}))
                       / nullif(sum({units}) FILTER (WHERE NOT isnan({units})), 0) AS dead_relu_share,
                   avg(tanh_saturated_share) FILTER (WHERE NOT isnan(tanh_saturated_share)) AS tanh_saturated_share
            FROM scopes WHERE rank = {rank} GROUP BY ALL
        )
        SELECT coalesce(p.step, s.step) AS step, coalesce(p.layer, s.layer) AS layer, param_abs_grad_mean,
               param_abs_grad_max, update_data_log10, dead_relu_share, tanh_saturated_share
        FROM p FULL OUTER JOIN s ON p.step = s.step AND p.layer = s.layer
        WHERE p.step IS NOT NULL OR s.dead_relu_share IS NOT NULL OR s.tanh_saturated_share IS NOT NULL
        ORDER BY step, layer
    """
    df = _query(con, sql, path)
    df["step"] = df["step"].astype("int64")
    df["layer"] = df["layer"].astype(str)
    for c in df.columns[2:]:
        df[c] = df[c].astype("float64")
    return df


def health(path: str | os.PathLike[str], depth: int = 2, *, rank: int = 0) -> Any:
    """Per step and layer of a recorded run: gradient size, update:data ratio, dead and saturated units.

    The run's version of :func:`graphtrace.analysis.health`, from its ``params`` table (every step)
    and its ``scopes`` table (every step by default; NaN in steps recorded without one).

    Parameters
    ----------
    path : str or path-like
        A run directory (see :func:`record`).
    depth : int, optional
        How many scope segments name a layer (2 for ``gt.nn.MLP``: ``MLP/Layer0``).
    rank : int, optional
        Of a run of several ranks, the rank to read (default 0; :func:`ranks` compares them).

    Returns
    -------
    pandas.DataFrame
        One row per (step, layer): ``step`` (int64), ``layer`` (str), ``param_abs_grad_mean``,
        ``param_abs_grad_max``, ``update_data_log10`` (float64: log10 of the mean |update| over the mean
        |data before the update| of its parameters, NaN when nothing moved; about -3 is healthy,
        Karpathy's rule of thumb),
        ``dead_relu_share`` (share of its ReLU units at exactly 0 for every sample of the step) and
        ``tanh_saturated_share`` (share of its tanh outputs with ``|t| > 0.97``). In a torch run a
        ReLU unit is a feature or channel (counted in each step's ``scopes`` rows), and a layer with
        units but no parameters of its own (``torch.relu`` called in a model's ``forward``) has a
        row of its own.

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
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ValueError(f"health: rank must be an int >= 0, got {rank!r}")
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
    if torch_run:  # a torch run's units are features or channels, counted in each scope's row
        return _torch_health(con, path, layer, grads, unit, depth, rank)
    sql = f"""
        WITH p AS (
            SELECT step, {layer} AS layer, {grads}
            FROM params WHERE rank = {rank} GROUP BY ALL
        ), u AS (
            SELECT step, {unit} AS unit,
                   -- NaN: a unit of another kind (no ReLU, no tanh): not applicable, never 0
                   min(relu_zero_share) FILTER (WHERE NOT isnan(relu_zero_share)) AS relu_all_zero,
                   avg(tanh_saturated_share) FILTER (WHERE NOT isnan(tanh_saturated_share)) AS tanh_share
            FROM scopes WHERE rank = {rank} AND len(string_split({unit}, '/')) = {depth + 1} GROUP BY ALL
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
