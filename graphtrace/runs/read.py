"""Reading recorded runs: :func:`open_run` / :func:`open_runs` (DuckDB views), :func:`complete_steps`
and :func:`health`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .layout import (
    _CHUNK_FILE,
    _COMPACTED,
    _REQUIRED,
    _STEP_DIR,
    _TABLES,
    _chunk_files,
    _chunk_steps,
    _layout,
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
    "steps": "SELECT NULL::BIGINT AS step, NULL::DOUBLE AS loss, NULL::DOUBLE AS accuracy, "
    "NULL::DOUBLE AS learning_rate, NULL::VARCHAR AS wall_time, NULL::DOUBLE AS record_seconds WHERE false",
    "params": "SELECT NULL::BIGINT AS step, NULL::VARCHAR AS name, NULL::VARCHAR AS scope, NULL::DOUBLE AS data, "
    "NULL::DOUBLE AS grad, NULL::DOUBLE AS update WHERE false",
    "scopes": "SELECT NULL::BIGINT AS step, NULL::VARCHAR AS scope, NULL::BIGINT AS nodes, "
    "NULL::BIGINT AS output_node, NULL::DOUBLE AS output_data, NULL::DOUBLE AS output_grad, "
    "NULL::BIGINT AS param_count, "
    "NULL::DOUBLE AS param_abs_grad_sum, NULL::DOUBLE AS param_abs_grad_mean, NULL::DOUBLE AS param_abs_grad_max, "
    "NULL::DOUBLE AS relu_zero_share, NULL::DOUBLE AS tanh_saturated_share, NULL::BIGINT AS nonfinite, "
    "NULL::DOUBLE AS relu_units, NULL::DOUBLE AS dead_relu_units WHERE false",
    "snapshots": "SELECT NULL::BIGINT AS step, NULL::VARCHAR AS kind WHERE false",
}


_FILES = {"steps": "part.parquet", "params": "part.parquet", "scopes": "part.parquet", "snapshots": "trace.parquet"}


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


def _torch_health(con: Any, path: Any, layer: str, grads: str, unit: str, depth: int) -> Any:
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
            FROM params GROUP BY ALL
        ), s AS (
            SELECT step, {scope_layer} AS layer,
                   sum({dead}) FILTER (WHERE NOT isnan({dead}))
                       / nullif(sum({units}) FILTER (WHERE NOT isnan({units})), 0) AS dead_relu_share,
                   avg(tanh_saturated_share) FILTER (WHERE NOT isnan(tanh_saturated_share)) AS tanh_saturated_share
            FROM scopes GROUP BY ALL
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
        return _torch_health(con, path, layer, grads, unit, depth)
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
