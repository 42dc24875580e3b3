"""Latent classes (issue 23): recovery of simulated classes, the choice of K, membership covariates,
senescence strategies and new plants, time per fit and the mixture law on the same data.

Parts (``--part``), each writing ``latent_class_<part>.csv`` (one row per fit) and rebuilding
``latent_class.md`` and ``latent_class.json`` from every part's CSV found in ``--out``:

* ``classes``: 3-class logistic growth (``pymixnn.simulate.simulate_latent_classes``: N = 600, 10
  observations each, classes differing in A and B), ``LatentClass(n_classes="auto", on=["A", "B"])``
  with K = 1..4 chosen by ICL, per replicate: the chosen K, the adjusted Rand index against the true
  classes, the smallest class of every K fitted, the class-specific fixed effects' relative errors;
* ``membership``: 2 classes whose probability depends on a binary covariate z (P(class 2) 0.2 for
  z = 0, 0.7 for z = 1), ``LatentClass(2, on=["A", "B"], membership=["z"])``: the membership
  coefficients against the truth in SE units;
* ``senescence``: binomial counts from ``simulate_senescence`` (two onset strategies, 40% early and
  60% late, 15 days apart), ``LatentClass(2, on=["T50"])``: the share of plants whose strategy is
  recovered, and ``classify`` on 200 new plants;
* ``mixture``: on the first replicate of ``classes``, K = 3 latent classes against the 3-component
  mixture law and the Gaussian law (log-likelihood, BIC, seconds).

Everything runs with 1 torch thread; seconds are those of each ``pymixnn.fit`` call.
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

import pymixnn
from pymixnn.results.classes import adjusted_rand_index
from pymixnn.simulate import simulate_latent_classes, simulate_senescence

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("classes", "membership", "senescence", "mixture")
MEMBERSHIP_PROBS = ((0.8, 0.2), (0.3, 0.7))
MEMBERSHIP_AB = dict(A=(80.0, 120.0), B=(4.0, 6.0))


def fit_classes(df: pd.DataFrame, law, threads: int = 1, **kwargs):
    return pymixnn.fit(
        df,
        "logistic",
        id="id",
        x="t",
        y="y",
        random_effects=law,
        seed=1,
        progress=False,
        threads=threads,
        **kwargs,
    )


def onset_model() -> pymixnn.Model:
    """logit of the senescent fraction = (t - T50) / s (tests/test_discrete.py's model)."""

    def logit_senescence(psi, x):
        return (x[..., 0] - psi[..., 0]) / psi[..., 1]

    return pymixnn.Model(
        logit_senescence,
        ["T50", "s"],
        init={"T50": 30.0, "s": 5.0},
        transforms={"T50": "identity", "s": "log"},
    )


def fit_senescence(df: pd.DataFrame, law, threads: int | None = 1, **kwargs):
    """The binomial onset model on ``simulate_senescence`` data (seed 1; ``threads=None``: the
    fit's default thread count)."""
    if threads is not None:
        kwargs["threads"] = threads
    return pymixnn.fit(
        df,
        onset_model(),
        id="id",
        x="t",
        y="y",
        trials="leaves",
        observation="binomial",
        random_effects=law,
        seed=1,
        progress=False,
        **kwargs,
    )


def _class_errors(res, truth: dict) -> dict:
    out = {}
    for name, value in truth.items():
        if name in res.params.index and name.split(".")[0] in ("A", "B", "T50"):
            out[f"relerr.{name}"] = float(res.params.loc[name, "estimate"] / value - 1)
    return out


def part_classes(replicates: int) -> list[dict]:
    rows = []
    for r in range(replicates):
        df = simulate_latent_classes(600, seed=1000 + r)
        t0 = time.perf_counter()
        res = fit_classes(df, pymixnn.LatentClass(n_classes="auto", on=["A", "B"], criterion="icl"))
        seconds = time.perf_counter() - t0
        sel = res.class_selection()
        row = dict(
            replicate=r,
            chosen_k=res.n_classes,
            seconds=seconds,
            ari=adjusted_rand_index(df.attrs["classes"], res.classes()["class"]),
            min_smallest_class=int(sel.loc[sel.index > 1, "smallest_class"].min()),
        )
        for k in sel.index:
            row[f"icl.{k}"], row[f"bic.{k}"] = float(sel.loc[k, "icl"]), float(sel.loc[k, "bic"])
            row[f"smallest.{k}"] = int(sel.loc[k, "smallest_class"])
        row.update(_class_errors(res, df.attrs["truth"]))
        rows.append(row)
        print(row, flush=True)
    return rows


def part_membership(replicates: int) -> list[dict]:
    rows = []
    for r in range(replicates):
        df = simulate_latent_classes(600, seed=2000 + r, probs=MEMBERSHIP_PROBS, **MEMBERSHIP_AB)
        t0 = time.perf_counter()
        res = fit_classes(df, pymixnn.LatentClass(2, on=["A", "B"], membership=["z"]), covariates=None)
        row = dict(
            replicate=r,
            seconds=time.perf_counter() - t0,
            ari=adjusted_rand_index(df.attrs["classes"], res.classes()["class"]),
        )
        for name in ("membership.class2.intercept", "membership.class2.z"):
            est, se = res.params.loc[name, ["estimate", "se"]]
            truth = df.attrs["truth"][name]
            row |= {f"{name}": float(est), f"se.{name}": float(se), f"z.{name}": float((est - truth) / se)}
        row.update(_class_errors(res, df.attrs["truth"]))
        rows.append(row)
        print(row, flush=True)
    return rows


def part_senescence(replicates: int) -> list[dict]:
    rows = []
    for r in range(replicates):
        df = simulate_senescence(300, seed=3000 + r)
        t0 = time.perf_counter()
        res = fit_senescence(df, pymixnn.LatentClass(2, on=["T50"]))
        seconds = time.perf_counter() - t0
        new = simulate_senescence(200, seed=4000 + r)
        t1 = time.perf_counter()
        pred = res.classify(new)
        classify_seconds = time.perf_counter() - t1
        rows.append(
            dict(
                replicate=r,
                seconds=seconds,
                classify_seconds=classify_seconds,
                recovered=float((res.classes()["class"].to_numpy() == df.attrs["strategy"]).mean()),
                classify_correct=float((pred["class"].to_numpy() == new.attrs["strategy"]).mean()),
                T50_class1=float(res.params.loc["T50.class1", "estimate"]),
                T50_class2=float(res.params.loc["T50.class2", "estimate"]),
                prob_1=float(res.params.loc["prob.1", "estimate"]),
                loglik=float(res.loglik),
                bic=float(res.bic),
            )
        )
        print(rows[-1], flush=True)
    return rows


def part_mixture(replicates: int) -> list[dict]:
    rows = []
    df = simulate_latent_classes(600, seed=1000)
    sen = simulate_senescence(300, seed=3000)
    cases = [
        (
            "3-class logistic",
            lambda law: fit_classes(df, law),
            pymixnn.LatentClass(3, on=["A", "B"]),
            pymixnn.Mixture(3),
            df.attrs["classes"],
        ),
        (
            "senescence",
            lambda law: fit_senescence(sen, law),
            pymixnn.LatentClass(2, on=["T50"]),
            pymixnn.Mixture(2),
            sen.attrs["strategy"],
        ),
    ]
    for data, fit, latent, mixture, truth in cases:
        for name, law in (("latent classes", latent), ("mixture", mixture), ("gaussian", "gaussian")):
            t0 = time.perf_counter()
            res = fit(law)
            seconds = time.perf_counter() - t0
            if name == "gaussian":
                ari = np.nan
            elif name == "mixture":
                ari = adjusted_rand_index(truth, res.component_probabilities().to_numpy().argmax(1))
            else:
                ari = adjusted_rand_index(truth, res.classes()["class"])
            rows.append(
                dict(
                    data=data,
                    law=name,
                    loglik=float(res.loglik),
                    df=int(res.df_modelwc),
                    bic=float(res.bic),
                    ari=ari,
                    seconds=seconds,
                )
            )
            print(rows[-1], flush=True)
    return rows


RUNNERS = dict(
    classes=part_classes, membership=part_membership, senescence=part_senescence, mixture=part_mixture
)


def report(out: Path) -> str:
    """latent_class.md and .json from every part's CSV in ``out``."""
    meta = dict(
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        machine=platform.platform(),
        torch=version("torch"),
        pymixnn=version("pymixnn"),
        threads=1,
    )
    tables = {
        p: pd.read_csv(out / f"latent_class_{p}.csv")
        for p in PARTS
        if (out / f"latent_class_{p}.csv").exists()
    }
    lines = [
        "# Latent classes (issue 23)",
        "",
        f"{meta['date']}, {meta['machine']}, torch {meta['torch']}, 1 thread.",
        "",
    ]
    summary = {}
    if "classes" in tables:
        t = tables["classes"]
        rel = t.filter(like="relerr.")
        summary["classes"] = dict(
            replicates=len(t),
            chosen_3=int((t.chosen_k == 3).sum()),
            ari_min=float(t.ari.min()),
            ari_mean=float(t.ari.mean()),
            smallest_class_min=int(t.min_smallest_class.min()),
            max_abs_relerr=float(rel.abs().max().max()) if len(rel.columns) else None,
            seconds_mean=float(t.seconds.mean()),
        )
        s = summary["classes"]
        lines += [
            "## 1. Three simulated classes (N = 600, K = 1..4 by ICL)",
            "",
            f"{s['replicates']} replicates: K = 3 chosen in {s['chosen_3']}; adjusted Rand index min "
            f"{s['ari_min']:.3f}, mean {s['ari_mean']:.3f}; smallest class over every K >= 2 fitted: "
            f"{s['smallest_class_min']} individuals; largest |relative error| of a class-specific fixed "
            f"effect (K = 3 fits): {s['max_abs_relerr']:.4f}; {s['seconds_mean']:.0f} s per replicate "
            "(four fits: K = 1..4).",
            "",
            "| replicate | chosen K | ARI | smallest class (K=2,3,4) | max abs rel. error | s |",
            "|---|---|---|---|---|---|",
        ]
        for _, r in t.iterrows():
            small = ", ".join(str(int(r[f"smallest.{k}"])) for k in (2, 3, 4) if f"smallest.{k}" in r)
            err = float(np.nanmax(np.abs(r[rel.columns].to_numpy(float)))) if len(rel.columns) else np.nan
            lines.append(
                f"| {int(r.replicate)} | {int(r.chosen_k)} | {r.ari:.3f} | {small} | {err:.4f} | "
                f"{r.seconds:.0f} |"
            )
        lines.append("")
    if "membership" in tables:
        t = tables["membership"]
        zs = t.filter(like="z.membership")
        summary["membership"] = dict(
            replicates=len(t),
            within_2se={c[2:]: int((zs[c].abs() <= 2).sum()) for c in zs.columns},
            mean={c: float(t[c].mean()) for c in ("membership.class2.intercept", "membership.class2.z")},
            mean_se={
                c: float(t["se." + c].mean()) for c in ("membership.class2.intercept", "membership.class2.z")
            },
            ari_min=float(t.ari.min()),
            seconds_mean=float(t.seconds.mean()),
        )
        s = summary["membership"]
        truth = {
            "membership.class2.intercept": float(np.log(0.2 / 0.8)),
            "membership.class2.z": float(np.log(0.7 / 0.3) - np.log(0.2 / 0.8)),
        }
        lines += [
            "## 3. Membership covariate (P(class 2) = 0.2 for z = 0, 0.7 for z = 1)",
            "",
            "| coefficient | truth | mean estimate | mean SE | SE of the mean | within 2 SE |",
            "|---|---|---|---|---|---|",
        ]
        for c in truth:
            sd = float(t[c].std(ddof=1))
            lines.append(
                f"| {c} | {truth[c]:.4f} | {s['mean'][c]:.4f} | {s['mean_se'][c]:.4f} | "
                f"{sd / np.sqrt(len(t)):.4f} | {s['within_2se'][c]} of {len(t)} |"
            )
        lines += ["", f"ARI min {s['ari_min']:.3f}; {s['seconds_mean']:.0f} s per fit.", ""]
    if "senescence" in tables:
        t = tables["senescence"]
        summary["senescence"] = dict(
            replicates=len(t),
            recovered_min=float(t.recovered.min()),
            classify_min=float(t.classify_correct.min()),
            seconds_mean=float(t.seconds.mean()),
            classify_seconds_mean=float(t.classify_seconds.mean()),
        )
        lines += [
            "## 4. Senescence strategies (binomial counts, 300 plants; 200 new plants classified)",
            "",
            "| replicate | strategy recovered | new plants correct | T50 class 1 | T50 class 2 | fit s "
            "| classify s |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in t.itertuples():
            lines.append(
                f"| {r.replicate} | {r.recovered:.3f} | {r.classify_correct:.3f} | {r.T50_class1:.2f} | "
                f"{r.T50_class2:.2f} | {r.seconds:.0f} | {r.classify_seconds:.2f} |"
            )
        lines.append("")
    if "mixture" in tables:
        t = tables["mixture"]
        lines += [
            "## 5. Latent classes against the mixture and Gaussian laws on the same data",
            "",
            "| data | law | log-lik | df | BIC | ARI | s |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in t.itertuples():
            lines.append(
                f"| {r.data} | {r.law} | {r.loglik:.2f} | {r.df} | {r.bic:.2f} | {r.ari:.3f} | "
                f"{r.seconds:.1f} |"
            )
        summary["mixture"] = t.to_dict("records")
        lines.append("")
    (out / "latent_class.md").write_text("\n".join(lines) + "\n")
    (out / "latent_class.json").write_text(
        json.dumps(dict(meta=meta, summary=summary), indent=2, default=float)
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks latent_class")
    ap.add_argument("--part", choices=[*PARTS, "all", "report"], default="all")
    ap.add_argument("--replicates", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    parts = PARTS if args.part == "all" else (() if args.part == "report" else (args.part,))
    for part in parts:
        n = args.replicates if part in ("classes", "membership") else min(args.replicates, 5)
        pd.DataFrame(RUNNERS[part](n)).to_csv(args.out / f"latent_class_{part}.csv", index=False)
    print(report(args.out))


if __name__ == "__main__":
    main()
