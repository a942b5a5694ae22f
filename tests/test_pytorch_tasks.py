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


def test_a_trace_in_a_worker_thread_records_that_thread_only() -> None:
    """``asyncio.to_thread`` copies the context (and the traced task's session) into a worker thread:
    the worker's own trace recorded the loop thread's ops, and none of its own."""
    import threading

    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    x = torch.randn(3, 2)
    res: dict[str, object] = {}

    def plain() -> None:
        b(x).exp().mean().backward()  # under the traced task's await, in a worker thread: not the trace's

    def traced(ready: threading.Event, go: threading.Event) -> None:
        with gt.pytorch.trace(b) as tb:
            ready.set()
            go.wait(60)  # the loop thread's trace runs ops meanwhile
            b(x).exp().sum().backward()
        res["worker"] = _ops(tb.graph)

    async def main() -> None:
        with gt.pytorch.trace(a) as ta:
            await asyncio.to_thread(plain)
            ready, go = threading.Event(), threading.Event()
            fut = asyncio.ensure_future(asyncio.to_thread(traced, ready, go))
            await asyncio.to_thread(ready.wait, 60)
            a(x).tanh().sum().backward()
            go.set()
            await fut
        res["main"] = _ops(ta.graph)
        res["main_scopes"] = {d["scope"] for _, d in ta.graph.nodes(data=True)}

    asyncio.run(main())
    assert res["worker"] == ["addmm", "exp", "sum", "t"]
    assert res["main"] == ["addmm", "sum", "t", "tanh"]


def test_a_task_made_inside_a_trace_traces_on_its_own_after_that_trace_exits() -> None:
    """A child task keeps the context it was made in: its trace joined the parent's session, then
    failed at its exit ("Token ... created in a different Context") with hooks left on the model, or
    joined a session already closed."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    x = torch.randn(3, 2)
    res: dict[str, object] = {}

    async def nested_child(started: asyncio.Event, go: asyncio.Event) -> None:
        with gt.pytorch.trace(b) as tb:
            b(x).sum().backward()
            started.set()
            await go.wait()  # the parent's trace exits meanwhile
            b(x).tanh().sum().backward()
        res["nested"] = _ops(tb.graph)

    async def late_child(go: asyncio.Event) -> None:
        await go.wait()  # the parent's trace has exited
        with gt.pytorch.trace(b) as tb:
            b(x).tanh().sum().backward()
        res["late"] = _ops(tb.graph)

    async def main() -> None:
        started, go, go2 = asyncio.Event(), asyncio.Event(), asyncio.Event()
        with gt.pytorch.trace(a) as ta:
            a(x).sum().backward()
            t = asyncio.create_task(nested_child(started, go))
            t2 = asyncio.create_task(late_child(go2))
            await started.wait()
        res["parent"] = _ops(ta.graph)
        go.set()
        await t
        go2.set()
        await t2

    asyncio.run(main())
    assert res["parent"] == ["addmm", "addmm", "sum", "sum", "t", "t"]  # its own, and the child's first pass
    assert res["nested"] == ["addmm", "addmm", "sum", "sum", "t", "t", "tanh"]
    assert res["late"] == ["addmm", "sum", "t", "tanh"]
    assert _get_current_dispatch_mode_stack() == []
    assert not b._forward_pre_hooks and not b._forward_hooks and not a._forward_hooks


def test_a_trace_closing_while_another_task_holds_a_mode_leaves_that_mode_on() -> None:
    """Task B enters ``torch.device("meta")`` (a function mode) and a dispatch mode of its own, and
    waits at an ``await`` while task A's trace exits: the trace takes off its own modes only, so B's
    ops after the ``await`` still run on the meta device and through B's mode, and B's exits find
    their own modes."""
    from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode_stack

    class Seen(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    net = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    b_inside = asyncio.Event()
    a_done = asyncio.Event()
    out: dict[str, object] = {}

    async def traced_task() -> None:
        with gt.pytorch.trace(net) as tr:
            net(x).sum().backward()
            await b_inside.wait()  # task B enters its modes, then the trace exits under them
        out["graph"] = tr.graph
        a_done.set()

    async def other_task() -> None:
        seen = Seen()
        with torch.device("meta"), seen:
            b_inside.set()
            await a_done.wait()
            out["device"] = torch.empty(2).device.type
            out["seen"] = list(seen.ops)
        out["after"] = torch.empty(2).device.type

    async def main() -> None:
        await asyncio.gather(traced_task(), other_task())

    asyncio.run(main())
    assert out["device"] == "meta"
    assert any("empty" in op for op in out["seen"]), out["seen"]  # type: ignore[attr-defined]
    assert out["after"] == "cpu"
    assert _ops(out["graph"]) == ["addmm", "sum", "t"]
    # nothing of either is left on this thread's stacks
    assert _get_current_dispatch_mode_stack() == []
    assert torch.overrides._get_current_function_mode_stack() == []
