"""graphtrace: a scalar autograd engine whose computation graph is a NetworkX DiGraph.

Every :class:`Value` is a node of a ``networkx.DiGraph``; each op adds a node and one edge per
distinct operand carrying the local derivative ``local_grad``; :func:`backward` walks a networkx
topological order and leaves each gradient as the node attribute ``grad``.

Examples
--------
>>> import graphtrace as gt
>>> a = gt.Value(2.0, label="a"); b = gt.Value(-3.0, label="b"); c = gt.Value(10.0, label="c")
>>> f = gt.Value(-2.0, label="f")
>>> L = (a * b + c) * f
>>> L.backward()
>>> L.data, a.grad, b.grad, c.grad, f.grad
(-8.0, 6.0, -4.0, -2.0, 4.0)
"""

from __future__ import annotations

from typing import Any

from . import analysis, nn, runs
from .analysis import diff
from .anomaly import AnomalyError, detect_anomaly
from .backward import backward
from .check import GradcheckError, gradcheck, numerical_grad
from .export import draw_dot, edges_frame, html_text, nodes_frame, show, to_dot, to_html
from .io import load, save
from .rules import RULES
from .runs import open_run, open_runs, record
from .scopes import current_scope, scope
from .snapshot import to_networkx
from .store import no_grad
from .value import Value

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # gt.pytorch is imported on first use, so that `import graphtrace` never imports torch; gt.report too
    # (its charts and vendored scripts are only needed for a report)
    if name in ("pytorch", "report"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'graphtrace' has no attribute {name!r}")


__all__ = [
    "RULES",
    "AnomalyError",
    "GradcheckError",
    "Value",
    "analysis",
    "backward",
    "current_scope",
    "detect_anomaly",
    "diff",
    "draw_dot",
    "edges_frame",
    "gradcheck",
    "html_text",
    "load",
    "nn",
    "no_grad",
    "nodes_frame",
    "numerical_grad",
    "open_run",
    "open_runs",
    "record",
    "runs",
    "save",
    "scope",
    "show",
    "to_dot",
    "to_html",
    "to_networkx",
]
