"""Which sibling instances a page folds into one stack: only alike ones (graphtrace.export.stacks)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphtrace as gt
from graphtrace import Value
from graphtrace.export.payload import page_data
from graphtrace.export.stacks import SERIES_OVER


def _stacks(root: Any) -> list[tuple[str, list[str]]]:
    """The stacks of root's page as (base, member scope paths)."""
    data = page_data(gt.to_networkx(root), fold=True, budget=15)
    pairs = data["scopes"]

    def path(k: int) -> str:
        segs = []
        while k > 0:
            segs.append(pairs[k][1])
            k = pairs[k][0]
        return "/".join(reversed(segs))

    return [(base, [path(k) for k in members]) for base, members in data["stacks"]]


def _calls(n: int, body: Callable[[int, Value, Value], Value]) -> Value:
    x, y = Value(1.5, label="x"), Value(-2.0, label="y")
    outs = []
    for k in range(n):
        with gt.scope(f"f[{k}]"):
            outs.append(body(k, x, y))
    return sum(outs, Value(0.0))


def test_alike_calls_fold_into_one_stack() -> None:
    assert _stacks(_calls(10, lambda k, x, y: (x * y).tanh() + x)) == [("f", [f"f[{k}]" for k in range(10)])]


def test_a_call_wired_differently_or_with_another_inner_scope_splits_the_stack() -> None:
    """#26 item 18: f[5] adds y where the others add x (the same ops, other wiring), f[7]'s inner scope has
    another name: neither folds with the others, and a stack never spans them."""

    def body(k: int, x: Value, y: Value) -> Value:
        with gt.scope("inner" if k != 7 else "other"):
            a = x * y
        return a.tanh() + (y if k == 5 else x)

    assert _stacks(_calls(10, body)) == [
        ("f", ["f[0]", "f[1]", "f[2]", "f[3]", "f[4]"]),
        ("f", ["f[8]", "f[9]"]),
    ]


def test_the_same_ops_in_another_order_or_role_do_not_fold() -> None:
    def body(k: int, x: Value, y: Value) -> Value:
        return (x * y).tanh() if k % 2 == 0 else (x.tanh() * y)

    assert _stacks(_calls(4, body)) == []
    leaf_or_constant = _calls(2, lambda k, x, y: x * (Value(2.0) if k == 0 else 2.0))
    assert _stacks(leaf_or_constant) == []  # a leaf made inside vs a constant operand


def test_which_outside_value_an_op_reads_counts() -> None:
    """Wiring from outside counts: ``(x * y) * x`` and ``(x * y) * y`` read alike op by op but are not the same."""
    assert _stacks(_calls(2, lambda k, x, y: (x * y) * (x if k == 0 else y))) == []
    assert _stacks(_calls(2, lambda k, x, y: (x * y) * x)) == [("f", ["f[0]", "f[1]"])]


def test_only_the_outermost_stacks_and_bare_indices_only_consecutive() -> None:
    def body(k: int, x: Value, y: Value) -> Value:
        out = x
        for j in range(3):
            with gt.scope(f"g[{j}]"):
                out = out * y
        return out

    assert _stacks(_calls(3, body)) == [("f", ["f[0]", "f[1]", "f[2]"])]  # g[0..2] inside are not stacks
    x = Value(1.0, label="x")
    outs = []
    with gt.scope("Seq"):
        for j, op in enumerate(["mul", "mul", "add", "mul", "mul", "mul"]):
            with gt.scope(str(j)):
                outs.append(x * 2.0 if op == "mul" else x + 2.0)
    assert _stacks(sum(outs, Value(0.0))) == [("", ["Seq/0", "Seq/1"]), ("", ["Seq/3", "Seq/4", "Seq/5"])]


def test_numbered_siblings_fold_only_when_there_are_too_many_to_show() -> None:
    def siblings(n: int) -> Value:
        x = Value(1.0, label="x")
        outs = []
        for i in range(n):
            with gt.scope(f"s{i}"):
                outs.append(x * 2.0)
        return sum(outs, Value(0.0))

    assert _stacks(siblings(SERIES_OVER)) == []
    assert _stacks(siblings(SERIES_OVER + 1)) == [("s", [f"s{i}" for i in range(SERIES_OVER + 1)])]


def test_ten_thousand_nested_scopes_need_no_recursion() -> None:
    x = Value(1.0, label="x")
    scopes = [gt.scope(f"s[{i % 2}]") for i in range(10_000)]
    outs = []
    for s in scopes:
        s.__enter__()
        outs.append(x * 2.0)
    for s in reversed(scopes):
        s.__exit__(None, None, None)
    assert _stacks(sum(outs[-3:], Value(0.0))) == []


def test_a_torch_modulelist_and_sequential_of_alike_blocks_fold() -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(4, 4), nn.Tanh()) for _ in range(5))
            self.head = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))

        def forward(self, x: Any) -> Any:
            for b in self.blocks:
                x = x + b(x)
            return self.head(x)

    torch.manual_seed(0)
    net = Net()
    with gt.pytorch.trace(net) as tr:
        net(torch.randn(3, 4)).sum().backward()
    got = page_data(tr.graph, fold=True, budget=15)
    pairs = got["scopes"]
    names = [(base, [pairs[k][1] for k in members]) for base, members in got["stacks"]]
    # blocks[1] ... blocks[4], each holding its parameters (a parameter sits in the module using it):
    # blocks[0] differs, its input (the model's, no grad) is not recorded, so its addmm has one operand
    # fewer; head[0] and head[1] are two alike Linear calls in a row
    assert ("blocks", [f"blocks[{k}]" for k in range(1, 5)]) in names, names
    assert sum(1 for base, m in names if base == "blocks") == 1, names
    assert ("head", ["head[0]", "head[1]"]) in names, names
    assert not any(seg == "parameters" for _, seg in pairs), pairs


# ---- random programs: two calls fold exactly when the same program made them ----------------------------
OPS = ("mul", "add", "tanh", "relu")


@st.composite
def programs(draw: Any) -> list[tuple[str, int, int]]:
    """A straight-line program over two outside inputs: each step applies an op to earlier values."""
    steps = []
    for j in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(OPS))
        steps.append((op, draw(st.integers(0, j + 1)), draw(st.integers(0, j + 1))))
    return steps


def _run(program: list[tuple[str, int, int]], x: Value, y: Value) -> Value:
    vals = [x, y]
    for op, a, b in program:
        u, v = vals[a], vals[b]
        vals.append(u * v if op == "mul" else u + v if op == "add" else u.tanh() if op == "tanh" else u.relu())
    return vals[-1]


@settings(max_examples=60, deadline=None)
@given(programs(), programs(), st.lists(st.booleans(), min_size=2, max_size=8), st.randoms())
def test_calls_fold_exactly_when_the_same_program_made_them(
    p: list[tuple[str, int, int]], q: list[tuple[str, int, int]], which: list[bool], rnd: random.Random
) -> None:
    """The oracle is the program, not the signature: runs of consecutive calls of one program fold into
    one stack, a call of another program never joins them (q is p with one more step, so the graphs
    differ)."""
    q = [*p, (rnd.choice(OPS), len(p) + 1, rnd.randint(0, len(p) + 1))]  # a step on p's output
    root = _calls(len(which), lambda k, x, y: _run(q if which[k] else p, x, y))
    runs, start = [], 0
    for k in range(1, len(which) + 1):
        if k == len(which) or which[k] != which[start]:
            if k - start > 1:
                runs.append(("f", [f"f[{j}]" for j in range(start, k)]))
            start = k
    assert _stacks(root) == runs
