"""Render the vignettes to HTML with embedded figures.

    python vignettes/render.py [--out build/vignettes] [--quick] [NAME ...]

Each ``NN_name.py`` (jupytext percent format) is converted to a notebook, executed by a Jupyter
kernel in ``OUT/work/NN_name/`` (where its figures and key_numbers.json are written) and exported
to ``OUT/NN_name.html`` with the figures embedded. ``NN_name.Rmd`` is rendered by
rmarkdown::render (self-contained HTML); it needs the R package installed (``make test`` puts it
in build/rlib) and a Python with pymixnn (RETICULATE_PYTHON, by default the project's .venv-r).
``--quick`` sets PYMIXNN_QUICK=1 (smaller settings, same checks). A summary table of wall times
is written to OUT/render.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def vignettes(names: list[str]) -> list[Path]:
    found = sorted([*HERE.glob("[0-9][0-9]_*.py"), *HERE.glob("[0-9][0-9]_*.Rmd")])
    if names:
        found = [p for p in found if p.stem in names or p.name in names]
        missing = set(names) - {p.stem for p in found} - {p.name for p in found}
        if missing:
            raise SystemExit(f"unknown vignette(s) {sorted(missing)}")
    return found


def plain_html(nb) -> str:
    """The notebook as nbconvert's HTMLExporter writes it, without its last step (a BeautifulSoup
    pass that adds alt text to images and tabindex to cells). That step's CSS selector failed to
    compile in soupsieve 4.1.4 (SelectorSyntaxError on "img:not([alt])") in every vignette of
    some `make test` runs and in none of others, in the same environment; the fallback keeps
    the rendered page, which only lacks those attributes."""
    from nbconvert import HTMLExporter
    from nbconvert.exporters.templateexporter import TemplateExporter
    from nbconvert.filters.highlight import Highlight2HTML
    from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

    exporter = HTMLExporter()
    info = nb.metadata.get("language_info", {})
    lexer = info.get("pygments_lexer", info.get("name", None))
    exporter.register_filter("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=exporter))
    resources = exporter._init_resources(None)
    exporter.register_filter(
        "filter_data_type",
        WidgetsDataTypeFilter(notebook_metadata=exporter._nb_metadata, parent=exporter, resources=resources),
    )
    html, _ = TemplateExporter.from_notebook_node(exporter, nb, resources)
    return html


def render_python(path: Path, out: Path) -> Path:
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    work = out / "work" / path.stem
    work.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(path)
    # the kernel talks over Unix sockets in a directory of this render's own, not TCP ports: two
    # renders started together (the two pytest workers of `make test`) drew the same free port
    # and one kernel died ("Address already in use", fresh-clone CI of 2026-12-06). The absolute
    # path serves the kernel (started in ``work``) and this process alike; a short one, since a
    # socket's path is limited to 107 bytes
    sockets = tempfile.mkdtemp(prefix="nbk")
    config = Config()
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = os.path.join(sockets, "k")
    try:
        NotebookClient(
            nb,
            timeout=1800,
            kernel_name="python3",
            resources={"metadata": {"path": str(work)}},
            config=config,
        ).execute()
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    nbformat.write(nb, work / f"{path.stem}.ipynb")
    try:
        html, _ = HTMLExporter().from_notebook_node(nb)  # images are embedded (base64)
    except Exception as err:  # noqa: BLE001 - only soupsieve's error is handled, others re-raised
        if type(err).__name__ != "SelectorSyntaxError":
            raise
        html = plain_html(nb)
        print(f"{path.name}: HTML exported without nbconvert's alt-text pass ({err.args[0]})", flush=True)
    target = out / f"{path.stem}.html"
    target.write_text(html, encoding="utf-8")
    return target


def render_rmd(path: Path, out: Path) -> Path:
    work = out / "work" / path.stem
    work.mkdir(parents=True, exist_ok=True)
    target = out / f"{path.stem}.html"
    code = (
        f"rmarkdown::render({str(path)!r}, output_file = {str(target.resolve())!r}, "
        f"intermediates_dir = {str(work.resolve())!r}, knit_root_dir = {str(work.resolve())!r}, "
        "quiet = TRUE)"
    )
    subprocess.run(["Rscript", "-e", code], check=True, cwd=work)
    return target


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="vignettes to render (default: all)")
    ap.add_argument("--out", default=str(ROOT / "build" / "vignettes"))
    ap.add_argument("--quick", action="store_true", help="PYMIXNN_QUICK=1: small settings")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the kernels inherit the environment
    if args.quick:
        os.environ["PYMIXNN_QUICK"] = "1"
    # the R vignette's Python: the project's .venv-r (numpy<2, pandas<3, which Debian's reticulate
    # 1.28 needs; `make test` builds it) when present, else this one
    r_python = ROOT / ".venv-r" / "bin" / "python"
    os.environ.setdefault("RETICULATE_PYTHON", str(r_python) if r_python.exists() else sys.executable)
    record = {}
    for path in vignettes(args.names):
        t0 = time.perf_counter()
        target = (render_rmd if path.suffix == ".Rmd" else render_python)(path, out)
        seconds = time.perf_counter() - t0
        record[path.name] = {
            "html": str(target),
            "seconds": round(seconds, 1),
            "bytes": target.stat().st_size,
        }
        print(f"{path.name}: {target} ({seconds:.0f} s, {target.stat().st_size / 1e6:.1f} MB)", flush=True)
    record["quick"] = bool(args.quick)
    (out / "render.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
