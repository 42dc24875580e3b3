"""The graph-network estimator of a Matérn field (:class:`pymixnn.SpatialEstimator`) against the
exact likelihood, on the issue's design.

Design: 500 fixed irregular locations, uniform on the unit square (seed 20261204); a Matérn field
with nu = 1.5, constant unknown mean, no nugget; prior range ~ U(0.05, 0.5) (sqrt(8 nu) / kappa,
coordinate units), sd ~ U(0.5, 2). The network is trained on fields simulated from the prior (one
torch thread, seed 0); then 1,000 test fields from the prior (seed 1) are estimated by the network
and by maximum likelihood (dense Cholesky per evaluation, mean and sd profiled, bounded Brent on log
range): RMSE per hyperparameter, the ratio network / likelihood (the issue's bar: <= 1.3), and the
time per field of each (the issue's bar: the network >= 100x faster).

    python -m benchmarks spatial_estimator                       # the issue's design
    python -m benchmarks spatial_estimator --n-simulations 64000 --n-fields 200 --out /tmp/b

Writes spatial_estimator.csv, .json, .md and spatial_estimator.png to --out (default
benchmarks/results).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

__all__ = ["PRIOR", "N_LOCATIONS", "run", "main"]

ROOT = Path(__file__).resolve().parents[1]
PRIOR = {"range": ("uniform", 0.05, 0.5), "sd": ("uniform", 0.5, 2.0)}
N_LOCATIONS = 500
NU = 1.5


def run(n_simulations: int, n_fields: int, out: Path, *, threads: int = 1) -> dict:
    import torch

    import pymixnn

    torch.set_num_threads(threads)
    loc = np.random.default_rng(20261204).random((N_LOCATIONS, 2))
    est = pymixnn.SpatialEstimator(kind="matern", locations=loc, nu=NU, prior=PRIOR)
    t0 = time.perf_counter()
    est.train(n_simulations, seed=0, progress=False)
    train_s = time.perf_counter() - t0
    cmp = est.compare(n_fields, seed=1)
    # one new field at a time (no batching): the network's latency for a single field
    _, z = est.simulate(20, seed=2)
    t1 = time.perf_counter()
    for row in z:
        est.estimate(row)
    single = (time.perf_counter() - t1) / len(z)
    out.mkdir(parents=True, exist_ok=True)
    table = cmp.table.reset_index()
    table.to_csv(out / "spatial_estimator.csv", index=False)
    cmp.plot(out / "spatial_estimator.png")
    summary = dict(
        locations=N_LOCATIONS,
        nu=NU,
        prior={k: list(v) for k, v in PRIOR.items()},
        n_simulations=int(est.state["n_simulations"]),
        train_seconds=train_s,
        n_fields=n_fields,
        threads=threads,
        single_field_seconds=single,
        **cmp.ratios(),
        table=table.to_dict(orient="records"),
    )
    return summary


def markdown(s: dict, stamp: dict) -> str:
    lines = [
        "# Spatial estimator (graph network) vs exact likelihood: Matérn field, 500 irregular locations",
        "",
        f"nu = {s['nu']}, prior range ~ U{tuple(s['prior']['range'][1:])}, "
        f"sd ~ U{tuple(s['prior']['sd'][1:])}; "
        f"trained on {s['n_simulations']:,} simulated fields in {s['train_seconds']:.0f} s on "
        f"{s['threads']} torch thread(s); {s['n_fields']:,} test fields from the prior.",
        "",
        "| method | parameter | RMSE | bias | MAE | seconds per field |",
        "|---|---|---|---|---|---|",
    ]
    for r in s["table"]:
        lines.append(
            f"| {r['method']} | {r['parameter']} | {r['rmse']:.4f} | {r['bias']:+.4f} | {r['mae']:.4f} | "
            f"{r['seconds_per_field']:.2e} |"
        )
    lines += [
        "",
        f"RMSE ratio network / likelihood: range {s['rmse_ratio.range']:.3f}, sd {s['rmse_ratio.sd']:.3f} "
        f"(bar <= 1.3). Time per field, likelihood / network (batched): {s['speedup']:.0f}x (bar >= 100); "
        f"one field at a time the network takes {s['single_field_seconds'] * 1e3:.1f} ms.",
        "",
        f"{stamp['date']}, Python {stamp['python']}, torch {stamp['torch']}, {stamp['machine']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks spatial_estimator")
    ap.add_argument("--n-simulations", type=int, default=256_000)
    ap.add_argument("--n-fields", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    s = run(args.n_simulations, args.n_fields, args.out, threads=args.threads)
    stamp = dict(
        date=dt.date.today().isoformat(),
        python=platform.python_version(),
        machine=platform.machine(),
        torch=version("torch"),
    )
    (args.out / "spatial_estimator.json").write_text(json.dumps(dict(s, **stamp), indent=1))
    md = markdown(s, stamp)
    (args.out / "spatial_estimator.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
