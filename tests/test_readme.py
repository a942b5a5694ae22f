"""Every Python snippet of the README runs as a reader would use it: as one script, pasted block by block into
the standard Python prompt (``code.InteractiveConsole``, line by line), and as notebook cells; its command lines
run after its snippets in the same folder (their paths do not collide); its table is what ``make demo`` prints."""

from __future__ import annotations

import code
import importlib.util
import io
import math
import re
import shlex
import traceback
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
HAS_TORCH = importlib.util.find_spec("torch") is not None


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def readme_blocks() -> list[str]:
    """The README's Python blocks, the bridge's only with the torch extra."""
    return [b for b in python_blocks(README) if HAS_TORCH or "import torch" not in b]


def check_readme_output(out: str, folder: Path, ns: dict[str, Any]) -> None:
    """What the README's blocks say they print and write."""
    assert "6.0 -4.0" in out  # the tour: the seed's gradients
    assert ns["G"].number_of_nodes() == 7 and ns["G"].number_of_edges() == 6
    assert "grad_contribution" in out and (folder / "exports" / "L.html").is_file()
    assert "became inf through local_grad inf" in out and "'**'" in out  # the anomaly, its op named
    assert "log10_ratio" in out  # the query's result is printed
    rows = ns["ratios"].fetchall()  # a row per layer and step, finite at step 0
    assert len(rows) == 6 and all(math.isfinite(r[2]) for r in rows), rows
    assert (folder / "runs" / "tour" / "report.html").is_file()
    if HAS_TORCH:
        assert ns["tr"].graph.number_of_nodes() > 5 and "grad_norm" in out


def test_the_readme_snippets_run_as_one_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    assert len(python_blocks(README)) >= 5
    blocks = readme_blocks()
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), ns)
    check_readme_output(capsys.readouterr().out, tmp_path, ns)


class Prompt(code.InteractiveConsole):
    """The standard Python prompt, fed one line at a time; what it would print as an error is kept."""

    def __init__(self, ns: dict[str, Any]) -> None:
        super().__init__(ns, filename="<stdin>")
        self.errors: list[str] = []

    def showsyntaxerror(self, filename: str | None = None, **kwargs: Any) -> None:
        self.errors.append(traceback.format_exc())

    def showtraceback(self) -> None:
        self.errors.append(traceback.format_exc())


def paste(prompt: Prompt, block: str) -> None:
    """Type ``block`` into the prompt as pasted: its lines as they are, with no Enter added after the last one (a
    block that ends inside an indented statement breaks on the next block's first line, as in the REPL)."""
    for line in block.splitlines():
        prompt.push(line)


def test_the_readme_pasted_into_the_python_prompt_then_its_command_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graphtrace.cli import main

    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {"__name__": "__console__"}
    prompt = Prompt(ns)
    out = io.StringIO()
    with redirect_stdout(out):
        for i, block in enumerate(readme_blocks()):
            paste(prompt, block)
            assert not prompt.errors, f"block {i} pasted into the prompt:\n{block}\n{prompt.errors[0]}"
        prompt.push("")  # the reader's Enter after the last block
    assert not prompt.errors, prompt.errors[0]
    assert not prompt.buffer  # nothing left half-typed
    check_readme_output(out.getvalue(), tmp_path, ns)
    # the README's command lines, in the same folder: none refuses a path the snippets wrote
    lines = command_lines()
    assert any(line.startswith("graphtrace train --record") for line in lines)
    for line in lines:
        argv = shlex.split(line)[1:]
        if argv[0] == "train":
            argv += ["--steps", "3"]  # its paths are what is checked here, not its 100 steps
        if argv[:1] == ["export"] and "tensorboard" in argv and importlib.util.find_spec("tensorboardX") is None:
            continue  # the tensorboard extra is not installed
        with redirect_stdout(io.StringIO()):
            assert main(argv) == 0, line
    assert (tmp_path / "runs" / "demo" / "report.html").is_file() and (tmp_path / "runs" / "compare.html").is_file()


def command_lines() -> list[str]:
    """The README's ``graphtrace`` command lines (of its bash blocks), without their comments."""
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    lines = [ln.split("  #")[0].strip() for b in blocks for ln in b.splitlines()]
    return [ln for ln in lines if ln.startswith("graphtrace ")]


def test_the_readme_runs_as_notebook_cells(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(b) for b in readme_blocks()])
    nbclient.NotebookClient(nb, timeout=900, resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = "".join(o.get("text", "") for cell in nb.cells for o in cell.outputs if o["output_type"] == "stream")
    assert "6.0 -4.0" in out and "became inf through local_grad inf" in out and "log10_ratio" in out
    assert (tmp_path / "runs" / "tour" / "report.html").is_file()


def test_the_readme_table_is_what_make_demo_prints(tmp_path: Path) -> None:
    from graphtrace.cli import main

    text = README.read_text(encoding="utf-8")
    table = re.search(r"```text\n( +source_label target_label op +local_grad +grad_contribution\n.*?)```", text, re.S)
    assert table is not None
    shown = [ln.split()[1:] for ln in table[1].splitlines()[1:] if ln.strip()]
    demo = io.StringIO()
    with redirect_stdout(demo):
        assert main(["demo", "--out", str(tmp_path)]) == 0
    part = demo.getvalue().split("edges: the chain rule")[1]
    printed = [[c.strip() for c in ln.strip("│ ").split("│")] for ln in part.splitlines() if ln.startswith("│")]
    assert len(shown) == len(printed) == 6
    for readme_row, demo_row in zip(shown, printed, strict=True):
        assert readme_row[:3] == demo_row[:3]  # source, target, op
        assert [float(v) for v in readme_row[3:]] == [float(v) for v in demo_row[3:]]


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
    ns: dict[str, Any] = {}
    for block in blocks:
        exec(compile(block, str(page), "exec"), ns)
    if page == "guide/anomalies.md":
        assert "became inf through local_grad inf" in capsys.readouterr().out


#: what the user guide leaves to the design and performance pages: the store's internals
INTERNALS = ("SCOPE_LOG", "PICKED", "NONFINITE", "GIL", "cache miss", "fsync", "store.", "writer thread")


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "docs" / "guide").glob("*.md")))
def test_the_user_guide_keeps_to_what_a_user_does(page: str) -> None:
    text = (ROOT / "docs" / "guide" / page).read_text(encoding="utf-8")
    found = [word for word in INTERNALS if word in text]
    assert not found, f"docs/guide/{page} explains internals ({found}): they belong in design.md or performance.md"
