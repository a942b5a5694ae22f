"""The run report of a 100-step recorded run of micrograd's demo (runs v2 issue: <= 2 s, <= 3 MB).

Records ``graphtrace train``'s default run (100 steps, scope tables every step) once, then times
``graphtrace.report.report`` on it (median of 3) and reports the page's size. Also the same run with
a snapshot at the last step (its collapsed graph embedded in the page). Run: ``make bench`` or
``python benchmarks/bench_report.py``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import graphtrace as gt
from graphtrace.report import report
from graphtrace.train import moons_demo, train_steps


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        for label, every in (("without snapshots", 0), ("with a snapshot every 50 steps", 50)):
            model, X, y = moons_demo()
            path = Path(d) / f"run{every}"
            with gt.record(path, model, snapshot_every=every) as run:
                list(train_steps(model, X, y, 100, run=run))
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                page = report(path)
                times.append(time.perf_counter() - t0)
            t = statistics.median(times)
            size = page.stat().st_size / 1e6
            verdict = "ok" if t <= 2 and size <= 3 else "MISSED"
            print(
                f"report of the 100-step demo run {label}: {t:.2f} s, {size:.2f} MB (target <= 2 s, <= 3 MB: {verdict})"
            )


if __name__ == "__main__":
    main()
