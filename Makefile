# Every target bootstraps its own virtual environment in .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= -n 2

.PHONY: demo test lint bench install clean browser

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench,graphviz]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/graphtrace demo

lint: $(STAMP)
	$(BIN)/ruff check graphtrace tests benchmarks
	$(BIN)/ruff format --check graphtrace tests benchmarks
	$(BIN)/mypy

# The browser tests time a first draw, so they run first, alone on the machine; then the rest in parallel.
test: lint
	$(BIN)/python -m pytest -m browser tests/test_browser.py
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not browser" --nbmake tests graphtrace notebooks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_w1.py
	$(BIN)/python benchmarks/bench_backward.py
	$(BIN)/python benchmarks/bench_export.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis
