"""to_networkx: independent snapshots with ids, attributes and unique labels."""

from __future__ import annotations

import networkx as nx
import pytest

import graphtrace as gt
from graphtrace import Value
from graphtrace.snapshot import auto_name


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


def test_auto_labels_are_short_unique_and_avoid_user_labels() -> None:
    assert [auto_name(i) for i in (0, 25, 26, 27, 51, 52, 675, 676)] == ["a", "z", "ba", "bb", "bz", "ca", "zz", "baa"]
    x = Value(1.0, label="b")  # a user label equal to an automatic name
    y = Value(2.0)
    z = (x * y + 3).tanh()
    G = gt.to_networkx(z)
    labels = [G.nodes[n]["label"] for n in sorted(G)]
    assert labels[0] == "b"
    assert all(labels) and len(set(labels)) == len(labels)
    assert labels[1:] == ["a", "c", "d", "e", "f"]
    assert x.label == "b" and y.label == ""  # the live store keeps the user's (empty) labels


def test_many_auto_labels_stay_unique() -> None:
    x = Value(0.0)
    for _ in range(800):
        x = x + 1
    G = gt.to_networkx(x)
    labels = [d["label"] for _, d in G.nodes(data=True)]
    assert len(set(labels)) == len(labels) == 1601


def test_to_networkx_bad_input() -> None:
    with pytest.raises(TypeError, match="Value"):
        gt.to_networkx(3.0)
    with pytest.raises(TypeError, match="Value"):
        gt.to_networkx(nx.DiGraph())
