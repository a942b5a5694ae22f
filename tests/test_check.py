"""numerical_grad and gradcheck."""

from __future__ import annotations

import math

import pytest

import graphtrace as gt
from graphtrace import Value


def test_numerical_grad_matches_the_seed_parabola() -> None:
    # f(x) = 3x^2 - 4x + 5, f'(4) = 20 (the seed's first example)
    x = Value(4.0)
    (g,) = gt.numerical_grad(lambda x: 3 * x**2 - 4 * x + 5, [x])
    assert g == pytest.approx(20.0, abs=1e-6)
    assert x.data == 4.0


def test_numerical_grad_multiple_inputs() -> None:
    a, b, c = Value(2.0), Value(-3.0), Value(10.0)
    assert gt.numerical_grad(lambda a, b, c: a * b + c, [a, b, c]) == pytest.approx([-3.0, 2.0, 1.0], abs=1e-6)


def test_gradcheck_passes_and_reports_mismatches() -> None:
    a, b = Value(1.5, label="a"), Value(-0.5, label="b")
    assert gt.gradcheck(lambda a, b: (a * b).exp() / (a + 2), [a, b])

    def wrong(a: Value, b: Value) -> Value:
        # relu at exactly 0 has a one-sided kink: backward says 0, central differences say 0.5
        return (a - 1.5).relu() + a * b

    with pytest.raises(gt.GradcheckError) as info:
        gt.gradcheck(wrong, [a, b])
    assert info.value.mismatches[0][1] == "a"
    assert "analytic" in str(info.value)


def test_check_bad_input() -> None:
    a = Value(1.0)
    with pytest.raises(TypeError, match="callable"):
        gt.numerical_grad(3, [a])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="single Value"):
        gt.numerical_grad(lambda a: a, a)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"inputs\[1\]"):
        gt.gradcheck(lambda a, b: a, [a, 2.0])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="eps"):
        gt.numerical_grad(lambda a: a, [a], eps=0.0)
    with pytest.raises(TypeError, match="return a Value"):
        gt.numerical_grad(lambda a: 1.0, [a])


def test_gradcheck_inside_no_grad_still_checks_real_gradients() -> None:
    a, b = gt.Value(2.0, label="a"), gt.Value(-3.0, label="b")
    with gt.no_grad():
        assert gt.gradcheck(lambda a, b: a * b + a.exp(), [a, b])
    assert (a.grad, b.grad) == (-3.0 + math.exp(2.0), 2.0)
