"""Long recorded runs: files per table, and the time to open them and count their rows (runs v2 and #29).

Records 10,000 steps of micrograd's demo model (337 parameters; the loss of a 10-sample batch, so every
step also writes its scope table) with the default compaction (100 steps per file), then times
``gt.open_run`` + ``SELECT count(*) FROM params`` (target <= 2 s) and counts the files of each table
(target <= 200). Then the same for a run of 8 ranks x 1,000 steps (``rank=K, world_size=8``: each rank's
Hive partition; target <= 2 s), and a query on one rank (``WHERE rank = 3``, which opens that rank's
files only). Training itself is left out (the loss is computed once): the cost measured is the store's.
Each open is timed ``--repeat`` times, alternating the two runs, and the median shown (the machine may
be busy). Run: ``make bench`` or ``python benchmarks/bench_store.py [--steps N] [--ranks R]``.
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


def _record(path: Path, loss: Any, model: Any, steps: int, ranks: int) -> float:
    t0 = time.perf_counter()
    for rank in range(ranks):  # one rank after another: the files are the same as side by side
        kwargs = {"rank": rank, "world_size": ranks} if ranks > 1 else {}
        with gt.record(path, model, **kwargs) as run:  # type: ignore[arg-type]
            for k in range(steps):
                run.log(k, loss)
    return time.perf_counter() - t0


def _files(path: Path) -> dict[str, int]:
    return {t: sum(1 for p in (path / t).rglob("*") if p.is_file()) for t in ("steps", "params", "scopes")}


def _open_and_count(path: Path, where: str = "") -> tuple[float, int]:
    t0 = time.perf_counter()
    con = gt.open_run(path)
    rows = con.sql(f"SELECT count(*) FROM params {where}").fetchall()[0][0]
    return time.perf_counter() - t0, rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10_000, help="steps of the run of one process")
    ap.add_argument("--ranks", type=int, default=8, help="ranks of the run of several processes")
    ap.add_argument("--rank-steps", type=int, default=1_000, help="steps of each rank")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    model, X, y = moons_demo(samples=10)
    loss, _ = svm_loss(model, X, y)
    loss.backward()
    with tempfile.TemporaryDirectory() as d:
        one, many = Path(d) / "long", Path(d) / "ranks"
        t_one = _record(one, loss, model, args.steps, 1)
        t_many = _record(many, loss, model, args.rank_steps, args.ranks)
        times: dict[str, list[float]] = {"one": [], "many": [], "rank3": []}
        rows: dict[str, int] = {}
        for _ in range(args.repeat):  # alternating, so that the machine's load falls on each alike
            for key, path, where in ((("one", one, "")), ("many", many, ""), ("rank3", many, "WHERE rank = 3")):
                t, rows[key] = _open_and_count(path, where)
                times[key].append(t)
        files_one, files_many = _files(one), _files(many)
    med = {k: statistics.median(v) for k, v in times.items()}

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(
        f"a {args.steps:,}-step recorded run of the demo model ({rows['one']:,} params rows), "
        f"recorded in {t_one:.1f} s:"
    )
    worst = max(files_one.values())
    print(f"  files per table: {files_one}  target <= 200: {verdict(worst <= 200)}")
    print(
        f"  open_run + SELECT count(*) FROM params: median {med['one']:.2f} s of {args.repeat}  "
        f"target <= 2 s: {verdict(med['one'] <= 2)}"
    )
    print(
        f"a run of {args.ranks} ranks x {args.rank_steps:,} steps ({rows['many']:,} params rows), recorded in "
        f"{t_many:.1f} s; files per table (all ranks): {files_many}"
    )
    print(
        f"  open_run + SELECT count(*) FROM params: median {med['many']:.2f} s of {args.repeat}  "
        f"target <= 2 s: {verdict(med['many'] <= 2)}"
    )
    print(f"  the same, WHERE rank = 3 (its files only): median {med['rank3']:.2f} s ({rows['rank3']:,} rows)")


if __name__ == "__main__":
    main()
