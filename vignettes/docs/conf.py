"""Sphinx configuration of the pymixnn documentation (`make docs`: HTML into build/docs, then the
doctest builder runs every ``>>>`` example of these pages and of the documented docstrings).

The API reference is generated from the numpydoc docstrings (autosummary, one page per public name,
written to generated/, which `make docs` clears first). The gallery links to the vignettes'
HTML, copied from `make vignettes` (build/vignettes) when present, else from the quick renders of
`make test` (build/vignettes-quick); a vignette with neither gets a page saying how to render it.
"""

from __future__ import annotations

import doctest
import html
import shutil
from pathlib import Path

import pymixnn

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parents[1]
BUILD = ROOT / "build"
GALLERY = BUILD / "docs-gallery"  # copied to the root of the site (html_extra_path)
RENDERED = [("full", BUILD / "vignettes"), ("quick", BUILD / "vignettes-quick")]

project = "pymixnn"
author = "the pymixnn authors"
copyright = "the pymixnn authors, GPL-3.0-or-later"
release = version = pymixnn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
templates_path = ["_templates"]
exclude_patterns = ["_build"]
root_doc = "index"

# the API reference: autosummary writes one page per public name; numpydoc renders the sections
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types
numpydoc_show_class_members = False  # the class template lists the members itself
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# Markdown pages: anchors for ## and ### headings, so that guide pages can link to sections
myst_heading_anchors = 3

# doctests: the examples run as written; outputs compared up to whitespace, ``...`` matches anything
doctest_default_flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.DONT_ACCEPT_TRUE_FOR_1

html_theme = "alabaster"
html_title = f"pymixnn {release}"
html_extra_path = [str(GALLERY)]
html_theme_options = {"description": "Nonlinear mixed-effects models by minibatch SVI in Pyro"}


def vignettes() -> list[Path]:
    """The vignette sources, as vignettes/render.py finds them."""
    here = ROOT / "vignettes"
    return sorted([*here.glob("[0-9][0-9]_*.py"), *here.glob("[0-9][0-9]_*.Rmd")])


PLACEHOLDER = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{name}: not rendered</title></head>
<body><h1>{name}</h1>
<p>This vignette has not been rendered in this checkout. Render every vignette, full size, with</p>
<pre>make vignettes</pre>
<p>or this one in its quick mode (small settings, a few minutes) with</p>
<pre>.venv/bin/python vignettes/render.py --quick --out build/vignettes-quick {name}</pre>
<p>then run <code>make docs</code> again. Its source is <code>vignettes/{source}</code>.</p>
<p><a href="../gallery.html">Back to the gallery</a></p></body></html>
"""


def stage_gallery() -> dict[str, str]:
    """Copy each vignette's HTML (full render, else quick render) or a placeholder into
    build/docs-gallery/vignettes/; returns which one each vignette got."""
    target = GALLERY / "vignettes"
    shutil.rmtree(GALLERY, ignore_errors=True)
    target.mkdir(parents=True)
    got = {}
    for source in vignettes():
        name = source.stem
        for kind, folder in RENDERED:
            if (folder / f"{name}.html").is_file():
                shutil.copyfile(folder / f"{name}.html", target / f"{name}.html")
                got[name] = kind
                break
        else:
            page = PLACEHOLDER.format(name=html.escape(name), source=html.escape(source.name))
            (target / f"{name}.html").write_text(page, encoding="utf-8")
            got[name] = "not rendered"
    return got


stage_gallery()
