"""Exporters: pandas tables, interactive HTML (pyvis), Graphviz DOT."""

from __future__ import annotations

from .dot import draw_dot, to_dot
from .frames import edges_frame, nodes_frame
from .html import html_text, show, to_html

__all__ = ["draw_dot", "edges_frame", "html_text", "nodes_frame", "show", "to_dot", "to_html"]
