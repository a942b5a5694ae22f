"""Headless Chromium for the tests that read a page as a person sees it (Debian's chromium, driven by playwright).

A missing browser skips those tests on a developer machine; CI sets ``GRAPHTRACE_REQUIRE_BROWSER=1``, which turns
it into a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: no background requests of the browser's own: a test counts every request a page makes
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def sync_api(allow_module_level: bool = False) -> ModuleType:
    """``playwright.sync_api``, or a skip (a failure under ``GRAPHTRACE_REQUIRE_BROWSER``) without chromium."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("GRAPHTRACE_REQUIRE_BROWSER"):
            raise RuntimeError("GRAPHTRACE_REQUIRE_BROWSER is set but chromium is not installed")
        pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=allow_module_level)
    return pytest.importorskip("playwright.sync_api")


def launch() -> Iterator[Any]:
    """One headless Chromium for as long as the generator is open."""
    api = sync_api()
    with api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()
