"""The distribution's name: ``graphtrace-nx`` on the package index (``graphtrace`` there is another
project), ``import graphtrace`` unchanged; every install line in the repository names it, this checkout
(``pip install .``) or a real dependency, and a missing extra's error says its install line."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
DIST = "graphtrace-nx"
#: projects named in an install line on purpose that are not dependencies of ours, and why
OTHERS = {
    "pip": "the Makefile upgrades pip itself in a new virtual environment",
    "nx-parallel": "NetworkX's parallel backend, an option notebook 03 mentions",
}
#: options of pip install that take a value (the value is not a requirement)
VALUED = {
    "--index-url",
    "-i",
    "--extra-index-url",
    "--find-links",
    "-f",
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "--progress-bar",
    "--python",
    "--target",
    "-t",
    "--prefix",
    "--root",
    "--platform",
    "--python-version",
}
REQUIREMENT = re.compile(
    r"^(?P<name>\.|[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[(?P<extras>[A-Za-z0-9_,.-]*)\])?(?P<spec>[<>=!~].*)?$"
)


def _extras() -> set[str]:
    return set(PYPROJECT["project"]["optional-dependencies"])


def _dependencies() -> set[str]:
    deps = list(PYPROJECT["project"]["dependencies"])
    for group in PYPROJECT["project"]["optional-dependencies"].values():
        deps += group
    return {canonicalize_name(Requirement(d).name) for d in deps}


def _files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        paths = [ROOT / p for p in out if p]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an unpacked sdist)
        skip = {".git", ".venv", ".nox", "site", "build", "dist", "runs", "exports"}
        paths = [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    mine = Path(__file__).resolve()
    return [p for p in paths if p.is_file() and p.resolve() != mine and "vendor" not in p.parts]


def _make_variables() -> dict[str, str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m[1]: m[2].strip() for m in re.finditer(r"^([A-Z_]+)\s*[?:]?=[ \t]*(.*)$", text, flags=re.M)}


def _expand(var: re.Match[str], variables: dict[str, str]) -> str:
    """A make variable by its value; an empty one with the space after it."""
    value = variables.get(var[1], var[0])
    return value + var[2] if value else ""


def install_lines() -> list[tuple[str, int, str, list[str]]]:
    """Every ``pip install`` in the repository: (file, line number, the text, the requirements it names)."""
    variables = _make_variables()
    found = []
    for path in _files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for m in re.finditer(r"pip install\b", line):
                rest = re.sub(r"\$\(([A-Z_]+)\)( ?)", lambda v: _expand(v, variables), line[m.end() :])
                found.append((str(path.relative_to(ROOT)), number, line.strip(), _requirements(rest)))
    return found


def _requirements(rest: str) -> list[str]:
    """The requirements after ``pip install``: options skipped, up to the first word that is neither."""
    reqs: list[str] = []
    command = re.split(r"\s{2,}|\\n", rest.strip())[0]  # aligned comments and descriptions follow two spaces
    words = command.split()
    i = 0
    while i < len(words):
        raw = words[i]
        word = raw.lstrip("'\"`").rstrip("`),;:.'\"") or ("." if raw.lstrip("'\"`").startswith(".") else "")
        if word in VALUED:
            i += 1
            raw = words[i] if i < len(words) else ""
        elif not word.startswith("-"):
            if not REQUIREMENT.match(word):
                break
            reqs.append(word)
        if raw[-1:] in ("`", ")", ";", ",", ":", '"', "."):  # the end of the command in the text around it
            break
        i += 1
    return reqs


def test_the_distribution_is_ours_and_the_import_name_stays() -> None:
    assert PYPROJECT["project"]["name"] == DIST
    assert PYPROJECT["project"]["scripts"] == {"graphtrace": "graphtrace.cli:run"}
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["graphtrace*"]
    import graphtrace

    assert Path(graphtrace.__file__).parent == ROOT / "graphtrace"


def test_every_install_line_names_our_distribution_or_a_real_dependency() -> None:
    lines = install_lines()
    assert len(lines) >= 10, lines  # the README, the docs, the error messages, the help, the Makefile
    extras, deps = _extras(), _dependencies()
    bad = []
    for where, number, text, reqs in lines:
        if not reqs:
            bad.append(f"{where}:{number}: no requirement found after pip install: {text}")
        for req in reqs:
            m = REQUIREMENT.match(req)
            assert m is not None
            name = m["name"] if m["name"] == "." else canonicalize_name(m["name"])
            wanted = {e for e in (m["extras"] or "").split(",") if e}
            if name in (".", DIST):
                if not wanted <= extras:
                    bad.append(f"{where}:{number}: extras {sorted(wanted - extras)} are not in pyproject: {text}")
            elif name not in deps and name not in OTHERS:
                bad.append(f"{where}:{number}: {name!r} is neither {DIST} nor a dependency: {text}")
    assert not bad, "\n".join(bad)
    assert any(r.startswith(DIST) for *_, reqs in lines for r in reqs)


def test_no_text_names_the_extras_of_the_other_projects_graphtrace() -> None:
    bad = []
    for path in _files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for m in re.finditer(r"(?<![\w./-])graphtrace\[", text):
            number = text.count("\n", 0, m.start()) + 1
            bad.append(f"{path.relative_to(ROOT)}:{number}")
    assert not bad, bad


def test_the_parser_reads_the_lines_as_pip_would() -> None:
    assert _requirements(" 'graphtrace-nx[torch]' (or a CPU build: pip") == ["graphtrace-nx[torch]"]
    assert _requirements(' torch --index-url https://example.org/whl/cpu)"') == ["torch"]
    assert _requirements(" --quiet -e '.[test,docs]'") == [".[test,docs]"]
    assert _requirements(" graphtrace`, then") == ["graphtrace"]  # the other project: the test above refuses it
    assert _requirements(' ipykernel)") from exc') == ["ipykernel"]
    assert _requirements(" . # from a checkout") == ["."]
    assert _requirements(" --quiet --no-compile --progress-bar off -e .") == ["."]
    assert _requirements(" 'graphtrace-nx[graphviz]'``).") == ["graphtrace-nx[graphviz]"]
    assert _requirements(" 'graphtrace-nx[torch]'        for gt.pytorch") == ["graphtrace-nx[torch]"]


def test_the_help_gives_the_install_lines_of_the_extras() -> None:
    r = subprocess.run([sys.executable, "-m", "graphtrace", "--help"], capture_output=True, text=True, check=True)
    assert f"pip install {DIST}" in r.stdout
    assert f"pip install '{DIST}[tensorboard]'" in r.stdout and f"pip install '{DIST}[torch]'" in r.stdout


def test_a_missing_tensorboard_extra_says_its_install_line(tmp_path: Path) -> None:
    # tensorboardX made unimportable in a fresh interpreter: the CLI's one line says how to install it
    code = (
        "import sys; sys.modules['tensorboardX'] = None\n"
        "from graphtrace.cli import main\n"
        f"sys.exit(main(['export', {str(tmp_path)!r}, '--to', 'tensorboard']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"pip install '{DIST}[tensorboard]'" in r.stderr


#: the extras' packages, made unimportable: what the lean install (make demo, pip install graphtrace-nx) lacks
BLOCKED = ("matplotlib", "torch", "tensorboardX", "graphviz", "torchviz")


def _lean(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    block = "".join(f"sys.modules[{name!r}] = None\n" for name in BLOCKED)
    return subprocess.run(
        [sys.executable, "-c", f"import sys\n{block}{code}"], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_the_demo_and_the_core_run_on_the_runtime_dependencies_alone(tmp_path: Path) -> None:
    r = _lean(
        "from graphtrace.cli import main\n"
        "assert main(['demo']) == 0\n"
        "assert main(['train', '--steps', '3', '--samples', '20', '--hidden', '4', '--record', 'runs/r']) == 0\n"
        "assert main(['report', 'runs/r']) == 0\n"
        "import graphtrace as gt\n"
        "print('steps', gt.open_run('runs/r').sql('SELECT count(*) FROM steps').fetchall()[0][0])\n"
        "print('loaded', gt.load('exports/seed.json').number_of_nodes())\n",
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "steps 3" in r.stdout and "loaded 7" in r.stdout
    for name in ("seed.html", "seed.json", "seed.dot", "train_history.csv", "train_sample.html"):
        assert (tmp_path / "exports" / name).is_file(), name
    assert (tmp_path / "runs" / "r" / "report.html").is_file()
    # train without the plots extra: everything else written, the two plots named with their install line
    assert not list((tmp_path / "exports").glob("*.png"))
    assert f"train_loss.png and train_boundary.png need matplotlib: pip install '{DIST}[plots]'" in r.stdout


def test_train_with_the_plots_extra_draws_them(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")  # the development set has it (make install)
    from graphtrace.cli import main

    assert main(["train", "--steps", "2", "--samples", "10", "--hidden", "3", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["train_boundary.png", "train_loss.png"]


def test_matplotlib_is_an_extra_not_a_runtime_dependency() -> None:
    runtime = {canonicalize_name(Requirement(d).name) for d in PYPROJECT["project"]["dependencies"]}
    assert "matplotlib" not in runtime and "matplotlib>=3.8" in PYPROJECT["project"]["optional-dependencies"]["plots"]
