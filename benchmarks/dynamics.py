"""Dosing records and dynamic models (the dynamics issue): fits on event data side by side with
their references, in one run, one torch thread.

Cases (full pipeline: fit + SEs + log-likelihood, seed 0):

* theophylline: the compartment model ``pk1cpt_oral`` on dosing records against the closed-form
  curve ``onecpt_oral`` on (dose, time): estimates and seconds;
* phenobarb: 59 neonates, repeated IV doses, ``pk1cpt_iv`` against nlme's ML fit of phenoModel
  (tests/reference/dynamics/nlme_pk.json, written by nlme_pk.R; nlme's own seconds from there)
  and against the exact ML of the same model (exact_ml.json, written by exact_ml.R);
* quinidine: 136 patients, oral doses with steady-state records, ``pk1cpt_oral`` with random
  effects on CL and V against nlme's quinModel ML fit (fm1) and its exact ML;
* quinidine_glyco: the same with the time-varying glyco on CL (the covariate model acting record
  by record) against nlme's fm2 (lCl ~ glyco);
* pkpd_poisson: simulated PK (proportional error) with a Poisson count endpoint (100 subjects),
  recovery of the truth;
* pkpd_turnover: the joint PK/PD ODE (oral one-compartment PK, a turnover response with Imax
  inhibition; 5 random effects), 100 simulated individuals: recovery of the truth, CI coverage
  and the fit time;
* ode_eval: seconds per evaluation (predictions + gradient) of the Michaelis-Menten ODE model for
  100 and 1,000 individuals, one solve on the common time grid against the pseudo-time solve;
* ode_mm (``--full``): a 2-state ODE with Michaelis-Menten elimination, N individuals x 10
  observations, fit time per N.

    python -m benchmarks dynamics          # theophylline to pkpd_turnover (all but ode_mm)
    python -m benchmarks dynamics --quick  # theophylline and ode_eval only
    python -m benchmarks dynamics --full   # also the ODE scaling (slow)

Writes dynamics.csv (one row per compared parameter), dynamics.json and dynamics.md to --out
(default benchmarks/results).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["main", "theo_events", "mm_model", "simulate_mm", "turnover_model"]

ROOT = Path(__file__).resolve().parents[1]
REF = json.loads((ROOT / "tests" / "reference" / "dynamics" / "nlme_pk.json").read_text())
# the exact marginal ML of the same models (R: nlme's model functions, adaptive quadrature)
EXACT = json.loads((ROOT / "tests" / "reference" / "dynamics" / "exact_ml.json").read_text())["models"]
EXACT_SRC = "exact ML (exact_ml.R: nlme's model function, adaptive GH quadrature)"


def theo_events():
    import pymixnn

    return pymixnn.Data.from_nonmem(pymixnn.datasets.load_nonmem("theo"), covariates=["Weight"])


def _row(case, parameter, ours, reference, source, seconds, reference_seconds=np.nan):
    return dict(
        case=case,
        parameter=parameter,
        pymixnn=float(ours),
        reference=float(reference),
        rel_diff_pct=100 * (float(ours) - float(reference)) / abs(float(reference)),
        reference_source=source,
        seconds=seconds,
        reference_seconds=reference_seconds,
    )


def theophylline():
    import pymixnn

    t0 = time.perf_counter()
    closed = pymixnn.fit(
        pymixnn.datasets.load("theo"),
        "onecpt_oral",
        id="Id",
        x=["Dose", "Time"],
        y="Concentration",
        covariates={"V": ["Weight"]},
        seed=0,
        progress=False,
    )
    t_closed = time.perf_counter() - t0
    t0 = time.perf_counter()
    events = pymixnn.fit(theo_events(), "pk1cpt_oral", covariates={"V": ["Weight"]}, seed=0, progress=False)
    t_events = time.perf_counter() - t0
    rows = [
        _row(
            "theophylline",
            p,
            events.params.loc[p, "estimate"],
            closed.params.loc[p, "estimate"],
            "onecpt_oral (closed form, same seed)",
            t_events,
            t_closed,
        )
        for p in events.params.index
    ]
    rows.append(
        _row("theophylline", "loglik", events.loglik, closed.loglik, "onecpt_oral", t_events, t_closed)
    )
    return rows


# nlme's fits of the same models, timed live in this run (R, one process per case): the calls of
# tests/reference/dynamics/nlme_pk.R (fm1, ML)
NLME_CALLS = {
    "phenobarb": (
        "nlme(conc ~ phenoModel(Subject, time, dose, lCl, lV), data = Phenobarb, "
        "fixed = lCl + lV ~ 1, random = pdDiag(lCl + lV ~ 1), start = c(-5, 0), "
        "na.action = NULL, naPattern = ~ !is.na(conc), method = 'ML')"
    ),
    "quinidine": (
        "nlme(conc ~ quinModel(Subject, time, conc, dose, interval, lV, lKa, lCl), "
        "data = Quinidine, fixed = lV + lKa + lCl ~ 1, random = pdDiag(lV + lCl ~ 1), "
        "groups = ~ Subject, start = list(fixed = c(5, -0.3, 2)), na.action = NULL, "
        "naPattern = ~ !is.na(conc), method = 'ML')"
    ),
}
# fit-time rows (pymixnn and nlme, first fit and warm refit, same run), filled by the cases
TIMES: list[dict] = []


def nlme_seconds(case: str, repeats: int = 3) -> tuple[float, float]:
    """nlme's (first fit, fastest of ``repeats`` refits) seconds in one R process, each fit with
    its summary and log-likelihood (what pymixnn's fit reports); (nan, nan) without R or nlme."""
    fit = NLME_CALLS[case]
    code = (
        "suppressMessages(library(nlme)); s <- c(); "
        f"for (i in 1:{1 + repeats}) {{ t0 <- proc.time()[['elapsed']]; fit <- {fit}; "
        "x <- summary(fit); ll <- logLik(fit); s <- c(s, proc.time()[['elapsed']] - t0) }; cat(s)"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    try:
        proc = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, env=env, timeout=600)
        s = [float(v) for v in proc.stdout.split()]
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return float("nan"), float("nan")
    if proc.returncode != 0 or len(s) != 1 + repeats:
        return float("nan"), float("nan")
    return s[0], min(s[1:])


def _timed(case: str, fit) -> tuple[object, float]:
    """(results, seconds of the first fit) of ``fit()``, run twice: the refit's seconds and
    nlme's (nlme_seconds) go to TIMES."""
    t0 = time.perf_counter()
    res = fit()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit()
    warm = time.perf_counter() - t0
    nlme_first, nlme_warm = nlme_seconds(case)
    TIMES.append(
        dict(case=case, pymixnn_first=first, pymixnn_warm=warm, nlme_first=nlme_first, nlme_warm=nlme_warm)
    )
    return res, first


def phenobarb():
    import pymixnn

    ref = REF["phenobarb"]["fits"]["fm1_ML"]
    data = pymixnn.Data.from_nonmem(pymixnn.datasets.load_nonmem("phenobarb"))
    res, sec = _timed(
        "phenobarb",
        lambda: pymixnn.fit(data, "pk1cpt_iv", init={"CL": 0.005, "V": 1.0}, seed=0, progress=False),
    )
    om = np.diag(res.omega)
    src, rs = "nlme 3.1-162 ML (phenoModel)", ref["wall_time_s"]
    return [
        _row("phenobarb", "CL", res.fixed_effects["CL"], ref["exp_intercepts"]["Cl"], src, sec, rs),
        _row("phenobarb", "V", res.fixed_effects["V"], ref["exp_intercepts"]["V"], src, sec, rs),
        _row("phenobarb", "omega2.CL", om[0], ref["omega2"]["lCl"], src, sec, rs),
        _row("phenobarb", "omega2.V", om[1], ref["omega2"]["lV"], src, sec, rs),
        _row("phenobarb", "a", res.params.loc["a", "estimate"], ref["sigma"], src, sec, rs),
        _row("phenobarb", "loglik", res.loglik, ref["logLik"], src, sec, rs),
    ] + _exact_rows("phenobarb", "phenobarb_fm1", res, sec, {"CL": "Cl", "V": "V"})


def _exact_rows(case, key, res, sec, names):
    """pymixnn's estimates against the exact ML of the same model."""
    ex, om = EXACT[key], np.diag(res.omega)
    rows = [
        _row(case, p, res.fixed_effects[p], ex["exp_fixed_effects"][q], EXACT_SRC, sec)
        for p, q in names.items()
    ]
    for j, p in enumerate(res.model.random):
        q = "l" + names[p]
        if q in ex["omega2"]:
            rows.append(_row(case, f"omega2.{p}", om[j], ex["omega2"][q], EXACT_SRC, sec))
    rows.append(_row(case, "a", res.params.loc["a", "estimate"], ex["sigma"], EXACT_SRC, sec))
    rows.append(_row(case, "loglik", res.loglik, ex["logLik_exact"], EXACT_SRC, sec))
    return rows


def _quinidine_fit(data, **options):
    """pk1cpt_oral on Quinidine with random effects on CL and V (nlme's fm1 / fm2): (results, s)."""
    import pymixnn

    t0 = time.perf_counter()
    res = pymixnn.fit(data, "pk1cpt_oral", random=["CL", "V"], seed=0, progress=False, **options)
    return res, time.perf_counter() - t0


def quinidine():
    import pymixnn

    ref = REF["quinidine"]["fits"]["fm1_ML"]
    data = pymixnn.Data.from_nonmem(pymixnn.datasets.load_nonmem("quinidine"))
    res, sec = _timed("quinidine", lambda: _quinidine_fit(data, init={"ka": 0.76, "CL": 11.8, "V": 217})[0])
    om = np.diag(res.omega)
    src, rs = "nlme 3.1-162 ML (quinModel, fm1)", ref["wall_time_s"]
    fe = ref["exp_intercepts"]
    return [
        _row(
            "quinidine",
            "ka",
            res.fixed_effects["ka"],
            fe["Ka"] if "Ka" in fe else np.exp(ref["fixed_effects"]["lKa"]),
            src,
            sec,
            rs,
        ),
        _row("quinidine", "CL", res.fixed_effects["CL"], np.exp(ref["fixed_effects"]["lCl"]), src, sec, rs),
        _row("quinidine", "V", res.fixed_effects["V"], np.exp(ref["fixed_effects"]["lV"]), src, sec, rs),
        _row("quinidine", "omega2.CL", om[0], ref["omega2"]["lCl"], src, sec, rs),
        _row("quinidine", "a", res.params.loc["a", "estimate"], ref["sigma"], src, sec, rs),
        _row("quinidine", "loglik", res.loglik, ref["logLik"], src, sec, rs),
    ] + _exact_rows("quinidine", "quinidine_fm1", res, sec, {"ka": "Ka", "CL": "Cl", "V": "V"})


def quinidine_glyco():
    """Quinidine with the time-varying alpha-1-acid glycoprotein on CL (nlme's fm2: lCl ~ glyco),
    the covariate model acting record by record, against nlme's ML fit. The semantics differ where
    glyco changes: pymixnn carries each record's value forward (NONMEM's), nlme's quinModel uses
    the value of the record that ends each interval (and 89 of the 136 patients have a changing
    glyco), so this is a comparison, not an identity. Measured (2026-12-03): pymixnn's maximum is
    the flip-flop solution (ka 0.056, V 31; 5.7 log-likelihood units above nlme's ka 0.43, V 195),
    reached from nlme's estimates and from ka 1.5, V 250 alike; glyco, CL, omega2(CL) and sigma
    within 6% of nlme's."""
    import pymixnn

    ref = REF["quinidine"]["fits"]["fm2_ML"]
    df = pymixnn.datasets.load_nonmem("quinidine")
    res, sec = _quinidine_fit(df, covariates={"CL": ["GLYCO"]}, init={"ka": 0.43, "CL": 22.8, "V": 195})
    om = np.diag(res.omega)
    fe, src, rs = ref["fixed_effects"], "nlme 3.1-162 ML (quinModel, fm2: lCl ~ glyco)", ref["wall_time_s"]
    beta = float(res.params.loc["beta_GLYCO(CL)", "estimate"])
    return [
        _row("quinidine_glyco", "ka", res.fixed_effects["ka"], np.exp(fe["lKa"]), src, sec, rs),
        _row("quinidine_glyco", "CL", res.fixed_effects["CL"], np.exp(fe["lCl.(Intercept)"]), src, sec, rs),
        _row("quinidine_glyco", "beta_GLYCO(CL)", beta, fe["lCl.glyco"], src, sec, rs),
        _row("quinidine_glyco", "V", res.fixed_effects["V"], np.exp(fe["lV"]), src, sec, rs),
        _row("quinidine_glyco", "omega2.CL", om[0], ref["omega2"]["lCl.(Intercept)"], src, sec, rs),
        _row("quinidine_glyco", "a", res.params.loc["a", "estimate"], ref["sigma"], src, sec, rs),
        _row("quinidine_glyco", "loglik", res.loglik, ref["logLik"], src, sec, rs),
    ]


def ode_eval(sizes=(100, 1000), repeats=3):
    """Seconds per evaluation (predictions + gradient) of the Michaelis-Menten ODE model on its
    records, one solve on the common time grid against the pseudo-time solve with a restart at
    every observation (the path taken where inputs change inside a run)."""
    import torch

    import pymixnn
    from pymixnn.model.dynamics import ode
    from pymixnn.model.dynamics.models import bind_data, solver_counts, with_solver

    rows = []
    for n in sizes:
        data = pymixnn.Data.from_nonmem(simulate_mm(n))
        x_pad, _, mask = data.padded()
        x = torch.as_tensor(x_pad, dtype=torch.float64)
        rng = np.random.default_rng(1)
        eta = rng.normal(size=(x.shape[0], 1, 4)) * 0.2
        log_psi = torch.tensor(np.log([1.0, 20.0, 10.0, 2.0]) + eta)
        timing = {}
        for path, limit in (("common_grid", ode.COMMON_GRID_LIMIT), ("pseudo_time", 0)):
            saved, ode.COMMON_GRID_LIMIT = ode.COMMON_GRID_LIMIT, limit
            try:
                model = with_solver(bind_data(mm_model(), data), 1e-6, 1e-8)
                best = np.inf
                for _ in range(repeats):
                    lp = log_psi.clone().requires_grad_(True)
                    t0 = time.perf_counter()
                    out = model.function(lp.exp(), x)
                    out[torch.as_tensor(mask)].sum().backward()
                    best = min(best, time.perf_counter() - t0)
                timing[path] = (best, solver_counts(model)["ode_rhs_evaluations"] / repeats)
            finally:
                ode.COMMON_GRID_LIMIT = saved
        (t_c, e_c), (t_p, e_p) = timing["common_grid"], timing["pseudo_time"]
        src = "pseudo-time solve (restart at each observation)"
        rows.append(_row(f"ode_eval_N{n}", "seconds_per_gradient", t_c, t_p, src, t_c, t_p))
        rows.append(_row(f"ode_eval_N{n}", "rhs_evaluations", e_c, e_p, src, t_c, t_p))
    return rows


def count_model():
    import torch

    import pymixnn

    def count(cp, psi):  # log-rate log(E0 IC50 / (IC50 + cp)); psi: ka, CL, V, E0, IC50
        return torch.log(psi[..., 3]) + torch.log(psi[..., 4]) - torch.log(psi[..., 4] + cp)

    return pymixnn.Model.named(
        "pk1cpt_oral",
        parameters=["E0", "IC50"],
        outputs={"count": count},
        init={"ka": 0.7, "CL": 0.2, "V": 10, "E0": 15, "IC50": 1.0},
    )


def pkpd_poisson():
    import pymixnn

    df = pymixnn.simulate.simulate_pkpd(100, design="poisson", seed=3)
    truth = df.attrs["truth"]
    t0 = time.perf_counter()
    res = pymixnn.fit(
        pymixnn.Data.from_nonmem(df),
        count_model(),
        error={"cp": "proportional"},
        observation={"count": "poisson"},
        seed=1,
        progress=False,
    )
    sec = time.perf_counter() - t0
    rows = [
        _row("pkpd_poisson", p, res.fixed_effects[p], v, "simulation truth", sec)
        for p, v in truth["fixed"].items()
    ]
    om = dict(zip(res.model.random, np.diag(res.omega)))
    rows += [
        _row("pkpd_poisson", f"omega2.{p}", om[p], v, "simulation truth", sec)
        for p, v in truth["omega2"].items()
    ]
    return rows


def turnover_model():
    """Joint PK/PD ODE: one-compartment oral PK and a turnover response whose production the drug
    inhibits (Imax 1); states depot, central, R; R(0) = R0 (the simulator's model)."""

    from pymixnn.model.pd import turnover_model as model

    return model(
        random=["ka", "CL", "V", "R0", "IC50"],
        start={"ka": 0.7, "CL": 0.2, "V": 10.0, "R0": 90.0, "kout": 0.05, "IC50": 1.0},
    )


def pkpd_turnover(n=100, seed=4, **control):
    """Issue 18's point 4: the warfarin-like turnover design (one oral dose, cp at 8 times, the
    response at 10), n individuals, known truth; estimates, whether each 95% CI covers the truth,
    and the fit time."""
    import pymixnn

    df = pymixnn.simulate.simulate_pkpd(n, design="turnover", seed=seed)
    truth = df.attrs["truth"]
    t0 = time.perf_counter()
    res = pymixnn.fit(
        pymixnn.Data.from_nonmem(df),
        turnover_model(),
        error={"cp": "proportional", "pca": "constant"},
        seed=1,
        progress=False,
        **control,
    )
    sec = time.perf_counter() - t0
    ci = res.conf_int()
    case = f"pkpd_turnover_N{n}"
    rows = []
    for p, v in truth["fixed"].items():
        rows.append(_row(case, p, res.fixed_effects[p], v, "simulation truth", sec))
        rows.append(
            _row(
                case,
                f"ci95_covers.{p}",
                float(ci.loc[p, "lower"] <= v <= ci.loc[p, "upper"]),
                1.0,
                "simulation truth",
                sec,
            )
        )
    om = dict(zip(res.model.random, np.diag(res.omega)))
    for p, v in truth["omega2"].items():
        rows.append(_row(case, f"omega2.{p}", om[p], v, "simulation truth", sec))
        name = f"omega2.{p}"
        if name in ci.index:
            rows.append(
                _row(
                    case,
                    f"ci95_covers.{name}",
                    float(ci.loc[name, "lower"] <= v <= ci.loc[name, "upper"]),
                    1.0,
                    "simulation truth",
                    sec,
                )
            )
    return rows


def mm_model():
    import torch

    import pymixnn

    def rhs(t, x, psi, cov):  # depot, central amount; psi: ka, V, Vmax, Km
        ka, v, vmax, km = psi.unbind(-1)
        c = x[..., 1] / v
        return torch.stack([-ka * x[..., 0], ka * x[..., 0] - vmax * c / (km + c)], -1)

    return pymixnn.ODEModel(
        rhs,
        states=["depot", "central"],
        parameters=["ka", "V", "Vmax", "Km"],
        outputs={"cp": lambda x, psi: x[..., 1] / psi[..., 1]},
        transforms="log",
        random=["V", "Vmax"],
        start={"ka": 1.0, "V": 20.0, "Vmax": 10.0, "Km": 2.0},
        error="proportional",
    )


def simulate_mm(n, seed=0):
    """Records of the Michaelis-Menten benchmark: dose 100 at 0, 10 samples to 24 h, truth
    ka 1, V 20 (omega2 0.04), Vmax 10 (omega2 0.09), Km 2, 10% proportional error (scipy's solver)."""
    from scipy.integrate import solve_ivp

    rng = np.random.default_rng(seed)
    times = np.array([0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24.0])
    rows = []
    for i in range(1, n + 1):
        v, vmax = 20 * np.exp(0.2 * rng.standard_normal()), 10 * np.exp(0.3 * rng.standard_normal())
        sol = solve_ivp(
            lambda t, x, v=v, vmax=vmax: [-x[0], x[0] - vmax * (x[1] / v) / (2 + x[1] / v)],
            (0, 24),
            [100.0, 0.0],
            t_eval=times,
            rtol=1e-10,
            atol=1e-10,
        )
        cp = sol.y[1] / v * (1 + 0.1 * rng.standard_normal(times.size))
        rows.append(dict(ID=i, TIME=0.0, AMT=100.0, EVID=1, DV=0.0))
        rows += [dict(ID=i, TIME=t, AMT=0.0, EVID=0, DV=y) for t, y in zip(times, cp)]
    return pd.DataFrame(rows)


def ode_mm(sizes=(100, 1000)):
    import pymixnn

    rows = []
    for n in sizes:
        data = pymixnn.Data.from_nonmem(simulate_mm(n))
        t0 = time.perf_counter()
        res = pymixnn.fit(data, mm_model(), seed=0, progress=False)
        sec = time.perf_counter() - t0
        truth = {"ka": 1.0, "V": 20.0, "Vmax": 10.0, "Km": 2.0}
        rows += [
            _row(f"ode_mm_N{n}", p, res.fixed_effects[p], v, "simulation truth", sec)
            for p, v in truth.items()
        ]
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks dynamics")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument(
        "--cases",
        default=None,
        help="comma-separated cases to run (e.g. phenobarb,quinidine); their rows replace those "
        "of the same cases in --out's dynamics.json, the other cases' rows are kept",
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    every = [theophylline, ode_eval, phenobarb, quinidine, quinidine_glyco, pkpd_poisson, pkpd_turnover]
    every.append(ode_mm)
    if args.cases:
        names = args.cases.split(",")
        unknown = sorted(set(names) - {c.__name__ for c in every})
        if unknown:
            parser.error(f"unknown cases {unknown}; the cases are {[c.__name__ for c in every]}")
        cases = [c for c in every if c.__name__ in names]
    else:
        cases = [theophylline, ode_eval] if args.quick else every[:-1]
        if args.full:
            cases.append(ode_mm)
    rows = []
    for case in cases:
        rows += case()
        print(f"{case.__name__}: done", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kept_from = None
    if args.cases and (out / "dynamics.json").exists():  # the other cases' rows from the last run
        old = json.loads((out / "dynamics.json").read_text())
        ran = {r["case"] for r in rows} | {r["case"] for r in TIMES}
        rows = [r for r in old["rows"] if r["case"] not in ran] + rows
        TIMES[:0] = [r for r in old.get("times", []) if r["case"] not in ran]
        kept_from = old["meta"].get("kept_from") or old["meta"]["date"]
    table = pd.DataFrame(rows)
    table.to_csv(out / "dynamics.csv", index=False)
    meta = dict(
        date=dt.datetime.now().isoformat(timespec="seconds"),
        machine=platform.machine(),
        python=platform.python_version(),
        torch_threads=1,
        load=os.getloadavg()[0],
        quick=args.quick,
        full=args.full,
        cases=args.cases,
        kept_from=kept_from,
    )
    (out / "dynamics.json").write_text(json.dumps(dict(meta=meta, rows=rows, times=TIMES), indent=1))
    lines = [
        f"# Dynamics benchmark ({meta['date']}, 1 torch thread, load {meta['load']:.1f})",
        "",
        *(
            [f"Cases run: {args.cases}; the other rows are kept from the run of {kept_from}.", ""]
            if kept_from
            else []
        ),
        "| case | parameter | pymixnn | reference | diff % | reference source | s (pymixnn) "
        "| s (reference) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['parameter']} | {r['pymixnn']:.5g} | {r['reference']:.5g} | "
            f"{r['rel_diff_pct']:+.2f} | {r['reference_source']} | {r['seconds']:.1f} | "
            f"{r['reference_seconds']:.2f} |"
        )
    if TIMES:
        lines += [
            "",
            "Fit seconds side by side in this run (the fit with its SEs and log-likelihood; first fit "
            "in the process, and the refit; nlme: its summary and logLik, in one R process, fastest "
            "of 3 refits):",
            "",
            "| case | pymixnn first | pymixnn refit | nlme first | nlme refit | refit ratio |",
            "|---|---|---|---|---|---|",
        ]
        for r in TIMES:
            lines.append(
                f"| {r['case']} | {r['pymixnn_first']:.2f} | {r['pymixnn_warm']:.2f} | "
                f"{r['nlme_first']:.2f} | {r['nlme_warm']:.2f} | "
                f"{r['pymixnn_warm'] / r['nlme_warm']:.1f}x |"
            )
    (out / "dynamics.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
