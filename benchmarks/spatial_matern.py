"""A Matérn field on many irregular locations inside the NLME fit (``Spatial(kind="matern")``, the
nearest-neighbour approximation): truth recovery, time and peak memory at 10^4 and 10^5
locations, and beside it the exact dense Gaussian process (``kind="gp"``) where it still runs.

Design (issue 22, point 2): n individuals at distinct random sites of the unit square (cell
centres of a 1024 x 1024 lattice), one per site; logistic growth A / (1 + exp(-(t - B) / 1.5)) at
t = 1, 3, 5, 7, 9, 12 with sigma 0.5; log A = log 20 + f(s) + eta_A, B = 5 exp(eta_B), sd(eta) =
0.1; f a Matérn field drawn exactly (circulant embedding), sd 0.3, range 0.05 (sqrt(8 nu) / kappa).

- ``matern``: nu 1.5, n = 10^4 and 10^5 (the acceptance: range and sd within 10% of the truth,
  memory linear in n);
- ``reference``: nu 0.5 (the exponential kernel, which the exact gp kind has), n = 1,000 and
  2,000, fitted by both kinds: the approximation against the exact dense fit (same data), and
  the dense fit's memory and time growing as n^2 and n^3.

Each fit runs in its own process (one torch thread, seed 1): its peak resident memory is that
process's. Writes spatial_matern.csv, .json and .md to --out (default benchmarks/results).

    python -m benchmarks spatial_matern                   # the issue's sizes (~40 min, ~10 GB)
    python -m benchmarks spatial_matern --quick --out /tmp/b  # 600 and 1,200 individuals
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pandas as pd

__all__ = ["simulate", "run", "main", "TRUTH"]

ROOT = Path(__file__).resolve().parents[1]
TRUTH = {"sd": 0.3, "range": 0.05, "omega2.A": 0.01}


def simulate(n: int, nu: float, seed: int = 2) -> pd.DataFrame:
    """The design's data: n individuals x 6 times (columns id, time, y, sx, sy)."""
    from pymixnn.simulate import simulate_field_growth

    return simulate_field_growth(n, TRUTH["range"], TRUTH["sd"], nu, seed=seed)[0]


def _one(n: int, nu: float, kind: str, neighbours: int) -> dict:
    """One fit in this process (the child's job): estimates, seconds, peak memory."""
    import resource
    import time

    import pymixnn

    df = simulate(n, nu)
    if kind == "gp":
        spatial = pymixnn.Spatial(["A"], ["sx", "sy"], kind="gp", kernel="exponential")
    else:
        spatial = pymixnn.Spatial(["A"], ["sx", "sy"], kind="matern", nu=nu, neighbours=neighbours)
    t0 = time.perf_counter()
    res = pymixnn.fit(
        df,
        "logistic",
        id="id",
        x="time",
        y="y",
        random=["A", "B"],
        spatial=spatial,
        seed=1,
        progress=False,
        threads=1,
    )
    seconds = time.perf_counter() - t0
    p = res.params
    rng_ = float(p.loc["spatial.A.range", "estimate"])
    rng_se = float(p.loc["spatial.A.range", "se"])
    if kind == "gp":  # the exponential kernel exp(-d / r) is the Matérn 1/2 of range 2 r
        rng_, rng_se = 2 * rng_, 2 * rng_se
    return dict(
        n=n,
        nu=nu,
        kind=kind,
        neighbours=neighbours if kind == "matern" else None,
        sd=float(p.loc["spatial.A.sd", "estimate"]),
        sd_se=float(p.loc["spatial.A.sd", "se"]),
        range=rng_,
        range_se=rng_se,
        omega2_A=float(p.loc["omega2.A", "estimate"]),
        loglik=float(res.loglik),
        seconds=seconds,
        seconds_by_stage=res.info.get("seconds_by_stage"),
        peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        threads=1,
    )


def _child(n: int, nu: float, kind: str, neighbours: int) -> dict:
    code = (
        f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.spatial_matern import _one; "
        f"print('RESULT ' + json.dumps(_one({n}, {nu!r}, {kind!r}, {neighbours})))"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"fit n={n} kind={kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[-1][len("RESULT ") :])


def run(matern_sizes, reference_sizes, out: Path, neighbours: int = 15) -> pd.DataFrame:
    rows = []
    for n in reference_sizes:
        for kind in ("gp", "matern"):
            rows.append(dict(part="reference", **_child(n, 0.5, kind, neighbours)))
            print(rows[-1], flush=True)
    for n in matern_sizes:
        rows.append(dict(part="matern", **_child(n, 1.5, "matern", neighbours)))
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table["sd_error"] = table["sd"] / TRUTH["sd"] - 1
    table["range_error"] = table["range"] / TRUTH["range"] - 1
    table["rss_gb_per_1e4"] = table["peak_rss_gb"] / table["n"] * 1e4
    out.mkdir(parents=True, exist_ok=True)
    table.drop(columns=["seconds_by_stage"]).to_csv(out / "spatial_matern.csv", index=False)
    meta = dict(
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        machine=platform.platform(),
        processor=platform.processor(),
        torch=version("torch"),
        pymixnn=version("pymixnn"),
        threads=1,
        truth=TRUTH,
        design=__doc__.split("\n\n")[1],
    )
    (out / "spatial_matern.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=2, default=float))
    lines = [
        "# Matérn field in the NLME fit: nearest neighbours at 10^4-10^5 locations",
        "",
        f"{meta['date']}, {meta['machine']}, torch {meta['torch']}, 1 thread per fit; truth sd 0.3, "
        "range 0.05, omega2.A 0.01. `gp`: the exact dense Gaussian process (its range converted to "
        "the Matérn 1/2's, 2 x); `matern`: the nearest-neighbour approximation "
        f"({neighbours} neighbours).",
        "",
        "| part | n | nu | kind | sd (SE) | range (SE) | omega2.A | log-lik | s | peak GB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.part} | {r.n:,} | {r.nu} | {r.kind} | {r.sd:.4f} ({r.sd_se:.4f}) | "
            f"{r.range:.4f} ({r.range_se:.4f}) | {r.omega2_A:.4f} | {r.loglik:.1f} | {r.seconds:.0f} | "
            f"{r.peak_rss_gb:.2f} |"
        )
    (out / "spatial_matern.md").write_text("\n".join(lines) + "\n")
    return table


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks spatial_matern")
    ap.add_argument("--quick", action="store_true", help="600 and 1,200 individuals (a check of the script)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--neighbours", type=int, default=15)
    args = ap.parse_args(argv)
    if args.quick:
        run([1200], [600], args.out, args.neighbours)
    else:
        run([10_000, 100_000], [1000, 2000], args.out, args.neighbours)


if __name__ == "__main__":
    main()
