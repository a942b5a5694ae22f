"""Per-thread recording modes: whether ops record (:func:`no_grad`, :func:`enable_grad`) and whether
they are checked (anomaly mode). The store's recorders read :data:`_mode` once per op."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["CHECKING", "enable_grad", "grad_enabled", "no_grad"]

#: ``_mode.enabled`` inside :func:`graphtrace.detect_anomaly`: ops record and are checked.
CHECKING = "checking"
#: One item per thread that has used the store's per-thread state (``_GradMode.__init__``).
_THREADS: list[int] = []


class _GradMode(threading.local):
    """Per-thread recording state: whether ops record (:func:`no_grad`) and anomaly mode. (The scope
    is per *context*, see :class:`ScopeFrame`.)"""

    #: False inside no_grad; True when recording; CHECKING when recording inside detect_anomaly
    enabled: object = True
    #: whether this thread is inside graphtrace.detect_anomaly
    anomaly: bool = False

    def __init__(self) -> None:  # once per thread, at its first use of the store's state
        _THREADS.append(1)  # a C call: atomic


_mode = _GradMode()


def grad_enabled() -> bool:
    """Whether ops in this thread record nodes and edges (False inside :func:`no_grad`)."""
    return bool(_mode.enabled)


@contextmanager
def no_grad() -> Iterator[None]:
    """Context manager: ops inside record no edges and keep no operand alive (inference).

    Results are plain leaf Values. Like PyTorch's, the mode is per thread and nests.

    Examples
    --------
    >>> import graphtrace as gt
    >>> w = gt.Value(3.0)
    >>> with gt.no_grad():
    ...     y = w * 2.0
    >>> y.op, y.data
    ('', 6.0)
    """
    previous = _mode.enabled
    _mode.enabled = False
    try:
        yield
    finally:
        _mode.enabled = previous


@contextmanager
def enable_grad() -> Iterator[None]:
    """Context manager: ops inside record again, even within :func:`no_grad` (like PyTorch's).

    Examples
    --------
    >>> import graphtrace as gt
    >>> from graphtrace.store import enable_grad
    >>> w = gt.Value(3.0)
    >>> with gt.no_grad(), enable_grad():
    ...     y = w * 2.0
    >>> y.op
    '*'
    """
    previous = _mode.enabled
    _mode.enabled = CHECKING if _mode.anomaly else True
    try:
        yield
    finally:
        _mode.enabled = previous
