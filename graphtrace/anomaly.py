"""Anomaly mode: stop at the op or the backward edge where a value first stops being finite.

``with gt.detect_anomaly():`` (per thread, like :func:`graphtrace.no_grad`) checks every op recorded
inside: the first whose result is NaN or ±inf raises :class:`AnomalyError` before it is recorded,
naming the op, its operands (labels and values), the scope and the line of user code that ran it. A
backward pass run inside checks every gradient before any is written: the first node (walking from
the root) whose gradient is not finite although every gradient it pulls from is raises
:class:`AnomalyError` naming the edge, its ``local_grad``, the op and the line that recorded it.
Outside the context nothing is checked (one identity comparison per op).

For a trace that already holds non-finite values, :func:`graphtrace.analysis.anomalies` lists them
and marks where they start.
"""

from __future__ import annotations

import linecache
import math
import sys
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import modes, store
from ._handle import Handle

__all__ = ["AnomalyError", "detect_anomaly"]

_PACKAGE = str(Path(__file__).resolve().parent)
_isfinite = math.isfinite


class AnomalyError(RuntimeError):
    """A NaN or infinity appeared inside :func:`detect_anomaly`.

    Attributes
    ----------
    phase : {"forward", "backward"}
        Where it appeared.
    op : str
        The op whose result (forward) or whose edge (backward) produced it.
    scope : str
        The scope path of that op's node (``""`` outside any scope).
    source : str
        The line of user code that recorded the op (``""`` if it was recorded outside anomaly mode).
    node : int or None
        Backward: the node whose gradient became non-finite (forward: None, nothing was recorded).
    """

    def __init__(self, message: str, *, phase: str, op: str, scope: str, source: str, node: Hashable | None) -> None:
        super().__init__(message)
        self.phase = phase
        self.op = op
        self.scope = scope
        self.source = source
        self.node = node


def _user_line() -> str:
    """``file:line in function: code`` of the innermost frame outside the graphtrace package."""
    f = sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(_PACKAGE):
        f = f.f_back  # type: ignore[assignment]
    if f is None:
        return ""
    code = linecache.getline(f.f_code.co_filename, f.f_lineno).strip()
    where = f"{f.f_code.co_filename}:{f.f_lineno} in {f.f_code.co_name}"
    return f"{where}: {code}" if code else where


def _check_op(op: str, operands: tuple[Any, ...], out: float) -> str:
    """The anomaly-mode check of one op, before it is recorded (installed in the store)."""
    source = _user_line()
    if _isfinite(out):
        return source
    values = [x._attrs["data"] if isinstance(x, Handle) else float(x) for x in operands]
    if all(map(_isfinite, values)):
        why = "from finite operands"
    else:
        bad = next(x for x, v in zip(operands, values, strict=True) if not _isfinite(v))
        made = store.SOURCES.get(bad._id) if isinstance(bad, Handle) else None
        if made:
            why = f"because an operand already was (that {_what(bad)} was made at {made})"
        elif isinstance(bad, Handle) and not bad._attrs["op"]:
            why = f"because an operand already was (that {_what(bad)} was made outside detect_anomaly)"
        elif isinstance(bad, Handle):
            why = f"because an operand already was (that {_what(bad)} came from outside detect_anomaly)"
        else:
            why = f"because the number operand {bad!r} already was"
    scope = store.current_scope_path()
    raise AnomalyError(
        f"forward: {op} gave {out!r} {why}; operands: {', '.join(map(store._describe, operands))}; "
        f"scope {scope!r}; at {source or 'an unknown line'}. Nothing was recorded.",
        phase="forward",
        op=op,
        scope=scope,
        source=source,
        node=None,
    )


def _what(x: Handle) -> str:
    a = x._attrs
    kind = "leaf" if not a["op"] else f"{a['op']!r} node"
    return f"{kind} {a['label']!r}" if a["label"] else kind


store.set_anomaly_check(_check_op, _user_line)


def anomaly_enabled() -> bool:
    """Whether this thread is inside :func:`detect_anomaly`."""
    return modes._mode.anomaly


@contextmanager
def detect_anomaly() -> Iterator[None]:
    """Context manager: stop at the first op or backward edge that produces NaN or ±inf.

    Per thread and nestable, like :func:`graphtrace.no_grad`. Ops recorded inside remember the line
    of user code that ran them, so a backward failure can point at it. Slower than normal recording
    (it looks up the caller's frame for every op): use it to find a problem, not to train.

    Raises
    ------
    AnomalyError
        From an op (forward) or from a backward pass inside the block; nothing is recorded or
        written by the op or pass that raises.

    Examples
    --------
    >>> import graphtrace as gt
    >>> x = gt.Value(1e300, label="x")
    >>> with gt.detect_anomaly():
    ...     y = x * 1e10
    Traceback (most recent call last):
    ...
    graphtrace.anomaly.AnomalyError: forward: * gave inf from finite operands; ...
    """
    st = modes._mode
    prev_enabled, prev_anomaly = st.enabled, st.anomaly
    st.anomaly = True
    st.enabled = store.CHECKING if st.enabled else False
    try:
        yield
    finally:
        st.enabled, st.anomaly = prev_enabled, prev_anomaly
        if not prev_anomaly:
            _forget_freed_sources()


def _forget_freed_sources() -> None:
    with store.graph_lock():
        node = store.NODE
        for n in [n for n in store.SOURCES if n not in node]:
            del store.SOURCES[n]


def check_backward(G: Any, order: list[Hashable], succ: Any, acc: dict[Hashable, float]) -> None:
    """Raise :class:`AnomalyError` for the first node, walking from the root, whose new gradient
    in ``acc`` is not finite while every gradient it pulls from is. Called before anything is written."""
    node = G._node
    sources = store.SOURCES if G is store.GRAPH else {}
    for u in reversed(order):
        g = acc.get(u)
        if g is None or _isfinite(g):
            continue
        pulled = [(v, e["local_grad"], acc[v]) for v, e in succ[u].items() if v in acc]
        if not all(_isfinite(gv) for _, _, gv in pulled):
            continue  # it came from further down; that node was reported first
        bad = [(v, lg, gv) for v, lg, gv in pulled if not _isfinite(float(lg))]
        if bad:
            v, lg, gv = bad[0]
            how = f"local_grad {float(lg)!r} on edge {u!r} -> {v!r} (d {v!r} / d {u!r}), times grad {gv!r}"
        elif pulled:
            v = pulled[0][0]
            terms = ", ".join(f"{float(lg)!r} * {gv!r}" for _, lg, gv in pulled)
            how = f"overflow of finite terms local_grad * grad: {terms}"
        else:  # a leaf whose accumulated grad was already non-finite
            v = u
            how = f"its previous grad {node[u].get('grad')!r}"
        a, c = node[u], node[v]
        source = sources.get(v, "")
        raise AnomalyError(
            f"backward: the grad of node {u!r} ({a.get('label') or a.get('op') or 'leaf'}, scope "
            f"{a.get('scope', '')!r}) became {g!r} through {how}; op {c.get('op', '')!r} of node {v!r} "
            f"recorded at {source or 'an unknown line (recorded outside detect_anomaly)'}. Nothing was written.",
            phase="backward",
            op=str(c.get("op", "")),
            scope=str(c.get("scope", "")),
            source=source,
            node=u,
        )
