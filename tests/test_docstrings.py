"""Docstrings that quote a constant's value say what the code says: ``EXPAND_BUDGET (20)`` in a docstring
whose module has ``EXPAND_BUDGET = 15`` fails here, naming the docstring."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import graphtrace

#: a constant's name (bare, ``quoted``, or a Sphinx role, perhaps dotted) and the number written after it
QUOTED = re.compile(
    r"(?::(?:py:)?(?:data|const|attr|obj):)?`{0,2}~?(?P<name>(?:[A-Za-z_][\w]*\.)*[A-Z][A-Z0-9_]{2,})`{0,2}"
    r"\s*(?:\((?P<paren>[-+]?\d[\d_,]*(?:\.\d+)?(?:[eE][-+]?\d+)?)\)|=\s*(?P<equals>[-+]?\d[\d_,]*(?:\.\d+)?))"
)


def _modules() -> Iterator[ModuleType]:
    yield graphtrace
    for info in pkgutil.walk_packages(graphtrace.__path__, "graphtrace."):
        if info.name.endswith(".__main__"):
            continue  # python -m graphtrace: importing it runs the command
        if info.name.startswith("graphtrace.pytorch") and importlib.util.find_spec("torch") is None:
            continue  # the torch extra is not installed
        yield importlib.import_module(info.name)


def docstrings() -> Iterator[tuple[str, str, ModuleType, Any]]:
    """(where, docstring, its module, its class or None) for every docstring of the package."""
    for module in _modules():
        if module.__doc__:
            yield module.__name__, module.__doc__, module, None
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) and obj.__doc__:
                yield f"{module.__name__}.{name}", obj.__doc__, module, None
            elif inspect.isclass(obj):
                if obj.__doc__:
                    yield f"{module.__name__}.{name}", obj.__doc__, module, obj
                for attr, member in vars(obj).items():
                    doc = getattr(member, "__doc__", None)
                    if isinstance(member, (staticmethod, classmethod)):
                        doc = member.__func__.__doc__
                    if (
                        inspect.isfunction(member) or isinstance(member, (property, staticmethod, classmethod))
                    ) and doc:
                        yield f"{module.__name__}.{name}.{attr}", doc, module, obj


def _value(name: str, module: ModuleType, cls: Any) -> Any:
    """The object ``name`` names from the docstring's place (its class, its module, the package, a full path)."""
    head, *rest = name.split(".")
    for scope in (vars(cls) if cls is not None else {}, vars(module), vars(graphtrace)):
        if head in scope:
            obj = scope[head]
            break
    else:
        if head != "graphtrace" or not rest:
            return None
        obj = graphtrace
    for part in rest:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def quoted_constants() -> list[tuple[str, str, float, Any]]:
    """(where, name, the number the docstring gives, the constant's value) for every constant quoted."""
    found = []
    for where, doc, module, cls in docstrings():
        for m in QUOTED.finditer(doc):
            value = _value(m["name"], module, cls)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue  # not a number constant (a class like MLP(2, ...), SQL, ...)
            written = float((m["paren"] or m["equals"]).replace(",", "").replace("_", ""))
            found.append((where, m["name"], written, value))
    return found


def test_every_constant_a_docstring_quotes_has_that_value() -> None:
    found = quoted_constants()
    names = {name.rsplit(".", 1)[-1] for _, name, _, _ in found}
    assert {"EXPAND_BUDGET"} <= names, found  # to_html's docstring quotes it
    wrong = [
        f"{where}: {name} ({written:g}) but the code has {value!r}"
        for where, name, written, value in found
        if written != value
    ]
    assert not wrong, "\n".join(wrong)


def test_the_pattern_reads_the_ways_a_docstring_quotes_a_constant() -> None:
    cases = {
        "at most :data:`EXPAND_BUDGET` (20) boxes": ("EXPAND_BUDGET", "20"),
        "``MAX_POINTS`` (300) steps": ("MAX_POINTS", "300"),
        "more than COLLAPSE_OVER (1,000) nodes": ("COLLAPSE_OVER", "1,000"),
        "with :data:`graphtrace.report.HIST_STEPS` = 12": ("graphtrace.report.HIST_STEPS", "12"),
        "the ratio (``TANH_SATURATION`` (0.97))": ("TANH_SATURATION", "0.97"),
    }
    for text, (name, number) in cases.items():
        m = QUOTED.search(text)
        assert m is not None and m["name"] == name and (m["paren"] or m["equals"]) == number, text
