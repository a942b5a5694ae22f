"""The PyTorch bridge on a ResNet-18 (the architecture of torchvision's ``resnet18(weights=None)``,
built in ``tests/torch_models.py``) and a torch MLP, CPU, one thread per process as CI has it.

Targets (PyTorch issue): tracing forward + backward of ResNet-18 on a 1×3×64×64 input adds <= 50% to
the plain forward + backward; the import of that trace (building the graph when the ``with`` block
exits) <= 0.5 s; its collapsed page's first draw in headless Chromium <= 500 ms; recording a torch MLP's
parameters every step (``gt.record`` + ``run.log``) <= 5% of its step time. Times are medians over
interleaved repetitions (plain, traced, plain, traced, ...), so a slow spell of the machine hits both.
Run: ``make bench`` or ``python benchmarks/bench_torch.py``.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    import torch
except ImportError:  # pragma: no cover - torch is the optional extra
    print("bench_torch: torch is not installed (pip install 'graphtrace-nx[torch]'); skipped")
    sys.exit(0)

import graphtrace as gt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from torch_models import ResNet18

REPS = 15


def resnet() -> tuple[float, float, float, float, object]:
    torch.manual_seed(0)
    model = ResNet18()
    x = torch.randn(1, 3, 64, 64)

    def plain() -> None:
        model.zero_grad()
        model(x).sum().backward()

    def traced() -> tuple[float, float, object]:
        model.zero_grad()
        tr = gt.pytorch.trace(model)
        t0 = time.perf_counter()
        tr.__enter__()
        model(x).sum().backward()
        t1 = time.perf_counter()
        tr.__exit__(None, None, None)
        return t1 - t0, time.perf_counter() - t1, tr.graph

    plain()
    traced()
    p, t, imports = [], [], []
    G: object = None
    for _ in range(REPS):
        t0 = time.perf_counter()
        plain()
        p.append(time.perf_counter() - t0)
        a, b, G = traced()
        t.append(a)
        imports.append(b)
    return statistics.median(p), statistics.median(t), statistics.median(imports), max(imports), G


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


def mlp_record(steps: int = 60) -> tuple[float, float]:
    """Median step time of an MNIST-sized MLP (784-512-512-10, batch 128, SGD) without and with
    ``run.log`` every step (log time plus the slowdown of the next step), interleaved by step."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(128, 784), torch.randint(0, 10, (128,))

    def step() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    plain, logged = [], []
    with tempfile.TemporaryDirectory() as d, gt.record(Path(d) / "run", model) as run:
        for k in range(steps):
            t0 = time.perf_counter()
            loss = step()
            t1 = time.perf_counter()
            if k % 2:
                run.log(k, loss)
                logged.append(time.perf_counter() - t0)
            else:
                plain.append(t1 - t0)
    return statistics.median(plain), statistics.median(logged)


def main() -> None:
    torch.set_num_threads(1)
    plain, traced, imp, imp_max, G = resnet()
    over = traced / plain - 1
    print(f"PyTorch bridge (torch {torch.__version__}, 1 thread), ResNet-18 on 1x3x64x64, medians of {REPS}:")
    print(f"  plain forward+backward               {plain * 1e3:8.1f} ms")
    verdict = "ok" if over <= 0.5 else "MISSED"
    print(f"  traced forward+backward              {traced * 1e3:8.1f} ms  (+{over:.0%}, target <= +50%: {verdict})")
    verdict = "ok" if imp <= 0.5 else "MISSED"
    print(
        f"  import of the trace (graph build)    {imp * 1e3:8.1f} ms  (max {imp_max * 1e3:.0f} ms, "
        f"target <= 500 ms: {verdict})"
    )
    nodes = G.number_of_nodes()  # type: ignore[attr-defined]
    drawn = first_draw(G)
    if drawn is None:
        print("  collapsed page: chromium is not installed; skipped")
    else:
        loads, boxes = drawn
        med = statistics.median(loads)
        print(
            f"  collapsed page ({nodes} nodes, {boxes} boxes): first draw median {med:.0f} ms of 5 loads "
            f"({', '.join(f'{t:.0f}' for t in loads)}), target <= 500 ms: {'ok' if med <= 500 else 'MISSED'}"
        )
    p, logged = mlp_record()
    cost = logged / p - 1
    print(
        f"  torch MLP 784-512-512-10, batch 128: step {p * 1e3:.2f} ms, with run.log {logged * 1e3:.2f} ms "
        f"(+{cost:.1%}, target <= 5%: {'ok' if cost <= 0.05 else 'MISSED'})"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
