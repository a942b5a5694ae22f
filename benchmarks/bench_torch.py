"""What graphtrace's PyTorch bridge costs, side by side with what people use instead (issue #28).

CPU, one torch thread, as CI has it. Every figure is a ratio to the plain model in the same
process, from interleaved repetitions (plain, traced, anomaly mode, plain, ...), so a slow spell of
the machine hits every variant; medians, with the range of the per-repetition ratios.

1. Tracing (``gt.pytorch.trace`` with every statistic, and with ``stats="norms"``: the L2 norms and
   non-finite counts alone; forward + backward, the graph built at the exit included) against
   ``torch.autograd.detect_anomaly(check_nan=True)`` on ResNet-18 (1x3x64x64 and 8x3x224x224), the
   GPT-style model (6 blocks, d=128, seq 64, batch 8) and GPT-2 small's architecture (seq 64, batch
   2). Targets: <= 1.5x, <= 1.10x, <= 1.5x, <= 1.25x, and below anomaly mode; the build <= 10% of
   the plain step (ResNet-18 64x64).
2. Recording, as a user runs it: a whole SGD loop (200 steps for the MLP 784-512-512-10 batch 128;
   ``GT_BENCH_RESNET_STEPS``, default 20, for ResNet-18 8x3x224x224), opened and closed, against the
   same loop unrecorded: ``gt.record`` + ``run.log`` every step (targets <= +5% and <= +2%), the same
   with a trace of every step given to ``run.log``, ``detect_anomaly(check_nan=True)``, TensorBoard
   (``SummaryWriter.add_histogram`` of every parameter and gradient every step) and Weights & Biases
   (``wandb.watch(model, log="all", log_freq=1)``, ``WANDB_MODE=offline``), where installed.
3. The ResNet-18 trace's collapsed page: first draw in headless Chromium (<= 500 ms).

``GT_BENCH_QUICK=1`` runs fewer repetitions and skips the large models; ``GT_BENCH_TRACING_ONLY=1``
(or ``--only tracing``) runs part 1 alone, ``--only recording`` (or ``page``) another part, and
``--record-only`` the recording loops without the other tools' variants. Run: ``make bench`` or
``python benchmarks/bench_torch.py``.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

try:
    import torch
except ImportError:  # pragma: no cover - torch is the optional extra
    print("bench_torch: torch is not installed (pip install 'graphtrace-nx[torch]'); skipped")
    sys.exit(0)

import graphtrace as gt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from torch_models import GPT, ResNet18, gpt2_small, lm_loss

QUICK = os.environ.get("GT_BENCH_QUICK") == "1"
TRACING_ONLY = os.environ.get("GT_BENCH_TRACING_ONLY") == "1"


def _spread(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


# ---- 1. tracing ----------------------------------------------------------------------------------
def tracing(name: str, model: torch.nn.Module, loss: Callable[[], torch.Tensor], reps: int) -> Any:
    """Plain, traced (``stats="full"``, then ``stats="norms"``) and anomaly-mode forward + backward,
    interleaved; prints one line."""

    def plain() -> None:
        model.zero_grad(set_to_none=True)
        loss().backward()

    def traced(stats: str = "full") -> tuple[float, Any]:
        model.zero_grad(set_to_none=True)
        tr = gt.pytorch.trace(model, stats=stats)
        tr.__enter__()
        loss().backward()
        t1 = time.perf_counter()
        tr.__exit__(None, None, None)
        return time.perf_counter() - t1, tr.graph

    def anomaly() -> None:
        model.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autograd.detect_anomaly(check_nan=True):
                loss().backward()

    plain()
    traced()
    traced("norms")
    anomaly()
    p, t, tn, a, build, build_n = [], [], [], [], [], []
    cpu: dict[str, list[float]] = {"p": [], "t": [], "tn": [], "a": []}  # the same, in this thread's CPU time
    G = None
    norms_out: Any = None
    for _ in range(reps):
        G = norms_out = None  # (the previous graphs are freed outside the timings)
        c0, t0 = time.thread_time(), time.perf_counter()
        plain()
        p.append(time.perf_counter() - t0)
        cpu["p"].append(time.thread_time() - c0)
        c0, t0 = time.thread_time(), time.perf_counter()
        b, G = traced()
        t.append(time.perf_counter() - t0)
        cpu["t"].append(time.thread_time() - c0)
        build.append(b)
        c0, t0 = time.thread_time(), time.perf_counter()
        norms_out = traced("norms")
        tn.append(time.perf_counter() - t0)
        cpu["tn"].append(time.thread_time() - c0)
        build_n.append(norms_out[0])
        c0, t0 = time.thread_time(), time.perf_counter()
        anomaly()
        a.append(time.perf_counter() - t0)
        cpu["a"].append(time.thread_time() - c0)
    mp = statistics.median(p)

    def ratios(xs: list[float], base: list[float] = p) -> str:
        return _spread([x / y for x, y in zip(xs, base, strict=True)])

    def cpu_ratio(k: str) -> str:
        return f"{statistics.median(x / y for x, y in zip(cpu[k], cpu['p'], strict=True)):.2f}x"

    print(
        f"  {name:34s} plain {mp * 1e3:7.1f} ms | traced {ratios(t)}"
        f" (build {statistics.median(build) * 1e3:.1f} ms = {statistics.median(build) / mp:.0%}) | "
        f"stats='norms' {ratios(tn)} (build {statistics.median(build_n) * 1e3:.1f} ms) | "
        f"detect_anomaly {ratios(a)}\n"
        f"  {'':34s} CPU time of the thread: plain {statistics.median(cpu['p']) * 1e3:7.1f} ms | traced "
        f"{cpu_ratio('t')} | stats='norms' {cpu_ratio('tn')} | detect_anomaly {cpu_ratio('a')}",
        flush=True,
    )
    return G


# ---- 2. recording ---------------------------------------------------------------------------------
def _mlp() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10)
    )


def _wandb() -> Any:
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        import wandb
    except ImportError:
        return None
    return wandb


RECORD_ONLY = False  # --record-only: plain and gt.record loops only


def loops(name: str, make: Callable[[], torch.nn.Module], batch: tuple[Any, Any], steps: int, reps: int) -> None:
    """Whole SGD loops of ``steps`` steps, each variant opened and closed, interleaved by repetition."""
    torch.manual_seed(0)
    init = make()
    x, y = batch
    wandb = _wandb()

    def loop(
        log: Callable[[int, torch.nn.Module, torch.Tensor, Any], None], trace: bool = False
    ) -> Callable[..., None]:
        def run(model: torch.nn.Module, opt: Any) -> None:
            for k in range(steps):
                opt.zero_grad()
                cm = gt.pytorch.trace(model) if trace else contextlib.nullcontext()
                with cm as tr:
                    loss = torch.nn.functional.cross_entropy(model(x), y)
                    loss.backward()
                opt.step()
                log(k, model, loss, tr)

        return run

    @contextlib.contextmanager
    def nothing(model: torch.nn.Module, d: Path) -> Iterator[Callable[..., None]]:
        yield lambda k, m, loss, tr: None

    @contextlib.contextmanager
    def recorded(model: torch.nn.Module, d: Path) -> Iterator[Callable[..., None]]:
        with gt.record(d / "run", model) as run:
            yield lambda k, m, loss, tr: run.log(k, loss, graph=tr.graph if tr is not None else None)

    @contextlib.contextmanager
    def anomaly(model: torch.nn.Module, d: Path) -> Iterator[Callable[..., None]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autograd.detect_anomaly(check_nan=True):
                yield lambda k, m, loss, tr: None

    @contextlib.contextmanager
    def tensorboard(model: torch.nn.Module, d: Path) -> Iterator[Callable[..., None]]:
        from torch.utils.tensorboard import SummaryWriter

        w = SummaryWriter(str(d / "tb"))

        def log(k: int, m: torch.nn.Module, loss: torch.Tensor, tr: Any) -> None:
            w.add_scalar("loss", loss, k)
            for n, p in m.named_parameters():
                w.add_histogram(n, p, k)
                if p.grad is not None:
                    w.add_histogram(n + "/grad", p.grad, k)

        try:
            yield log
        finally:
            w.close()

    @contextlib.contextmanager
    def weights_biases(model: torch.nn.Module, d: Path) -> Iterator[Callable[..., None]]:
        run = wandb.init(project="graphtrace-bench", dir=str(d))
        wandb.watch(model, log="all", log_freq=1)
        try:
            yield lambda k, m, loss, tr: wandb.log({"loss": loss.item()}, step=k)  # (as W&B users log it)
        finally:
            run.finish()

    variants: dict[str, tuple[Any, bool]] = {
        "plain": (nothing, False),
        "gt.record + run.log": (recorded, False),
        "gt trace + record every step": (recorded, True),
        "detect_anomaly(check_nan=True)": (anomaly, False),
    }
    if RECORD_ONLY:
        variants = {v: variants[v] for v in ("plain", "gt.record + run.log")}
    elif importlib.util.find_spec("tensorboard") is not None:  # what torch.utils.tensorboard needs
        variants["TensorBoard add_histogram"] = (tensorboard, False)
    else:
        print("  (TensorBoard: torch.utils.tensorboard needs the tensorboard package; skipped)")
    if RECORD_ONLY:
        pass
    elif wandb is not None:
        variants["wandb.watch(log='all', log_freq=1)"] = (weights_biases, False)
    else:
        print("  (Weights & Biases: wandb is not installed; skipped)")
    times: dict[str, list[float]] = {v: [] for v in variants}
    for rep in range(reps + 1):  # the first round warms up (imports, kernels, files)
        for v, (opened, trace) in variants.items():
            model = copy.deepcopy(init)
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                with opened(model, Path(d)) as log:
                    loop(log, trace)(model, opt)
                elapsed = time.perf_counter() - t0
            if rep:
                times[v].append(elapsed)
    plain = times["plain"]
    print(f"  {name}: {steps} steps, plain loop {statistics.median(plain):.2f} s; whole loops opened and closed:")
    for v in variants:
        if v != "plain":
            ratios = [t / p for t, p in zip(times[v], plain, strict=True)]
            print(f"    {v:36s} {_spread(ratios)}  (+{statistics.median(ratios) - 1:.1%})", flush=True)


# ---- 3. the page ----------------------------------------------------------------------------------
def first_draw(G: object) -> tuple[list[float], int] | None:
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as d:
        path = gt.to_html(G, Path(d) / "resnet.html", collapse=True)
        loads = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            for _ in range(5):
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
                page.goto(path.resolve().as_uri())
                page.wait_for_function("() => window.graphtraceFirstDraw !== null", timeout=60_000)
                loads.append(page.evaluate("window.graphtraceFirstDraw"))
                boxes = page.evaluate("window.graphtraceNetwork.body.data.nodes.length")
                page.close()
            browser.close()
    return loads, boxes


def main() -> None:
    import argparse

    global RECORD_ONLY
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("tracing", "recording", "page"), help="run one part")
    ap.add_argument("--record-only", action="store_true", help="recording loops: plain and gt.record only")
    args = ap.parse_args()
    RECORD_ONLY = args.record_only
    parts = {args.only} if args.only else {"tracing"} if TRACING_ONLY else {"tracing", "recording", "page"}
    torch.set_num_threads(1)
    print(f"PyTorch bridge (torch {torch.__version__}, 1 thread), load average {os.getloadavg()[0]:.1f}:")
    G = None
    if parts & {"tracing", "page"}:
        print("1. forward + backward, ratios to plain (median, range over interleaved repetitions):")
        torch.manual_seed(0)
        resnet = ResNet18()
        x64 = torch.randn(1, 3, 64, 64)
        G = tracing("ResNet-18 1x3x64x64 (<= 1.5x)", resnet, lambda: resnet(x64).sum(), 5 if QUICK else 12)
    if "tracing" in parts:
        _tracing_rest(resnet)
    if "recording" in parts:
        _recording()
    if "page" in parts:
        _page(G)
    sys.stdout.flush()


def _tracing_rest(resnet: torch.nn.Module) -> None:
    gpt = GPT()
    idx = torch.randint(0, 1000, (8, 65))
    tracing("GPT-style d=128 (<= 1.5x)", gpt, lambda: lm_loss(gpt, idx), 4 if QUICK else 10)
    if not QUICK:
        x224 = torch.randn(8, 3, 224, 224)
        tracing("ResNet-18 8x3x224x224 (<= 1.10x)", resnet, lambda: resnet(x224).sum(), 4)
        big = gpt2_small()
        idx2 = torch.randint(0, 50257, (2, 65))
        tracing("GPT-2 small seq 64 batch 2 (<= 1.25x)", big, lambda: lm_loss(big, idx2), 3)
        del big


def _recording() -> None:
    print("2. training loops, ratios to the plain loop (median, range):")
    loops(
        "MLP 784-512-512-10 batch 128 (gt.record <= +5%)",
        _mlp,
        (torch.randn(128, 784), torch.randint(0, 10, (128,))),
        200,
        3 if QUICK else 5,
    )
    if not QUICK:
        steps = int(os.environ.get("GT_BENCH_RESNET_STEPS", "20"))
        loops(
            "ResNet-18 8x3x224x224 (gt.record <= +2%)",
            ResNet18,
            (torch.randn(8, 3, 224, 224), torch.randint(0, 1000, (8,))),
            steps,
            3,
        )


def _page(G: Any) -> None:
    drawn = first_draw(G)
    if drawn is None:
        print("3. collapsed page: chromium is not installed; skipped")
    else:
        loads, boxes = drawn
        med = statistics.median(loads)
        print(
            f"3. ResNet-18 trace's collapsed page ({G.number_of_nodes()} nodes, {boxes} boxes): first draw "
            f"median {med:.0f} ms of 5 loads ({', '.join(f'{t:.0f}' for t in loads)}), target <= 500 ms: "
            f"{'ok' if med <= 500 else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
