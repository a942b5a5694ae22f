"""A training run as a dataset: Parquet files plus a JSON manifest, queried with DuckDB.

Layout of a run directory recorded by one process (format 2; every file is written whole to a hidden
temporary name, then renamed)::

    runs/NAME/
      manifest.json                            graphtrace version, model, hyper-parameters, times, status
      .lock                                    locked while a recorder has the run open (an OS file lock)
      steps/part-FIRST-LAST.parquet            one row per step: step, loss, accuracy, learning_rate, ...
      params/part-FIRST-LAST.parquet           one row per parameter and step: step, name, scope, data, grad, update
      scopes/part-FIRST-LAST.parquet           each step's gt.analysis.by_scope table (scopes_every=1)
      anomalies/part-FIRST-LAST.parquet        where a step's non-finite values started (steps that have any)
      .staged/TABLE/step=K.parquet             a step written but not compacted yet
      snapshots/step=0/trace.parquet           (opt-in) the step's whole trace, in gt.save's Parquet layout

A run recorded by several processes (format 3: ``rank=``, ``world_size=``, or a ``torch.distributed``
job) keeps each rank's files in a Hive partition, with a lock and a small manifest per rank::

    runs/NAME/
      manifest.json                            what the ranks share: model, parameters, hparams, world_size
      ranks/rank=K.json                        rank K's status, times, resumes (written by rank K only)
      ranks/rank=K.lock                        locked while rank K's recorder has the run open
      steps/rank=K/part-FIRST-LAST.parquet     rank K's rows (params, scopes, anomalies alike)
      .staged/rank=K/TABLE/step=S.parquet      rank K's steps not compacted yet
      snapshots/rank=K/step=S/trace.parquet    (opt-in) rank K's trace of step S

Every file of ``steps``, ``params``, ``scopes`` and ``anomalies`` has the ``step`` column (the rank
is the partition key only: Spark refuses a column that is also one). Each step is first written as
its own hidden staged files; every ``chunk_steps`` steps (100 by default) and at ``close`` the writer
merges the staged complete steps into one ``part-FIRST-LAST.parquet`` per table (see
:func:`compact`), so a 10,000-step run has about 100 files per table. Dask
(``dask.dataframe.read_parquet``) and Spark (``spark.read.parquet``) read a table's folder as it is,
with ``rank`` as a partition column for a run of several ranks: the staged files live outside it, so
they see the compacted steps, each once (all of them once the run is closed). A step's ``steps`` row
is written last (and merged last): a step is complete once it has one, and :func:`open_run`'s views
show every complete step exactly once, staged or compacted, so a run killed at any moment, a merge
included, reads as its completed steps. Runs of format 1 (a ``step=K`` folder per step and table, the
step as the hive partition key) still read and resume.

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

The package's parts: :mod:`~graphtrace.runs.layout` (the files, the manifests, compaction and the locks),
:mod:`~graphtrace.runs.recorder` (:func:`record`, :class:`Run` and its writer thread),
:mod:`~graphtrace.runs.read` (:func:`open_run`, :func:`open_runs`, :func:`complete_steps`,
:func:`status`, :func:`rank_status`, :func:`health`), :mod:`~graphtrace.runs.ranks` (:func:`ranks`: the
ranks compared) and :mod:`~graphtrace.runs.tensorboard` (:func:`to_tensorboard`).
"""

from __future__ import annotations

from .layout import CHUNK_STEPS, FORMAT, FORMAT_VERSION, compact
from .ranks import RankComparison, ranks
from .read import complete_steps, health, open_run, open_runs, rank_status, run_names, status
from .recorder import Run, record
from .tensorboard import to_tensorboard

__all__ = [
    "CHUNK_STEPS",
    "FORMAT",
    "FORMAT_VERSION",
    "RankComparison",
    "Run",
    "compact",
    "complete_steps",
    "health",
    "open_run",
    "open_runs",
    "rank_status",
    "ranks",
    "record",
    "run_names",
    "status",
    "to_tensorboard",
]
