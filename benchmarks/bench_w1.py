"""graphtrace vs micrograd==0.1.0, side by side in one process, on micrograd's own demo step.

make_moons(n_samples=100, noise=0.1) with np.random.seed(1337) and random.seed(1337), MLP(2, [16, 16, 1]),
SVM max-margin loss + 1e-4 * L2, forward + backward + SGD with lr = 1.0 - 0.9 * k / 100.
Default interpreter settings: the cyclic garbage collector stays on for both engines.

Run: ``make bench`` (or ``python benchmarks/bench_w1.py --steps 20`` for a quicker look).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from micrograd import engine as mg_engine
from micrograd import nn as mg_nn
from sklearn.datasets import make_moons

import graphtrace as gt
from graphtrace import store


def moons() -> tuple[Any, Any]:
    np.random.seed(1337)
    X, y = make_moons(n_samples=100, noise=0.1)
    return X, y * 2 - 1


def make_loss(value_cls: Any, model: Any, X: Any, y: Any) -> Callable[[], tuple[Any, float]]:
    """micrograd's demo.ipynb ``loss()``, verbatim but for the Value class."""

    def loss() -> tuple[Any, float]:
        inputs = [list(map(value_cls, xrow)) for xrow in X]
        scores = list(map(model, inputs))
        losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y, scores, strict=True)]
        data_loss = sum(losses) * (1.0 / len(losses))
        alpha = 1e-4
        reg_loss = alpha * sum(p * p for p in model.parameters())
        total_loss = data_loss + reg_loss
        accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores, strict=True)]
        return total_loss, sum(accuracy) / len(accuracy)

    return loss


def train(engine: str, steps: int) -> tuple[list[float], list[float], float]:
    """Per-step times, losses and final accuracy for one engine."""
    X, y = moons()
    random.seed(1337)
    if engine == "micrograd":
        model: Any = mg_nn.MLP(2, [16, 16, 1])
        loss = make_loss(mg_engine.Value, model, X, y)
    else:
        model = gt.nn.MLP(2, [16, 16, 1])
        loss = make_loss(gt.Value, model, X, y)
    times, losses = [], []
    acc = 0.0
    total_loss = None
    for k in range(steps):
        t0 = time.perf_counter()
        total_loss, acc = loss()
        model.zero_grad()
        total_loss.backward()
        learning_rate = 1.0 - 0.9 * k / 100
        for p in model.parameters():
            p.data -= learning_rate * p.grad
        times.append(time.perf_counter() - t0)
        losses.append(float(total_loss.data))
    del total_loss
    return times, losses, acc


def chain_backward(n: int) -> tuple[float, str]:
    x = gt.Value(1.0, label="x")
    y = x
    for _ in range(n):
        y = y * 1.0
    t0 = time.perf_counter()
    y.backward()
    t = time.perf_counter() - t0
    ok = "ok" if x.grad == 1.0 else f"WRONG grad {x.grad}"
    del x, y
    m = mg_engine.Value(1.0)
    z = m
    for _ in range(n):
        z = z * 1.0
    try:
        z.backward()
        mg = "ok"
    except RecursionError:
        mg = "RecursionError"
    del m, z
    gc.collect()
    return t, f"graphtrace {ok}; micrograd: {mg}"


def bytes_per_node(engine: str) -> float:
    """tracemalloc bytes per live node of one demo step's graph (forward + backward)."""
    X, y = moons()
    random.seed(1337)
    if engine == "graphtrace":
        model: Any = gt.nn.MLP(2, [16, 16, 1])
        loss = make_loss(gt.Value, model, X, y)
    else:
        model = mg_nn.MLP(2, [16, 16, 1])
        loss = make_loss(mg_engine.Value, model, X, y)
    before = len(store.GRAPH)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    total_loss, _ = loss()
    total_loss.backward()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    nodes = len(gt.to_networkx(total_loss)) - len(model.parameters()) if engine == "graphtrace" else 0
    if engine == "graphtrace":
        assert len(store.GRAPH) - before == nodes, "store holds more than the step's graph"
    else:
        seen, stack = set(), [total_loss]
        while stack:
            v = stack.pop()
            if v not in seen:
                seen.add(v)
                stack.extend(v._prev)
        nodes = len(seen) - len(model.parameters())
    del total_loss
    gc.collect()
    return used / nodes


def memory_over_steps(steps: int, batch: int = 10) -> list[tuple[int, float]]:
    """tracemalloc current MB after 10 and after ``steps`` training steps (graphtrace).

    Same model and loss as the demo, on the first ``batch`` points, so 1,000 steps take about a minute.
    """
    X, y = moons()
    X, y = X[:batch], y[:batch]
    random.seed(1337)
    model = gt.nn.MLP(2, [16, 16, 1])
    loss = make_loss(gt.Value, model, X, y)
    marks = {10, 100, steps}
    out = []
    tracemalloc.start()
    for k in range(steps):
        total_loss, _ = loss()
        model.zero_grad()
        total_loss.backward()
        for p in model.parameters():
            p.data -= 0.01 * p.grad
        del total_loss
        if k + 1 in marks:
            store.live_count()  # apply the queued frees of the step just dropped
            out.append((k + 1, tracemalloc.get_traced_memory()[0] / 1e6))
    tracemalloc.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100, help="training steps per engine (default 100)")
    ap.add_argument("--memory-steps", type=int, default=1000, help="steps for the flat-memory check")
    ap.add_argument("--chain", type=int, default=1_000_000, help="length of the backward chain")
    ap.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--w1-only", action="store_true", help="only the demo step; print one JSON line")
    args = ap.parse_args()
    if args.w1_only:  # one row of bench_pythons.py's table
        mg_times, mg_losses, _ = train("micrograd", args.steps)
        gc.collect()
        gt_times, gt_losses, _ = train("graphtrace", args.steps)
        mg_med, gt_med = statistics.median(mg_times), statistics.median(gt_times)
        row = {
            "python": platform.python_version(),
            "graphtrace_ms": gt_med * 1e3,
            "micrograd_ms": mg_med * 1e3,
            "ratio": gt_med / mg_med,
            "losses_agree_to": max(abs(a - b) for a, b in zip(mg_losses, gt_losses, strict=True)),
        }
        print(json.dumps(row))
        return
    if args.memory_only:  # run in a fresh process, so the store starts empty
        for k, mb in memory_over_steps(args.memory_steps):
            print(f"{k} {mb}")
        return

    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; gc on")
    cold = bytes_per_node("graphtrace")  # first, while the store's index dicts are still empty
    mg_times, mg_losses, mg_acc = train("micrograd", args.steps)
    gc.collect()
    gt_times, gt_losses, gt_acc = train("graphtrace", args.steps)
    gc.collect()
    mg_med, gt_med = statistics.median(mg_times), statistics.median(gt_times)
    worst = max(abs(a - b) for a, b in zip(mg_losses, gt_losses, strict=True))
    print(f"demo step, median of {args.steps}: micrograd {mg_med:.3f} s, graphtrace {gt_med:.3f} s")
    print(f"ratio graphtrace/micrograd: {gt_med / mg_med:.3f} (target <= 0.5, stretch 0.25)")
    print(
        f"losses agree to {worst:.1e} (need <= 1e-12): {'yes' if worst <= 1e-12 else 'NO'}; "
        f"final loss {gt_losses[-1]!r}, accuracy graphtrace {gt_acc:.2f} micrograd {mg_acc:.2f}"
    )

    t, verdict = chain_backward(args.chain)
    print(f"backward of a {args.chain:,}-node chain: {t:.2f} s ({verdict})")
    print(
        f"bytes per live node of a demo step (tracemalloc): graphtrace {cold:.0f} counting the growth of the "
        f"store's node/succ/pred dicts from empty, {bytes_per_node('graphtrace'):.0f} once they are sized; "
        f"micrograd {bytes_per_node('micrograd'):.0f} (target <= 1024)"
    )
    fresh = subprocess.run(
        [sys.executable, __file__, "--memory-only", "--memory-steps", str(args.memory_steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    mem = [(int(k), float(mb)) for k, mb in (line.split() for line in fresh.stdout.splitlines())]
    print(
        "traced memory (fresh process), demo model on 10-point batches: "
        + ", ".join(f"after {k} steps {mb:.3f} MB" for k, mb in mem)
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
