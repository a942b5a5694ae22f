"""Cost of recording a run (``gt.record`` / ``run.log``) on micrograd's demo step (W1), CPython default GC.

The default recording writes, every step, the parameters table, the step's ``by_scope`` table (read
from the live store) and the steps row, each an fsync'ed Parquet file written by the run's writer
thread. Its overhead is measured inside one training loop that logs every other step: the time of
``run.log`` (what the loop waits for) plus how much slower the step after a logged one is (the writer
at work), against the median unlogged step. Target: <= 5% of the step. Also shown: parameters only
(``scopes_every=0``) and the opt-in snapshot (``snapshot_every=1``: the whole trace, copied from the
store in ``run.log`` and encoded by the writer thread; target <= +50% of the step). Run:
``make bench`` (on each supported CPython found, in the nox environments) or
``python benchmarks/bench_runs.py``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import graphtrace as gt
from graphtrace.train import moons_demo, svm_loss

LOG: dict[str, list[float]] = {}
TOTAL: dict[str, float] = {}


# The two loops below spell the training step out, as micrograd's demo does: the new loss replaces the
# previous one before backward, so the previous step's graph is freed first (a helper function holding
# it until it returns would make backward sort two graphs and move their free into run.log).


def steps(n: int, key: str = "default", **record: Any) -> float:
    """The median step of ``n`` (``run.log`` included); ``TOTAL[key]``: all of them and ``run.close``."""
    model, X, y = moons_demo()
    times = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run = gt.record(Path(tmp) / "run", model, **record) if record.pop("on", False) or record else None
        logs = LOG.setdefault(key, [])
        for k in range(n):
            t0 = time.perf_counter()
            loss, acc = svm_loss(model, X, y)
            model.zero_grad()
            loss.backward()
            lr = 1.0 - 0.9 * k / 100
            for p in model.parameters():
                p.data -= lr * p.grad
            if run is not None:
                t1 = time.perf_counter()
                run.log(k, loss, accuracy=acc, learning_rate=lr)
                logs.append(time.perf_counter() - t1)
            times.append(time.perf_counter() - t0)
        if run is not None:
            run.close()  # waits for the writer thread: a writer slower than the loop shows here
    TOTAL[key] = time.perf_counter() - start
    return statistics.median(times)


def alternating(n: int, **record: Any) -> tuple[float, float, float]:
    """One run, one training loop, ``run.log`` on every other step: the median plain step after a
    logged step and after an unlogged one (the writer thread works during the former), and the
    median ``run.log``. Side by side in one loop, so the machine's drift cancels out."""
    model, X, y = moons_demo()
    after_log: list[float] = []
    after_plain: list[float] = []
    logs: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, gt.record(Path(tmp) / "run", model, **record) as run:
        logged = False
        for k in range(n + 2):
            t0 = time.perf_counter()
            loss, acc = svm_loss(model, X, y)
            model.zero_grad()
            loss.backward()
            lr = 1.0 - 0.9 * k / 100
            for p in model.parameters():
                p.data -= lr * p.grad
            if k >= 2:  # the first steps warm up
                (after_log if logged else after_plain).append(time.perf_counter() - t0)
            logged = k % 2 == 0
            if logged:
                t1 = time.perf_counter()
                run.log(k, loss, accuracy=acc, learning_rate=lr)
                logs.append(time.perf_counter() - t1)
    med = statistics.median
    return med(after_log), med(after_plain), med(logs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40, help="steps of the alternating loop (default 40)")
    args = ap.parse_args()
    a, b, log = alternating(args.steps)
    print(
        f"CPython {platform.python_version()}: W1 step {b * 1e3:.0f} ms; "
        f"run.log (parameters + by_scope table + step row) {log * 1e3:.1f} ms "
        f"= {100 * log / b:.1f}%; the next step {100 * (a / b - 1):+.1f}% (the writer thread at work); "
        f"recording overhead {100 * ((a + log) / b - 1):+.1f}% of the step (target <= 5%)"
    )
    # one rank of a run of several processes (its own partition, lock and manifest): the same cost per rank
    a, b, log = alternating(args.steps, rank=1, world_size=2)
    print(
        f"as rank 1 of 2 (rank partitions): W1 step {b * 1e3:.0f} ms; run.log {log * 1e3:.1f} ms; "
        f"recording overhead {100 * ((a + log) / b - 1):+.1f}% of the step (target <= 5%)"
    )
    n = max(6, args.steps // 4)
    steps(n, "params", scopes_every=0)
    log = statistics.median(LOG["params"])
    print(f"parameters + step row only (scopes_every=0): run.log {log * 1e3:.1f} ms = {100 * log / b:.1f}% of the step")
    k = max(12, args.steps // 2)  # more steps than the writer's queue holds: its pace shows in the total
    plain = steps(k, "plain")
    t = steps(k, "snapshot", snapshot_every=1)  # opt-in: the whole trace every step
    ratio = TOTAL["snapshot"] / TOTAL["plain"]
    print(
        f"with snapshot_every=1: median step {t * 1e3:.0f} ms ({100 * (t / plain - 1):+.0f}%); "
        f"{k} steps and close {TOTAL['snapshot']:.1f} s against {TOTAL['plain']:.1f} s unrecorded "
        f"({100 * (ratio - 1):+.0f}%; target <= +50%)"
    )


if __name__ == "__main__":
    main()
