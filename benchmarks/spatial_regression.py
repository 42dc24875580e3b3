"""nlme's Wheat2 spatial regressions side by side: pymixnn's ``random=[]`` fit with a ``kind="gp"``
field (the residual error is the nugget: one plot per location) against nlme's ``gls`` with a
spatial correlation and a nugget, by ML, in one run on the same data.

Design (issue 22, point 1): yield of 56 varieties in 224 plots (pymixnn/datasets/wheat2.csv),
yield = variety mean + f(latitude, longitude) + e, f with an exponential, Gaussian or spherical
correlation (nlme's corExp, corGaus, corSpher; starts at range 13, nugget 0.2 as in Pinheiro &
Bates sec. 5.3.2; pymixnn from its default start, and the spherical also from range_init=28).
nlme's numbers come from tests/reference/levels/wheat2_gls.R run here (Debian's nlme); pymixnn's
from ``pymixnn.fit`` on one torch thread. Reported: range, sill (sd^2 + a^2), nugget (a^2 / sill),
log-likelihood, seconds of the fit itself. Writes spatial_regression.csv, .json and .md to --out
(default benchmarks/results).

    python -m benchmarks spatial_regression            # ~20 s
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import pandas as pd

__all__ = ["constant_model", "fit_wheat2", "run", "main", "KERNELS"]

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ("exponential", "gaussian", "spherical")


def constant_model():
    """y = Y: the yield's mean (the variety effects as covariates on Y); x unused."""
    import pymixnn

    return pymixnn.Model(
        function=lambda psi, x: psi[..., 0] + 0 * x[..., 0],
        parameters=["Y"],
        transforms={"Y": "identity"},
        init={"Y": 30.0},
        random=[],
    )


def fit_wheat2(kernel: str, threads: int = 1, range_init: float | None = None):
    """pymixnn's fit of the book's model with the given correlation (seed 0)."""
    import pymixnn

    model = constant_model()
    return pymixnn.fit(
        pymixnn.datasets.load("wheat2"),
        model,
        id="plot",
        x="Block",
        y="yield",
        covariates={"Y": ["variety"]},
        spatial=pymixnn.Spatial(
            params=["Y"], coords=["latitude", "longitude"], kind="gp", kernel=kernel, range_init=range_init
        ),
        seed=0,
        progress=False,
        threads=threads,
    )


def _nlme() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "gls.json"
        t0 = time.perf_counter()
        subprocess.run(
            ["Rscript", "tests/reference/levels/wheat2_gls.R", "pymixnn/datasets/wheat2.csv", str(out)],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        ref = json.loads(out.read_text())
        ref["process_seconds"] = time.perf_counter() - t0
    return ref


def run(out: Path) -> pd.DataFrame:
    ref = _nlme()
    rows = []
    fit_wheat2("gaussian")  # imports and first-call costs out of the timings
    for kernel, start in [(k, None) for k in KERNELS] + [("spherical", 28.0)]:
        t0 = time.perf_counter()
        res = fit_wheat2(kernel, range_init=start)
        seconds = time.perf_counter() - t0
        sd, a = float(res.params.loc["spatial.Y.sd", "estimate"]), float(res.sigma["a"])
        sill = sd**2 + a**2
        rows.append(
            dict(kernel=kernel if start is None else f"{kernel} (range_init={start:g})", tool="pymixnn",
                 range=float(res.params.loc["spatial.Y.range", "estimate"]), sill=sill, nugget=a**2 / sill,
                 loglik=float(res.loglik), aic=float(res.aic), seconds=seconds, threads=1)
        )  # fmt: skip
        if start is not None:
            continue
        r = ref[kernel]
        rows.append(
            dict(kernel=kernel, tool="nlme gls", range=r["range"], sill=r["sill"], nugget=r["nugget"],
                 loglik=r["logLik"], aic=r["AIC"], seconds=r["seconds"], threads=1)
        )  # fmt: skip
    r = ref["spherical_from_48"]
    rows.append(
        dict(kernel="spherical (nlme from range 48)", tool="nlme gls", range=r["range"], sill=r["sill"],
             nugget=r["nugget"], loglik=r["logLik"], aic=r["AIC"], seconds=r["seconds"], threads=1)
    )  # fmt: skip
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "spatial_regression.csv", index=False)
    meta = dict(
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        machine=platform.platform(),
        torch=version("torch"),
        pymixnn=version("pymixnn"),
        nlme=ref["nlme_version"],
        threads=1,
        independent_loglik=ref["independent"]["logLik"],
        rscript_process_seconds=ref["process_seconds"],
        design=__doc__.split("\n\n")[1],
    )
    (out / "spatial_regression.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=2))
    lines = [
        "# Wheat2: pymixnn's random=[] fit with a gp field against nlme's gls (ML)",
        "",
        f"{meta['date']}, {meta['machine']}, torch {meta['torch']}, nlme {meta['nlme']}, 1 thread; "
        "sill = sd^2 + a^2, nugget = a^2 / sill; seconds of the fit itself (nlme: gls inside R; "
        f"the whole Rscript run of the four fits took {meta['rscript_process_seconds']:.1f} s). "
        f"Independent errors: ll {meta['independent_loglik']:.3f}.",
        "",
        "| correlation | tool | range | sill | nugget | log-lik | AIC | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.kernel} | {r.tool} | {r.range:.4f} | {r.sill:.3f} | {r.nugget:.4f} | {r.loglik:.4f} | "
            f"{r.aic:.3f} | {r.seconds:.2f} |"
        )
    (out / "spatial_regression.md").write_text("\n".join(lines) + "\n")
    return table


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks spatial_regression")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    print(run(args.out).to_string(index=False))


if __name__ == "__main__":
    main()
