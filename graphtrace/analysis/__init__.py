"""Graph analysis of traces with networkx algorithms. Each function takes a root Value or a snapshot.

What lives where:

* :mod:`~graphtrace.analysis.paths`: ``path_contributions``, ``influence``, ``op_counts``,
  ``critical_path``, ``depth``, ``fan_out``;
* :mod:`~graphtrace.analysis.scope_table`: ``by_scope`` (and the columns a recorded run writes);
* :mod:`~graphtrace.analysis.origins`: ``anomalies``;
* :mod:`~graphtrace.analysis.unit_health`: ``health``;
* :mod:`~graphtrace.analysis.compare`: ``diff``.

Every function is reached as ``gt.analysis.<name>``.
"""

from __future__ import annotations

from .compare import diff
from .origins import anomalies
from .paths import critical_path, depth, fan_out, influence, op_counts, path_contributions
from .scope_table import TANH_SATURATION, by_scope, scope_columns
from .unit_health import health

__all__ = [
    "TANH_SATURATION",
    "anomalies",
    "by_scope",
    "critical_path",
    "depth",
    "diff",
    "fan_out",
    "health",
    "influence",
    "op_counts",
    "path_contributions",
    "scope_columns",
]
