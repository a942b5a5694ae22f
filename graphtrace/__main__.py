"""``python -m graphtrace``."""

from __future__ import annotations

import sys



from .cli import run

run()
