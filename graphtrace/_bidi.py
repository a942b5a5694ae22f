"""Names shown beside other text, kept from reordering it: a name holding Unicode bidi controls (an
override such as U+202E, an embedding, an isolate) is wrapped in an isolate of its own."""

from __future__ import annotations

import re

__all__ = ["isolate"]

_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def isolate(text: str) -> str:
    """``text`` between FIRST STRONG ISOLATE and POP DIRECTIONAL ISOLATE when it holds a bidi control
    (its reordering then ends with it: "w\u202egnp" cannot turn the numbers drawn after it around);
    other text unchanged.

    Examples
    --------
    >>> from graphtrace._bidi import isolate
    >>> isolate("layer1.weight")
    'layer1.weight'
    >>> [hex(ord(c)) for c in isolate("a\u202eb")]
    ['0x2068', '0x61', '0x202e', '0x62', '0x2069']
    """
    return f"\u2068{text}\u2069" if _CONTROLS.search(text) else text
