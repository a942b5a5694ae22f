"""Every Python snippet of the README runs as written, in order, in a fresh folder (as a reader would
paste them), and says what the README says it does."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_the_readme_snippets_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    blocks = python_blocks(ROOT / "README.md")
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exports").mkdir()
    ns: dict[str, Any] = {}
    for block in blocks:
        if "import torch" in block and importlib.util.find_spec("torch") is None:
            continue  # the bridge's snippet needs the torch extra
        exec(compile(block, "README.md", "exec"), ns)
    out = capsys.readouterr().out
    # the tour: the seed's gradients and the ledger
    assert "6.0 -4.0" in out
    assert ns["G"].number_of_nodes() == 7 and ns["G"].number_of_edges() == 6
    assert (tmp_path / "exports" / "L.html").is_file()
    # the anomaly: caught, with the op and the line named
    assert "became inf through local_grad inf" in out and "'**'" in out
    # the run: the update:data query is finite at step 0 and bounded (a row per layer and step)
    rows = ns["ratios"].fetchall()
    assert len(rows) == 6 and all(math.isfinite(r[2]) for r in rows), rows
    assert (tmp_path / "runs" / "demo" / "report.html").is_file()
    if "tr" in ns:
        assert ns["tr"].graph.number_of_nodes() > 5


def test_the_readme_points_only_inside_the_repository() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "../" not in text
    for target in re.findall(r"\]\(([^)#]+)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), target


@pytest.mark.parametrize(
    "page", ["index.md", "guide/tour.md", "guide/anomalies.md", "guide/runs.md", "guide/pytorch.md"]
)
def test_the_docs_snippets_run_as_written(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    blocks = python_blocks(ROOT / "docs" / page)
    assert blocks
    if any("import torch" in b for b in blocks) and importlib.util.find_spec("torch") is None:
        pytest.skip("the torch extra is not installed")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exports").mkdir()
    ns: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, str(page), "exec"), ns)
    if page == "guide/anomalies.md":
        assert "became inf through local_grad inf" in capsys.readouterr().out
