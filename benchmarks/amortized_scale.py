"""Amortized against per-individual local posteriors as N grows: time, peak memory, stages.

The logistic simulation of the scaling suite (10 observations per individual at t = 0..10, A=100,
B=5, C=1.5, omega2 0.04/0.0225/0.04, sigma=2, seed 1), each fit in a fresh process (its peak
resident memory is the process's), default settings (threads: 1 below 200,000 observations, else
all), seed 0. Reported per N and path: wall seconds of the fit, seconds by stage (for the
amortized fit also the encoder's forward pass and the amortization-gap pass), peak RSS, ll.is,
and the largest difference of an estimate from the per-individual fit in units of its SE.

    python -m benchmarks amortized_scale --n 100000          # the issue's 10^5 (about 5 minutes)
    python -m benchmarks amortized_scale --n 100000 1000000  # and 10^6
    python -m benchmarks amortized_scale --n 1000000 --merge # 10^6, keeping the saved 10^5 rows

Writes amortized_scale.csv, .json and .md to --out (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pandas as pd

__all__ = ["main", "one"]

ROOT = Path(__file__).resolve().parents[1]


def one(n: int, local: str) -> dict:
    """One fit in this process: its record (plain JSON types)."""
    import resource
    import time

    import pymixnn
    from pymixnn.simulate import simulate_logistic

    df = simulate_logistic(n, 10, seed=1)
    t0 = time.perf_counter()
    res = pymixnn.fit(df, "logistic", id="id", x="t", y="y", seed=0, progress=False, local=local)
    rec = dict(
        n=n,
        local=local,
        wall_s=time.perf_counter() - t0,
        threads=res.estimation.threads,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        loglik=res.loglik,
        svi_steps=res.estimation.steps,
        **{f"seconds_{k}": v for k, v in res.estimation.seconds.items()},
        estimates=res.params["estimate"].to_dict(),
        se=res.params["se"].to_dict(),
    )
    amortized = res.estimation.amortized
    if amortized:
        rec.update({f"seconds_{k}": v for k, v in amortized["seconds"].items()})
        rec.update(mean_gap=amortized["mean_gap"], gap_individuals=amortized.get("gap_individuals"))
    return rec


def markdown(records: list[dict]) -> str:
    lines = [
        "| N | local | threads | wall s | start | SVI (incl. encoder, gap) | encoder pass | gap pass "
        "| refine | Fisher | ll.is s | peak RSS MB | ll.is | largest estimate difference (SE) | mean gap |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    f = lambda v, fmt: "" if v is None or v != v else format(v, fmt)  # noqa: E731
    for r in records:
        lines.append(
            f"| {r['n']} | {r['local']} | {r['threads']} | {r['wall_s']:.1f} | {r['seconds_start']:.1f} | "
            f"{r['seconds_svi']:.1f} | {f(r.get('seconds_encode'), '.1f')} | "
            f"{f(r.get('seconds_gap'), '.1f')} | "
            f"{r['seconds_refine']:.1f} | {r['seconds_fisher']:.1f} | {r['seconds_loglik']:.1f} | "
            f"{r['peak_rss_mb']:.0f} | {r['loglik']:.2f} | {f(r.get('max_abs_difference_se'), '.3f')} | "
            f"{f(r.get('mean_gap'), '.3f')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks amortized_scale")
    ap.add_argument("--n", type=int, nargs="+", default=[100_000])
    ap.add_argument("--one", nargs=2, metavar=("N", "LOCAL"), help=argparse.SUPPRESS)
    ap.add_argument("--merge", action="store_true", help="keep the saved records of other N")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1])))
        return
    records = []
    for n in args.n:
        pair = {}
        for local in ("individual", "amortized"):
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks", "amortized_scale", "--one", str(n), local],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
                check=True,
            )
            pair[local] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(n, local, round(pair[local]["wall_s"], 1), "s", flush=True)
        ind, amo = pair["individual"], pair["amortized"]
        amo["max_abs_difference_se"] = max(
            abs(amo["estimates"][k] - ind["estimates"][k]) / ind["se"][k] for k in ind["estimates"]
        )
        records += [ind, amo]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "amortized_scale.json"
    if args.merge and saved.exists():
        kept = [r for r in json.loads(saved.read_text())["records"] if r["n"] not in args.n]
        records = sorted(kept + records, key=lambda r: (r["n"], r["local"] != "individual"))
    flat = [{k: v for k, v in r.items() if k not in ("estimates", "se")} for r in records]
    pd.DataFrame(flat).to_csv(out / "amortized_scale.csv", index=False)
    meta = dict(machine=platform.machine(), python=platform.python_version(), cpus=os.cpu_count())
    (out / "amortized_scale.json").write_text(json.dumps(dict(meta=meta, records=records), indent=2))
    md = markdown(records)
    (out / "amortized_scale.md").write_text(
        "# Amortized vs per-individual local posteriors as N grows\n\n" + md
    )
    print(md)


if __name__ == "__main__":
    main()
