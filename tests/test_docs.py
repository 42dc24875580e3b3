"""The documentation (issue 24): every public function and class has a numpydoc docstring with
Parameters and Returns sections that document each argument of its signature; the API reference
(vignettes/docs/api.rst) lists every public name; the gallery lists every vignette. `make docs`
builds the site (Sphinx with -W: zero warnings) and runs its doctests."""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path

import pytest
from numpydoc.docscrape import ClassDoc, FunctionDoc

import pymixnn

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "vignettes" / "docs"
SITE = ROOT / "build" / "docs"
CONSTANTS = {"NAMED_MODELS", "__version__"}  # data, documented in api.rst by hand


def _public_callables() -> list[str]:
    names = []
    for name in pymixnn.__all__:
        obj = getattr(pymixnn, name)  # resolves the lazily loaded names
        if inspect.ismodule(obj) or name in CONSTANTS:
            continue
        names.append(name)
    return names


def _documented(entries) -> set[str]:
    """Argument names of numpydoc entries ("id, x, y : str" documents three; "*args" one)."""
    return {part.strip().lstrip("*") for entry in entries for part in entry.name.split(",")}


def test_every_public_object_is_a_function_class_module_or_constant():
    kinds = {name: getattr(pymixnn, name) for name in _public_callables()}
    assert all(inspect.isclass(obj) or inspect.isfunction(obj) for obj in kinds.values()), kinds


@pytest.mark.parametrize("name", _public_callables())
def test_numpydoc_parameters_and_returns(name):
    obj = getattr(pymixnn, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpydoc warns on unknown sections, malformed headers
        doc = (
            ClassDoc(obj, config={"show_class_members": False}) if inspect.isclass(obj) else FunctionDoc(obj)
        )
    assert doc["Summary"], f"{name}: no summary line"
    assert doc["Returns"], f"{name}: no Returns section"
    for entry in [*doc["Parameters"], *doc["Returns"]]:
        assert " ".join(entry.desc).strip(), f"{name}: {entry.name or entry.type!r} has no description"
    try:
        signature = inspect.signature(obj)
    except ValueError:  # a warning class: its constructor is the builtin Warning(*args)
        assert issubclass(obj, Warning) and doc["Parameters"], name
        return
    arguments = [
        p.name
        for p in signature.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    # a section for every callable that takes arguments (pymixnn.Gaussian() takes none)
    assert doc["Parameters"] or not signature.parameters, f"{name}: no Parameters section"
    missing = [a for a in arguments if a not in _documented(doc["Parameters"])]
    assert not missing, f"{name}: arguments without an entry in Parameters: {missing}"
    unknown = _documented(doc["Parameters"]) - set(signature.parameters)
    assert not unknown, f"{name}: Parameters documents names not in the signature: {unknown}"


def _api_names() -> set[str]:
    text = (DOCS / "api.rst").read_text(encoding="utf-8")
    names = set()
    for block in re.findall(r"\.\. autosummary::\n((?:   .*\n|\n)+)", text):
        names |= {line.strip() for line in block.splitlines() if line.strip() and ":" not in line}
    return names | set(re.findall(r"^\.\. py:data:: (\S+)$", text, flags=re.M))


def test_api_reference_lists_every_public_name():
    names = _api_names()
    assert set(pymixnn.__all__) == names, (set(pymixnn.__all__) - names, names - set(pymixnn.__all__))


def test_gallery_lists_every_vignette():
    text = (DOCS / "gallery.md").read_text(encoding="utf-8")
    vignettes = sorted(
        p.stem for p in [*(ROOT / "vignettes").glob("[0-9][0-9]_*.py"), *(ROOT / "vignettes").glob("*.Rmd")]
    )
    linked = re.findall(r'href="vignettes/([^"]+)\.html"', text)
    assert linked == vignettes


@pytest.mark.skipif(not (SITE / "index.html").exists(), reason="build/docs not built (make docs)")
def test_built_site_has_a_page_per_public_name():
    # the built site (make docs): a page per autosummary entry, the gallery's HTML in place
    pages = {p.name for p in (SITE / "generated").glob("pymixnn.*.html")}
    wanted = {f"pymixnn.{name}.html" for name in _api_names() - CONSTANTS}
    assert wanted <= pages, wanted - pages
    api = (SITE / "api.html").read_text(encoding="utf-8")
    assert all(f'id="pymixnn.{name}"' in api for name in CONSTANTS)
    for link in re.findall(r'href="(vignettes/[^"]+\.html)"', (SITE / "gallery.html").read_text()):
        assert (SITE / link).is_file(), link
