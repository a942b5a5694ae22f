"""A trace records the asyncio task that entered it: another task of the same thread, running while the
traced one waits at an ``await``, never enters its graph (torch's mode stack is the thread's)."""

from __future__ import annotations

import asyncio

import pytest

torch = pytest.importorskip("torch")

import graphtrace as gt  # noqa: E402


def _ops(g: object) -> list[str]:
    return sorted(d["op"] for _, d in g.nodes(data=True) if d.get("op"))  # type: ignore[attr-defined]


def test_another_tasks_ops_never_enter_a_trace_open_across_an_await() -> None:
    torch.manual_seed(0)
    traced, other = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    inside = asyncio.Event()
    done = asyncio.Event()
    out: dict[str, object] = {}

    async def traced_task() -> None:
        with gt.pytorch.trace(traced) as tr:
            h = traced(x)
            inside.set()
            await done.wait()  # the other task runs its model (forward and backward) meanwhile
            h.tanh().sum().backward()
        out["graph"] = tr.graph

    async def other_task() -> None:
        await inside.wait()
        y = other(x).exp().mean()  # exp, mean: ops the traced code never runs
        y.backward()
        out["other_grad"] = other.weight.grad.clone()
        done.set()

    async def main() -> None:
        await asyncio.gather(traced_task(), other_task())

    asyncio.run(main())
    g = out["graph"]
    ops = _ops(g)
    assert not any(o.startswith(("exp", "mean", "Exp", "Mean")) for o in ops), ops
    assert ops == ["addmm", "sum", "t", "tanh"], ops
    # the traced model's gradients are torch's own
    w = next(d for _, d in g.nodes(data=True) if d["label"] == "weight")  # type: ignore[attr-defined]
    expected = torch.autograd.grad(traced(x).tanh().sum(), traced.weight)[0]
    assert w["grad"] == pytest.approx(float(expected.norm()), rel=1e-6)
    assert out["other_grad"] is not None


def test_two_tasks_of_one_thread_cannot_trace_at_once() -> None:
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    inside = asyncio.Event()
    done = asyncio.Event()

    async def first() -> None:
        with gt.pytorch.trace(a):
            inside.set()
            await done.wait()

    async def second() -> None:
        await inside.wait()
        try:
            with pytest.raises(RuntimeError, match="another asyncio task"), gt.pytorch.trace(b):
                pass
            assert not b._forward_pre_hooks  # refused before anything was hooked
        finally:
            done.set()

    async def main() -> None:
        await asyncio.gather(first(), second())

    asyncio.run(main())
    # the first trace closed cleanly: a new trace in this thread works
    with gt.pytorch.trace(a) as tr:
        a(torch.randn(1, 2)).sum().backward()
    assert tr.graph.number_of_nodes() > 0
