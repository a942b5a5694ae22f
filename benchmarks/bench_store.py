"""A long recorded run: files per table, and the time to open it and count its rows (runs v2 issue).

Records 10,000 steps of micrograd's demo model (337 parameters; the loss of a 10-sample batch, so every
step also writes its scope table) with the default compaction (100 steps per file), then times
``gt.open_run`` + ``SELECT count(*) FROM params`` (target <= 2 s) and counts the files of each table
(target <= 200). Training itself is left out (the loss is computed once): the cost measured is the
store's. Run: ``make bench`` or ``python benchmarks/bench_store.py [--steps N]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import graphtrace as gt
from graphtrace.train import moons_demo, svm_loss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10_000)
    steps = ap.parse_args().steps
    model, X, y = moons_demo(samples=10)
    loss, _ = svm_loss(model, X, y)
    loss.backward()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "long"
        t0 = time.perf_counter()
        with gt.record(path, model) as run:
            for k in range(steps):
                run.log(k, loss)
        t_record = time.perf_counter() - t0
        files = {t: sum(1 for p in (path / t).rglob("*") if p.is_file()) for t in ("steps", "params", "scopes")}
        t0 = time.perf_counter()
        con = gt.open_run(path)
        rows = con.sql("SELECT count(*) FROM params").fetchall()[0][0]
        t_open = time.perf_counter() - t0
    print(f"a {steps:,}-step recorded run of the demo model ({rows:,} params rows), recorded in {t_record:.1f} s:")
    worst = max(files.values())
    print(f"  files per table: {files}  target <= 200: {'ok' if worst <= 200 else 'MISSED'}")
    print(
        f"  open_run + SELECT count(*) FROM params: {t_open:.2f} s  target <= 2 s: {'ok' if t_open <= 2 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
