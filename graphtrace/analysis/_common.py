"""Helpers shared by the analysis modules."""

from __future__ import annotations

import math
from typing import Any

import networkx as nx
import pandas as pd

_STR = pd.StringDtype()


def _frame(rows: list[Any], schema: dict[str, Any]) -> pd.DataFrame:
    """A DataFrame of ``rows`` (tuples) with exactly these columns and dtypes, also when empty."""
    return pd.DataFrame.from_records(rows, columns=list(schema)).astype(schema)


def _root(G: nx.DiGraph) -> Any:
    root = G.graph.get("root")
    if root is None:
        sinks = [n for n in G if not G._succ[n]]
        if len(sinks) != 1:
            raise ValueError("the graph has no G.graph['root'] and not exactly one sink")
        root = sinks[0]
    return root


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan
