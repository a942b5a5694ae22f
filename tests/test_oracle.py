"""Gradients against two independent references: central differences and HIPS autograd.

Nothing here compares graphtrace with numbers graphtrace produced. Each op is checked alone on a grid
of points (edge cases included), then hypothesis builds random expression DAGs with reuse and the
same program is differentiated by autograd.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import autograd.numpy as anp
import pytest
from autograd import grad as ag_grad
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphtrace as gt
from graphtrace import Value

# The same function written for graphtrace Values and for autograd's numpy.
UNARY: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "neg": (lambda x: -x, lambda x: -x),
    "exp": (lambda x: x.exp(), anp.exp),
    "log": (lambda x: x.log(), anp.log),
    "tanh": (lambda x: x.tanh(), anp.tanh),
    "sigmoid": (lambda x: x.sigmoid(), lambda x: 1.0 / (1.0 + anp.exp(-x))),
    "relu": (lambda x: x.relu(), lambda x: anp.where(x > 0, x, 0.0)),
}
BINARY: dict[str, tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]] = {
    "+": (lambda x, y: x + y, lambda x, y: x + y),
    "-": (lambda x, y: x - y, lambda x, y: x - y),
    "*": (lambda x, y: x * y, lambda x, y: x * y),
    "/": (lambda x, y: x / y, lambda x, y: x / y),
    "**": (lambda x, y: x**y, lambda x, y: x**y),
}
UNARY_POINTS = {
    "neg": [-3.0, 0.0, 2.5],
    "exp": [-20.0, -1.0, 0.0, 0.7, 5.0, 700.0],
    "log": [1e-8, 0.3, 1.0, 42.0],
    "tanh": [-5.0, -0.5, 0.0, 0.5, 3.0],
    "sigmoid": [-30.0, -2.0, 0.0, 1.5, 30.0],
    "relu": [-2.0, -1e-3, 1e-3, 4.0],
}
BINARY_POINTS = {
    "+": [(1.0, 2.0), (-3.5, 0.25)],
    "-": [(1.0, 2.0), (-3.5, 0.25)],
    "*": [(1.5, -2.0), (0.0, 3.0)],
    "/": [(1.0, 3.0), (-2.5, 0.5), (4.0, -1e-3)],
    "**": [(2.0, 3.0), (0.5, -2.5), (3.0, 0.5), (1.7, 0.0), (9.0, 1.0 / 3.0)],
}


def graphtrace_grads(fn: Callable[..., Any], xs: list[float]) -> tuple[float, list[float]]:
    vs = [Value(x) for x in xs]
    out = fn(*vs)
    out.backward()
    return out.data, [v.grad for v in vs]


def autograd_grads(fn: Callable[..., Any], xs: list[float]) -> list[float]:
    return [float(ag_grad(fn, argnum=i)(*[float(x) for x in xs])) for i in range(len(xs))]


def central(fn: Callable[..., Any], xs: list[float], i: int, h: float = 1e-6) -> float:
    up = list(xs)
    dn = list(xs)
    h = h * abs(xs[i]) if xs[i] != 0 else h
    up[i] += h
    dn[i] -= h
    return (float(fn(*up)) - float(fn(*dn))) / (2 * h)


@pytest.mark.parametrize("op", list(UNARY))
def test_unary_ops_against_autograd_and_central_differences(op: str) -> None:
    gt_fn, np_fn = UNARY[op]
    for x in UNARY_POINTS[op]:
        data, (g,) = graphtrace_grads(gt_fn, [x])
        assert data == pytest.approx(float(np_fn(x)), rel=1e-12, abs=1e-300)
        (ref,) = autograd_grads(np_fn, [x])
        assert g == pytest.approx(ref, rel=1e-10, abs=1e-300), (op, x)
        if op != "exp" or x < 100:
            assert g == pytest.approx(central(np_fn, [x], 0), rel=1e-5, abs=1e-7), (op, x)


@pytest.mark.parametrize("op", list(BINARY))
def test_binary_ops_against_autograd_and_central_differences(op: str) -> None:
    gt_fn, np_fn = BINARY[op]
    for x, y in BINARY_POINTS[op]:
        data, grads = graphtrace_grads(gt_fn, [x, y])
        assert data == pytest.approx(float(np_fn(x, y)), rel=1e-12)
        refs = autograd_grads(np_fn, [x, y])
        assert grads == pytest.approx(refs, rel=1e-10, abs=1e-12), (op, x, y)
        for i in range(2):
            assert grads[i] == pytest.approx(central(np_fn, [x, y], i), rel=1e-5, abs=1e-6), (op, x, y, i)


def test_ops_with_the_same_operand_twice() -> None:
    for op, (gt_fn, np_fn) in BINARY.items():
        x = 1.7
        _, (g,) = graphtrace_grads(lambda v, f=gt_fn: f(v, v), [x])  # type: ignore[misc]
        (ref,) = autograd_grads(lambda v, f=np_fn: f(v, v), [x])  # type: ignore[misc]
        assert g == pytest.approx(ref, rel=1e-12), op


def test_micrograd_more_ops_against_autograd() -> None:
    def program(a: Any, b: Any, relu: Callable[[Any], Any]) -> Any:
        c = a + b
        d = a * b + b**3
        c = c + (c + 1)
        c = c + (1 + c + (-a))
        d = d + (d * 2 + relu(b + a))
        d = d + (3 * d + relu(b - a))
        e = c - d
        f = e**2
        g = f / 2.0
        return g + 10.0 / f

    _, grads = graphtrace_grads(lambda a, b: program(a, b, lambda v: v.relu()), [-4.0, 2.0])
    refs = autograd_grads(lambda a, b: program(a, b, lambda v: anp.where(v > 0, v, 0.0)), [-4.0, 2.0])
    assert grads == pytest.approx(refs, abs=1e-9)
    assert grads == pytest.approx([138.83381924198252, 645.5772594752186], abs=1e-9)


def test_gradcheck_helpers_on_every_op() -> None:
    for op, (gt_fn, _) in UNARY.items():
        for x in UNARY_POINTS[op]:
            if (op == "exp" and x > 100) or (op == "log" and x < 1e-5):
                continue
            assert gt.gradcheck(gt_fn, [Value(x)], eps=1e-6, atol=1e-6, rtol=1e-5), (op, x)
    for op, (gt_fn, _) in BINARY.items():
        for x, y in BINARY_POINTS[op]:
            assert gt.gradcheck(gt_fn, [Value(x), Value(y)], eps=1e-6, atol=1e-5, rtol=1e-5), (op, x, y)


# --- random expression DAGs (with reuse) --------------------------------------------------------
# Every op is applied through a "safe" form so any generated program stays inside its domain:
# log and pow get a positive base, division a denominator >= 1, exp an argument in (-1, 1).
SAFE_UNARY: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "neg": (lambda x: -x, lambda x: -x),
    "tanh": (lambda x: x.tanh(), anp.tanh),
    "sigmoid": (lambda x: x.sigmoid(), lambda x: 1.0 / (1.0 + anp.exp(-x))),
    "relu": (lambda x: x.relu(), lambda x: anp.where(x > 0, x, 0.0)),
    "exp": (lambda x: x.tanh().exp(), lambda x: anp.exp(anp.tanh(x))),
    "log": (lambda x: (x * x + 0.5).log(), lambda x: anp.log(x * x + 0.5)),
}
SAFE_BINARY: dict[str, tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]] = {
    "+": (lambda x, y: x + y, lambda x, y: x + y),
    "-": (lambda x, y: x - y, lambda x, y: x - y),
    "*": (lambda x, y: x * y, lambda x, y: x * y),
    "/": (lambda x, y: x / (y * y + 1.0), lambda x, y: x / (y * y + 1.0)),
    "**": (lambda x, y: (x.sigmoid() + 0.5) ** y.tanh(), lambda x, y: (1.0 / (1.0 + anp.exp(-x)) + 0.5) ** anp.tanh(y)),
}

step = st.one_of(
    st.tuples(st.sampled_from(sorted(SAFE_UNARY)), st.integers(0, 10**6)),
    st.tuples(st.sampled_from(sorted(SAFE_BINARY)), st.integers(0, 10**6), st.integers(0, 10**6)),
)
finite = st.floats(-3.0, 3.0, allow_nan=False).filter(lambda x: abs(x) > 1e-3)


def run_program(leaves: list[Any], steps: list[tuple[Any, ...]], engine: int) -> Any:
    nodes = list(leaves)
    for s in steps:
        if len(s) == 2:
            nodes.append(SAFE_UNARY[s[0]][engine](nodes[s[1] % len(nodes)]))
        else:
            nodes.append(SAFE_BINARY[s[0]][engine](nodes[s[1] % len(nodes)], nodes[s[2] % len(nodes)]))
    out = nodes[-1]
    for extra in nodes[-4:-1]:  # several sinks feed the output, so subexpressions are reused
        out = out + extra * 0.5
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(xs=st.lists(finite, min_size=1, max_size=4), steps=st.lists(step, min_size=1, max_size=25))
def test_random_expression_dags_against_autograd(xs: list[float], steps: list[tuple[Any, ...]]) -> None:
    vs = [Value(x) for x in xs]
    out = run_program(vs, steps, 0)
    out.backward()
    for i, v in enumerate(vs):
        ref = float(ag_grad(lambda *a: run_program(list(a), steps, 1), argnum=i)(*xs))
        assert math.isclose(v.grad, ref, rel_tol=1e-9, abs_tol=1e-9), (i, v.grad, ref)
    ref_out = float(run_program([float(x) for x in xs], steps, 1))
    assert math.isclose(out.data, ref_out, rel_tol=1e-12, abs_tol=1e-12)
