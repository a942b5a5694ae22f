"""The built wheel works outside the repository: installed into a fresh virtual environment, its
command and its pages run from another folder, with templates, vendored scripts, ``py.typed`` and
the entry point carried by the wheel (nothing read from the source tree)."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from graphtrace.export.html import SCRIPTS

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("build")


def _run(*cmd: str | Path, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd}: {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_the_wheel_installs_and_runs_outside_the_repository(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # --no-isolation: the build backend (setuptools) of this environment, no download
    _run(sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", dist, ROOT, cwd=tmp_path)
    wheels = list(dist.glob("graphtrace_nx-*.whl"))  # the distribution graphtrace-nx, the package graphtrace
    assert len(wheels) == 1 and list(dist.glob("graphtrace_nx-*.tar.gz"))
    names = zipfile.ZipFile(wheels[0]).namelist()
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert "\nName: graphtrace-nx\n" in zipfile.ZipFile(wheels[0]).read(meta).decode()
    for needed in (
        "graphtrace/py.typed",
        "graphtrace/export/templates/page.html",
        *(f"graphtrace/export/js/{name}" for name in SCRIPTS),
        "graphtrace/analysis/__init__.py",
    ):
        assert needed in names, needed
    assert any(n.startswith("graphtrace/export/vendor/") for n in names)
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "graphtrace = graphtrace.cli:run" in zipfile.ZipFile(wheels[0]).read(entry).decode()

    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    _run(py, "-m", "pip", "install", "--quiet", wheels[0], cwd=tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run(py, "-c", "import graphtrace, sys; print(graphtrace.__file__, graphtrace.__version__)", cwd=work)
    location, version = where.stdout.split()
    assert Path(location).is_relative_to(env_dir) and not Path(location).is_relative_to(ROOT)
    gt_cmd = env_dir / "bin" / "graphtrace"
    assert _run(gt_cmd, "--version", cwd=work).stdout.strip() == f"graphtrace {version}"
    _run(gt_cmd, "demo", cwd=work)
    assert (work / "exports" / "seed.html").stat().st_size > 10_000
    trained = _run(gt_cmd, "train", "--steps", "2", "--samples", "20", "--record", "runs/r", cwd=work)
    # the wheel's runtime dependencies alone (no plots extra): the rest is written, the plots' install line said
    assert "pip install 'graphtrace-nx[plots]'" in trained.stdout and not list((work / "exports").glob("*.png"))
    _run(gt_cmd, "report", "runs/r", cwd=work)
    page = (work / "runs" / "r" / "report.html").read_text(encoding="utf-8")
    assert "vega" in page and "<script src=" not in page  # the plotting scripts are inlined
    script = (
        "import graphtrace as gt\n"
        "from graphtrace.train import moons_demo, svm_loss\n"
        "model, X, y = moons_demo(samples=30)\n"
        "loss, _ = svm_loss(model, X, y)\n"
        "loss.backward()\n"
        "p = gt.to_html(loss, 'step.html')\n"
        "print(p)\n"
    )
    _run(py, "-c", script, cwd=work)
    step = (work / "step.html").read_text(encoding="utf-8")
    assert "dagre" in step and "vis-network" in step.lower()
    assert str(ROOT) not in step
