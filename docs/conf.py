"""Sphinx configuration for the lfws documentation (MyST Markdown, furo)."""

from __future__ import annotations

import inspect
import sys
import types
import typing
from pathlib import Path

from sphinx.application import Sphinx

# Autodoc imports the package; the source tree wins over any installed copy,
# so the reference always describes the code next to it.
_DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(_DOCS.parent / "src"))
# Local extensions: the transition tables are drawn from the code at build time.
sys.path.insert(0, str(_DOCS / "_ext"))

project = "lfws"
author = "The lfws developers"
copyright = "the lfws developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "transitions",
]
# No intersphinx: the docs build offline, and a dead inventory URL would be a
# warning, which the build treats as an error.

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

autodoc_member_order = "bysource"
# Types go into the description so signatures stay short: autodoc expands the
# recursive JsonValue alias, and autodoc_type_aliases would render it as
# TypeAliasForwardRef(...) in Sphinx 9 (sphinx-doc/sphinx#14003).
autodoc_typehints = "description"
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    # Callable objects (the id generator) document what a call does.
    "special-members": "__call__",
}

html_theme = "furo"
html_title = "lfws"


def _is_plain(hint: object) -> bool:
    """Whether ``hint`` is a class or a union of classes (``ServerConfig | None``)."""
    if isinstance(hint, type):
        return True
    return isinstance(hint, types.UnionType) and all(isinstance(a, type) for a in hint.__args__)


def _evaluate_annotations(app: Sphinx, obj: object, bound_method: bool) -> None:
    """Replace a function's postponed class annotations by the classes they name.

    With ``autodoc_typehints = "description"`` autodoc reads a class's
    parameter types from ``inspect.signature(cls)``, which leaves postponed
    annotations (``from __future__ import annotations``) as strings. A bare
    ``ServerConfig`` then names two classes (the session's and the WebSocket
    layer's) and its cross-reference is ambiguous; the evaluated class is not.
    Only plain classes are replaced: evaluating an alias such as ``JsonValue``
    would expand it in the description. autodoc announces the ``__init__`` it
    is about to read with this event.
    """
    if not inspect.isfunction(obj):
        return
    try:
        hints = typing.get_type_hints(obj)
    except (NameError, TypeError):
        return  # the hints stay strings
    annotations = dict(obj.__annotations__)
    for name, hint in hints.items():
        if _is_plain(hint):
            annotations[name] = hint
    obj.__annotations__ = annotations


def setup(app: Sphinx) -> None:
    app.connect("autodoc-before-process-signature", _evaluate_annotations)
