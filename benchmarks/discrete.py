"""Discrete and censored observation models against their references (the count-data issue).

Cases (each a full pipeline: fit + SEs + log-likelihood, one torch thread, seed 1):

* rapi: saemix's documented Poisson model (818 subjects) against saemix 3.4 and lme4::glmer, by
  adaptive quadrature and by importance sampling, and saemix's zero-inflated Poisson model
  (tests/reference/rapi_saemix.json);
* epil (Poisson) and toenail (logistic) random-intercept GLMMs against glmer with 25-point adaptive
  quadrature (tests/reference/glmm_lme4.json); toenail also with importance sampling
  (``likelihood="is"``, seeds 1 and 2) to show its Monte Carlo spread;
* knee: proportional odds with a random intercept against ordinal::clmm (tests/reference/knee_clmm.json);
* senescence: simulated binomial counts (300 plants, bimodal onset), Gaussian against flow random
  effects, Wasserstein distance of the fitted onset law to the truth;
* censoring: simulated PK (300 subjects, 20% below the LOQ), M3 against dropping and imputing LOQ/2.

    python -m benchmarks discrete                  # everything (about 5 min)
    python -m benchmarks discrete --quick --out /tmp/d   # epil and toenail only

Writes discrete.csv (one row per compared parameter), discrete.json, discrete.md and VPC PNGs
(discrete_vpc_<case>.png) to --out (default benchmarks/results).
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
from scipy.stats import wasserstein_distance

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "reference"


def _ref(name):
    return json.loads((REF / name).read_text())


def _linear(names, random, init):
    import pymixnn

    return pymixnn.Model(
        lambda psi, x: psi[..., 0] + psi[..., 1] * x[..., 0], names, random=random, init=init
    )


def _rows(case, res, pairs, reference, seconds):
    out = []
    for ours, theirs, value in pairs:
        est = float(res.params.loc[ours, "estimate"]) if isinstance(ours, str) else float(ours[1])
        name = ours if isinstance(ours, str) else ours[0]
        out.append(
            dict(
                case=case,
                parameter=name,
                reference_name=theirs,
                pymixnn=est,
                reference=value,
                abs_diff=est - value,
                rel_diff_pct=100 * (est - value) / abs(value),
                reference_source=reference,
                seconds=seconds,
            )
        )
    return out


def rapi(threads, likelihood="auto"):
    import pymixnn
    from pymixnn import datasets

    ref = _ref("rapi_saemix.json")
    t0 = time.perf_counter()
    res = pymixnn.fit(
        datasets.load("rapi"),
        pymixnn.Model.named("linear", omega="full"),
        id="id",
        x="time",
        y="rapi",
        covariates={"intercept": ["gender"], "slope": ["gender"]},
        observation="poisson",
        seed=1,
        progress=False,
        threads=threads,
        likelihood=likelihood,
    )
    sec = time.perf_counter() - t0
    case = f"rapi ({res.loglik_method})"
    s, g = ref["saemix"], ref["glmer"]
    names = {
        "intercept": ("intercept", "(Intercept)"),
        "slope": ("slope", "time"),
        "beta_gender[Women](intercept)": ("beta_gender(intercept)", "genderWomen"),
        "beta_gender[Women](slope)": ("beta_gender(slope)", "time:genderWomen"),
    }
    rows = _rows(
        case,
        res,
        [(k, v[0], s["fixed_effects"][v[0]]) for k, v in names.items()]
        + [
            ("omega2.intercept", "omega intercept", s["omega"]["intercept"]),
            ("omega2.slope", "omega slope", s["omega"]["slope"]),
            ("cov.intercept.slope", "omega cov", s["omega"]["cov"]),
            (("loglik", res.loglik), "ll.is", s["ll_is"]),
        ],
        "saemix 3.4",
        sec,
    )
    rows += _rows(
        case,
        res,
        [(k, v[1], g["fixed_effects"][v[1]]) for k, v in names.items()]
        + [
            ("omega2.intercept", "omega intercept", g["omega"]["intercept"]),
            ("omega2.slope", "omega slope", g["omega"]["slope"]),
        ],
        "glmer Laplace",
        sec,
    )
    return res, rows


def rapi_zip(threads):
    import pymixnn
    from pymixnn import datasets

    ref = _ref("rapi_saemix.json")["saemix_zip"]
    t0 = time.perf_counter()
    res = pymixnn.fit(
        datasets.load("rapi"),
        "linear",
        id="id",
        x="time",
        y="rapi",
        covariates={"intercept": ["gender"], "slope": ["gender"]},
        observation="zero_inflated_poisson",
        seed=1,
        progress=False,
        threads=threads,
    )
    sec = time.perf_counter() - t0
    names = {
        "intercept": "intercept",
        "slope": "slope",
        "p0": "p0",
        "beta_gender[Women](intercept)": "beta_gender(intercept)",
        "beta_gender[Women](slope)": "beta_gender(slope)",
    }
    pairs = [(k, v, ref["fixed_effects"][v]) for k, v in names.items()]
    pairs += [
        ("omega2.intercept", "omega intercept", ref["omega"]["intercept"]),
        ("omega2.slope", "omega slope", ref["omega"]["slope"]),
        (("loglik", res.loglik), "ll.is", ref["ll_is"]),
    ]
    return res, _rows(f"rapi ZIP ({res.loglik_method})", res, pairs, "saemix 3.4", sec)


def glmms(threads, with_is=True):
    import pymixnn
    from pymixnn import datasets

    ref = _ref("glmm_lme4.json")
    epil = datasets.load("epil")
    epil["progabide"] = (epil["trt"] == "progabide").astype(float)
    epil["lbase_progabide"] = epil["lbase"] * epil["progabide"]
    t0 = time.perf_counter()
    res_e = pymixnn.fit(
        epil,
        _linear(["intercept", "V4"], ["intercept"], {"intercept": 1.5, "V4": 0.0}),
        id="subject",
        x="V4",
        y="y",
        observation="poisson",
        seed=1,
        progress=False,
        covariates={"intercept": ["lbase", "progabide", "lbase_progabide", "lage"]},
        threads=threads,
    )
    sec = time.perf_counter() - t0
    a = ref["epil"]["agq"]
    pairs = [
        ("intercept", "intercept"),
        ("V4", "V4"),
        ("beta_lbase(intercept)", "lbase"),
        ("beta_progabide(intercept)", "progabide"),
        ("beta_lbase_progabide(intercept)", "lbase_progabide"),
        ("beta_lage(intercept)", "lage"),
    ]
    rows = _rows(
        "epil",
        res_e,
        [(o, t, a["fixed_effects"][t]) for o, t in pairs]
        + [
            ("omega2.intercept", "omega2", a["omega2"]),
            (("loglik", res_e.loglik), "loglik (exact, at glmer's estimates)", a["loglik_integrate"]),
        ],
        "glmer nAGQ=25",
        sec,
    )
    toenail = datasets.load("toenail")
    fits = {}
    for label, kw in [
        ("toenail", {}),
        ("toenail is seed 1", dict(likelihood="is", seed=1)),
        ("toenail is seed 2", dict(likelihood="is", seed=2)),
    ]:
        if label != "toenail" and not with_is:
            continue
        t0 = time.perf_counter()
        kw = {"seed": 1, **kw}
        res_t = pymixnn.fit(
            toenail,
            _linear(["intercept", "time"], ["intercept"], {"intercept": -1.0, "time": -0.3}),
            id="id",
            x="time",
            y="y",
            observation="bernoulli",
            progress=False,
            covariates={"intercept": ["treatment"], "time": ["treatment"]},
            threads=threads,
            **kw,
        )
        sec = time.perf_counter() - t0
        a = ref["toenail"]["agq"]
        pairs = [
            ("intercept", "intercept"),
            ("time", "time"),
            ("beta_treatment(intercept)", "treatment"),
            ("beta_treatment(time)", "time_treatment"),
        ]
        rows += _rows(
            label,
            res_t,
            [(o, t, a["fixed_effects"][t]) for o, t in pairs]
            + [
                ("omega2.intercept", "omega2", a["omega2"]),
                (("loglik", res_t.loglik), "loglik (exact, at glmer's estimates)", a["loglik_integrate"]),
            ],
            "glmer nAGQ=25",
            sec,
        )
        fits[label] = res_t
    return res_e, fits["toenail"], rows


def knee(threads):
    import pymixnn
    from pymixnn import datasets

    ref = _ref("knee_clmm.json")["agq50"]
    t0 = time.perf_counter()
    res = pymixnn.fit(
        datasets.load("knee"),
        _linear(["intercept", "time"], ["intercept"], {"intercept": 0.0, "time": -0.1}),
        id="id",
        x="time",
        y="y",
        observation="ordinal",
        seed=1,
        progress=False,
        covariates={"intercept": ["treatment", "Sex", "Age", "Age2"]},
        threads=threads,
    )
    sec = time.perf_counter() - t0
    p = res.params["estimate"]
    lv = res.observation.levels
    cuts = [0.0] + [p[f"threshold.{lv[k]}|{lv[k + 1]}"] for k in range(1, len(lv) - 1)]
    pairs = [
        (
            (f"theta {lv[k]}|{lv[k + 1]} (c - intercept)", cuts[k] - p["intercept"]),
            f"{lv[k]}|{lv[k + 1]}",
            ref["thresholds_ordered"][k],
        )
        for k in range(len(cuts))
    ]
    pairs += [("time", "time", ref["beta"]["time"])]
    pairs += [(f"beta_{n}(intercept)", n, ref["beta"][n]) for n in ("treatment", "Sex", "Age", "Age2")]
    pairs += [
        ("omega2.intercept", "omega2", ref["omega2"]),
        (("loglik", res.loglik), "loglik (exact, at clmm's estimates)", ref["loglik_integrate"]),
    ]
    return res, _rows("knee", res, pairs, "ordinal::clmm nAGQ=50", sec)


def senescence(threads):
    from benchmarks.latent_class import fit_senescence  # the onset model: logit = (t - T50) / s
    from pymixnn.simulate import simulate_senescence

    df = simulate_senescence(300, seed=1)
    truth = 34.0 + df.attrs["onset_law"].sample(np.random.default_rng(7), 200_000)
    out, rows = {}, []
    for law in ("gaussian", "flow"):
        t0 = time.perf_counter()
        res = fit_senescence(df, law, threads=threads)
        sec = time.perf_counter() - t0
        w1 = wasserstein_distance(res.re_density(n_samples=200_000, seed=1).samples["T50"], truth)
        modes = int(res.re_summary(seed=1).loc["T50", "n_modes"])
        rows += _rows(
            f"senescence {law}",
            res,
            [
                ("T50", "T50", 34.0),
                ("s", "s", 4.0),
                (("loglik", res.loglik), "-", np.nan),
                (("W1 onset law (days)", w1), "-", np.nan),
                (("modes of the onset law", modes), "-", 2),
            ],
            "simulation truth",
            sec,
        )
        out[law] = res
    return out, rows


def censoring(threads):
    import pymixnn
    from pymixnn.simulate import simulate_censored_pk

    df = simulate_censored_pk(300, seed=3, a=0.0)
    imputed = df.copy()
    imputed.loc[imputed["cens"] == 1, "y"] = df.attrs["loq"] / 2
    truth = {"ka": 1.5, "V": 30.0, "CL": 3.0, "omega2.ka": 0.2, "omega2.V": 0.05, "omega2.CL": 0.1, "b": 0.15}
    rows, fits = [], {}
    for label, data, kw in [
        ("M3", df, dict(censoring="cens")),
        ("drop", df[df["cens"] == 0], {}),
        ("impute LOQ/2", imputed, {}),
    ]:
        t0 = time.perf_counter()
        res = pymixnn.fit(
            data,
            "onecpt_oral",
            id="id",
            x=["dose", "time"],
            y="y",
            error="proportional",
            seed=1,
            progress=False,
            threads=threads,
            **kw,
        )
        sec = time.perf_counter() - t0
        rows += _rows(
            f"censoring {label}", res, [(k, k, v) for k, v in truth.items()], "simulation truth", sec
        )
        fits[label] = res
    return fits, rows


def markdown(table: pd.DataFrame, info: dict) -> str:
    lines = [
        "# Discrete and censored observation models against their references",
        "",
        "pymixnn fits (seed 1, one torch thread) against saemix, glmer, clmm or the simulation "
        "truth; rel. diff = (pymixnn - reference) / |reference|. Machine: " + info["machine"] + ".",
        "",
    ]
    for case, sub in table.groupby("case", sort=False):
        lines += [
            f"## {case} ({sub['seconds'].iloc[0]:.1f} s)",
            "",
            "| parameter | reference | pymixnn | reference value | diff | rel. diff % | source |",
            "|---|---|---|---|---|---|---|",
        ]
        for _, r in sub.iterrows():
            ref = "" if not np.isfinite(r["reference"]) else f"{r['reference']:.6g}"
            rel = "" if not np.isfinite(r["rel_diff_pct"]) else f"{r['rel_diff_pct']:+.2f}"
            diff = "" if not np.isfinite(r["abs_diff"]) else f"{r['abs_diff']:+.4g}"
            lines.append(
                f"| {r['parameter']} | {r['reference_name']} | {r['pymixnn']:.6g} | {ref} | "
                f"{diff} | {rel} | {r['reference_source']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks discrete")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--quick", action="store_true", help="epil and toenail only (the test suite runs this)"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    epil_res, toenail_res, r = glmms(args.threads, with_is=not args.quick)
    rows += r
    toenail_res.plot_vpc(out / "discrete_vpc_toenail.png", seed=1)
    if not args.quick:
        rapi_res, r = rapi(args.threads)
        rows += r
        rapi_res.plot_vpc(out / "discrete_vpc_rapi.png", seed=1)
        rows += rapi(args.threads, likelihood="is")[1]
        zip_res, r = rapi_zip(args.threads)
        rows += r
        zip_res.plot_vpc(out / "discrete_vpc_rapi_zip.png", seed=1)
        knee_res, r = knee(args.threads)
        rows += r
        knee_res.plot_vpc(out / "discrete_vpc_knee.png", seed=1)
        sen, r = senescence(args.threads)
        rows += r
        sen["flow"].plot_vpc(out / "discrete_vpc_senescence.png", seed=1)
        sen["flow"].plot_random_effects(out / "discrete_senescence_flow.png")
        cens, r = censoring(args.threads)
        rows += r
        cens["M3"].plot_vpc(out / "discrete_vpc_censoring_m3.png", seed=1)
    table = pd.DataFrame(rows)
    info = {
        "machine": f"{platform.machine()}, {platform.system()}, {args.threads} torch thread(s)",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(),
        "versions": {p: version(p) for p in ("torch", "pyro-ppl", "numpy")},
    }
    table.to_csv(out / "discrete.csv", index=False)
    (out / "discrete.json").write_text(
        json.dumps({"rows": rows, "info": info}, indent=2, default=float) + "\n"
    )
    (out / "discrete.md").write_text(markdown(table, info))
    print(markdown(table, info))


if __name__ == "__main__":
    main()
