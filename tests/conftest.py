"""Shared fixtures."""

from __future__ import annotations

import gc
from collections.abc import Callable

import pytest

from graphtrace import store


def _state() -> tuple[int, int]:
    """(nodes, edges) of the live store once earlier tests' cyclic garbage is collected."""
    gc.collect()
    with store.graph_lock() as G:
        return G.number_of_nodes(), G.number_of_edges()


@pytest.fixture
def graph_state() -> Callable[[], tuple[int, int]]:
    return _state
