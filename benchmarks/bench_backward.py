"""Backward costs its own graph only, and threads share the store without slowing each other.

1. A 4-node backward on an empty store, and beside an unrelated 600,000-node chain (target: within 2x).
2. A training loop that keeps every step's loss (``history.append(loss)``): step time stays flat.
3. Eight threads doing independent training work against the same work done serially (target: <= 1.5x),
   and micrograd 0.1.0 doing the same, for the interpreter's own cost of threads on this machine.

Run: ``make bench`` (or ``python benchmarks/bench_backward.py``).
"""

from __future__ import annotations

import gc
import platform
import random
import statistics
import threading
import time
from typing import Any

from micrograd import nn as mg_nn

import graphtrace as gt


def tiny_backward_us(repeats: int = 2000) -> float:
    """Median µs of building and backpropagating ``(a * b + a) * 2`` (4 recorded nodes + constants)."""
    times = []
    for _ in range(repeats):
        a, b = gt.Value(2.0), gt.Value(3.0)
        y = (a * b + a) * 2
        t0 = time.perf_counter()
        y.backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def beside_a_big_graph(n: int = 600_000) -> tuple[float, float]:
    empty = tiny_backward_us()
    big = gt.Value(1.0)
    for _ in range(n // 2):  # each op adds the result and a constant
        big = big * 1.0
    beside = tiny_backward_us()
    del big
    return empty, beside


def history_loop(steps: int = 60) -> list[float]:
    """Step times (s) of a loop that keeps every step's loss Value alive."""
    random.seed(0)
    model = gt.nn.MLP(2, [16, 16, 1])
    data = [([random.uniform(-1, 1), random.uniform(-1, 1)], random.choice([-1.0, 1.0])) for _ in range(20)]
    history = []
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        history.append(_step(model, data))
        times.append(time.perf_counter() - t0)
    return times


def _step(model: Any, data: list[tuple[list[float], float]]) -> Any:
    """One SGD step of the hinge loss over ``data``; returns the loss Value."""
    losses = [(1 + -y * model(x)).relu() for x, y in data]
    loss = sum(losses) * (1.0 / len(losses))
    model.zero_grad()
    loss.backward()
    for p in model.parameters():
        p.data -= 0.05 * p.grad
    return loss


def _work(seed: int, steps: int = 4, engine: str = "graphtrace") -> None:
    """A small training run; ``engine="micrograd"`` runs the same with micrograd 0.1.0 for comparison."""
    rng = random.Random(seed)
    model: Any = gt.nn.MLP(2, [8, 8, 1]) if engine == "graphtrace" else mg_nn.MLP(2, [8, 8, 1])
    data = [([rng.uniform(-1, 1), rng.uniform(-1, 1)], rng.choice([-1.0, 1.0])) for _ in range(10)]
    for _ in range(steps):
        _step(model, data)


def threads_vs_serial(n: int = 8, engine: str = "graphtrace") -> tuple[float, float]:
    t0 = time.perf_counter()
    for k in range(n):
        _work(k, engine=engine)
    serial = time.perf_counter() - t0
    threads = [threading.Thread(target=_work, args=(k, 4, engine)) for k in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return serial, time.perf_counter() - t0


def main() -> None:
    print(f"python {platform.python_version()}; gc on")
    empty, beside = beside_a_big_graph()
    print(
        f"4-node backward: {empty:.1f} µs on an empty store, {beside:.1f} µs beside a 600,000-node graph "
        f"(ratio {beside / empty:.2f}, target <= 2)"
    )
    gc.collect()
    times = history_loop()
    first, last = statistics.median(times[5:15]), statistics.median(times[-10:])
    print(
        f"training loop keeping every loss: median step {first * 1e3:.1f} ms (steps 5-14), "
        f"{last * 1e3:.1f} ms (last 10 of {len(times)}); ratio {last / first:.2f} (flat: ~1)"
    )
    for engine in ("graphtrace", "micrograd"):
        gc.collect()
        _work(0, engine=engine)  # warm up
        ratios = []
        for _ in range(5):
            serial, threaded = threads_vs_serial(engine=engine)
            ratios.append(threaded / serial)
        print(
            f"8 x independent training work, {engine}: 8 threads / serial wall time, median of 5: "
            f"{statistics.median(ratios):.2f} (runs {', '.join(f'{r:.2f}' for r in ratios)})"
            + (" target <= 1.5" if engine == "graphtrace" else " (the interpreter's own cost of threads)")
        )


if __name__ == "__main__":
    main()
