"""to_networkx: independent snapshots with ids, attributes and unique labels."""

from __future__ import annotations

import re

import networkx as nx
import pytest

import graphtrace as gt
from graphtrace import Value


def test_snapshot_has_root_and_ancestors_only_with_all_attributes() -> None:
    a, b = Value(2.0, label="a"), Value(3.0)
    c = a * b
    unrelated = c + 100  # a descendant, not an ancestor
    G = gt.to_networkx(c)
    assert set(G) == {a.node_id, b.node_id, c.node_id}
    assert unrelated.node_id not in G
    assert G.graph["root"] == c.node_id
    for n in G:
        assert isinstance(n, int)
        assert set(G.nodes[n]) >= {"data", "grad", "op", "label", "role"}
    assert G.edges[a.node_id, c.node_id] == {"local_grad": 3.0}


def test_snapshot_is_independent_of_the_engine() -> None:
    a = Value(2.0, label="a")
    c = a + 1
    G = gt.to_networkx(c)
    G.nodes[a.node_id]["data"] = 99.0
    G.edges[a.node_id, c.node_id]["local_grad"] = 5.0
    G.add_node("extra")
    G.remove_node(c.node_id)
    assert a.data == 2.0
    H = gt.to_networkx(c)
    assert H.edges[a.node_id, c.node_id]["local_grad"] == 1.0
    assert "extra" not in H


def test_names_say_what_made_the_node_and_avoid_user_labels() -> None:
    x = Value(1.0, label="mul")  # a user label equal to a derived name
    y = Value(2.0)
    z = (x * y + 3).tanh()
    G = gt.to_networkx(z)
    labels = [G.nodes[n]["label"] for n in sorted(G)]
    assert labels == ["mul", "leaf", "mul_1", "const", "add", "tanh"]
    assert x.label == "mul" and y.label == ""  # the live store keeps the user's (empty) labels


def test_many_names_stay_unique_per_scope_instance() -> None:
    x = Value(0.0)
    for _ in range(800):
        x = x + 1
    G = gt.to_networkx(x)
    labels = [d["label"] for _, d in G.nodes(data=True)]
    assert len(set(labels)) == len(labels) == 1601
    assert {"add", "add_1", "add_799", "const_799"} <= set(labels)
    assert not any(re.fullmatch(r"[a-z]{1,3}", s) and s not in ("add", "leaf") for s in labels)


def test_to_networkx_bad_input() -> None:
    with pytest.raises(TypeError, match="Value"):
        gt.to_networkx(3.0)
    with pytest.raises(TypeError, match="Value"):
        gt.to_networkx(nx.DiGraph())
