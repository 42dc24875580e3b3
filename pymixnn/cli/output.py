"""The command line's result files: each written atomically (a temporary file in the same
directory, then renamed), so that an interrupted run never leaves a half-written one."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pymixnn.cli.messages import fail

__all__ = ["atomic", "atomic_directory", "save_estimator", "write_results", "write_table"]


@contextlib.contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path`` with the same suffix (plots choose their format from it);
    renamed onto ``path`` when the block succeeds, removed when it fails or is interrupted, so that
    ``path`` is never half-written."""
    tmp = path.with_name(f".{path.stem.lstrip('.')}-{uuid.uuid4().hex[:8]}-tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """A temporary directory whose files are moved one by one (each atomically) into ``path``
    (created if needed) when the block succeeds; removed in any case."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path if path.is_dir() else path.parent))
    try:
        yield tmp
        path.mkdir(exist_ok=True)
        for file in sorted(tmp.iterdir()):
            os.replace(file, path / file.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_estimator(est: Any, out: Path, given: str) -> int:
    """Save a trained estimator (its ``save(path)``) atomically to ``out`` (``--out given``) and say
    so; 1 with one error line when the file cannot be written."""
    try:
        with atomic(out) as tmp:
            est.save(tmp)
    except OSError as err:
        print(f"pymixnn: error: --out: cannot write {given!r}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"{est!r}\nestimator written to {out}")
    return 0


def write_table(table: Any, out: Path | None, given: str | None, what: str) -> int:
    """A DataFrame as CSV to ``out`` (atomically; ``given``: the --out value as typed) or, when
    ``out`` is None, to stdout. Returns 0, or 1 (one line) when the file cannot be written."""
    if out is None:
        table.to_csv(sys.stdout, index=False)
        return 0
    try:
        with atomic(out) as tmp:
            table.to_csv(tmp, index=False)
    except OSError as err:
        print(f"pymixnn: error: --out: cannot write {given!r}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"{what} written to {out}")
    return 0


def write_results(args: argparse.Namespace, res: Any, lines: bool) -> int:
    """Write the requested result files, each atomically; 2 for a setting a result cannot honour,
    1 when the disk refuses a file (the fit itself went fine)."""
    time = {"time": args.time} if getattr(args, "time", None) else {}

    def file(write: Callable[[Path], Any], message: str) -> Callable[[Path], str]:
        def run(target: Path) -> str:
            with atomic(target) as tmp:
                write(tmp)
            return f"{message} {target}"

        return run

    def manhattan(target: Path) -> str:
        if target.suffix.lower() == ".png":  # one parameter, one file
            with atomic(target) as tmp:
                res.plot_manhattan(tmp)
            paths = [target]
        else:
            with atomic_directory(target) as tmp:
                paths = [target / p.name for p in res.plot_manhattan(tmp)]
        return f"Manhattan plots written to {', '.join(str(p) for p in paths)}"

    jobs = [
        ("--json", args.json, file(res.to_json, "\nresults written to")),
        (
            "--plot",
            args.plot,
            file(lambda tmp: res.plot_individuals(tmp, **time), "individual fits plotted in"),
        ),
        (
            "--vpc",
            getattr(args, "vpc", None),
            file(lambda tmp: res.plot_vpc(tmp, seed=args.seed, **time), "visual predictive check plotted in"),
        ),
        (
            "--pcvpc",
            getattr(args, "pcvpc", None),
            file(
                lambda tmp: res.plot_vpc(tmp, seed=args.seed, prediction_corrected=True, **time),
                "prediction-corrected VPC plotted in",
            ),
        ),
        (
            "--gof",
            getattr(args, "gof", None),
            file(
                lambda tmp: res.plot_gof(tmp, n_sim=args.n_sim, seed=args.seed, **time),
                "goodness-of-fit panels plotted in",
            ),
        ),
        (
            "--npde",
            getattr(args, "npde", None),
            file(
                lambda tmp: res.npde(args.n_sim, seed=args.seed).to_csv(tmp, index=False),
                "NPDE written to",
            ),
        ),
        (
            "--cwres",
            getattr(args, "cwres", None),
            file(lambda tmp: res.cwres().to_csv(tmp, index=False), "CWRES written to"),
        ),
        (
            "--trace",
            getattr(args, "trace", None),
            file(lambda tmp: res.plot_trace(tmp), "parameter trace plotted in"),
        ),
        (
            "--eta-covariates",
            getattr(args, "eta_covariates", None),
            file(
                lambda tmp: res.plot_eta_covariates(tmp, data=getattr(args, "frame", None)),
                "random effects against covariates plotted in",
            ),
        ),
        ("--manhattan", getattr(args, "manhattan", None), manhattan),
        (
            "--classes",
            getattr(args, "classes", None),
            file(lambda tmp: res.classes().to_csv(tmp), "posterior class probabilities written to"),
        ),
        (
            "--plot-classes",
            getattr(args, "plot_classes", None),
            file(lambda tmp: res.plot_classes(tmp), "class mean curves plotted in"),
        ),
        (
            "--marker-effects",
            getattr(args, "marker_effects", None),
            file(lambda tmp: res.marker_effects.to_csv(tmp, index=False), "marker effects written to"),
        ),
    ]
    for flag, value, job in jobs:
        if not value:
            continue
        try:
            print(job(Path(value)))
        except ValueError as err:
            return fail(err, lines)
        except OSError as err:
            print(f"pymixnn: error: {flag}: cannot write {value!r}: {err.strerror or err}", file=sys.stderr)
            return 1
    return 0
