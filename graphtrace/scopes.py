"""Scopes: every node records the path of the scopes open in its context when it was made.

A scope path is one string of ``/``-separated segments, outermost first. ``gt.scope(name)`` adds the
segment ``name``; each call of an :class:`graphtrace.nn.Module` adds a segment naming that call:

* the module's name: ``MLP`` for a model, ``Layer0``, ``Neuron3`` for its children (class name and index
  in the parent's list; an attribute holding a single module uses the attribute name);
* followed by ``[k]`` for the k-th call (from 0): always on a module called outside any other module,
  and inside a module only from the second call on (``Layer0``, but ``Neuron3[1]`` if a forward calls
  it twice). Outside any scope a model numbers its own calls (``MLP[17]``: the 18th sample through this
  model); inside a scope, calls of each name are numbered from 0 within that scope.

So one sample through ``MLP(2, [16, 16, 1])`` records ``MLP[0]/Layer0/Neuron0`` ... ``MLP[0]/Layer2/Neuron0``,
and the next sample ``MLP[1]/...``: a batch stays separable. Counting restarts inside each enclosing
scope (``with gt.scope("step3"): model(x)`` gives ``step3/MLP[0]/...`` for the first call in it).
Parameters are made outside any call; they carry their module's path without call indices
(``MLP/Layer0/Neuron3``), set when the model is built.

Scopes are per *context* (:mod:`contextvars`), not per thread: each thread and each asyncio task (which
runs in a copy of the context that created it) has its own stack, so tasks that await inside their
scopes never see each other's, and ``contextvars.copy_context().run`` starts from the scopes open where
the copy was made. A scope that exits out of order (two generators closed in the other order than they
were entered) is removed from the stack wherever it is, so no scope outlives its ``with`` block.

Generators: a generator runs in its caller's context, so while one is suspended at a ``yield`` inside
``with gt.scope(...)`` its scope is still open for the caller (as with ``decimal.localcontext`` or
``torch.no_grad``). Decorate the generator function instead (``@gt.scope("name")``): its scope is then
entered each time the generator resumes and left each time it yields, and never seen by the caller.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any

from .scope_state import ROOT_SCOPE, _scope_get, current_scope_path
from .scope_state import SCOPE as _SCOPE
from .scope_state import ScopeFrame as _Frame

__all__ = ["current_scope", "module_call", "scope"]


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, got {type(name).__name__}: {name!r}")
    if not name:
        raise ValueError(f"{what} must not be empty")
    if "/" in name:
        raise ValueError(f"{what} must not contain '/', which separates scope segments: {name!r}")
    return name


def current_scope() -> str:
    """The scope path new nodes of this context (thread, asyncio task) get now (``""`` outside any scope).

    Examples
    --------
    >>> import graphtrace as gt
    >>> with gt.scope("loss"), gt.scope("hinge"):
    ...     gt.current_scope()
    'loss/hinge'
    """
    return current_scope_path()


def _open(name: str, module: Any = None) -> _Frame:
    f = _Frame(name, _scope_get(), module)
    _SCOPE.set(f)
    return f


def _open_parent(f: _Frame) -> _Frame:
    """The innermost frame outside ``f`` that is still open (the root is never closed)."""
    parent = f.parent
    while parent is not None and parent.closed:
        parent = parent.parent
    return parent if parent is not None else ROOT_SCOPE


def _close(f: _Frame) -> None:
    """Remove frame ``f`` from the running context's stack, wherever it is in it."""
    f.closed = True
    cur = _scope_get()
    if cur is f:
        _SCOPE.set(_open_parent(f))
        return
    # out of order (a generator closed after another one entered a scope): unlink f from the chain
    child = None
    for g in cur.chain():
        if g is f:
            break
        child = g
    else:
        return  # f is not open in this context (it was entered in another one): nothing to undo here
    assert child is not None
    child.parent = _open_parent(f)
    for g in cur.chain():  # the frames inside f: their paths are rebuilt on next use
        g.path = None
        if g is child:
            break


class scope:  # lower case: used as a function (``with gt.scope("loss"):``), as before
    """Context manager (or decorator): nodes recorded inside carry ``name`` in their scope path.

    Scopes nest (``outer/inner``) and are per context: per thread and per asyncio task (see
    :mod:`graphtrace.scopes`). As a decorator of a function, generator or async generator function,
    each call runs inside the scope; a generator's scope is open only while it runs, never while it is
    suspended at a ``yield``.

    Parameters
    ----------
    name : str
        One path segment: non-empty, without ``/``.

    Yields
    ------
    str
        The full scope path inside (the value of ``with ... as path``).

    Raises
    ------
    TypeError
        If ``name`` is not a str.
    ValueError
        If ``name`` is empty or contains ``/``. Nothing is recorded in either case.

    Examples
    --------
    >>> import graphtrace as gt
    >>> x = gt.Value(2.0, label="x")
    >>> with gt.scope("loss") as path:
    ...     y = (x - 1.0) ** 2
    >>> path, y.scope, x.scope
    ('loss', 'loss', '')
    >>> @gt.scope("gen")
    ... def squares(n):
    ...     for i in range(n):
    ...         yield x * float(i)
    >>> [v.scope for v in squares(2)], gt.current_scope()
    (['gen', 'gen'], '')
    """

    __slots__ = ("_frames", "name")

    def __init__(self, name: str) -> None:
        self.name = _check_name(name, "scope name")
        self._frames: list[_Frame] = []

    def __enter__(self) -> str:
        f = _open(self.name)
        self._frames.append(f)
        return f.build()  # not cached in the frame: only a node recorded here caches its path

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        _close(self._frames.pop())

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        name = self.name
        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def agen(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                it = fn(*args, **kwargs)
                sent: Any = None
                while True:
                    with scope(name):
                        try:
                            item = await it.asend(sent)
                        except StopAsyncIteration:
                            return
                    sent = yield item

            return agen
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen(*args: Any, **kwargs: Any) -> Iterator[Any]:
                it = fn(*args, **kwargs)
                sent: Any = None
                while True:
                    with scope(name):
                        try:
                            item = it.send(sent)
                        except StopIteration as stop:
                            return stop.value  # type: ignore[no-any-return]
                    try:
                        sent = yield item
                    except GeneratorExit:
                        with scope(name):
                            it.close()
                        raise
                    except BaseException as exc:  # thrown in: deliver it inside the scope
                        with scope(name):
                            try:
                                item = it.throw(exc)
                            except StopIteration as stop:
                                return stop.value  # type: ignore[no-any-return]
                        sent = yield item

            return gen
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def coro(*args: Any, **kwargs: Any) -> Any:
                with scope(name):
                    return await fn(*args, **kwargs)

            return coro

        @functools.wraps(fn)
        def plain(*args: Any, **kwargs: Any) -> Any:
            with scope(name):
                return fn(*args, **kwargs)

        return plain


def module_call(call: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Module's ``__call__`` so that each call opens its own scope instance (see above)."""

    def scoped(self: Any, *args: Any, **kwargs: Any) -> Any:
        cur = _scope_get()
        if cur.module is self:  # a subclass's __call__ calling super().__call__
            return call(self, *args, **kwargs)
        name = self._scope_name
        if cur.parent is None:  # outside any scope: the module numbers its own calls
            k = self.__dict__.get("_scope_calls", 0)
            self.__dict__["_scope_calls"] = k + 1
        else:
            counts = cur.counts
            k = counts.get(name, 0)
            counts[name] = k + 1
        segment = f"{name}[{k}]" if (k or cur.module is None) else name
        f = _Frame(segment, cur, self)
        _SCOPE.set(f)
        try:
            return call(self, *args, **kwargs)
        finally:
            _close(f)

    scoped.__wrapped__ = call  # type: ignore[attr-defined]
    scoped.__doc__ = call.__doc__
    scoped.__name__ = getattr(call, "__name__", "__call__")
    return scoped
