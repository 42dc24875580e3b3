"""The neural estimator of a whole data set (:func:`pymixnn.amortize`) against the likelihood fit.

Design: logistic growth (the ``"logistic"`` named model), 200 individuals observed at
t = 0, 10/9, ..., 10 (10 observations each). Prior (:data:`PRIOR`): A ~ U(80, 120), B ~ U(4, 6),
C ~ U(1.2, 1.8), each omega2 ~ log-uniform(0.02, 0.08), a ~ U(1, 3). The estimator is trained on
simulated data sets of this design (one torch thread); then

- 100 test data sets, their parameters drawn from the prior (seed 20261203, data set r simulated
  with seed 10,000 + r by ``pymixnn.simulate.simulate_nlme``), each estimated by the network and by
  ``pymixnn.fit`` (seed 0): RMSE of each parameter against its truth, and the ratio network /
  likelihood fit for the fixed effects (the issue's bar: <= 1.3);
- simulation-based calibration: 200 further data sets from the prior (seed 20261204), the rank of
  the truth among 100 posterior draws of the network, a KS test of uniformity per parameter;
- the time of one estimate of a new data set.

The 100 likelihood fits take ~45 minutes; they are kept in ``neural_likelihood.csv`` and reused
(pass --refit to run them again).

    python -m benchmarks neural                        # the issue's design
    python -m benchmarks neural --n-simulations 20000 --out /tmp/b

Writes neural.csv, neural.json, neural.md and neural_sbc.png to --out (default benchmarks/results).
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
import pandas as pd

__all__ = ["PRIOR", "TIMES", "N_INDIVIDUALS", "test_sets", "likelihood_fits", "run", "main"]

ROOT = Path(__file__).resolve().parents[1]
PRIOR = {
    "A": ("uniform", 80.0, 120.0),
    "B": ("uniform", 4.0, 6.0),
    "C": ("uniform", 1.2, 1.8),
    "omega2.A": ("loguniform", 0.02, 0.08),
    "omega2.B": ("loguniform", 0.02, 0.08),
    "omega2.C": ("loguniform", 0.02, 0.08),
    "a": ("uniform", 1.0, 3.0),
}
TIMES = np.linspace(0.0, 10.0, 10)
N_INDIVIDUALS = 200
TEST_SEED, SBC_SEED = 20261203, 20261204


def test_sets(n: int, seed: int = TEST_SEED) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """``n`` parameter draws from :data:`PRIOR` and a data set simulated at each."""
    import pymixnn
    from pymixnn.model.prior import Prior
    from pymixnn.simulate import logistic, simulate_nlme

    prior = Prior.of(pymixnn.named("logistic"), PRIOR)
    truth = prior.frame(prior.sample(np.random.default_rng(seed), n))
    sets = []
    for r, th in truth.iterrows():
        p = ("A", "B", "C")
        sets.append(
            simulate_nlme(
                logistic,
                p,
                mu_natural={k: th[k] for k in p},
                omega2={k: th[f"omega2.{k}"] for k in p},
                transforms=dict.fromkeys(p, "log"),
                x=TIMES,
                n_individuals=N_INDIVIDUALS,
                a=th["a"],
                seed=10_000 + r if seed == TEST_SEED else seed * 1000 + r,
            )
        )
    return truth, sets


def likelihood_fits(sets: list[pd.DataFrame], path: Path, *, refit: bool = False) -> pd.DataFrame:
    """``pymixnn.fit`` on each data set (one torch thread), estimates by row, kept in ``path``."""
    import torch

    import pymixnn

    done = pd.read_csv(path) if path.exists() and not refit else pd.DataFrame()
    rows = done.to_dict("records")
    torch.set_num_threads(1)
    for r in range(len(done), len(sets)):
        t0 = time.perf_counter()
        res = pymixnn.fit(sets[r], "logistic", id="id", x="t", y="y", seed=0, progress=False)
        row = dict(replicate=r, seconds=time.perf_counter() - t0, loglik=res.loglik)
        row.update(res.params["estimate"].to_dict())
        rows.append(row)
        pd.DataFrame(rows).to_csv(path, index=False)
        print(f"likelihood fit {r + 1}/{len(sets)}: {row['seconds']:.1f} s", flush=True)
    return pd.DataFrame(rows)


def design() -> pd.DataFrame:
    return pd.DataFrame(
        {"id": np.repeat(np.arange(1, N_INDIVIDUALS + 1), TIMES.size), "t": np.tile(TIMES, N_INDIVIDUALS)}
    )


def run(n_simulations: int | None, out: Path, *, refit: bool = False, threads: int = 1) -> dict:
    import torch

    import pymixnn
    from pymixnn.neural_estimator import NEURAL_SIMULATIONS

    torch.set_num_threads(threads)
    truth, sets = test_sets(100)
    lik = likelihood_fits(sets, out / "neural_likelihood.csv", refit=refit)
    est = pymixnn.amortize(
        "logistic", design(), PRIOR, n_simulations or NEURAL_SIMULATIONS, x="t", seed=0, progress=False
    )
    names = list(truth.columns)
    rows, seconds = [], []
    for r, df in enumerate(sets):
        e = est.estimate(df, seed=r)
        seconds.append(e.seconds)
        row = dict(replicate=r)
        for n in names:
            row[f"truth.{n}"] = truth.loc[r, n]
            row[f"neural.{n}"] = e.params.loc[n, "estimate"]
            row[f"neural_covers.{n}"] = bool(
                e.params.loc[n, "ci_lower"] <= truth.loc[r, n] <= e.params.loc[n, "ci_upper"]
            )
            row[f"likelihood.{n}"] = lik.loc[r, n]
        rows.append(row)
    table = pd.DataFrame(rows)
    rmse = {
        n: dict(
            neural=float(np.sqrt(((table[f"neural.{n}"] - table[f"truth.{n}"]) ** 2).mean())),
            likelihood=float(np.sqrt(((table[f"likelihood.{n}"] - table[f"truth.{n}"]) ** 2).mean())),
            neural_coverage_95=float(table[f"neural_covers.{n}"].mean()),
        )
        for n in names
    }
    for n in names:
        rmse[n]["ratio"] = rmse[n]["neural"] / rmse[n]["likelihood"]
    sbc = est.sbc(n_replicates=200, n_draws=100, seed=SBC_SEED)
    sbc.plot(out / "neural_sbc.png")
    one = sets[0]
    t0 = time.perf_counter()
    est.estimate(one, seed=0)
    summary = dict(
        n_individuals=N_INDIVIDUALS,
        n_records=int(TIMES.size),
        prior=PRIOR,
        n_simulations=est.info["n_simulations"],
        steps=est.info["steps"],
        batch_size=est.info["batch_size"],
        train_seconds=est.info["seconds"],
        estimate_seconds=time.perf_counter() - t0,
        estimate_seconds_mean=float(np.mean(seconds)),
        likelihood_fit_seconds_mean=float(lik["seconds"].mean()),
        final_validation_loss=float(est.training["validation_loss"].iloc[-1]),
        rmse=rmse,
        max_fixed_effect_ratio=max(rmse[n]["ratio"] for n in ("A", "B", "C")),
        sbc=sbc.table.to_dict("index"),
        sbc_min_p=float(sbc.table["p_value"].min()),
        threads=threads,
    )
    return dict(table=table, summary=summary)


def markdown(s: dict, stamp: str) -> str:
    lines = [
        f"# Neural estimator vs likelihood fit, logistic design, {s['n_individuals']} individuals ({stamp})",
        "",
        f"Trained on {s['n_simulations']:,} simulated data sets ({s['steps']:,} Adam steps of "
        f"{s['batch_size']}) in {s['train_seconds']:.0f} s on {s['threads']} torch thread(s); one new data "
        f"set estimated in {s['estimate_seconds'] * 1000:.1f} ms (mean "
        f"{s['estimate_seconds_mean'] * 1000:.1f} ms over the 100 test sets; 4,000 posterior draws) against "
        f"{s['likelihood_fit_seconds_mean']:.1f} s for a likelihood fit.",
        "",
        "RMSE over 100 data sets with parameters drawn from the prior:",
        "",
        "| parameter | neural | likelihood fit | ratio | neural 95% interval coverage "
        "| SBC KS p (200 replicates) |",
        "|---|---|---|---|---|---|",
    ]
    for n, r in s["rmse"].items():
        p = s["sbc"].get(n, {}).get("p_value", float("nan"))
        lines.append(
            f"| {n} | {r['neural']:.4g} | {r['likelihood']:.4g} | {r['ratio']:.2f} | "
            f"{r['neural_coverage_95']:.2f} | {p:.3f} |"
        )
    lines += [
        "",
        f"- largest fixed-effect RMSE ratio (bar 1.3): {s['max_fixed_effect_ratio']:.2f}",
        f"- smallest SBC KS p-value (bar 0.05): {s['sbc_min_p']:.3f}; rank histograms in neural_sbc.png",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks neural")
    ap.add_argument("--n-simulations", type=int, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--refit", action="store_true", help="run the 100 likelihood fits again")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    res = run(args.n_simulations, args.out, refit=args.refit)
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    meta = dict(
        stamp=stamp,
        python=platform.python_version(),
        machine=platform.machine(),
        torch=version("torch"),
        pymixnn=version("pymixnn"),
    )
    res["table"].to_csv(args.out / "neural.csv", index=False)
    (args.out / "neural.json").write_text(json.dumps(dict(meta=meta, summary=res["summary"]), indent=1))
    md = markdown(res["summary"], stamp)
    (args.out / "neural.md").write_text(md)
    print(md)


if __name__ == "__main__":
    _, _sets = test_sets(100)
    likelihood_fits(_sets, ROOT / "benchmarks" / "results" / "neural_likelihood.csv")
