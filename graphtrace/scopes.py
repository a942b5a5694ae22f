"""Scopes: every node records the path of the scopes open in its thread when it was made.

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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .store import _mode

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
    """The scope path new nodes of this thread get now (``""`` outside any scope).

    Examples
    --------
    >>> import graphtrace as gt
    >>> with gt.scope("loss"), gt.scope("hinge"):
    ...     gt.current_scope()
    'loss/hinge'
    """
    return _mode.scope


@contextmanager
def scope(name: str) -> Iterator[str]:
    """Context manager: nodes recorded inside (in this thread) carry ``name`` in their scope path.

    Scopes nest (``outer/inner``) and are per thread, like :func:`graphtrace.no_grad`.

    Parameters
    ----------
    name : str
        One path segment: non-empty, without ``/``.

    Yields
    ------
    str
        The full scope path inside.

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
    """
    _check_name(name, "scope name")
    st = _mode
    previous = st.scope
    st.scope = f"{previous}/{name}" if previous else name
    st.frames.append({})
    try:
        yield st.scope
    finally:
        st.frames.pop()
        st.scope = previous


def module_call(call: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Module's ``__call__`` so that each call opens its own scope instance (see above)."""

    def scoped(self: Any, *args: Any, **kwargs: Any) -> Any:
        st = _mode
        frames = st.frames
        counts = frames[-1]
        if counts.get("\0running") is self:  # a subclass's __call__ calling super().__call__
            return call(self, *args, **kwargs)
        name = self._scope_name
        if len(frames) == 1:  # outside any scope: the module numbers its own calls
            k = self.__dict__.get("_scope_calls", 0)
            self.__dict__["_scope_calls"] = k + 1
        else:
            k = counts.get(name, 0)
            counts[name] = k + 1
        inside_module = "\0module" in counts
        segment = f"{name}[{k}]" if (k or not inside_module) else name
        previous = st.scope
        st.scope = f"{previous}/{segment}" if previous else segment
        frames.append({"\0module": True, "\0running": self})
        try:
            return call(self, *args, **kwargs)
        finally:
            frames.pop()
            st.scope = previous

    scoped.__wrapped__ = call  # type: ignore[attr-defined]
    scoped.__doc__ = call.__doc__
    scoped.__name__ = getattr(call, "__name__", "__call__")
    return scoped
