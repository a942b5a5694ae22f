"""micrograd's demo step (W1) on every supported CPython found, one table: version, ms, ratio.

Each interpreter runs ``bench_w1.py --w1-only`` in the virtual environment nox made for it
(``make bench`` runs ``nox -s tests --install-only`` first), graphtrace and micrograd 0.1.0 side
by side in one process, default GC. Run: ``make bench`` or ``python benchmarks/bench_pythons.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.45


def interpreters() -> list[tuple[str, Path]]:
    found = []
    for minor in ("3.11", "3.12", "3.13"):
        py = ROOT / ".nox" / f"tests-{minor.replace('.', '-')}" / "bin" / "python"
        if py.exists():
            found.append((minor, py))
    return found or [(platform.python_version(), Path(sys.executable))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30, help="training steps per engine and interpreter (default 30)")
    args = ap.parse_args()
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line), "?")
    print(f"{datetime.date.today()}, {cpu}, {os.cpu_count()} cores; W1 median of {args.steps} steps, gc on")
    print(f"{'CPython':<10} {'graphtrace ms':>14} {'micrograd ms':>13} {'ratio':>7}  target <= {TARGET}")
    for _, py in interpreters():
        out = subprocess.run(
            [str(py), str(ROOT / "benchmarks" / "bench_w1.py"), "--w1-only", "--steps", str(args.steps)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        row = json.loads(out.strip().splitlines()[-1])
        verdict = "ok" if row["ratio"] <= TARGET else "ABOVE TARGET"
        print(
            f"{row['python']:<10} {row['graphtrace_ms']:>14.0f} {row['micrograd_ms']:>13.0f} {row['ratio']:>7.3f}  "
            f"{verdict} (losses agree to {row['losses_agree_to']:.1e})"
        )


if __name__ == "__main__":
    main()
