"""Amortized against per-individual local posteriors (``local="amortized"`` vs "individual").

Logistic growth (A=100, B=5, C=1.5, omega2 0.04/0.0225/0.04, sigma=2), N individuals x 10
observations, seed 3; both fits in one process, one torch thread, seed 0. Reported per fit: wall
time and stage seconds, the fixed effects, variances and sigma with SEs, ll.is, and for the
amortized fit the distance of each estimate from the per-individual fit in units of its SE, the
mean amortization gap (nats per individual, at the SVI end point; with ``refine_steps`` the
semi-amortized gap; the encoder's effective sample size as a proposal and the individuals it flags)
and the encoder on new individuals: 10,000 simulated individuals not in the fit
(seed 4), the encoder's posterior mean against each one's own posterior mode at the fitted
parameters (computed by the per-individual Newton path of a fit of the same data with the
parameters held at the amortized estimates), in units of the posterior SD, and the encoder's time
per individual.

    python -m benchmarks amortized                       # N = 10,000 (the issue's design)
    python -m benchmarks amortized --n 1000 --out /tmp/b
    python -m benchmarks amortized --laws                # flow and mixture laws, bimodal truth, N = 500

Writes amortized.csv, amortized.json and amortized.md to --out (default benchmarks/results);
``--laws`` writes amortized_laws.csv/.json/.md instead: the random-effects benchmark's bimodal
truth (log A a 40/60 mixture of two Gaussians 4 sd apart, N = 500 x 10, seed 0), each law fitted
with per-individual and with amortized local posteriors (seed 0, one thread): ll.is, the largest
difference of an estimate in SE units, the mean amortization gap under the fitted law, wall time.
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

__all__ = ["main", "run", "run_laws", "new_individual_check"]

ROOT = Path(__file__).resolve().parents[1]


def new_individual_check(res, n_new: int = 10_000, seed: int = 4) -> dict:
    """The encoder on ``n_new`` individuals not in the fit against their posterior modes at the
    fit's parameters (per-individual Newton path to convergence), in posterior-SD units, alone
    and followed by the fit's ``refine_steps`` Newton steps; time per individual (batched)."""
    from pymixnn.results.amortized import encode_individuals, posterior_modes
    from pymixnn.simulate import simulate_logistic

    new = simulate_logistic(n_individuals=n_new, n_obs=10, seed=seed)
    new["id"] = new["id"] + 10**7
    _, mode, sd = posterior_modes(res, new)
    out = dict(n_new=n_new)
    steps = int(res.estimation.amortized["refine_steps"])
    for label, k in (("encoder", 0), ("semi", steps)):
        t0 = time.perf_counter()
        _, eta, _ = encode_individuals(res, new, steps=k)
        out[f"{label}_steps"] = k
        out[f"{label}_us_per_individual"] = 1e6 * (time.perf_counter() - t0) / n_new
        z = np.abs(eta - mode) / sd
        out[f"{label}_share_within_0_1_sd"] = float(np.mean(np.all(z <= 0.1, axis=1)))
        out[f"{label}_median_abs_z"] = float(np.median(z))
        out[f"{label}_q95_max_abs_z"] = float(np.quantile(z.max(axis=1), 0.95))
    return out


def run(n: int, *, seed: int = 3, threads: int = 1, refine_steps: int = 2) -> tuple[list[dict], dict]:
    import torch

    import pymixnn
    from pymixnn.simulate import simulate_logistic

    torch.set_num_threads(threads)
    df = simulate_logistic(n_individuals=n, n_obs=10, seed=seed)
    fits, records = {}, []
    for local in ("individual", "amortized"):
        kw = dict(local=local) if local == "individual" else dict(local=local, refine_steps=refine_steps)
        t0 = time.perf_counter()
        res = pymixnn.fit(df, "logistic", id="id", x="t", y="y", seed=0, progress=False, **kw)
        wall = time.perf_counter() - t0
        fits[local] = res
        row = dict(local=local, n=n, wall_s=wall, svi_steps=res.estimation.steps, loglik=res.loglik)
        row.update({f"seconds_{k}": v for k, v in res.estimation.seconds.items()})
        for name, r in res.params.iterrows():
            row[name], row[f"se_{name}"] = r["estimate"], r["se"]
        records.append(row)
    ind, amo = fits["individual"], fits["amortized"]
    table = amo.amortization
    diff = ((amo.params["estimate"] - ind.params["estimate"]) / ind.params["se"]).abs()
    summary = dict(
        n=n,
        threads=threads,
        refine_steps=refine_steps,
        max_abs_diff_in_se=float(diff.max()),
        diff_in_se=diff.round(4).to_dict(),
        loglik_diff=float(amo.loglik - ind.loglik),
        mean_gap=float(table["gap"].mean()),
        median_gap=float(table["gap"].median()),
        mean_gap_refined=float(table["gap_refined"].mean()) if "gap_refined" in table else None,
        median_ess=float(table["ess"].median()),
        n_flagged=int(table["flagged"].sum()),
        gap_draws=int(amo.estimation.amortized["gap_draws"]),
        wall_individual_s=records[0]["wall_s"],
        wall_amortized_s=records[1]["wall_s"],
        new_individuals=new_individual_check(amo),
    )
    return records, summary


def markdown(records: list[dict], summary: dict) -> str:
    head = "| local | N | wall s | SVI steps | ll | A | B | C | omega2.A | omega2.B | omega2.C | a |"
    lines = [head, "|" + "---|" * 12]
    for r in records:
        vals = [
            f"{r[k]:.4g} ({r['se_' + k]:.2g})"
            for k in ("A", "B", "C", "omega2.A", "omega2.B", "omega2.C", "a")
        ]
        lines.append(
            f"| {r['local']} | {r['n']} | {r['wall_s']:.1f} | {r['svi_steps']} | {r['loglik']:.2f} | "
            + " | ".join(vals)
            + " |"
        )
    s, nw = summary, summary["new_individuals"]
    lines += [
        "",
        f"- largest difference of an estimate, amortized vs individual: {s['max_abs_diff_in_se']:.3f} SE; "
        f"ll difference {s['loglik_diff']:.3f}",
        f"- mean amortization gap {s['mean_gap']:.3f} nats per individual (median {s['median_gap']:.3f}); "
        f"with refine_steps={s['refine_steps']}: {s['mean_gap_refined']:.2g}",
        f"- the encoder's q as an importance-sampling proposal: median effective sample size "
        f"{s['median_ess']:.1f} of {s['gap_draws']} draws; {s['n_flagged']} individuals flagged (below 10%)",
        f"- {nw['n_new']} new individuals, against each one's posterior mode at the fitted parameters: "
        f"the encoder alone {100 * nw['encoder_share_within_0_1_sd']:.1f}% within 0.1 posterior SD in "
        f"every random effect (median |z| {nw['encoder_median_abs_z']:.3f}, 95% quantile of the largest "
        f"{nw['encoder_q95_max_abs_z']:.2f}), {nw['encoder_us_per_individual']:.1f} us per individual; with "
        f"{nw['semi_steps']} Newton steps {100 * nw['semi_share_within_0_1_sd']:.1f}% (median "
        f"{nw['semi_median_abs_z']:.4f}), {nw['semi_us_per_individual']:.1f} us per individual",
        f"- torch threads: {s['threads']}",
    ]
    return "\n".join(lines) + "\n"


def run_laws(n: int = 500, *, seed: int = 0, threads: int = 1) -> list[dict]:
    """Flow and 2-component mixture laws on the bimodal truth, per-individual vs amortized."""
    import pymixnn
    from pymixnn.simulate import NormalMixture1D, simulate_logistic

    df = simulate_logistic(n, 10, laws={"A": NormalMixture1D.separated(0.4, 4.0, 0.1)}, seed=seed)
    records = []
    for law in ("flow", "mixture"):
        kw = dict(id="id", x="t", y="y", random_effects=law, seed=0, progress=False, threads=threads)
        if law == "mixture":
            kw["n_components"] = 2
        fits = {}
        for local in ("individual", "amortized"):
            t0 = time.perf_counter()
            fits[local] = pymixnn.fit(df, "logistic", local=local, **kw)
            fits[local].wall_s = time.perf_counter() - t0
        ind, amo = fits["individual"], fits["amortized"]
        p, q = ind.params, amo.params
        # fixed effects and residual error: a flow's variances have SEs conditional on its shape
        # (user guide), near 0 for a covariance the flow carries
        keep = p["kind"].isin(["fixed", "beta", "sigma"])
        z = ((q["estimate"] - p["estimate"]).abs() / p["se"])[keep].replace([np.inf], np.nan)
        records.append(
            dict(
                law=law,
                n=n,
                loglik_individual=ind.loglik,
                loglik_amortized=amo.loglik,
                loglik_difference=amo.loglik - ind.loglik,
                loglik_se=amo.loglik_se,
                max_abs_difference_se=float(z.max()),
                mean_gap=float(amo.amortization.gap.mean()),
                n_flagged=int(amo.estimation.amortized["n_flagged"]),
                modes_logA=int(amo.re_summary().loc["A", "n_modes"]),
                wall_s_individual=ind.wall_s,
                wall_s_amortized=amo.wall_s,
            )
        )
        print(records[-1], flush=True)
    return records


def laws_markdown(records: list[dict]) -> str:
    lines = [
        "Bimodal truth (log A a 40/60 mixture of two Gaussians 4 sd apart), N = 500 x 10, seed 0; "
        "each law fitted with per-individual and amortized local posteriors (seed 0, 1 torch thread).",
        "",
        "| law | ll individual | ll amortized | difference | ll MC SE | largest estimate difference (SE)"
        " (fixed effects, sigma) | mean gap (nats) | flagged | modes of log A | s individual | s amortized |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['law']} | {r['loglik_individual']:.2f} | {r['loglik_amortized']:.2f} | "
            f"{r['loglik_difference']:+.2f} | {r['loglik_se']:.2f} | {r['max_abs_difference_se']:.3f} | "
            f"{r['mean_gap']:.3f} | {r['n_flagged']} | {r['modes_logA']} | {r['wall_s_individual']:.1f} | "
            f"{r['wall_s_amortized']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _meta() -> dict:
    return dict(
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        machine=platform.machine(),
        python=platform.python_version(),
        torch=version("torch"),
        pyro=version("pyro-ppl"),
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks amortized")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--refine-steps", type=int, default=2)
    ap.add_argument("--laws", action="store_true", help="flow and mixture laws (bimodal truth, N = 500)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.laws:
        records = run_laws(threads=args.threads)
        meta = dict(_meta(), threads=args.threads)
        pd.DataFrame(records).to_csv(out / "amortized_laws.csv", index=False)
        (out / "amortized_laws.json").write_text(json.dumps(dict(meta=meta, records=records), indent=2))
        md = laws_markdown(records)
        (out / "amortized_laws.md").write_text(
            f"# Amortized inference with flexible laws ({meta['date']})\n\n" + md
        )
        print(md)
        return
    records, summary = run(args.n, threads=args.threads, refine_steps=args.refine_steps)
    pd.DataFrame(records).to_csv(out / "amortized.csv", index=False)
    meta = _meta()
    (out / "amortized.json").write_text(
        json.dumps(dict(meta=meta, records=records, summary=summary), indent=2)
    )
    md = markdown(records, summary)
    (out / "amortized.md").write_text(
        f"# Amortized vs per-individual local posteriors ({meta['date']})\n\n" + md
    )
    print(md)


if __name__ == "__main__":
    main()
