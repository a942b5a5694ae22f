"""The README's and the guide's pictures of the pages, taken at 1280x800 as a person sees them: each page
opened fresh in headless Chromium, then only the page's own buttons clicked (no script entry point).

Run from the repository: ``make pictures`` (or ``.venv/bin/python docs/make_pictures.py [NAME ...]``).
Writes exports/images/NAME.png (the README's; docs/images is a link to that folder). Needs Debian's
chromium (``apt-get install chromium``), playwright and, for the GPT-2 picture, torch.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZE = {"width": 1280, "height": 800}


def _command(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "graphtrace", *args], cwd=cwd, check=True, capture_output=True)


def _replay(page: Any) -> None:  # four clicks on the next-step button, from the page as it opened
    for _ in range(4):
        page.click("#gt-next")


def _by_grad(page: Any) -> None:
    page.select_option("#gt-colour", "grad")


def _seed(d: Path) -> Path:
    if not (d / "seed.html").exists():
        _command("demo", "--out", str(d), cwd=d)
    return d / "seed.html"


def _sample(d: Path) -> Path:
    _command("train", "--steps", "20", "--out", str(d), cwd=d)
    return d / "train_sample.html"


def _step(d: Path) -> Path:
    import graphtrace as gt
    from graphtrace.train import moons_demo, svm_loss

    model, X, y = moons_demo()
    loss, _ = svm_loss(model, X, y)
    loss.backward()
    return gt.to_html(loss, d / "train_step.html")


def _gpt2(d: Path) -> Path:
    import graphtrace as gt

    sys.path.insert(0, str(ROOT / "tests"))
    from gpt2_small import GPT2, traced_step

    return gt.to_html(traced_step(GPT2(), tokens=8), d / "gpt2.html")  # type: ignore[arg-type]


#: name -> (how its page is made, what a person does on it before the picture)
PICTURES: dict[str, tuple[Callable[[Path], Path], Callable[[Any], None]]] = {
    "seed_graph": (_seed, lambda page: None),
    "seed_replay": (_seed, _replay),
    "train_sample": (_sample, _by_grad),
    "train_step": (_step, lambda page: None),
    "gpt2_small": (_gpt2, lambda page: None),  # needs torch
}


def main(names: list[str], out: list[Path] | None = None, browser: Any = None) -> list[Path]:
    """Take the pictures ``names`` (all when empty) into each folder of ``out`` (exports/images), with
    ``browser`` (a playwright Chromium; launched here when None)."""
    out = out or [ROOT / "exports" / "images"]
    unknown = [n for n in names if n not in PICTURES]
    if unknown:
        raise SystemExit(f"make_pictures: no picture named {unknown[0]!r}; the pictures: {', '.join(PICTURES)}")
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            launched = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            try:
                return main(names, out, launched)
            finally:
                launched.close()
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (make, act) in PICTURES.items():
            if names and name not in names:
                continue
            if name == "gpt2_small":
                try:
                    import torch  # noqa: F401
                except ImportError:
                    print("make_pictures: gpt2_small needs torch; skipped")
                    continue
            path = make(Path(tmp))
            page = browser.new_page(viewport=SIZE)
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
            page.goto(path.resolve().as_uri())
            page.wait_for_function("window.graphtraceFirstDraw !== null && window.graphtraceFirstDraw !== undefined")
            act(page)
            page.mouse.move(0, 0)  # no tooltip in the picture
            page.wait_for_timeout(400)
            png = page.screenshot()
            for folder in out:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{name}.png").write_bytes(png)
                written.append(folder / f"{name}.png")
            page.close()
    return written


if __name__ == "__main__":
    for p in main(sys.argv[1:]):
        print(p)
