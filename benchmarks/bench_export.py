"""Export speed on micrograd's demo step graph (about 65.8k nodes): frames, HTML, save/load.

Targets (issue 3): nodes_frame + edges_frame <= 1 s together, the HTML file <= 5 s.
Run: ``make bench`` or ``python benchmarks/bench_export.py``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import graphtrace as gt
from graphtrace.train import moons_demo, svm_loss


def timed(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    model, X, y = moons_demo()
    loss, _ = svm_loss(model, X, y)
    loss.backward()
    t_snap = timed(lambda: gt.to_networkx(loss))
    G = gt.to_networkx(loss)
    print(f"demo step graph: {G.number_of_nodes():,} nodes, {G.number_of_edges():,} edges")
    t_nodes = timed(lambda: gt.nodes_frame(G))
    t_edges = timed(lambda: gt.edges_frame(G))
    print(f"to_networkx snapshot: {t_snap:.3f} s")
    print(f"nodes_frame {t_nodes:.3f} s + edges_frame {t_edges:.3f} s = {t_nodes + t_edges:.3f} s (target <= 1 s)")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        t_html = timed(lambda: gt.to_html(G, out / "step.html"), repeat=1)
        size = (out / "step.html").stat().st_size / 1e6
        print(f"to_html: {t_html:.2f} s, {size:.1f} MB (target <= 5 s)")
        for suffix in (".json", ".graphml", ".parquet"):
            p = out / f"step{suffix}"
            t_save = timed(lambda p=p: gt.save(G, p), repeat=1)
            t_load = timed(lambda p=p: gt.load(p), repeat=1)
            print(f"save {suffix}: {t_save:.2f} s, load: {t_load:.2f} s, {p.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
