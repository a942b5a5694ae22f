"""The Value handle: the seed's numbers, micrograd's tests, graph semantics and bad input."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

import graphtrace as gt
from graphtrace import Value, store


def seed_expression() -> dict[str, Value]:
    a = Value(2.0, label="a")
    b = Value(-3.0, label="b")
    c = Value(10.0, label="c")
    e = a * b
    e.label = "e"
    d = e + c
    d.label = "d"
    f = Value(-2.0, label="f")
    L = d * f
    L.label = "L"
    return {"a": a, "b": b, "c": c, "e": e, "d": d, "f": f, "L": L}


def test_seed_walkthrough_numbers() -> None:
    v = seed_expression()
    v["L"].backward()
    assert v["L"].data == -8.0
    expected = {"a": 6.0, "b": -4.0, "c": -2.0, "e": -2.0, "d": -2.0, "f": 4.0, "L": 1.0}
    assert {k: x.grad for k, x in v.items()} == expected


def test_micrograd_sanity_check() -> None:
    # micrograd's test_sanity_check, with the expected numbers derived in closed form for x = -4:
    # z = 3x + 2 = -10, q = relu(z) + z*x = 40, h = relu(z*z) = 100, y = h + q + q*x = -20
    x = Value(-4.0)
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    y.backward()
    xs = -4.0
    zs = 3 * xs + 2
    qs = max(zs, 0) + zs * xs
    dz = 3.0
    dq = (1.0 if zs > 0 else 0.0) * dz + dz * xs + zs
    dh = 2 * zs * dz
    assert y.data == pytest.approx(100 + qs + qs * xs, abs=1e-12) == -20.0
    assert x.grad == pytest.approx(dh + dq + dq * xs + qs, abs=1e-12) == 46.0


def test_micrograd_more_ops_readme_numbers() -> None:
    a = Value(-4.0)
    b = Value(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    g.backward()
    # micrograd's README prints 24.7041, 138.8338, 645.5773; the full-precision numbers below are
    # PyTorch's (micrograd's own test compares against torch), and tests/test_oracle.py checks the
    # same expression against HIPS autograd.
    assert (round(g.data, 4), round(a.grad, 4), round(b.grad, 4)) == (24.7041, 138.8338, 645.5773)
    assert g.data == pytest.approx(24.70408163265306, abs=1e-9)
    assert a.grad == pytest.approx(138.83381924198252, abs=1e-9)
    assert b.grad == pytest.approx(645.5772594752186, abs=1e-9)


def test_every_op_records_its_name_and_local_grads() -> None:
    a, b = Value(3.0, label="a"), Value(2.0, label="b")
    cases = {
        "+": (a + b, (1.0, 1.0)),
        "-": (a - b, (1.0, -1.0)),
        "*": (a * b, (2.0, 3.0)),
        "/": (a / b, (0.5, -0.75)),
        "**": (a**b, (6.0, 9.0 * math.log(3.0))),
    }
    for op, (out, (da, db)) in cases.items():
        assert out.op == op
        G = gt.to_networkx(out)
        assert G.edges[a.node_id, out.node_id]["local_grad"] == pytest.approx(da)
        assert G.edges[b.node_id, out.node_id]["local_grad"] == pytest.approx(db)
    unary = {"neg": -a, "exp": a.exp(), "log": a.log(), "tanh": a.tanh(), "sigmoid": a.sigmoid(), "relu": a.relu()}
    for op, out in unary.items():
        assert out.op == op
        assert gt.to_networkx(out).number_of_edges() == 1
    assert set(gt.RULES) == {"+", "-", "*", "/", "**", "neg", "exp", "log", "tanh", "sigmoid", "relu"}


def test_number_operands_become_constant_leaves_on_either_side() -> None:
    a = Value(3.0)
    for out, expected in [(a + 1, 4.0), (1 + a, 4.0), (a - 1, 2.0), (1 - a, -2.0), (2 * a, 6.0), (a * 2, 6.0)]:
        assert out.data == expected
        G = gt.to_networkx(out)
        roles = sorted(G.nodes[n]["role"] for n in G)
        assert roles == ["constant", "intermediate", "leaf"]
    assert (6 / a).data == 2.0 and (a / 6).data == 0.5
    assert (2**a).data == 8.0 and (a**2).data == 9.0
    assert (-a).data == -3.0


def test_numpy_scalars_are_stored_as_python_floats() -> None:
    for x in (np.float64(1.5), np.float32(1.5), np.int64(3), np.int8(-2), True):
        v = Value(x)
        assert type(v.data) is float and v.data == float(x)
    a = Value(2.0)
    out = np.int64(-1) * a  # numpy defers to Value.__rmul__
    assert isinstance(out, Value) and out.data == -2.0
    out = a + np.float64(0.5)
    assert isinstance(out, Value) and out.data == 2.5


def test_reuse_traps_one_edge_with_summed_local_grad() -> None:
    # micrograd issue #2: a*a
    a = Value(3.0)
    sq = a * a
    G = gt.to_networkx(sq)
    assert G.number_of_edges() == 1
    assert G.edges[a.node_id, sq.node_id]["local_grad"] == 6.0
    sq.backward()
    assert a.grad == 6.0
    # micrograd PR #64: a=1; b=a+a; c=b+b → dc/da = 4
    a = Value(1.0)
    b = a + a
    c = b + b
    assert gt.to_networkx(c).edges[a.node_id, b.node_id]["local_grad"] == 2.0
    c.backward()
    assert (a.grad, b.grad) == (4.0, 2.0)


def test_values_hash_by_identity_and_do_not_overload_eq() -> None:
    a, b = Value(1.0), Value(1.0)
    assert a != b and a == a
    assert len({a, b, a}) == 2
    d = {a: "a"}
    assert d[a] == "a"


def test_repr_and_attributes() -> None:
    a = Value(2, label="a")
    assert repr(a) == "Value(data=2.0, grad=0.0, label='a')"
    out = a * 3
    assert repr(out) == "Value(data=6.0, grad=0.0, op='*')"
    assert out.operands[0].node_id == a.node_id and len(out.operands) == 2
    assert out.operands[0].data == 2.0 and out.operands[1].role == "constant"
    assert a.op == "" and a.role == "leaf" and out.role == "intermediate"
    a.data = 5
    a.grad = np.float64(0.25)
    assert (a.data, a.grad) == (5.0, 0.25) and type(a.grad) is float
    assert store.NODE[a.node_id]["data"] == 5.0  # the attribute *is* the node attribute


@pytest.mark.parametrize(
    "bad",
    [
        "x",
        None,
        1 + 2j,
        np.complex128(1 + 1j),
        b"1",
        [1.0],
        object(),
        np.array("1.5"),
        np.array(b"1"),
        np.array(2.0, dtype=object),
    ],
)
def test_bad_data_raises_type_error_naming_the_type(bad: object, graph_state: Callable[[], tuple[int, int]]) -> None:
    before = graph_state()
    with pytest.raises(TypeError, match=type(bad).__name__):
        Value(bad)
    assert graph_state() == before


def test_value_of_a_value_is_a_type_error() -> None:
    a = Value(1.0)
    with pytest.raises(TypeError, match="another Value"):
        Value(a)


def test_bad_label_role_and_setters() -> None:
    with pytest.raises(TypeError, match="label must be a str"):
        Value(1.0, label=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="role"):
        Value(1.0, role="weight")
    a = Value(1.0)
    with pytest.raises(TypeError, match="str"):
        a.data = "2"
    with pytest.raises(TypeError, match="NoneType"):
        a.grad = None
    with pytest.raises(TypeError):
        a.label = None  # type: ignore[assignment]
    with pytest.raises(AttributeError):
        a.op = "+"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        a.anything = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", ["x", None, 1j, [1]])
def test_op_with_non_number_operand_is_a_type_error(bad: object, graph_state: Callable[[], tuple[int, int]]) -> None:
    a = Value(1.0)
    before = graph_state()
    for op in (
        lambda: a + bad,
        lambda: bad + a,
        lambda: a * bad,
        lambda: bad - a,
        lambda: a / bad,
        lambda: bad**a,
    ):
        with pytest.raises(TypeError):
            op()
    assert graph_state() == before


DOMAIN_CASES = [
    ("n.log()", ValueError, ["log", "n = -2.0", "> 0"]),
    ("z.log()", ValueError, ["log", "z = 0.0"]),
    ("a / z", ZeroDivisionError, ["/", "a = 3.0", "z = 0.0"]),
    ("1.0 / z", ZeroDivisionError, ["/", "1.0", "z = 0.0"]),
    ("z ** -1.0", ZeroDivisionError, ["**", "z = 0.0", "-1.0"]),
    ("z ** n", ZeroDivisionError, ["**", "z = 0.0", "n = -2.0"]),
    ("n ** 0.5", ValueError, ["**", "n = -2.0", "0.5", "complex"]),
    ("big.exp()", OverflowError, ["exp", "big = 900.0"]),
    ("ten ** 400", OverflowError, ["**", "ten = 10.0", "400"]),
]


@pytest.mark.parametrize(("expr", "exc", "words"), DOMAIN_CASES)
def test_domain_errors_name_op_and_operands_and_record_nothing(
    expr: str, exc: type, words: list[str], graph_state: Callable[[], tuple[int, int]]
) -> None:
    env = {"a": Value(3.0, label="a"), "z": Value(0.0, label="z"), "n": Value(-2.0, label="n")}
    env["big"] = env["a"] * 300
    env["big"].label = "big"
    env["ten"] = Value(10.0, label="ten")
    before = graph_state()
    with pytest.raises(exc) as info:
        eval(expr, {}, env)
    assert graph_state() == before
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_saturating_functions_never_overflow() -> None:
    for x, t in [(1000.0, 1.0), (-1000.0, -1.0), (800.0, 1.0)]:
        v = Value(x)
        out = v.tanh()
        out.backward()
        assert out.data == t and v.grad == 0.0
    v = Value(-1000.0)
    s = v.sigmoid()
    s.backward()
    assert s.data == 0.0 and v.grad == 0.0
    v = Value(1000.0)
    s = v.sigmoid()
    s.backward()
    assert s.data == 1.0 and v.grad == 0.0
    v = Value(-30.0)
    s = v.sigmoid()
    s.backward()
    assert s.data == pytest.approx(math.exp(-30) / (1 + math.exp(-30)), rel=1e-15)
    assert v.grad == pytest.approx(math.exp(-30) / (1 + math.exp(-30)) ** 2, rel=1e-12)


def test_relu_gradient_at_zero_is_zero() -> None:
    for x, g in [(0.0, 0.0), (-0.0, 0.0), (1e-300, 1.0), (-1e-300, 0.0)]:
        v = Value(x)
        out = v.relu()
        out.backward()
        assert v.grad == g
        assert out.data == max(x, 0.0)


def test_pow_edge_cases_follow_torch() -> None:
    # x ** 0 → 1 with d/dx 0; 0 ** 1 → d/dx 1; 0 ** 0.5 → d/dx inf; negative base, integer exponent
    for base, exp, out, dbase in [(5.0, 0.0, 1.0, 0.0), (0.0, 1.0, 0.0, 1.0), (0.0, 0.5, 0.0, math.inf)]:
        x, y = Value(base), Value(exp)
        r = x**y
        r.backward()
        assert (r.data, x.grad, y.grad) == (out, dbase, 0.0 if base == 0 else math.log(base))
    x, y = Value(-2.0), Value(3.0)
    r = x**y
    r.backward()
    assert r.data == -8.0 and x.grad == 12.0 and math.isnan(y.grad)


def test_relu_of_nan_is_nan_with_the_gradient_passed_through_as_in_torch() -> None:
    x = Value(float("nan"))
    y = x.relu()
    y.backward()
    assert math.isnan(y.data) and x.grad == 1.0
    z = Value(0.0).relu()
    assert z.data == 0.0
