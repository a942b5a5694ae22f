"""Cost of recording a run (``gt.record`` / ``run.log``) on micrograd's demo step (W1), CPython default GC.

Median step time of the demo with no recording and with the default recording (every step: the
parameters table, the step's ``by_scope`` table read from the live store, and the steps row, each an
fsync'ed Parquet file written by the run's writer thread), and the time of ``run.log`` itself (what
the training loop waits for). Target for the default: <= 5% of the step. Also shown: parameters
only (``scopes_every=0``) and the opt-in snapshot (``snapshot_every=1``: the whole trace). Run:
``make bench`` or ``python benchmarks/bench_runs.py``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import graphtrace as gt
from graphtrace.train import moons_demo, svm_loss

LOG: dict[str, list[float]] = {}


def steps(n: int, key: str = "default", **record: Any) -> float:
    model, X, y = moons_demo()
    times = []
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
            run.close()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=15, help="steps per configuration (default 15)")
    args = ap.parse_args()
    base = [steps(args.steps)]
    rec = [steps(args.steps, on=True)]
    base.append(steps(args.steps))  # bracket the recorded run: the machine's drift shows
    rec.append(steps(args.steps, on=True))
    b, r = statistics.mean(base), statistics.mean(rec)
    print(f"W1 step, median of {args.steps} (x2, interleaved): plain {b * 1e3:.0f} ms, recorded {r * 1e3:.0f} ms")
    log = statistics.median(LOG["default"])
    print(
        f"recording overhead: {100 * (r / b - 1):+.1f}% of the step between runs; run.log itself {log * 1e3:.1f} ms "
        f"= {100 * log / b:.1f}% of the step (target <= 5%; parameters + by_scope table + step row)"
    )
    steps(args.steps, "params", scopes_every=0)
    log = statistics.median(LOG["params"])
    print(f"parameters + step row only (scopes_every=0): run.log {log * 1e3:.1f} ms = {100 * log / b:.1f}% of the step")
    t = steps(max(3, args.steps // 3), snapshot_every=1)  # opt-in: it copies the whole trace
    print(f"with snapshot_every=1: {t * 1e3:.0f} ms per step ({100 * (t / b - 1):+.0f}%)")


if __name__ == "__main__":
    main()
