"""A logged step's rows kept as Python columns until the writer writes a batch of steps.

Building an Arrow table costs the same few dozen microseconds whether it holds one row or a
thousand, and it is Python work: in the writer thread it holds the interpreter lock, which the
training thread then waits for. A step's rows are therefore kept as lists per column
(:class:`Rows`) and made into one Arrow table per table and batch (:func:`to_table`).
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import pyarrow as pa

__all__ = ["Rows", "to_table"]

_STEP = pa.field("step", pa.int64())
_STEPPED: dict[int, tuple[pa.Schema, pa.Schema]] = {}  # id(schema) -> (schema, with a step column first)


class Rows:
    """Rows of one table as a list per column of ``schema`` (``None``: a null), in its field order.

    Parameters
    ----------
    schema : pyarrow.Schema
        The table's columns and types.
    columns : dict of str to list
        One list per field of ``schema``, all of one length.

    Raises
    ------
    ValueError
        If the columns are not the schema's fields, or their lengths differ.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from graphtrace.runs.rows import Rows, to_table
    >>> schema = pa.schema([("loss", pa.float64())])
    >>> to_table([Rows(schema, {"loss": [0.5]}).with_step(3), Rows(schema, {"loss": [0.25]}).with_step(4)]).to_pylist()
    [{'step': 3, 'loss': 0.5}, {'step': 4, 'loss': 0.25}]
    """

    __slots__ = ("columns", "schema")

    def __init__(self, schema: pa.Schema, columns: dict[str, list[Any]]) -> None:
        if list(columns) != schema.names:
            raise ValueError(f"Rows: columns {list(columns)} are not the schema's fields {schema.names}")
        if len({len(v) for v in columns.values()}) > 1:
            raise ValueError(f"Rows: columns of different lengths {[len(v) for v in columns.values()]}")
        self.schema, self.columns = schema, columns

    @property
    def num_rows(self) -> int:
        """The number of rows."""
        return len(next(iter(self.columns.values()), []))

    def with_step(self, step: int) -> Rows:
        """These rows with a first column ``step`` (an int64 column of ``step``)."""
        known = _STEPPED.get(id(self.schema))
        if known is None or known[0] is not self.schema:
            known = _STEPPED[id(self.schema)] = (self.schema, self.schema.insert(0, _STEP))
        return Rows(known[1], {"step": [step] * self.num_rows, **self.columns})

    def table(self) -> pa.Table:
        """These rows as an Arrow table of their schema."""
        return to_table([self])


def to_table(items: list[Rows | pa.Table]) -> pa.Table:
    """The rows of ``items`` (in order) as one Arrow table: the :class:`Rows` of one schema are made
    into Arrow at once; tables of other schemas are concatenated as ``pa.concat_tables`` with
    ``promote_options="default"`` (a column one of them lacks is null there)."""
    if not items:
        raise ValueError("to_table: no rows")
    groups: list[list[Any]] = []  # runs of Rows of one schema, and single tables
    for item in items:
        last = groups[-1] if groups else None
        if (
            isinstance(item, Rows)
            and last is not None
            and isinstance(last[0], Rows)
            and (last[0].schema is item.schema or last[0].schema.equals(item.schema))
        ):
            last.append(item)
        else:
            groups.append([item])
    tables = [_arrow(g) if isinstance(g[0], Rows) else g[0] for g in groups]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")


def _arrow(rows: list[Rows]) -> pa.Table:
    schema = rows[0].schema
    return pa.Table.from_arrays(
        [pa.array(list(chain.from_iterable(r.columns[f.name] for r in rows)), f.type) for f in schema],
        schema=schema,
    )
