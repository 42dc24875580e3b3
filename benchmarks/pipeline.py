"""Pipeline benchmark: time, memory and accuracy of `pymixnn.fit` on simulated logistic growth.

For each N, simulate N individuals x 10 observations (A=100, B=5, C=1.5, log-normal random
effects with omega2 = 0.04, 0.0225, 0.04, sigma = 2), run the full pipeline (SVI, refinement,
SEs from the observed Fisher information, ll.is) and record the wall time, the time per stage, the
peak resident memory, and the error and 95% CI coverage of every parameter. Each N runs in a fresh
subprocess, so that the peak RSS is that run's own.

    python -m benchmarks.pipeline                       # N = 1,000, 10,000, 100,000
    python -m benchmarks.pipeline --sizes 1000 --threads 2
    python -m benchmarks.pipeline --quick --out /tmp/b  # N = 200 (the test suite runs this)

Writes pipeline.csv (one row per N), pipeline.json (records and machine info) and pipeline.md to
--out (default benchmarks/results).
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
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["main", "run_single", "run_sizes"]

ROOT = Path(__file__).resolve().parents[1]
N_OBS = 10
# Measured on this machine kind by the environment authors (shared ENVIRONMENT.md): saemix 3.4
# (SAEM + MAP + FIM + ll.is) and nlme::nlme on the same simulated logistic-growth design.
PEERS = [(1_000, 19.3, 415, 0.9), (5_000, 98.2, 1380, 6.0), (20_000, 506.2, 4470, 28.4)]


def run_single(n: int, *, seed: int, threads: int) -> dict:
    """Simulate, fit and score one size in this process; the record is JSON-serializable."""
    import pymixnn
    from pymixnn.simulate import simulate_logistic

    df = simulate_logistic(n, n_obs=N_OBS, seed=seed)
    truth = df.attrs["truth"]
    # The fixed effects the drawn random effects imply (geometric mean of the simulated log-normal
    # psi_i): an estimate's distance to it is fit error, its distance to the truth adds sampling error.
    realized = np.exp(np.log(df.attrs["psi"]).mean()).to_dict()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    res = pymixnn.fit(df, "logistic", id="id", x="t", y="y", seed=seed, progress=False, threads=threads)
    seconds = time.perf_counter() - t0
    params = {}
    for name, row in res.params.iterrows():
        if name in truth:
            params[name] = dict(
                truth=truth[name],
                estimate=row["estimate"],
                se=row["se"],
                rel_error_pct=100 * (row["estimate"] - truth[name]) / truth[name],
                covered=bool(row["ci_lower"] <= truth[name] <= row["ci_upper"]),
            )
            if name in realized:
                params[name] |= dict(
                    realized=realized[name],
                    rel_error_realized_pct=100 * (row["estimate"] - realized[name]) / realized[name],
                )
    return dict(
        N=n,
        n_obs=len(df),
        status="ok",
        seconds=seconds,
        stages=res.info["seconds_by_stage"],
        steps=int(res.info["steps"]),
        peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        threads=int(res.info["threads"]),
        load_before=load,
        load_after=os.getloadavg()[0],
        dtype=res.info["dtype"],
        is_samples=int(res.info["is_samples"]),
        loglik=res.loglik,
        loglik_se=res.loglik_se,
        params=params,
    )


def run_sizes(sizes: list[int], *, seed: int, threads: int, timeout: float) -> list[dict]:
    """One fresh interpreter per size (its own peak RSS); a run past `timeout` s is recorded as such."""
    records = []
    for n in sizes:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.pipeline",
            "--single",
            str(n),
            "--seed",
            str(seed),
            "--threads",
            str(threads),
        ]
        print(f"N={n:,} ...", file=sys.stderr, flush=True)
        try:
            proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            records.append(dict(N=n, n_obs=n * N_OBS, status=f"timeout ({timeout:.0f} s)"))
            continue
        if proc.returncode != 0:
            records.append(dict(N=n, n_obs=n * N_OBS, status=f"failed (exit {proc.returncode})"))
            continue
        records.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"N={n:,}: {records[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    return records


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def machine() -> dict:
    return dict(
        platform=platform.platform(),
        python=platform.python_version(),
        cpu_count=os.cpu_count(),
        torch=version("torch"),
        pyro=version("pyro-ppl"),
        pymixnn=version("pymixnn"),
        commit=_git("rev-parse", "--short", "HEAD"),
        pymixnn_modified=bool(_git("status", "--porcelain", "pymixnn")),
        date=dt.datetime.now(dt.timezone.utc).isoformat(),
    )


def _max_error(params: dict, names: list[str], key: str = "rel_error_pct") -> str:
    return f"{max(abs(params[k][key]) for k in names):.2f}"


def _summary(r: dict) -> dict:
    """One row of the markdown table."""
    row = {"N": f"{r['N']:,}", "obs": f"{r['n_obs']:,}"}
    if r["status"] != "ok":
        return row | {"seconds": r["status"]}
    p = r["params"]
    fixed, omega2 = ["A", "B", "C"], [k for k in p if k.startswith("omega2.")]
    return row | {
        "seconds": f"{r['seconds']:.1f}",
        "SVI steps": f"{r['steps']:,}",
        "peak MB": f"{r['peak_mb']:.0f}",
        "max abs rel. error, fixed effects %": _max_error(p, fixed),
        "same, vs realized random effects %": _max_error(p, fixed, "rel_error_realized_pct"),
        "max abs rel. error, omega2 %": _max_error(p, omega2),
        "sigma error %": f"{p['a']['rel_error_pct']:+.2f}",
        "all 95% CIs cover": "yes"
        if all(v["covered"] for v in p.values())
        else "no: " + ", ".join(k for k, v in p.items() if not v["covered"]),
    }


def _table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(c for r in rows for c in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows])


def markdown(records: list[dict], info: dict) -> str:
    ok = [r for r in records if r["status"] == "ok"]
    stages = [{"N": f"{r['N']:,}"} | {k: f"{v:.1f}" for k, v in r["stages"].items()} for r in ok]
    peers = [
        {"N": f"{n:,}", "saemix (SAEM + MAP + FIM + ll.is) s": s, "saemix peak MB": mb, "nlme::nlme s": nl}
        for n, s, mb, nl in PEERS
    ]
    runs = "; ".join(
        f"N={r['N']:,}: {r['threads']} thread(s), load {r['load_before']:.2f} before / "
        f"{r['load_after']:.2f} after, {r['dtype']}, {r['is_samples']:,} IS draws per "
        f"individual"
        for r in ok
    )
    return (
        "\n\n".join(
            [
                "# pymixnn pipeline benchmark",
                f"Logistic growth, {N_OBS} observations per individual, truth A=100, B=5, C=1.5, omega2 = "
                "0.04, 0.0225, 0.04, sigma = 2. `pymixnn.fit` end to end (SVI, refinement, SEs from the "
                "observed Fisher information, ll.is); seconds are wall time around `fit`, peak MB the peak "
                "RSS of a fresh process per N (simulation included). Errors are relative to the truth; "
                '"vs realized" compares with the geometric mean of the simulated individual parameters '
                "(what the drawn random effects imply), which removes the sampling error and leaves the fit "
                "error. CIs are checked against the truth: with 7 parameters, a correct fit misses with at "
                "least one 95% CI in about 30% of data sets (1 - 0.95^7).",
                _table([_summary(r) for r in records]),
                "Seconds by stage:",
                _table(stages) if stages else "(no completed run)",
                "## Peers",
                "Measured on this machine kind by the environment authors (shared ENVIRONMENT.md, saemix 3.4 "
                "and nlme 3.1-162 on the same simulated design), not rerun here:",
                _table(peers),
                "## Threads and load",
                f"torch threads are set by `fit(threads=...)` and recorded from the fit. The 1-minute load "
                f"average is read before and after each fit; a load near or above the core count "
                f"({info['cpu_count']}) means another process competed for the CPU and the times are "
                f"inflated (OpenMP threads spin-wait under contention). {runs}.",
                f"Machine: {info['platform']}, {info['cpu_count']} CPUs, Python {info['python']}, torch "
                f"{info['torch']}, pyro {info['pyro']}, pymixnn {info['pymixnn']} at commit {info['commit']}"
                f"{' with uncommitted changes to pymixnn/' if info['pymixnn_modified'] else ''}; "
                f"{info['date']}.",
            ]
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000", help="comma-separated numbers of individuals")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads during the fit")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--timeout", type=float, default=1500, help="seconds allowed per N")
    ap.add_argument("--quick", action="store_true", help="N = 200 only (smoke test)")
    ap.add_argument("--single", type=int, help=argparse.SUPPRESS)  # child: one N, one JSON line
    args = ap.parse_args(argv)
    if args.single is not None:
        print(json.dumps(run_single(args.single, seed=args.seed, threads=args.threads)))
        return
    sizes = [200] if args.quick else [int(s) for s in args.sizes.split(",")]
    info = machine()  # before the runs: the code state and date they start from
    records = run_sizes(sizes, seed=args.seed, threads=args.threads, timeout=args.timeout)
    args.out.mkdir(parents=True, exist_ok=True)
    pd.json_normalize(records).to_csv(args.out / "pipeline.csv", index=False)
    (args.out / "pipeline.json").write_text(
        json.dumps(dict(machine=info, seed=args.seed, threads=args.threads, records=records), indent=2) + "\n"
    )
    (args.out / "pipeline.md").write_text(markdown(records, info))
    print(f"wrote {args.out}/pipeline.{{csv,json,md}}", file=sys.stderr)


if __name__ == "__main__":
    main()
