# Every target bootstraps its own virtual environment in .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# two stages in one .venv: the package and its runtime dependencies (make demo: ~430 MB), then the
# development set on top (make install, make test: torch, the test tools, the docs toolchain)
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -n 2

.PHONY: demo test test-all test-others lint bench install clean browser docs dist pictures

# the supported CPythons that pyenv has here (missing ones are skipped by nox)
export PYENV_VERSION ?= $(shell pyenv versions --bare 2>/dev/null | grep -E '^3\.1[123]\.[0-9]+$$' | sort -V | tr '\n' ':' | sed 's/:$$//')

$(BIN)/python:
	$(PY) -m venv $(VENV)

# PyTorch for the bridge's tests: the CPU-only build (no GPU libraries). This machine's pip finds it in
# its wheel directory; elsewhere: make install TORCH_INDEX=--extra-index-url=https://download.pytorch.org/whl/cpu
TORCH ?= torch==2.13.0+cpu
TORCH_INDEX ?=

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip uninstall --quiet --yes graphtrace 2>/dev/null || true  # the distribution's old name
	$(BIN)/python -m pip install --quiet --no-compile --progress-bar off -e .  # modules compile as first imported
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX) '$(TORCH)'
	$(BIN)/python -m pip install --quiet -e '.[test,bench,graphviz,torch-test,docs,plots]'
	touch $(STAMP)

install: $(STAMP)

# lean: only the package and its runtime dependencies (a .venv made by make install serves as well)
demo: $(RUNTIME)
	$(BIN)/graphtrace demo

lint: $(STAMP)
	$(BIN)/ruff check graphtrace tests benchmarks conftest.py
	$(BIN)/ruff format --check graphtrace tests benchmarks conftest.py
	$(BIN)/mypy

# the docs site (MkDocs Material + mkdocstrings + mkdocs-jupyter) into site/; --strict: a broken link, a
# missing reference or a docstring griffe cannot parse fails the build
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# the README's and the docs' pictures of the pages, at 1280x800 as they open (then only their buttons clicked)
pictures: $(STAMP)
	$(BIN)/python docs/make_pictures.py

# the sdist and the wheel into dist/ (tests/test_wheel.py installs the wheel in a fresh venv and uses it)
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .

# The browser tests (every test marked browser: the pages, the report's charts, the docs site from file://) run
# first, then the rest in parallel (a notebook cell may take 20 min on a loaded machine).
test: lint docs
	$(BIN)/python -m pytest -m browser tests
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not browser" --nbmake --nbmake-timeout=1200 tests graphtrace notebooks

# the fast suite (no browser, no notebooks) on each supported CPython found: 3.11, 3.12, 3.13
test-all: $(STAMP)
	$(BIN)/nox -s tests

# the same on the CPythons other than the default one (CI runs it after `make test`)
test-others: $(STAMP)
	$(BIN)/nox -s tests-3.12 tests-3.13

bench: $(STAMP)
	$(BIN)/nox -s tests --install-only
	$(BIN)/python benchmarks/bench_pythons.py
	$(BIN)/python benchmarks/bench_w1.py
	$(BIN)/python benchmarks/bench_backward.py
	$(BIN)/python benchmarks/bench_export.py
	$(BIN)/python benchmarks/bench_html.py
	$(BIN)/python benchmarks/bench_torch.py
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/python benchmarks/bench_report.py
	for py in $(wildcard .nox/tests-3-1*/bin/python); do $$py benchmarks/bench_runs.py || exit 1; done

clean:
	rm -rf $(VENV) .nox .mypy_cache .ruff_cache .hypothesis
