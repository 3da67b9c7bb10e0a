"""Sphinx configuration for the lfws documentation (MyST Markdown, furo)."""

from __future__ import annotations

import sys
from pathlib import Path

# Autodoc imports the package; the source tree wins over any installed copy,
# so the reference always describes the code next to it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

project = "lfws"
author = "The lfws developers"
copyright = "the lfws developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
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
