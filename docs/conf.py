"""Sphinx configuration of the tempscale documentation site.

Build it with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``.ci/run`` does,
warnings as errors).  Sphinx rather than MkDocs because every docstring in the package is numpydoc
(the convention of NumPy, SciPy and scikit-learn, whose users are ours): ``numpydoc`` renders the
Parameters / Returns / Examples sections and ``.. math::`` natively, and the guides stay Markdown
through MyST.
"""

from __future__ import annotations

import tempscale

project = "tempscale"
author = "tempscale developers"
copyright = "2026, tempscale developers"
version = release = tempscale.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

autosummary_generate = True
autodoc_typehints = "none"          # the numpydoc sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()
intersphinx_mapping: dict[str, tuple[str, None]] = {}   # offline build: no inventories fetched

html_theme = "pydata_sphinx_theme"
html_title = f"tempscale {release}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_static_path: list[str] = []
