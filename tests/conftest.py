"""Shared fixtures."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import chromium
import pytest

import graphtrace as gt
from graphtrace import Value, store


def _state() -> tuple[int, int]:
    """(nodes, edges) of the live store once earlier tests' cyclic garbage is collected."""
    gc.collect()
    with store.graph_lock() as G:
        return G.number_of_nodes(), G.number_of_edges()


@pytest.fixture
def graph_state() -> Callable[[], tuple[int, int]]:
    return _state


def nested_scopes(depth: int, at: tuple[str, ...]) -> list[Value]:
    """``x * 2`` recorded inside ``depth`` nested scopes s0/s1/..., once at each scope named in ``at``."""
    x = Value(1.0, label="x")
    scopes = [gt.scope(f"s{i}") for i in range(depth)]
    outs = []
    for s in scopes:
        s.__enter__()
        if s.name in at:
            outs.append(x * 2.0)
    for s in reversed(scopes):
        s.__exit__(None, None, None)
    return outs


@pytest.fixture
def deep_scopes() -> Callable[[int, tuple[str, ...]], list[Value]]:
    return nested_scopes


@pytest.fixture
def demo_sample() -> Value:
    """One moons-like sample through micrograd's demo MLP(2, [16, 16, 1]) and its hinge loss, after
    ``loss.backward()``: 984 nodes in scopes (the graph ``graphtrace train`` draws)."""
    import random

    random.seed(1337)
    model = gt.nn.MLP(2, [16, 16, 1])
    score = model([Value(1.12, label="x0"), Value(0.08, label="x1")])
    loss = (1 + -1 * score).relu()
    loss.label = "loss"
    loss.backward()
    return loss


@pytest.fixture
def seed_root() -> Value:
    """The seed's ``L = (a*b + c) * f`` with its labels, after ``L.backward()``."""
    a, b, c, f = Value(2.0, label="a"), Value(-3.0, label="b"), Value(10.0, label="c"), Value(-2.0, label="f")
    e = a * b
    e.label = "e"
    d = e + c
    d.label = "d"
    L = d * f
    L.label = "L"
    L.backward()
    return L


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    """The test runs with the cyclic garbage collector off: only reference counting frees.

    networkx compiles each dispatched function's wrapper on its first call, leaving a few cycles
    once: the functions the engine calls are warmed up first, so a test alone sees only its own."""
    a = Value(2.0)
    gt.backward(gt.to_networkx(a * a + 1.0))
    (a * 3.0).backward()
    del a
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session (tests/chromium.py); skipped without chromium, except in CI."""
    yield from chromium.launch()
