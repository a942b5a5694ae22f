"""The open scopes of each context: a chain of :class:`ScopeFrame` in a ``ContextVar`` (the user-facing
``gt.scope`` and the Module calls are in :mod:`graphtrace.scopes`; the store reads the innermost
frame's path once per op)."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from typing import Any

__all__ = ["ROOT_SCOPE", "SCOPE", "ScopeFrame", "current_scope_path"]


class ScopeFrame:
    """One open scope instance (:func:`graphtrace.scope` or a Module call): a link of the chain that
    :data:`SCOPE` holds, innermost first. The chain lives in a :class:`contextvars.ContextVar`, so each
    thread and each asyncio task (which runs in a copy of its creator's context) sees its own.

    ``path`` is the ``/``-joined path of the segments from the outermost frame in, built on first use
    (:meth:`resolve`) and kept: a frame costs O(1) memory until a node is recorded in it, so 10,000
    nested scopes do not build 10,000 ever longer strings. ``counts`` numbers the module calls made
    directly inside this frame; ``module`` is the Module whose call opened it (None for a named scope);
    ``closed`` is set when it exits (see ``graphtrace.scopes``).
    """

    __slots__ = ("closed", "counts", "module", "name", "parent", "path")

    def __init__(self, name: str, parent: ScopeFrame | None, module: Any = None) -> None:
        self.name = name
        self.parent = parent
        self.module = module
        self.counts: dict[str, int] = {}
        self.closed = False
        self.path: str | None = None if parent is not None else ""

    def resolve(self) -> str:
        """This frame's path (built iteratively, then cached)."""
        path = self.build()
        self.path = path
        return path

    def build(self) -> str:
        """This frame's path, built from the nearest cached one, not cached (``with scope() as path``)."""
        if self.path is not None:
            return self.path
        names = []
        f: ScopeFrame | None = self
        while f is not None and f.path is None:
            names.append(f.name)
            f = f.parent
        base = f.path if f is not None else ""
        names.reverse()
        return "/".join([base, *names] if base else names)

    def chain(self) -> Iterator[ScopeFrame]:
        """This frame and its parents, innermost first (the root last)."""
        f: ScopeFrame | None = self
        while f is not None:
            yield f
            f = f.parent


#: The frame outside any scope (path ``""``), shared by every context: it numbers nothing (a Module
#: called outside any scope numbers its own calls).
ROOT_SCOPE = ScopeFrame("", None)
#: The innermost open scope of the running context.
SCOPE: contextvars.ContextVar[ScopeFrame] = contextvars.ContextVar("graphtrace_scope", default=ROOT_SCOPE)
_scope_get = SCOPE.get


def current_scope_path() -> str:
    """The scope path of nodes recorded now in this context (``""`` outside any scope)."""
    f = _scope_get()
    path = f.path
    return path if path is not None else f.resolve()
