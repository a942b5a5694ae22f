"""Scopes follow contexts: asyncio tasks, generators, copied contexts and threads each see their own."""

from __future__ import annotations

import asyncio
import contextvars
import random
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import pytest

import graphtrace as gt
from graphtrace import Value


def test_interleaved_asyncio_tasks_keep_their_own_scopes() -> None:
    x = Value(1.0, label="x")
    seen: dict[str, list[str]] = {"A": [], "B": []}

    async def work(name: str, other_started: asyncio.Event, mine: asyncio.Event) -> None:
        with gt.scope(name):
            mine.set()
            await other_started.wait()  # both tasks are now inside their scopes at once
            for _ in range(3):
                seen[name].append((x * 2.0).scope)
                seen[name].append(gt.current_scope())
                await asyncio.sleep(0)

    async def main() -> None:
        a, b = asyncio.Event(), asyncio.Event()
        await asyncio.gather(work("A", b, a), work("B", a, b))

    asyncio.run(main())
    assert seen == {"A": ["A"] * 6, "B": ["B"] * 6}
    assert gt.current_scope() == ""
    assert (x + 1.0).scope == ""


def test_model_calls_inside_tasks_get_their_own_instances() -> None:
    random.seed(0)
    model = gt.nn.MLP(2, [2, 1])
    outs: list[Value] = []

    async def one(k: int) -> None:
        with gt.scope(f"task{k}"):
            await asyncio.sleep(0)
            outs.append(model([Value(1.0), Value(float(k))]))
            await asyncio.sleep(0)
            outs.append(model([Value(2.0), Value(float(k))]))

    async def main() -> None:
        await asyncio.gather(*(one(k) for k in range(3)))

    asyncio.run(main())
    scopes = sorted(o.scope for o in outs)
    assert scopes == sorted(f"task{k}/MLP[{i}]/Layer1/Neuron0" for k in range(3) for i in range(2))
    assert gt.current_scope() == ""


def test_generators_closed_in_the_other_order_leave_nothing_behind() -> None:
    x = Value(1.0)

    def gen(name: str):  # type: ignore[no-untyped-def]
        with gt.scope(name):
            yield (x * 2.0).scope
            yield (x * 3.0).scope

    g1, g2 = gen("g1"), gen("g2")
    assert next(g1) == "g1"
    assert next(g2) == "g1/g2"  # (a bare `with` in a generator is open while it is suspended: documented)
    g1.close()
    assert gt.current_scope() == "g2"  # g1's scope is gone, wherever it was in the stack
    g2.close()
    assert gt.current_scope() == ""
    assert (x + 1.0).scope == ""
    # and the usual order
    g1, g2 = gen("g1"), gen("g2")
    next(g1), next(g2)
    g2.close()
    g1.close()
    assert gt.current_scope() == ""


def test_a_decorated_generator_never_leaks_its_scope_into_its_caller() -> None:
    x = Value(1.0)

    @gt.scope("g")
    def gen(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            got = yield (x * float(i)).scope
            assert got is None or got == "sent"

    it = gen(3)
    assert next(it) == "g"
    assert gt.current_scope() == "" and (x + 1.0).scope == ""  # suspended: the caller sees its own scope
    with gt.scope("caller"):
        assert it.send("sent") == "caller/g"  # resumed inside the caller's scope
        assert gt.current_scope() == "caller"
    it.close()
    assert gt.current_scope() == ""
    assert list(gen(2)) == ["g", "g"]

    @gt.scope("ag")
    async def agen():  # type: ignore[no-untyped-def]
        for i in range(2):
            yield (x * float(i)).scope

    async def main() -> list[str]:
        out = []
        async for s in agen():
            out.append(s)
            out.append(gt.current_scope())
        return out

    assert asyncio.run(main()) == ["ag", "", "ag", ""]

    @gt.scope("c")
    async def coro() -> str:
        await asyncio.sleep(0)
        return (x * 2.0).scope

    assert asyncio.run(coro()) == "c"

    @gt.scope("f")
    def plain() -> str:
        return gt.current_scope()

    assert plain() == "f" and gt.current_scope() == ""


def test_copied_context_and_thread_pool() -> None:
    with gt.scope("outer"):
        ctx = contextvars.copy_context()
    assert gt.current_scope() == ""
    assert ctx.run(gt.current_scope) == "outer"

    def inner() -> str:
        with gt.scope("inner"):
            return (Value(1.0) * 2.0).scope

    assert ctx.run(inner) == "outer/inner"
    assert gt.current_scope() == ""

    barrier = threading.Barrier(4)

    def worker(k: int) -> list[str]:
        out = []
        with gt.scope(f"t{k}"):
            barrier.wait()
            for _ in range(50):
                out.append((Value(1.0) * 2.0).scope)
        out.append(gt.current_scope())
        return out

    with gt.scope("main"), ThreadPoolExecutor(4) as pool:
        results = list(pool.map(worker, range(4)))
        assert gt.current_scope() == "main"
    assert results == [[f"t{k}"] * 50 + [""] for k in range(4)]
    assert gt.current_scope() == ""


def test_an_exception_inside_nested_scopes_unwinds_them() -> None:
    with pytest.raises(ZeroDivisionError), gt.scope("a"), gt.scope("b"):
        _ = Value(1.0) / 0.0
    assert gt.current_scope() == ""


def test_ten_thousand_nested_scopes_cost_linear_memory() -> None:
    depth = 10_000
    scopes = [gt.scope(f"s{i}") for i in range(depth)]
    tracemalloc.start()
    try:
        for s in scopes:
            s.__enter__()
        leaf = Value(1.0) * 2.0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        for s in reversed(scopes):
            s.__exit__(None, None, None)
        tracemalloc.stop()
    assert leaf.scope.count("/") == depth - 1 and leaf.scope.endswith("/s9999")
    # one frame per level plus one path string: a few MB; building every level's string is ~250 MB
    assert peak < 20 * 2**20, peak
    assert gt.current_scope() == ""
