"""The handle base class, below everything else so that number coercion and the store can share it."""

from __future__ import annotations

from typing import Any

__all__ = ["Handle"]


class Handle:
    """Base class of handles on store nodes (:class:`graphtrace.Value`): a node id and that node's
    attribute dict. Lets modules below ``value.py`` (the store, the backward pass, number coercion)
    recognise and create Values without importing them."""

    __slots__ = ("__weakref__", "_attrs", "_id")
    _id: int
    _attrs: dict[str, Any]
