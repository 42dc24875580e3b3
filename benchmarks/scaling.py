"""pymixnn against saemix and nlme: scaling in N and accuracy over replicate data sets.

Design: logistic growth, 10 observations per individual at t = 0..10, truth A = 100, B = 5, C = 1.5
(log-normal), omega2 = 0.04, 0.0225, 0.04, constant error sigma = 2 (pymixnn.simulate.simulate_logistic,
the design of ENVIRONMENT.md's peer table). Every method runs its full pipeline: estimates, SEs and
log-likelihood (pymixnn: Laplace-EM start, Newton steps on the importance-sampling
log-likelihood, Fisher information, ll.is; gear="auto" runs no SVI up to 10^6 individuals;
saemix: SAEM, MAP, FIM by linearisation, ll.is; nlme: Lindstrom-Bates
ML). All start from the same self-start values. pymixnn takes the refinement's Newton metric
from a subsample (500 individuals without SVI, 5,000 after it and in rounds over 30,000 or
more); from 30,000 individuals its rounds run first on nested random subsamples (10,000, then
100,000 at 10^6; one round each), then on all, and a round stops on the predicted Newton
decrement (newton.PREDICTED_STOP_MIN); beyond 5,000 individuals it takes
the observed information from 10,000 (scaled up) and uses Laplace proposals (EstimationOptions:
large_n, newton_individuals, fisher_individuals; newton_gear.py). The theophylline
case (N = 12, `--sizes theo`) is saemix's documented one-compartment oral model with Weight on V.
"seconds": the fit in a fresh process (the first fit there: lazy imports included);
"seconds_warm": the same fit again in that process (a session that has fitted before; for
every method the median of 3 fits where one takes under 5 s).

Each (method, N, replicate) runs in a fresh process (`python -m benchmarks.scaling --worker ...`)
with a wall-clock cap (10 minutes by default): the table records its seconds, its peak RSS and the
relative error of every parameter against the truth; a method that hits the cap at some N is not
run at larger N. One torch thread; R single-threaded.

    python -m benchmarks scaling                          # scaling to 10^6, then accuracy
    python -m benchmarks scaling --only scaling --sizes 100,1000
    python -m benchmarks scaling --only accuracy --reps 20
    python -m benchmarks scaling --only accuracy --methods pymixnn --resume   # add to stored runs
    python -m benchmarks scaling --only scaling --methods pymixnn --merge     # rerun one method
    python -m benchmarks scaling --only scaling --device cuda --methods pymixnn   # the GPU suite

Adapters skip with the reason when their method is absent (saemix: CRAN only; give R_LIBS). Writes
scaling.{csv,json,md} and scaling_time.png, accuracy.{csv,md} and accuracy.png to --out.
"""

from __future__ import annotations

import argparse
import compileall
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

from pymixnn.cli.spec import DEMO

__all__ = ["main", "TRUTH", "METHODS"]

ROOT = Path(__file__).resolve().parents[1]
TRUTH = {"A": 100.0, "B": 5.0, "C": 1.5, "omega2.A": 0.04, "omega2.B": 0.0225, "omega2.C": 0.04, "a": 2.0}
METHODS = ("pymixnn", "saemix", "nlme")
# the theophylline case (saemix's documented model: one-compartment oral, Weight on log V, the
# README's fit and `pymixnn demo`'s), run as N = 12 (``--sizes theo,...``); it has no truth, so no
# error columns
THEO_N = 12
THEO = dict(DEMO)
# a fit faster than this is run again in the same process: "seconds_warm", the time of a fit in a
# session that has fitted before (lazy imports and first-call set-up done); the median of
# WARM_REPEATS fits where one takes less than WARM_REPEAT_CAP seconds
WARM_CAP = 60.0
WARM_REPEATS = 3
WARM_REPEAT_CAP = 5.0


# ---- adapters (run inside the worker process) ---------------------------------------------------
def _fit(method: str, df: pd.DataFrame, seed: int, theo: bool = False, device: str = "cpu"):
    import pymixnn
    from pymixnn import compare

    kw = dict(THEO) if theo else dict(model="logistic", id="id", x="t", y="y")
    model = kw.pop("model")
    if method == "pymixnn":
        return pymixnn.fit(df, model, **kw, seed=seed, progress=False, threads=1, device=device)
    if method == "saemix":
        return compare.saemix(df, model, **kw, seed=seed + 632545)
    if method == "nlme":
        return compare.nlme(df, model, **kw)
    raise ValueError(method)


def available(method: str) -> tuple[bool, str]:
    """Whether ``method`` can run here, and why not."""
    if method == "pymixnn":
        return True, ""
    from pymixnn import compare

    if not compare.r_available():
        return False, "R/rpy2 not available"
    if not compare.r_package_available(method):
        return False, (
            f"R package {method} not installed"
            + (" (CRAN only: install it and give R_LIBS)" if method == "saemix" else "")
        )
    return True, ""


def worker(method: str, n: int, seed: int, device: str = "cpu", warm: bool = False) -> dict:
    import torch

    from pymixnn.simulate import simulate_logistic

    torch.set_num_threads(1)
    theo = n == THEO_N
    if theo:
        from pymixnn.datasets import load

        df = load("theo")
    else:
        df = simulate_logistic(n_individuals=n, n_obs=10, seed=seed)
    t0 = time.perf_counter()
    res = _fit(method, df, seed, theo, device)
    seconds = time.perf_counter() - t0
    warm_seconds = None
    if warm and seconds < WARM_CAP:  # the scaling suite's runs (not the accuracy replicates)
        # every method alike: one fit of half a second varies by +-20% on these machines
        times = []
        for _ in range(WARM_REPEATS if seconds < WARM_REPEAT_CAP else 1):
            t0 = time.perf_counter()
            _fit(method, df, seed, theo, device)
            times.append(time.perf_counter() - t0)
        warm_seconds = float(np.median(times))
    p = res.params
    rows = {}
    for name, truth in ({} if theo else TRUTH).items():
        if name not in p.index:
            continue
        est, lo, hi = (float(p.loc[name, c]) for c in ("estimate", "ci_lower", "ci_upper"))
        rows[name] = dict(
            estimate=est,
            rel_error=est / truth - 1,
            covered=None if not (np.isfinite(lo) and np.isfinite(hi)) else bool(lo <= truth <= hi),
        )
    return dict(
        method=method,
        n=n,
        seed=seed,
        data="theophylline" if theo else "logistic",
        device=device if method == "pymixnn" else "cpu",
        seconds=seconds,
        seconds_warm=warm_seconds,
        gear=res.info.get("gear"),
        estimates={k: float(v) for k, v in p["estimate"].items()},
        loglik=float(res.loglik),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        params=rows,
        warnings=list(res.info.get("warnings", []))[:3],
        stages=res.info.get("seconds_by_stage"),
    )


def _run(method: str, n: int, seed: int, cap: float, device: str = "cpu", warm: bool = False) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.scaling",
                "--worker",
                method,
                str(n),
                str(seed),
                "--device",
                device,
                *(["--warm"] if warm else []),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=cap,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return dict(method=method, n=n, seed=seed, status=f"over the {cap:.0f} s cap", seconds=float("nan"))
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return dict(
            method=method,
            n=n,
            seed=seed,
            status=f"error: {tail[:200]}",
            seconds=float("nan"),
            wall=time.perf_counter() - t0,
        )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["status"] = "ok"
    return out


# ---- suites -----------------------------------------------------------------------------------
def scaling(sizes, methods, cap, seed=1, device: str = "cpu") -> list[dict]:
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
            r = _run(method, n, seed, cap, device, warm=True)
            r["date"] = dt.date.today().isoformat()
            rows.append(r)
            print(method, n, r.get("status"), f"{r.get('seconds', float('nan')):.1f} s", flush=True)
            if r["status"] != "ok":
                stopped = f"{r['status']} at N={n}"
    return rows


def accuracy(sizes, methods, reps, cap, store: Path | None = None, resume: bool = False) -> list[dict]:
    """Replicates seeds 100..100+reps-1 per (method, N). Each finished run is appended to
    ``store`` (JSON lines) as it ends; with ``resume`` the runs already there are kept and not run
    again, so methods can be run at different times (e.g. the peers while pymixnn is tuned)."""
    done: dict[tuple, dict] = {}
    if store is not None and store.exists() and resume:
        for line in store.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["method"], int(r["n"]), int(r["seed"]))] = r
    elif store is not None and store.exists():
        store.unlink()
    rows = []
    for method in methods:
        ok, why = available(method)
        for n in sizes:
            for rep in range(reps):
                key = (method, n, 100 + rep)
                if key in done:
                    rows.append(done[key])
                    continue
                if not ok:
                    rows.append(dict(method=method, n=n, seed=100 + rep, status=f"skipped: {why}"))
                    break
                r = _run(method, n, 100 + rep, cap)
                rows.append(r)
                if store is not None:
                    with store.open("a") as fh:
                        fh.write(json.dumps(r, default=float) + "\n")
            print(method, n, "done", flush=True)
    # rows of other methods already in the store (run earlier with --resume) join the summary
    listed = {(r["method"], int(r["n"]), int(r["seed"])) for r in rows if "seed" in r}
    rows += [r for k, r in done.items() if k not in listed and k[1] in sizes and k[2] < 100 + reps]
    return rows


def _flatten(rows: list[dict]) -> pd.DataFrame:
    out = []
    for r in rows:
        keys = ("method", "n", "data", "seed", "status", "seconds", "seconds_warm", "gear")
        base = {k: r.get(k) for k in keys + ("peak_rss_mb", "loglik", "date")}
        if r.get("params"):
            for name, v in r["params"].items():
                out.append({**base, "parameter": name, **v})
        else:
            out.append({**base, "parameter": None})
    return pd.DataFrame(out)


def summarize_accuracy(flat: pd.DataFrame) -> pd.DataFrame:
    ok = flat[(flat["status"] == "ok") & flat["parameter"].notna()]
    g = ok.groupby(["n", "parameter", "method"])
    out = pd.DataFrame(
        {
            "replicates": g["rel_error"].size(),
            "bias_pct": 100 * g["rel_error"].mean(),
            # Monte Carlo SE of the bias over the replicates: a bias within ~2 of these is noise
            "bias_se_pct": 100 * g["rel_error"].std() / np.sqrt(g["rel_error"].size()),
            "rmse_pct": 100 * np.sqrt(g["rel_error"].apply(lambda e: np.mean(e**2))),
            "coverage_95": g["covered"].apply(
                lambda c: (
                    np.mean([bool(v) for v in c if v is not None])
                    if any(v is not None for v in c)
                    else np.nan
                )
            ),
            "seconds_median": g["seconds"].median(),
        }
    )
    return out.reset_index()


def pooled_coverage(flat: pd.DataFrame) -> pd.DataFrame:
    """95% CI coverage pooled over parameters, per (N, method): with 20 replicates one
    parameter's coverage moves in steps of 0.05 (20/20 = 1 happens 36% of the time for exact
    95% intervals), so the pooled rate, over ~140 intervals, is the one to hold to [0.90, 0.98]."""
    ok = flat[(flat["status"] == "ok") & flat["parameter"].notna() & flat["covered"].notna()]
    g = ok.groupby(["n", "method"])["covered"]
    cov = g.apply(lambda c: float(np.mean([bool(v) for v in c])))
    k = g.size()
    return pd.DataFrame(
        {"intervals": k, "coverage_95": cov, "coverage_se": np.sqrt(cov * (1 - cov) / k)}
    ).reset_index()


def versus(acc: pd.DataFrame, method: str = "pymixnn", reference: str = "saemix") -> pd.DataFrame:
    """Per (N, parameter): RMSE and |bias| of ``method`` over those of ``reference``, and the
    bias difference in units of its Monte Carlo SE (same data sets: the replicates are paired)."""
    a = acc[acc["method"] == method].set_index(["n", "parameter"])
    b = acc[acc["method"] == reference].set_index(["n", "parameter"])
    both = a.index.intersection(b.index)
    if not len(both):
        return pd.DataFrame()
    a, b = a.loc[both], b.loc[both]
    return pd.DataFrame(
        {
            "rmse_ratio": a["rmse_pct"] / b["rmse_pct"],
            "abs_bias_ratio": a["bias_pct"].abs() / b["bias_pct"].abs(),
            "bias_diff_pct": a["bias_pct"] - b["bias_pct"],
            "bias_se_pct": np.sqrt(a["bias_se_pct"] ** 2 + b["bias_se_pct"] ** 2) / np.sqrt(2),
        }
    ).reset_index()


def _plots(flat: pd.DataFrame, acc: pd.DataFrame | None, out: Path, stem: str = "scaling") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not flat.empty:
        fig, ax = plt.subplots(figsize=(6, 4.2))
        t = flat[(flat["status"] == "ok") & (flat["n"] != THEO_N)].drop_duplicates(["method", "n"])
        for method, d in t.groupby("method"):
            ax.loglog(d["n"], d["seconds"], "o-", label=method)
        ax.set_xlabel("individuals N (10 observations each)")
        ax.set_ylabel("seconds: fit + SEs + log-likelihood")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"{stem}_time.png", dpi=110)
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
    ap.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)  # worker: fit twice
    ap.add_argument(
        "--device",
        default="cpu",
        help="pymixnn's device (cuda: the GPU suite, its tables as scaling_cuda.*; peers stay on the CPU)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--only", choices=["scaling", "accuracy"], action="append")
    ap.add_argument("--sizes", default="theo,100,1000,10000,100000,1000000", help="N, or theo (theophylline)")
    ap.add_argument("--accuracy-sizes", default="200,2000")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--cap", type=float, default=600.0, help="seconds per run (default 600)")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="scaling: keep the rows of scaling.json for the (method, N) not run now",
    )
    ap.add_argument(
        "--resume",
        action="store_true",
        help="accuracy: keep the runs already in accuracy_runs.jsonl, run the rest",
    )
    args = ap.parse_args(argv)
    if args.worker:
        method, n, seed = args.worker
        print(json.dumps(worker(method, int(n), int(seed), args.device, args.warm), default=float))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    # the package's bytecode written once, as an installed package has it: where
    # PYTHONDONTWRITEBYTECODE is set (these machines) each fresh worker would otherwise compile
    # every module its first fit imports (about 0.05 s of it)
    compileall.compile_dir(str(ROOT / "pymixnn"), quiet=1)
    only = set(args.only or ["scaling", "accuracy"])
    methods = [m.strip() for m in args.methods.split(",")]
    record = dict(
        date=dt.datetime.now(dt.timezone.utc).isoformat(),
        cpus=os.cpu_count(),
        machine=platform.machine(),
        threads=1,
        cap_seconds=args.cap,
        truth=TRUTH,
        availability={m: available(m) for m in methods},
    )
    # the CPU's tables are scaling.*; a GPU run's scaling_cuda.* beside them
    stem = "scaling" if args.device == "cpu" else "scaling_" + args.device.split(":")[0]
    record["device"] = args.device
    if "scaling" in only:
        sizes = [THEO_N if s.strip() == "theo" else int(s) for s in args.sizes.split(",")]
        rows = scaling(sizes, methods, args.cap, device=args.device)
        stored = args.out / f"{stem}.json"
        if args.merge and stored.exists():
            # keep the stored rows of the (method, N) not run now (e.g. peers measured earlier)
            ran = {(r["method"], int(r["n"])) for r in rows}
            old = [
                r
                for r in json.loads(stored.read_text()).get("scaling", [])
                if (r["method"], int(r["n"])) not in ran
            ]
            order = {m: k for k, m in enumerate(METHODS)}
            rows = sorted(old + rows, key=lambda r: (order.get(r["method"], 99), int(r["n"])))
        flat = _flatten(rows)
        flat.to_csv(args.out / f"{stem}.csv", index=False)
        record["scaling"] = rows
        cols = ["method", "data", "n", "status", "seconds", "seconds_warm", "peak_rss_mb", "loglik", "gear"]
        table = flat.drop_duplicates(["method", "n"]).reindex(columns=cols)
        err = (
            flat[flat["parameter"].notna()]
            .assign(abs_err_pct=lambda d: 100 * d["rel_error"].abs())
            .groupby(["method", "n"])["abs_err_pct"]
            .max()
            .rename("max_abs_rel_error_pct")
        )
        table = table.merge(err.reset_index(), on=["method", "n"], how="left")
        (args.out / f"{stem}.md").write_text(
            f"# Scaling: pymixnn ({args.device}), saemix, nlme\n\n"
            + __doc__.split("\n\n")[1]
            + "\n\n"
            + _md_table(table)
            + "\n"
        )
        _plots(flat, None, args.out, stem)
        print(_md_table(table))
    if "accuracy" in only:
        sizes = [int(s) for s in args.accuracy_sizes.split(",")]
        rows = accuracy(
            sizes, methods, args.reps, args.cap, args.out / "accuracy_runs.jsonl", resume=args.resume
        )
        flat = _flatten(rows)
        flat.to_csv(args.out / "accuracy_runs.csv", index=False)
        acc = summarize_accuracy(flat)
        acc.to_csv(args.out / "accuracy.csv", index=False)
        pooled = pooled_coverage(flat)
        vs = versus(acc)
        record["accuracy"] = acc.to_dict("records")
        record["coverage_pooled"] = pooled.to_dict("records")
        record["pymixnn_vs_saemix"] = vs.to_dict("records")
        (args.out / "accuracy.md").write_text(
            f"# Accuracy over {args.reps} replicate data sets\n\n"
            "Relative errors against the truth in % (bias, its Monte Carlo SE over the "
            "replicates, RMSE), 95% CI coverage of the truth, median seconds. nlme reports no "
            "SEs for variance parameters, so it has no coverage for them.\n\n"
            + _md_table(acc)
            + "\n\n## 95% coverage pooled over parameters\n\n"
            + _md_table(pooled)
            + "\n\n## pymixnn against saemix (same data sets)\n\n"
            "rmse_ratio and abs_bias_ratio: pymixnn's over saemix's; bias_diff_pct: pymixnn's "
            "bias less saemix's, with bias_se_pct the MC SE of one method's bias.\n\n"
            + (_md_table(vs) if not vs.empty else "(saemix absent)")
            + "\n"
        )
        _plots(pd.DataFrame(), acc, args.out)
        print(_md_table(acc))
    name = (
        f"{stem}.json"
        if only == {"scaling"}
        else "accuracy.json"
        if only == {"accuracy"}
        else "scaling_accuracy.json"
    )
    (args.out / name).write_text(json.dumps(record, indent=2, default=float))


if __name__ == "__main__":
    main()
