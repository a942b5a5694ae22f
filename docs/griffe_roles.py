"""A Griffe extension for the docs build: Sphinx roles in docstrings become cross-references.

The docstrings name other objects the Sphinx way (``:func:`backward```, ``:mod:`~graphtrace.runs.read```,
``:meth:`Run.log```), which ``help()`` and an editor read well but mkdocstrings shows as raw text. As the site is
built, each role is resolved the way Sphinx would (the docstring's own class and module first, then the
``graphtrace`` package, then a full dotted path) and replaced with an autorefs reference: a link where the target
is on the site, else the name as code (a private helper, or another project's object such as
``networkx.topological_sort``). The sources are not rewritten. ``mkdocs.yml`` loads this file
(``extensions:`` of the python handler); ``tests/test_docs_site.py`` checks the built pages hold no raw role.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

#: ``:role:`target``` and ``:py:role:`target```, the target optionally ``~``-prefixed (show the last part)
ROLE = re.compile(r":(?:py:)?(?:func|meth|mod|class|data|attr|exc|obj|const):`(?P<tilde>~?)(?P<target>[^`]+)`")


def _lookup(scope: Any, dotted: str) -> Any | None:
    """The object ``dotted`` names inside ``scope`` (a module or class), or None."""
    obj = scope
    for part in dotted.split("."):
        try:
            members = obj.members
        except griffe.AliasResolutionError:
            return None
        if part not in members:
            return None
        obj = members[part]
    return obj


def resolve(obj: Any, target: str, package: Any) -> tuple[str, str] | None:
    """(the path the role names, the object's canonical path), or None when it is not in the package."""
    dotted = target.strip().removesuffix("()")
    root = package.name
    if dotted == root:
        return root, root
    found = None
    if dotted.startswith(root + "."):
        found = _lookup(package, dotted[len(root) + 1 :])
    else:
        scope = obj
        while scope is not None and found is None:  # the object itself, its class, its module, up to the package
            if not scope.is_alias and (scope.is_class or scope.is_module):
                found = _lookup(scope, dotted)
            scope = scope.parent
    if found is None:
        return None
    try:
        canonical = found.canonical_path
    except griffe.AliasResolutionError:
        canonical = found.path
    return found.path, canonical


def convert(text: str, obj: Any, package: Any) -> str:
    """``text`` with each role replaced by an optional autorefs reference (a link when its target is on the site)."""

    def replace(m: re.Match[str]) -> str:
        target = m["target"].strip()
        shown = target.rsplit(".", 1)[-1] if m["tilde"] else target
        title = f"<code>{html.escape(shown)}</code>"
        found = resolve(obj, target, package)
        if found is None:  # another project's object: its name, as code
            identifier, slug = target.removesuffix("()"), ""
        else:  # every page that renders the object registers its canonical path (and the path it is shown at)
            path, identifier = found
            slug = f' slug="{html.escape(path)}"' if path != identifier else ""
        return f'<autoref identifier="{html.escape(identifier)}"{slug} optional>{title}</autoref>'

    return ROLE.sub(replace, text)


def _objects(obj: Any) -> Any:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


class SphinxRoles(griffe.Extension):
    """Replaces Sphinx roles in every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: Any, **kwargs: Any) -> None:
        for obj in _objects(pkg):
            if obj.docstring is not None and ":`" in obj.docstring.value:
                obj.docstring.value = convert(obj.docstring.value, obj, pkg)
