"""PyTorch models in graphtrace: a ``torch`` autograd graph as a graphtrace trace.

Two entry points, both giving an ``nx.DiGraph`` in the schema of :func:`graphtrace.to_networkx`
(so tables, HTML, DOT, save/load and the analyses work on it):

- :func:`from_tensor` walks an output's ``grad_fn`` graph after the fact;
- :func:`trace` records a model's forward and backward as they run: every op's output summary, the
  module it ran in, and the gradient along every edge.

A node is the output of one autograd op (its ``grad_fn``: ``AddmmBackward0`` is the op ``addmm``) or a
leaf tensor (a parameter, named after ``model.named_parameters()``). Tensor nodes carry ``shape``,
``dtype``, ``numel`` and summaries of their values and gradients (see
:mod:`graphtrace.pytorch.tensors`); ``data`` and ``grad`` hold a one-element tensor's value and a
larger tensor's L2 norm, so every view that colours or sorts by them works.

This module needs PyTorch (``pip install 'graphtrace-nx[torch]'``); ``import graphtrace`` never imports
it: ``gt.pytorch`` loads it on first use.
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without torch
    raise ImportError(
        "graphtrace.pytorch needs PyTorch, which is not installed: pip install 'graphtrace-nx[torch]' "
        "(or a CPU build: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
    ) from exc

from .graph import from_tensor
from .record import TorchParams
from .tensors import SMALL, summary
from .trace import Trace, trace

__all__ = ["SMALL", "TorchParams", "Trace", "from_tensor", "summary", "trace"]
