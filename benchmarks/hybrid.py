"""Hybrid dynamics: mechanistic models with a neural term (pymixnn.NeuralTerm), against the true and
a misspecified mechanistic model, each fit in its own process (time and peak memory), one torch
thread, seed 1.

Cases (``--cases``, default all):

- ``pkpd`` (points 1 and 2): simulate_pkpd's turnover design (one oral dose of 100; cp at 8
  times, a turnover PD endpoint with Emax inhibition at 10 times), 200 individuals (seed 11).
  (a) the true ODE model; (b) without the Emax link (the response stays at R0); (c) the link
  replaced by a NeuralTerm of the log concentration, g(log(1 + C), u_i) - g(0, u_i), with one
  random input u_i (the true IC50 varies between individuals) and random effects on ka, CL, V,
  R0 as in (a), kout fixed. Individual predictions of 100 held-out individuals (seed 12) after
  their own records (their conditional modes at the fitted parameters); the retained parameters
  ka, CL, V, kout against the truth; the learned link against C / (IC50 + C) over the
  concentrations seen along the fitted trajectories (PNG). Extrapolation: 100 new individuals
  (seed 13) on three doses q24h, predicted individually after their records and at the
  population level.
- ``emax`` (point 4, and point 1's design on a closed-form curve): y = E0_i + 8 C / (EC50_i + C)
  + e (simulate_emax_link, sd log EC50 0.7, error sd 0.2); the link a NeuralTerm with
  random_inputs 0 and 1; residual SD, correlation of the fitted random input with log EC50_i,
  held-out RMSE.
- ``plants`` (point 5): PhenoArch maize leaf area (1,673 plants, 90 genotypes, WW/WD): logistic
  growth with the scenario on A, B and C, against one whose rate depends on the scenario through
  a NeuralTerm of (day, deficit) (the scenario on A too; at most 1,500 steps per training stage);
  5-fold cross-validation over genotypes, the held-out genotypes' plants predicted at the
  population level.
- ``pendulum`` (point 3): a damped pendulum observed through its angle only (300 individuals):
  the mechanistic model and one whose restoring term -k sin(theta) is a NeuralTerm of theta; the
  hidden angular velocity's correlation with the truth at the observation times, the learned
  force against -1.5 sin(theta) over the angles seen and within the typical release angle 1.5.

    python -m benchmarks hybrid                      # every case
    python -m benchmarks hybrid --cases emax --out /tmp/b

Writes hybrid.csv, hybrid.json, hybrid.md and hybrid_*.png to --out (default benchmarks/results);
the rows of the cases not run are kept from the previous run.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["main", "CASES"]

ROOT = Path(__file__).resolve().parents[1]
START = {"ka": 0.7, "CL": 0.2, "V": 10.0, "R0": 90.0, "kout": 0.05, "IC50": 1.0}
FIT = dict(seed=1, progress=False)
# the PK/PD network fit: two starts (seeds 1 and 2), the higher log-likelihood kept
NEURAL_STARTS = 2


# ---- models ---------------------------------------------------------------------------------------
def turnover_nn_rhs(t, x, psi, cov, neural):
    """The turnover model with its inhibition C / (IC50 + C) replaced by g(u) - g(0), u = log(1 +
    C): the concentration on a log scale, as an Emax curve is drawn (on C itself, which spans
    0-20 while the truth rises steeply below IC50 = 1.2, the tanh network's smooth fit was too
    flat there and CL absorbed it: -14% against -7% on log(1 + C); benchmarks/results/hybrid.md)."""
    import torch

    ka, cl, v, r0, kout = psi.unbind(-1)
    z = torch.log1p((x[..., 1] / v).clamp_min(0.0)).unsqueeze(-1)
    g = neural["effect"]
    inhibition = (g(z) - g(torch.zeros_like(z)))[..., 0]
    return torch.stack(
        [
            -ka * x[..., 0],
            ka * x[..., 0] - cl / v * x[..., 1],
            r0 * kout * (1 - inhibition) - kout * x[..., 2],
        ],
        -1,
    )


def no_link_rhs(t, x, psi, cov):
    """The turnover model without its Emax link: the response stays at its baseline R0."""
    import torch

    ka, cl, v, _ = psi.unbind(-1)
    return torch.stack(
        [-ka * x[..., 0], ka * x[..., 0] - cl / v * x[..., 1], torch.zeros_like(x[..., 2])], -1
    )


def pkpd_model(kind: str):
    import pymixnn
    from pymixnn.model.pd import turnover_model

    outputs = {"cp": lambda x, psi: x[..., 1] / psi[..., 2], "pca": lambda x, psi: x[..., 2]}
    init = {"R": lambda psi: psi[..., 3]}
    if kind == "true":
        return turnover_model(random=["ka", "CL", "V", "R0", "IC50"], start=START)
    if kind == "misspecified":
        return pymixnn.ODEModel(
            no_link_rhs, ["depot", "central", "R"], ["ka", "CL", "V", "R0"], outputs, init=init,
            transforms="log", start={k: START[k] for k in ("ka", "CL", "V", "R0")},
        )  # fmt: skip
    # the true link's IC50 varies between individuals: the network's one random input carries it,
    # and the random effects sit where the true model's do (kout fixed)
    return pymixnn.ODEModel(
        turnover_nn_rhs, ["depot", "central", "R"], ["ka", "CL", "V", "R0", "kout"], outputs, init=init,
        transforms="log", start={k: START[k] for k in ("ka", "CL", "V", "R0", "kout")},
        random=["ka", "CL", "V", "R0"], neural={"effect": pymixnn.NeuralTerm(1, random_inputs=1)},
    )  # fmt: skip


def _rmse(pred: pd.DataFrame, data: pd.DataFrame, endpoint: str) -> float:
    rows = pred["endpoint"] == endpoint
    y = data.loc[pred.index[rows], "DV"].to_numpy()
    return float(np.sqrt(np.mean((pred.loc[rows, "prediction"].to_numpy() - y) ** 2)))


def _fit_pkpd(kind: str, out: str, settings: dict | None = None) -> dict:
    import torch

    import pymixnn

    torch.set_num_threads(1)
    sim = pymixnn.simulate.simulate_pkpd
    train, held = sim(200, design="turnover", seed=11), sim(100, design="turnover", seed=12, id_start=1001)
    multi = sim(100, design="turnover", seed=13, dose_times=(0.0, 24.0, 48.0), id_start=2001)
    truth = train.attrs["truth"]["fixed"]
    t0 = time.perf_counter()
    res = pymixnn.fit(
        pymixnn.Data.from_nonmem(train),
        pkpd_model(kind),
        error={"cp": "proportional", "pca": "constant"},
        **{**FIT, **(settings or {})},
    )
    row = dict(case="pkpd", model=kind, seconds=time.perf_counter() - t0, loglik=res.loglik, aic=res.aic)
    row["df"] = res.df_modelwc
    for p in ("ka", "CL", "V", "R0", "kout", "IC50"):
        if p in res.fixed_effects.index:
            row[f"{p}"] = float(res.fixed_effects[p])
            row[f"{p}_rel_error"] = float(res.fixed_effects[p] / truth[p] - 1)
    row["pd_rmse_heldout"] = _rmse(res.predict(held, level="individual"), held, "pca")
    row["pd_rmse_multidose_individual"] = _rmse(res.predict(multi, level="individual"), multi, "pca")
    row["pd_rmse_multidose_population"] = _rmse(res.predict(multi, level="population"), multi, "pca")
    if res.hybrid is not None:
        low, high = float(res.hybrid.low["effect"][0]), float(res.hybrid.high["effect"][0])
        z = np.linspace(low, high, 401)[:, None]
        g0 = float(res.neural_term("effect", np.zeros((1, 1)))[0, 0])
        learned = res.neural_term("effect", z)[:, 0] - g0
        conc = np.expm1(z[:, 0])  # the network's input is log(1 + C)
        true = conc / (truth["IC50"] + conc)
        row.update(
            link_max_abs_error=float(np.abs(learned - true).max()),
            link_range_low=float(np.expm1(low)),
            link_range_high=float(np.expm1(high)),
            share=res.hybrid.share,
            network_weights=res.hybrid.n_weights,
            stages=_stages(res, out, "pkpd"),
            starts="; ".join(
                f"seed {s['seed']}: {s['loglik']:.1f}" + (" (kept)" if s["kept"] else "")
                for s in res.hybrid.starts
            ),
        )
        res.plot_neural_terms(
            Path(out) / "hybrid_pkpd_link.png",
            truth={"effect": lambda zz: g0 + np.expm1(zz[:, 0]) / (truth["IC50"] + np.expm1(zz[:, 0]))},
        )
    return row


def _fit_emax(random_inputs: int | None, out: str) -> dict:
    import torch

    import pymixnn
    from pymixnn.simulate import emax_link, simulate_emax_link

    torch.set_num_threads(1)
    train = simulate_emax_link(200, ec50_sd=0.7, a=0.2, seed=1)
    held = simulate_emax_link(100, ec50_sd=0.7, a=0.2, seed=2, id_start=1001)

    def link(psi, x, neural):
        c = x[..., :1]
        return psi[..., 0] + (neural["link"](c) - neural["link"](torch.zeros_like(c)))[..., 0]

    def true(psi, x):
        return psi[..., 0] + psi[..., 1] * x[..., 0] / (psi[..., 2] + x[..., 0])

    if random_inputs is None:
        model = pymixnn.Model(
            true, ["E0", "Emax", "EC50"], init={"E0": 12, "Emax": 5, "EC50": 1}, transforms="log"
        )
    else:
        term = pymixnn.NeuralTerm(1, random_inputs=random_inputs)
        model = pymixnn.Model(link, ["E0"], init={"E0": 12.0}, transforms="log", neural={"link": term})
    t0 = time.perf_counter()
    res = pymixnn.fit(train, model, id="id", x="c", y="y", **FIT)
    label = "true" if random_inputs is None else f"neural_random_inputs_{random_inputs}"
    row = dict(case="emax", model=label, seconds=time.perf_counter() - t0, loglik=res.loglik, aic=res.aic)
    row.update(df=res.df_modelwc, residual_sd=float(res.sigma.iloc[0]))
    psi = res.individual_params(held).loc[held["id"]].to_numpy()
    f = res.evaluator.evaluate(psi, held[["c"]].to_numpy())
    row["rmse_heldout"] = float(np.sqrt(np.mean((f - held["y"].to_numpy()) ** 2)))
    log_ec50 = np.log(train.attrs["psi"]["EC50"].to_numpy())
    if (
        random_inputs or random_inputs is None
    ):  # the random input against log EC50 (its sign is the network's)
        u = res.individual_params()["link.u1" if random_inputs else "EC50"].to_numpy()
        u = u if random_inputs else np.log(u)
        row["corr_with_log_ec50"] = float(np.corrcoef(u, log_ec50)[0, 1])
        row["spearman_with_log_ec50"] = float(pd.Series(u).corr(pd.Series(log_ec50), method="spearman"))
    if res.hybrid is not None:
        z = np.linspace(0, 10, 401)[:, None]
        g = res.neural_term("link", z)[:, 0] - res.neural_term("link", np.zeros((1, 1)))[0, 0]
        row.update(link_max_abs_error=float(np.abs(g - emax_link(z[:, 0])).max()), share=res.hybrid.share)
    return row


def pendulum_rhs(t, x, psi, cov):
    import torch

    k, c, _ = psi.unbind(-1)
    return torch.stack([x[..., 1], -k * torch.sin(x[..., 0]) - c * x[..., 1]], -1)


def pendulum_nn_rhs(t, x, psi, cov, neural):
    import torch

    c, _ = psi.unbind(-1)
    return torch.stack([x[..., 1], neural["force"](x[..., :1])[..., 0] - c * x[..., 1]], -1)


def pendulum_model(kind: str):
    import pymixnn

    outputs = {"angle": lambda x, psi: x[..., 0]}
    if kind == "true":
        return pymixnn.ODEModel(
            pendulum_rhs, ["theta", "omega"], ["k", "c", "theta0"], outputs,
            init={"theta": lambda psi: psi[..., 2]}, transforms="log", random=["c", "theta0"],
            start={"k": 1.0, "c": 0.2, "theta0": 1.2},
        )  # fmt: skip
    return pymixnn.ODEModel(
        pendulum_nn_rhs, ["theta", "omega"], ["c", "theta0"], outputs,
        init={"theta": lambda psi: psi[..., 1]}, transforms="log", start={"c": 0.2, "theta0": 1.2},
        neural={"force": pymixnn.NeuralTerm(1)},
    )  # fmt: skip


def _fit_pendulum(kind: str, out: str) -> dict:
    import torch

    import pymixnn

    torch.set_num_threads(1)
    df = pymixnn.simulate.simulate_pendulum(300, seed=5)
    t0 = time.perf_counter()
    res = pymixnn.fit(pymixnn.Data.from_nonmem(df), pendulum_model(kind), **FIT)
    row = dict(case="pendulum", model=kind, seconds=time.perf_counter() - t0, loglik=res.loglik, aic=res.aic)
    row.update(df=res.df_modelwc, residual_sd=float(res.sigma.iloc[0]))
    hidden = df.attrs["hidden"]
    times = np.unique(hidden["TIME"])
    states = res.states(times=times)
    est = states[states["state"] == "omega"].merge(hidden, left_on=["ID", "time"], right_on=["ID", "TIME"])
    row["hidden_state_correlation"] = float(np.corrcoef(est["estimate"], est["omega"])[0, 1])
    row["hidden_state_interval_coverage"] = float(
        np.mean((est["lower"] <= est["omega"]) & (est["omega"] <= est["upper"]))
    )
    if res.hybrid is not None:
        low, high = float(res.hybrid.low["force"][0]), float(res.hybrid.high["force"][0])
        z = np.linspace(low, high, 401)[:, None]
        err = res.neural_term("force", z)[:, 0] + 1.5 * np.sin(z[:, 0])
        typical = np.abs(z[:, 0]) <= 1.5  # within the typical release angle (a few swing beyond)
        row.update(
            term_max_abs_error=float(np.abs(err).max()),
            term_max_abs_error_typical=float(np.abs(err[typical]).max()),
            share=res.hybrid.share,
            stages=_stages(res),
        )
        res.plot_neural_terms(
            Path(out) / "hybrid_pendulum_force.png", truth={"force": lambda zz: -1.5 * np.sin(zz[:, 0])}
        )
    return row


def growth_nn(psi, x, neural):
    """Logistic growth whose rate depends on the water scenario through a network of (day,
    deficit): the logistic argument (t - B) / C plus g(t, s) - g(t, 0), zero when well watered."""
    import torch

    a, b, c = psi.unbind(-1)
    t, wd = x[..., 0], x[..., 1]
    z = torch.stack([t, wd], -1)
    shift = (neural["rate"](z) - neural["rate"](torch.stack([t, torch.zeros_like(wd)], -1)))[..., 0]
    return a / (1 + torch.exp(-((t - b) / c + shift)))


def _fit_plants(fold: int, out: str) -> dict:
    """Fold ``fold`` of 5 over genotypes: both models fitted on the other folds' plants, the held-out
    genotypes' plants predicted at the population level (their scenario known, nothing else)."""
    import torch

    import pymixnn

    torch.set_num_threads(1)
    maize = pymixnn.datasets.load("phenoarch").assign(deficit=lambda d: (d["Scenario"] == "WD").astype(float))
    genotypes = np.array(sorted(maize["Genotype"].unique()))
    folds = np.random.default_rng(7).permutation(len(genotypes)) % 5
    held = maize["Genotype"].isin(genotypes[folds == fold])
    train, test = maize[~held], maize[held]
    common = dict(id="plant", y="LeafArea", error="proportional", **FIT)
    t0 = time.perf_counter()
    para = pymixnn.fit(train, "logistic", x="day", covariates={p: ["Scenario"] for p in "ABC"}, **common)
    t_para = time.perf_counter() - t0
    start = {k: float(para.fixed_effects[k]) for k in "ABC"}
    model = pymixnn.Model(growth_nn, ["A", "B", "C"], init=start, transforms="log",
                          neural={"rate": pymixnn.NeuralTerm(2)})  # fmt: skip
    t0 = time.perf_counter()
    hyb = pymixnn.fit(
        train, model, x=["day", "deficit"], covariates={"A": ["Scenario"]}, max_steps=1500, **common
    )
    t_hyb = time.perf_counter() - t0
    y = test["LeafArea"].to_numpy()
    rmse = lambda p: float(np.sqrt(np.mean((np.asarray(p) - y) ** 2)))  # noqa: E731
    return dict(
        case="plants", model=f"fold {fold + 1}", seconds=t_para + t_hyb, seconds_parametric=t_para,
        seconds_neural=t_hyb, n_train_plants=int(train["plant"].nunique()),
        n_heldout_plants=int(test["plant"].nunique()),
        rmse_parametric=rmse(para.predict(test, level="population")),
        rmse_neural=rmse(hyb.predict(test, level="population")),
        aic_parametric=para.aic, aic_neural=hyb.aic, share=hyb.hybrid.share,
    )  # fmt: skip


CASES = {
    "pkpd": [(_fit_pkpd, "true"), (_fit_pkpd, "misspecified"), (_fit_pkpd, "neural")],
    "emax": [(_fit_emax, None), (_fit_emax, 0), (_fit_emax, 1)],
    "pendulum": [(_fit_pendulum, "true"), (_fit_pendulum, "neural")],
    "plants": [(_fit_plants, k) for k in range(5)],
}


def _measured(fn, arg, out: str, settings: dict) -> dict:
    """One fit in this process; ``settings`` (the fits' seed, the PK/PD network fit's
    neural_steps and neural_starts) recorded in its row."""
    FIT["seed"] = int(settings.get("seed", FIT["seed"]))
    if fn is _fit_pkpd and arg == "neural":
        names = ("neural_steps", "neural_starts")
        extra = {k: v for k, v in settings.items() if k in names and v is not None}
        row = dict(fn(arg, out, extra), **extra)
    else:
        row = fn(arg, out)
    row["seed"] = FIT["seed"]
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def _stages(res, out: str | None = None, name: str = "") -> str:
    """The training stages of a hybrid fit: steps run, the kept step, why each stopped; with
    ``out``, every stage's record (validation scores, penalty weights, the population parameters it
    kept) to hybrid_<name>_stages.json there."""
    if out is not None:
        Path(out, f"hybrid_{name}_stages.json").write_text(json.dumps(res.hybrid.stages, indent=1))
    return "; ".join(
        f"{s['stage']} {s['steps']} (kept {s['best_step']}, {s['stopped']})" for s in res.hybrid.stages
    )


def run(
    cases: list[str], out: str, models: list[str] | None = None, settings: dict | None = None
) -> list[dict]:
    rows = []
    ctx = mp.get_context("spawn")
    for case in cases:
        for fn, arg in CASES[case]:
            if models and str(arg) not in models:
                continue
            with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                row = pool.submit(_measured, fn, arg, out, dict(settings or {})).result()
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    frame = pd.DataFrame(rows)
    lines = []
    for case, part in frame.groupby("case", sort=False):
        part = part.dropna(axis=1, how="all")
        cols = [c for c in part.columns if c != "case"]
        lines += [f"## {case}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for _, r in part.iterrows():
            lines.append(
                "| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r[cols]) + " |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import torch

    ap = argparse.ArgumentParser(prog="python -m benchmarks hybrid")
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument(
        "--models",
        nargs="+",
        help="only these fits of the cases (pkpd, pendulum: true, misspecified, neural)",
    )
    ap.add_argument(
        "--neural-steps",
        type=int,
        help="the PK/PD network fit's steps per training stage (Control(neural_steps=); default 600)",
    )
    ap.add_argument(
        "--neural-starts",
        type=int,
        default=NEURAL_STARTS,
        help=f"the PK/PD network fit's starts, the highest log-likelihood kept (default {NEURAL_STARTS})",
    )
    ap.add_argument("--seed", type=int, default=FIT["seed"], help=f"every fit's seed (default {FIT['seed']})")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = dict(seed=args.seed, neural_steps=args.neural_steps, neural_starts=args.neural_starts)
    rows = run(args.cases, str(out), args.models, settings)
    old = out / "hybrid.json"
    if old.exists():
        records = json.loads(old.read_text())["records"]
        kept = [
            r
            for r in records
            if r["case"] not in args.cases or (args.models and r["model"] not in args.models)
        ]
        rows = kept + rows
    meta = dict(
        date=dt.datetime.now().isoformat(timespec="seconds"),
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; 1 thread per fit",
        torch=torch.__version__,
    )
    pd.DataFrame(rows).to_csv(out / "hybrid.csv", index=False)
    old.write_text(json.dumps(dict(meta=meta, records=rows), indent=2))
    md = markdown(rows)
    (out / "hybrid.md").write_text(f"# Hybrid dynamics ({meta['date']}; {meta['machine']})\n\n" + md)
    print(md)


if __name__ == "__main__":
    main()
