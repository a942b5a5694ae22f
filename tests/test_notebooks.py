"""Notebooks are kept in git without outputs (make test executes them with nbmake)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_the_five_notebooks_exist() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_scalar_autograd.ipynb",
        "02_neural_net.ipynb",
        "03_graph_analysis.ipynb",
        "04_debugging_a_run.ipynb",
        "05_pytorch.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_stripped(path: Path) -> None:
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
