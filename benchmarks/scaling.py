"""pymixnn against saemix and nlme: scaling in N and accuracy over replicate data sets.

Design: logistic growth, 10 observations per individual at t = 0..10, truth A = 100, B = 5, C = 1.5
(log-normal), omega2 = 0.04, 0.0225, 0.04, constant error sigma = 2 (pymixnn.simulate.simulate_logistic,
the design of ENVIRONMENT.md's peer table). Every method runs its full pipeline: estimates, SEs and
log-likelihood (pymixnn: SVI, refinement, Fisher information, ll.is; saemix: SAEM, MAP, FIM by
linearisation, ll.is; nlme: Lindstrom-Bates ML). All start from the same self-start values.

Each (method, N, replicate) runs in a fresh process (`python -m benchmarks.scaling --worker ...`)
with a wall-clock cap (10 minutes by default): the table records its seconds, its peak RSS and the
relative error of every parameter against the truth; a method that hits the cap at some N is not
run at larger N. One torch thread; R single-threaded.

    python -m benchmarks scaling                          # scaling to 10^6, then accuracy
    python -m benchmarks scaling --only scaling --sizes 100,1000
    python -m benchmarks scaling --only accuracy --reps 20

Adapters skip with the reason when their method is absent (saemix: CRAN only; give R_LIBS). Writes
scaling.{csv,json,md} and scaling_time.png, accuracy.{csv,md} and accuracy.png to --out.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["main", "TRUTH", "METHODS"]

ROOT = Path(__file__).resolve().parents[1]
TRUTH = {"A": 100.0, "B": 5.0, "C": 1.5, "omega2.A": 0.04, "omega2.B": 0.0225, "omega2.C": 0.04,
         "a": 2.0}
METHODS = ("pymixnn", "saemix", "nlme")


# ---- adapters (run inside the worker process) ---------------------------------------------------
def _fit(method: str, df: pd.DataFrame, seed: int):
    import pymixnn
    from pymixnn import compare

    kw = dict(id="id", x="t", y="y")
    if method == "pymixnn":
        return pymixnn.fit(df, "logistic", **kw, seed=seed, progress=False, threads=1)
    if method == "saemix":
        return compare.saemix(df, "logistic", **kw, seed=seed + 632545)
    if method == "nlme":
        return compare.nlme(df, "logistic", **kw)
    raise ValueError(method)


def available(method: str) -> tuple[bool, str]:
    """Whether ``method`` can run here, and why not."""
    if method == "pymixnn":
        return True, ""
    from pymixnn import compare

    if not compare.r_available():
        return False, "R/rpy2 not available"
    if not compare.r_package_available(method):
        return False, (f"R package {method} not installed"
                       + (" (CRAN only: install it and give R_LIBS)" if method == "saemix" else ""))
    return True, ""


def worker(method: str, n: int, seed: int) -> dict:
    import torch

    from pymixnn.simulate import simulate_logistic

    torch.set_num_threads(1)
    df = simulate_logistic(n_individuals=n, n_obs=10, seed=seed)
    t0 = time.perf_counter()
    res = _fit(method, df, seed)
    seconds = time.perf_counter() - t0
    p = res.params
    rows = {}
    for name, truth in TRUTH.items():
        if name not in p.index:
            continue
        est, lo, hi = (float(p.loc[name, c]) for c in ("estimate", "ci_lower", "ci_upper"))
        rows[name] = dict(estimate=est, rel_error=est / truth - 1,
                          covered=None if not (np.isfinite(lo) and np.isfinite(hi))
                          else bool(lo <= truth <= hi))
    return dict(method=method, n=n, seed=seed, seconds=seconds, loglik=float(res.loglik),
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                params=rows, warnings=list(res.info.get("warnings", []))[:3])


def _run(method: str, n: int, seed: int, cap: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.scaling", "--worker", method,
                               str(n), str(seed)], capture_output=True, text=True, cwd=ROOT,
                              timeout=cap, env=env)
    except subprocess.TimeoutExpired:
        return dict(method=method, n=n, seed=seed, status=f"over the {cap:.0f} s cap",
                    seconds=float("nan"))
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return dict(method=method, n=n, seed=seed, status=f"error: {tail[:200]}",
                    seconds=float("nan"), wall=time.perf_counter() - t0)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["status"] = "ok"
    return out


# ---- suites -----------------------------------------------------------------------------------
def scaling(sizes, methods, cap, seed=1) -> list[dict]:
    rows = []
    for method in methods:
        ok, why = available(method)
        stopped = None
        for n in sizes:
            if not ok:
                rows.append(dict(method=method, n=n, status=f"skipped: {why}"))
                continue
            if stopped:
                rows.append(dict(method=method, n=n, status=f"not run: {stopped}"))
                continue
            r = _run(method, n, seed, cap)
            rows.append(r)
            print(method, n, r.get("status"), f"{r.get('seconds', float('nan')):.1f} s", flush=True)
            if r["status"] != "ok":
                stopped = f"{r['status']} at N={n}"
    return rows


def accuracy(sizes, methods, reps, cap) -> list[dict]:
    rows = []
    for method in methods:
        ok, why = available(method)
        for n in sizes:
            for rep in range(reps):
                if not ok:
                    rows.append(dict(method=method, n=n, seed=100 + rep, status=f"skipped: {why}"))
                    break
                r = _run(method, n, 100 + rep, cap)
                rows.append(r)
            print(method, n, "done", flush=True)
    return rows


def _flatten(rows: list[dict]) -> pd.DataFrame:
    out = []
    for r in rows:
        base = {k: r.get(k) for k in ("method", "n", "seed", "status", "seconds", "peak_rss_mb",
                                      "loglik")}
        if r.get("params"):
            for name, v in r["params"].items():
                out.append({**base, "parameter": name, **v})
        else:
            out.append({**base, "parameter": None})
    return pd.DataFrame(out)


def summarize_accuracy(flat: pd.DataFrame) -> pd.DataFrame:
    ok = flat[(flat["status"] == "ok") & flat["parameter"].notna()]
    g = ok.groupby(["n", "parameter", "method"])
    out = pd.DataFrame({
        "replicates": g["rel_error"].size(),
        "bias_pct": 100 * g["rel_error"].mean(),
        "rmse_pct": 100 * np.sqrt(g["rel_error"].apply(lambda e: np.mean(e**2))),
        "coverage_95": g["covered"].apply(lambda c: np.mean([bool(v) for v in c if v is not None])
                                          if any(v is not None for v in c) else np.nan),
        "seconds_median": g["seconds"].median(),
    })
    return out.reset_index()


def _plots(flat: pd.DataFrame, acc: pd.DataFrame | None, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not flat.empty:
        fig, ax = plt.subplots(figsize=(6, 4.2))
        t = flat[flat["status"] == "ok"].drop_duplicates(["method", "n"])
        for method, d in t.groupby("method"):
            ax.loglog(d["n"], d["seconds"], "o-", label=method)
        ax.set_xlabel("individuals N (10 observations each)")
        ax.set_ylabel("seconds: fit + SEs + log-likelihood")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "scaling_time.png", dpi=110)
        plt.close(fig)
    if acc is not None and not acc.empty:
        params = list(TRUTH)
        fig, axes = plt.subplots(1, len(acc["n"].unique()), figsize=(11, 4), squeeze=False)
        for ax, (n, d) in zip(axes[0], acc.groupby("n")):
            methods = list(d["method"].unique())
            for k, m in enumerate(methods):
                dm = d[d["method"] == m].set_index("parameter").reindex(params)
                x = np.arange(len(params)) + (k - (len(methods) - 1) / 2) * 0.25
                ax.errorbar(x, dm["bias_pct"], yerr=dm["rmse_pct"], fmt="o", capsize=3, label=m)
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xticks(np.arange(len(params)))
            ax.set_xticklabels(params, rotation=30)
            ax.set_title(f"N = {n}: bias +- RMSE (% of truth)")
        axes[0][0].legend()
        fig.tight_layout()
        fig.savefig(out / "accuracy.png", dpi=110)
        plt.close(fig)


def _md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if isinstance(v, float):
                cells.append("" if not np.isfinite(v) else f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks scaling")
    ap.add_argument("--worker", nargs=3, metavar=("METHOD", "N", "SEED"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--only", choices=["scaling", "accuracy"], action="append")
    ap.add_argument("--sizes", default="100,1000,10000,100000,1000000")
    ap.add_argument("--accuracy-sizes", default="200,2000")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--cap", type=float, default=600.0, help="seconds per run (default 600)")
    args = ap.parse_args(argv)
    if args.worker:
        method, n, seed = args.worker
        print(json.dumps(worker(method, int(n), int(seed)), default=float))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    only = set(args.only or ["scaling", "accuracy"])
    methods = [m.strip() for m in args.methods.split(",")]
    record = dict(date=dt.datetime.now(dt.timezone.utc).isoformat(), cpus=os.cpu_count(),
                  machine=platform.machine(), threads=1, cap_seconds=args.cap, truth=TRUTH,
                  availability={m: available(m) for m in methods})
    if "scaling" in only:
        sizes = [int(s) for s in args.sizes.split(",")]
        rows = scaling(sizes, methods, args.cap)
        flat = _flatten(rows)
        flat.to_csv(args.out / "scaling.csv", index=False)
        record["scaling"] = rows
        table = (flat.drop_duplicates(["method", "n"])
                 [["method", "n", "status", "seconds", "peak_rss_mb"]])
        err = (flat[flat["parameter"].notna()].assign(abs_err_pct=lambda d: 100 * d["rel_error"].abs())
               .groupby(["method", "n"])["abs_err_pct"].max().rename("max_abs_rel_error_pct"))
        table = table.merge(err.reset_index(), on=["method", "n"], how="left")
        (args.out / "scaling.md").write_text(
            "# Scaling: pymixnn, saemix, nlme\n\n" + __doc__.split("\n\n")[1] + "\n\n"
            + _md_table(table) + "\n")
        _plots(flat, None, args.out)
        print(_md_table(table))
    if "accuracy" in only:
        sizes = [int(s) for s in args.accuracy_sizes.split(",")]
        rows = accuracy(sizes, methods, args.reps, args.cap)
        flat = _flatten(rows)
        flat.to_csv(args.out / "accuracy_runs.csv", index=False)
        acc = summarize_accuracy(flat)
        acc.to_csv(args.out / "accuracy.csv", index=False)
        record["accuracy"] = acc.to_dict("records")
        (args.out / "accuracy.md").write_text(
            f"# Accuracy over {args.reps} replicate data sets\n\n" + _md_table(acc) + "\n")
        _plots(pd.DataFrame(), acc, args.out)
        print(_md_table(acc))
    name = "scaling.json" if only == {"scaling"} else "accuracy.json" if only == {"accuracy"} \
        else "scaling_accuracy.json"
    (args.out / name).write_text(json.dumps(record, indent=2, default=float))


if __name__ == "__main__":
    main()
