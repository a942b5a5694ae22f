"""The writer's kept rows (graphtrace.runs.rows): lists per column, made into Arrow once per batch."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from graphtrace.runs.rows import Rows, to_table

SCHEMA = pa.schema([("name", pa.string()), ("grad", pa.float64())])


def test_rows_of_many_steps_become_one_table_in_order_with_nulls_and_nans_kept_apart() -> None:
    a = Rows(SCHEMA, {"name": ["w", "b"], "grad": [1.5, None]}).with_step(7)
    b = Rows(SCHEMA, {"name": ["w", "b"], "grad": [math.nan, 2.0]}).with_step(8)
    t = to_table([a, b])
    assert t.schema.names == ["step", "name", "grad"]
    assert t.schema.field("step").type == pa.int64()
    assert t.column("step").to_pylist() == [7, 7, 8, 8]
    assert t.column("name").to_pylist() == ["w", "b", "w", "b"]
    grad = t.column("grad")
    assert grad.null_count == 1 and grad.is_null().to_pylist() == [False, True, False, False]
    values = grad.to_pylist()
    assert values[0] == 1.5 and math.isnan(values[2]) and values[3] == 2.0  # a NaN is a value, not a null


def test_rows_and_tables_of_other_schemas_are_concatenated_with_missing_columns_null() -> None:
    older = pa.table({"step": pa.array([1], pa.int64()), "name": ["x"], "grad": [0.5], "extra": [3.0]})
    t = to_table([older, Rows(SCHEMA, {"name": ["y"], "grad": [0.25]}).with_step(2)])
    assert t.column("step").to_pylist() == [1, 2]
    assert t.column("extra").to_pylist() == [3.0, None]


def test_a_value_of_the_wrong_type_fails_when_the_batch_is_made() -> None:
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        to_table([Rows(SCHEMA, {"name": ["w"], "grad": ["not a number"]})])


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"grad": [1.0], "name": ["w"]}, "not the schema's fields"),
        ({"name": ["w"]}, "not the schema's fields"),
        ({"name": ["w", "b"], "grad": [1.0]}, "different lengths"),
    ],
)
def test_rows_refuse_columns_that_are_not_the_schemas(columns: dict[str, list[object]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rows(SCHEMA, columns)


def test_no_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="no rows"):
        to_table([])
