"""The fast test suite (no browser, no notebooks) on every supported CPython: ``make test-all``.

``make test`` stays the one command for the default interpreter (lint, browser tests, notebooks).
Interpreters are found on PATH (pyenv: ``PYENV_VERSION=3.11.7:3.12.1:3.13.0``, as the Makefile sets);
a missing one is skipped, never an error.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYTHONS = ["3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """pytest -m "not browser" over tests/ and the doctests, two workers."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-n", "2", "-m", "not browser", "tests", "graphtrace", *session.posargs)
