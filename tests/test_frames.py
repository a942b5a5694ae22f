"""nodes_frame / edges_frame: columns, dtypes, order and the chain-rule invariant."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest

import graphtrace as gt
from graphtrace import Value


def test_nodes_frame_of_the_seed(seed_root: Value) -> None:
    df = gt.nodes_frame(seed_root)
    assert list(df.columns) == [
        *["node_id", "label", "op", "role", "data", "grad", "in_degree", "out_degree", "depth"],
        "scope",  # added by the structure issue
    ]
    assert df.dtypes.to_dict() == {
        "node_id": np.dtype("int64"),
        "label": pd.StringDtype(),
        "op": pd.StringDtype(),
        "role": pd.StringDtype(),
        "data": np.dtype("float64"),
        "grad": np.dtype("float64"),
        "in_degree": np.dtype("int64"),
        "out_degree": np.dtype("int64"),
        "depth": np.dtype("int64"),
        "scope": pd.StringDtype(),
    }
    assert set(df["scope"]) == {""}  # the seed expression is built outside any scope
    rows = df.set_index("label")
    assert rows["grad"].to_dict() == {"a": 6.0, "b": -4.0, "c": -2.0, "e": -2.0, "d": -2.0, "f": 4.0, "L": 1.0}
    assert rows.loc["L", "role"] == "root" and rows.loc["e", "role"] == "intermediate"
    assert rows["depth"].to_dict() == {"a": 0, "b": 0, "c": 0, "e": 1, "d": 2, "f": 0, "L": 3}
    pos = {lab: i for i, lab in enumerate(df["label"])}
    assert pos["a"] < pos["e"] < pos["d"] < pos["L"]  # topological order


def test_edges_frame_is_the_chain_rule_ledger(seed_root: Value) -> None:
    L = seed_root
    df = gt.edges_frame(L)
    assert list(df.columns) == [
        "source",
        "target",
        "source_label",
        "target_label",
        "op",
        "local_grad",
        "grad_contribution",
    ]
    assert df["source"].dtype == np.int64 and df["local_grad"].dtype == np.float64
    assert df["op"].dtype == pd.StringDtype()
    led = {(r.source_label, r.target_label): (r.local_grad, r.grad_contribution) for r in df.itertuples()}
    assert led[("a", "e")] == (-3.0, 6.0)
    assert led[("d", "L")] == (-2.0, -2.0)
    assert led[("c", "d")] == (1.0, -2.0)
    # networkx's edgelist convention: the frame round-trips through from_pandas_edgelist
    H = nx.from_pandas_edgelist(df, edge_attr=["local_grad"], create_using=nx.DiGraph)
    assert nx.utils.edges_equal(H.edges, gt.to_networkx(L).edges)


def test_grad_equals_sum_of_outgoing_contributions() -> None:
    x, y = Value(0.3, label="x"), Value(-1.2, label="y")
    h = (x * y + x).tanh()
    out = (h * h + h / (y * y + 1) + x.exp()).sigmoid()
    out.backward()
    nodes = gt.nodes_frame(out)
    edges = gt.edges_frame(out)
    sums = edges.groupby("source")["grad_contribution"].sum()
    for r in nodes.itertuples():
        if r.role != "root":
            assert math.isclose(r.grad, sums[r.node_id], rel_tol=1e-12, abs_tol=1e-15)


def test_frames_accept_snapshots_and_plain_graphs_and_reject_bad_input(seed_root: Value) -> None:
    L = seed_root
    G = gt.to_networkx(L)
    assert gt.nodes_frame(G).equals(gt.nodes_frame(L))
    H = nx.DiGraph()
    H.add_edge("u", "v", local_grad=2.0)
    df = gt.nodes_frame(H)
    assert df["node_id"].dtype == pd.StringDtype() and df["role"].tolist() == ["leaf", "root"]
    with pytest.raises(TypeError, match=r"Value or a networkx\.DiGraph"):
        gt.nodes_frame([1, 2])
    C = nx.DiGraph([(1, 2), (2, 1)])
    with pytest.raises(ValueError, match="cycle"):
        gt.edges_frame(C)
