"""Collection rules for the whole suite (tests/ and the doctests in graphtrace/)."""

from __future__ import annotations

import importlib.util

# The PyTorch bridge is an optional extra: without torch its doctests and the test models are not
# collected (tests/test_pytorch.py skips itself), so the suite runs where torch is not installed.
_NEED_TORCH = ["graphtrace/pytorch/*", "tests/torch_models.py", "tests/gpt2_small.py"]
collect_ignore_glob = [] if importlib.util.find_spec("torch") else _NEED_TORCH
