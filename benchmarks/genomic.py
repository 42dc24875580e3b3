"""Genomic covariates: scale, recovery of causal markers, real grav2 data, against the two-step approach.

Cases (one torch thread per fit unless said otherwise; seeds fixed):

* scale: 250 genotypes x 3 water scenarios = 750 logistic growth curves, 21 daily times, 60,000
  simulated markers, horseshoe marker effects on A, B and C; the full fit (SVI, refinement, SEs,
  log-likelihood) and every output (marker effects, top markers, Manhattan PNGs, variance
  explained, curves for 25 new genotypes). Run in a fresh process: wall time and peak memory
  (ru_maxrss) of that process.
* recovery: real marker matrices (grav2: 162 RILs x 234 markers; BGLR wheat: 599 lines x 1,279
  markers), 10 simulated causal markers per parameter, 3 scenarios per genotype; 20% of the
  genotypes held out. Causal markers found in the top 20 (horseshoe) and the correlation of the
  held-out genotypes' predicted genetic values with the truth: one-step (horseshoe and ridge)
  against the two-step baseline.
* grav2: the real root-angle curves (162 RILs x 241 times) with an asymptotic NLME and marker
  effects on Asym and lrc; top markers; 5-fold cross-validated prediction of held-out RIL curves
  from their markers, one-step against two-step (and the population curve as a floor).

The two-step baseline (``two_step``): per-genotype NLME estimates (the individual MAP random
effects of a pymixnn fit without markers, averaged per genotype), then ridge regression on the
same standardized markers with its penalty chosen by leave-one-out cross-validation (GBLUP with
the variance ratio tuned by CV).

    python -m benchmarks genomic                    # everything (about 15 min)
    python -m benchmarks genomic --only scale       # one case (scale, recovery, grav2)

Writes genomic.csv, genomic.json, genomic.md and PNGs (Manhattan plots, grav2 predictions) to
--out (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["main", "two_step", "RidgeLOO", "recovery", "grav2_cv"]

ROOT = Path(__file__).resolve().parents[1]


# ---- the two-step baseline ---------------------------------------------------------------------
class RidgeLOO:
    """Ridge regression of genotype values on standardized markers, penalty by leave-one-out CV
    (closed form through the eigendecomposition of G G')."""

    def __init__(self, grid: np.ndarray | None = None):
        self.grid = np.logspace(-3, 5, 81) if grid is None else grid

    def fit(self, G: np.ndarray, y: np.ndarray) -> RidgeLOO:
        G = np.asarray(G, dtype=np.float64)
        self.G, self.mean = G, float(np.mean(y))
        yc = np.asarray(y, dtype=np.float64) - self.mean
        s, U = np.linalg.eigh(G @ G.T)
        s = np.clip(s, 0, None)
        Uy = U.T @ yc
        best = None
        for lam in self.grid * G.shape[1] / 100.0:
            h = s / (s + lam)
            fitted = U @ (h * Uy)
            hdiag = (U**2) @ h
            loo = np.mean(((yc - fitted) / (1 - hdiag)) ** 2)
            if best is None or loo < best[0]:
                best = (loo, lam)
        self.lam = best[1]
        self.coef_dual = U @ (Uy / (s + self.lam))
        return self

    def predict(self, G_new: np.ndarray) -> np.ndarray:
        return self.mean + np.asarray(G_new, dtype=np.float64) @ (self.G.T @ self.coef_dual)


def two_step(
    df: pd.DataFrame,
    model,
    markers,
    *,
    id: str,
    x,
    y: str,
    genotype: str,
    params: list[str],
    covariates=None,
    seed: int = 1,
    **fit_kwargs,
) -> dict:
    """Step 1: pymixnn fit without markers; per-genotype mean of the individuals' MAP random
    effects (transformed scale). Step 2: ridge (LOO-tuned) of those on the standardized markers.
    Returns the step-1 fit, the genotype estimates, the marker matrix and a ``predict(raw)``
    giving predicted genetic values (DataFrame genotype x params)."""
    import warnings

    import pymixnn
    from pymixnn.markers import prepare_markers, read_markers

    res = pymixnn.fit(
        df, model, id=id, x=x, y=y, covariates=covariates, seed=seed, progress=False, **fit_kwargs
    )
    eta = res.random_effects("map")
    geno_of = df.groupby(id, sort=False)[genotype].first().astype(str)
    est = eta.groupby(geno_of.loc[eta.index].to_numpy()).mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mm = prepare_markers(markers, list(est.index))
    rows = mm.rows(list(est.index))
    fits = {p: RidgeLOO().fit(mm.values[rows], est[p].to_numpy()) for p in params}

    def predict(raw) -> pd.DataFrame:
        table = read_markers(raw)
        G = mm.standardize(table)
        return pd.DataFrame({p: fits[p].predict(G) for p in params}, index=table.index.astype(str))

    return dict(fit=res, estimates=est, matrix=mm, ridge=fits, predict=predict)


# ---- recovery on real marker matrices -------------------------------------------------------
def _load_markers(name: str) -> pd.DataFrame:
    from pymixnn import datasets

    return datasets.load_markers(name)


def recovery(
    name: str, *, seed: int = 1, priors=("horseshoe", "ridge"), holdout: float = 0.2, n_scenarios: int = 3
) -> tuple[list[dict], dict]:
    """Simulate on a real marker matrix, hold out 20% of genotypes, fit one-step (each prior)
    and two-step; rows per method x parameter."""
    import pymixnn
    from pymixnn.simulate import simulate_genomic

    markers = _load_markers(name)
    markers.index = markers.index.astype(str)
    df = simulate_genomic(markers, n_scenarios=n_scenarios, seed=seed)
    truth = df.attrs["truth"]
    genos = np.asarray(markers.index)
    rng = np.random.default_rng(seed + 100)
    held = set(rng.choice(genos, size=int(round(holdout * len(genos))), replace=False))
    train = df[~df["genotype"].isin(held)].reset_index(drop=True)
    held_list = [g for g in genos if g in held]
    gen_truth = truth["genetic"].loc[held_list]
    params = ["A", "B", "C"]
    covariates = {"A": ["scenario"]} if n_scenarios > 1 else None
    rows, fits = [], {}
    for prior in priors:
        t0 = time.perf_counter()
        res = pymixnn.fit(
            train,
            "logistic",
            id="id",
            x="t",
            y="y",
            covariates=covariates,
            genotype="genotype",
            genomic=pymixnn.Genomic(markers, params=params, prior=prior),
            seed=seed,
            progress=False,
        )
        sec = time.perf_counter() - t0
        fits[prior] = res
        pred = res.genotype_parameters(
            markers.loc[held_list], scenario=truth["levels"][0] if n_scenarios > 1 else None
        )
        top = res.top_markers(20)
        for p in params:
            value = pred[pred["parameter"] == p].set_index("genotype")["value"].loc[held_list]
            target = gen_truth[p] + gen_truth[f"u_{p}"]
            hits = len(set(top[top["parameter"] == p]["marker"]) & set(truth["causal"][p]))
            rows.append(
                dict(
                    case=f"recovery_{name}",
                    method=f"one-step {prior}",
                    parameter=p,
                    causal_in_top20=hits,
                    corr_heldout=float(np.corrcoef(value, target)[0, 1]),
                    n_genotypes=len(genos),
                    n_markers=markers.shape[1],
                    n_heldout=len(held_list),
                    seconds=sec,
                )
            )
    t0 = time.perf_counter()
    ts = two_step(
        train,
        "logistic",
        markers,
        id="id",
        x="t",
        y="y",
        genotype="genotype",
        params=params,
        covariates=covariates,
        seed=seed,
    )
    sec = time.perf_counter() - t0
    pred = ts["predict"](markers.loc[held_list])
    for p in params:
        target = gen_truth[p] + gen_truth[f"u_{p}"]
        rows.append(
            dict(
                case=f"recovery_{name}",
                method="two-step ridge",
                parameter=p,
                causal_in_top20=np.nan,
                corr_heldout=float(np.corrcoef(pred[p].loc[held_list], target)[0, 1]),
                n_genotypes=len(genos),
                n_markers=markers.shape[1],
                n_heldout=len(held_list),
                seconds=sec,
            )
        )
    return rows, fits


# ---- grav2: real curves ------------------------------------------------------------------------
def _grav2_model():
    import pymixnn

    return pymixnn.Model.named("asymptotic")


def grav2_cv(
    *, folds: int = 5, seed: int = 1, priors=("horseshoe", "ridge"), thin: int = 4, out: Path | None = None
) -> tuple[list[dict], dict]:
    """Asymptotic NLME of root angle with marker effects on Asym and lrc; K-fold CV over RILs:
    predicted curves of held-out RILs from their markers (one-step with each prior, two-step,
    population). The one-step 90% band is a prediction interval for a new plant of the RIL
    (genetic-value uncertainty and the individual random effect; not the residual error)."""
    import pymixnn
    from pymixnn import datasets

    pheno = datasets.load("grav2")
    markers = datasets.load_markers("grav2")
    markers.index = markers.index.astype(str)
    gmap = datasets.load_map("grav2")
    pheno = pheno.assign(id=pheno["id"].astype(str), genotype=pheno["id"].astype(str))
    # every 4th time point (8 min apart) for fitting: consecutive 2-min angles are strongly
    # autocorrelated, so the full series adds little information and 4x the cost
    times = np.sort(pheno["time_h"].unique())
    fit_df = pheno[pheno["time_h"].isin(times[::thin])].reset_index(drop=True)
    params = ["Asym", "lrc"]
    kw = dict(id="id", x="time_h", y="angle_deg")
    rows, extra = [], {"full_fits": {}, "full_seconds": {}}
    for prior in priors:
        t0 = time.perf_counter()
        extra["full_fits"][prior] = pymixnn.fit(
            fit_df,
            _grav2_model(),
            **kw,
            genotype="genotype",
            genomic=pymixnn.Genomic(markers, params=params, prior=prior, map=gmap),
            seed=seed,
            progress=False,
        )
        extra["full_seconds"][prior] = time.perf_counter() - t0
    ids = np.asarray(sorted(pheno["id"].unique(), key=lambda s: int(s) if s.isdigit() else s))
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(ids, rng.permutation(np.arange(len(ids)) % folds)))
    preds = []
    for k in range(folds):
        held = [i for i in ids if fold_of[i] == k]
        train = fit_df[~fit_df["id"].isin(held)].reset_index(drop=True)
        frame = pd.DataFrame(
            {"id": np.repeat(held, len(times)), "time_h": np.tile(times, len(held)), "fold": k}
        )
        for prior in priors:
            one = pymixnn.fit(
                train,
                _grav2_model(),
                **kw,
                genotype="genotype",
                genomic=pymixnn.Genomic(markers, params=params, prior=prior),
                seed=seed,
                progress=False,
            )
            curves = one.predict_genotypes(
                markers.loc[held], x_grid=times, n_draws=300, band="individual", seed=seed
            )
            frame[f"one_step_{prior}"] = curves["pred"].to_numpy()
            frame[f"lower_{prior}"] = curves["lower"].to_numpy()
            frame[f"upper_{prior}"] = curves["upper"].to_numpy()
        ts = two_step(train, _grav2_model(), markers, **kw, genotype="genotype", params=params, seed=seed)
        gv = ts["predict"](markers.loc[held])
        base = ts["fit"]
        mu = base.estimation.mu
        phi = np.tile(mu, (len(held), 1))
        for p in params:
            phi[:, base.model.parameters.index(p)] += gv[p].loc[held].to_numpy()
        fm = base.evaluator
        frame["two_step"] = fm.evaluate(
            np.repeat(fm.psi(phi), len(times), axis=0), np.tile(times[:, None], (len(held), 1))
        )
        pop = fm.evaluate(np.repeat(fm.psi(mu[None]), len(times), axis=0), times[:, None])
        frame["population"] = np.tile(pop, len(held))
        preds.append(frame)
    pred = pd.concat(preds, ignore_index=True).merge(
        pheno[["id", "time_h", "angle_deg"]], on=["id", "time_h"], how="inner"
    )
    extra["predictions"] = pred
    per_ril = pred.groupby("id").mean(numeric_only=True)
    methods = [f"one_step_{p}" for p in priors] + ["two_step", "population"]
    for method in methods:
        err = pred[method] - pred["angle_deg"]
        row = dict(
            case="grav2_cv",
            method=method.replace("_", "-", 1).replace("_", " "),
            parameter="curve",
            rmse=float(np.sqrt(np.mean(err**2))),
            corr_ril_mean=float(np.corrcoef(per_ril[method], per_ril["angle_deg"])[0, 1])
            if method != "population"
            else np.nan,
            folds=folds,
            n_genotypes=len(ids),
            n_markers=markers.shape[1],
        )
        if method.startswith("one_step"):
            prior = method[len("one_step_") :]
            row["coverage_90"] = float(
                np.mean(
                    (pred["angle_deg"] >= pred[f"lower_{prior}"])
                    & (pred["angle_deg"] <= pred[f"upper_{prior}"])
                )
            )
        rows.append(row)
    if out is not None:
        _plot_grav2(pred, out / "genomic_grav2_cv.png", priors[0])
    return rows, extra


def _plot_grav2(pred: pd.DataFrame, path: Path, prior: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = list(pd.unique(pred["id"]))[:12]
    fig, axes = plt.subplots(3, 4, figsize=(12, 7.5), sharex=True, sharey=True)
    for ax, i in zip(axes.ravel(), ids):
        d = pred[pred["id"] == i]
        ax.plot(d["time_h"], d["angle_deg"], ".", ms=2, color="0.5", label="observed")
        ax.fill_between(d["time_h"], d[f"lower_{prior}"], d[f"upper_{prior}"], color="tab:blue", alpha=0.2)
        ax.plot(
            d["time_h"],
            d[f"one_step_{prior}"],
            color="tab:blue",
            label=f"one-step {prior} (90% band: a new plant)",
        )
        ax.plot(d["time_h"], d["two_step"], color="tab:orange", ls="--", label="two-step")
        ax.plot(d["time_h"], d["population"], color="k", ls=":", label="population")
        ax.set_title(f"RIL {i} (held out)", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("time (h)")
    for ax in axes[:, 0]:
        ax.set_ylabel("root angle (deg)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---- scale ------------------------------------------------------------------------------------
def scale_worker(out: Path, n_genotypes: int = 250, n_markers: int = 60_000, seed: int = 1) -> dict:
    """The scale case in this process (called in a fresh one by ``main``)."""
    import torch

    import pymixnn
    from pymixnn.simulate import simulate_genomic, simulate_markers

    torch.set_num_threads(1)
    t_all = time.perf_counter()
    markers = simulate_markers(n_genotypes + 25, n_markers, seed=seed)
    new = markers.iloc[n_genotypes:]
    markers = markers.iloc[:n_genotypes]
    df = simulate_genomic(markers, n_scenarios=3, seed=seed)
    truth = df.attrs["truth"]
    t_sim = time.perf_counter() - t_all
    t0 = time.perf_counter()
    res = pymixnn.fit(
        df,
        "logistic",
        id="id",
        x="t",
        y="y",
        covariates={"A": ["scenario"]},
        genotype="genotype",
        genomic=pymixnn.Genomic(markers, params=["A", "B", "C"], prior="horseshoe"),
        seed=seed,
        progress=False,
        threads=1,
    )
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    eff = res.marker_effects
    top = res.top_markers(20)
    pngs = res.plot_manhattan(out)
    var = res.variance_explained
    curves = res.predict_genotypes(new, x_grid=np.arange(21.0), scenario="WW", n_draws=500, band="mean")
    t_out = time.perf_counter() - t0
    hits = {
        p: len(set(top[top["parameter"] == p]["marker"]) & set(truth["causal"][p])) for p in ["A", "B", "C"]
    }
    return dict(
        case="scale",
        n_individuals=int(df["id"].nunique()),
        n_genotypes=n_genotypes,
        n_markers=n_markers,
        n_obs=len(df),
        seconds_simulate=t_sim,
        seconds_fit=t_fit,
        seconds_outputs=t_out,
        seconds_total=time.perf_counter() - t_all,
        seconds_by_stage=res.info["seconds_by_stage"],
        svi_steps=int(res.info["steps"]),
        peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        threads=1,
        marker_effect_rows=len(eff),
        curve_rows=len(curves),
        causal_in_top20=hits,
        variance_explained=var.reset_index().to_dict("records"),
        manhattan=[str(p) for p in pngs],
    )


# ---- driver -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks genomic")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--only", choices=["scale", "recovery", "grav2"], action="append")
    ap.add_argument("--scale-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--markers", type=int, default=60_000)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.scale_worker:
        print(json.dumps(scale_worker(args.out, n_markers=args.markers), default=float))
        return
    only = set(args.only or ["scale", "recovery", "grav2"])
    import torch

    torch.set_num_threads(1)
    record: dict = dict(
        date=dt.datetime.now(dt.timezone.utc).isoformat(),
        machine=platform.machine(),
        cpus=__import__("os").cpu_count(),
        threads=1,
        versions={k: version(k) for k in ("torch", "pyro-ppl", "numpy", "pymixnn")},
    )
    rows: list[dict] = []
    if "scale" in only:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks",
                "genomic",
                "--scale-worker",
                "--out",
                str(args.out),
                "--markers",
                str(args.markers),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        scale = json.loads(proc.stdout.strip().splitlines()[-1])
        record["scale"] = scale
        rows.append(
            dict(
                case="scale",
                method="one-step horseshoe",
                parameter="A,B,C",
                seconds=scale["seconds_total"],
                peak_rss_gb=scale["peak_rss_gb"],
                n_genotypes=scale["n_genotypes"],
                n_markers=scale["n_markers"],
            )
        )
        print(
            f"scale: {scale['seconds_total']:.1f} s total ({scale['seconds_fit']:.1f} s fit), "
            f"peak {scale['peak_rss_gb']:.2f} GB; causal in top 20 {scale['causal_in_top20']}"
        )
    if "recovery" in only:
        for name in ("grav2", "wheat"):
            r, fits = recovery(name)
            rows.extend(r)
            fits["horseshoe"].plot_manhattan(args.out / f"genomic_manhattan_{name}_A.png", "A")
            for x in r:
                print(x)
    if "grav2" in only:
        r, extra = grav2_cv(out=args.out)
        rows.extend(r)
        record["grav2"] = {}
        for prior, full in extra["full_fits"].items():
            record["grav2"][prior] = dict(
                seconds=extra["full_seconds"][prior],
                loglik=full.loglik,
                top_markers=full.top_markers(10).to_dict("records"),
                variance_explained=full.variance_explained.reset_index().to_dict("records"),
                params=full.params["estimate"].to_dict(),
            )
            full.plot_manhattan(args.out / f"genomic_manhattan_grav2_{prior}_Asym.png", "Asym")
        for x in r:
            print(x)
    table = pd.DataFrame(rows)
    record["rows"] = table.to_dict("records")
    prev = args.out / "genomic.json"
    if prev.exists() and args.only:
        old = json.loads(prev.read_text())
        kept = [r for r in old.get("rows", []) if not any(str(r["case"]).startswith(c) for c in only)]
        record = {**old, **record, "rows": kept + record["rows"]}
        table = pd.DataFrame(record["rows"])
    table.to_csv(args.out / "genomic.csv", index=False)
    (args.out / "genomic.json").write_text(json.dumps(record, indent=2, default=float))
    (args.out / "genomic.md").write_text(_markdown(table, record))
    print((args.out / "genomic.md").read_text())


def _markdown(table: pd.DataFrame, record: dict) -> str:
    lines = [
        "# Genomic covariates benchmark",
        "",
        f"{record['date']}, {record['cpus']} CPUs, 1 torch thread per fit, versions {record['versions']}",
        "",
    ]
    cols = [
        c
        for c in [
            "case",
            "method",
            "parameter",
            "causal_in_top20",
            "corr_heldout",
            "rmse",
            "corr_ril_mean",
            "coverage_90",
            "seconds",
            "peak_rss_gb",
        ]
        if c in table
    ]
    show = table[cols].copy()
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for _, r in show.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if isinstance(v, float):
                cells.append("" if np.isnan(v) else f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    if "scale" in record:
        s = record["scale"]
        lines += [
            "",
            f"Scale: {s['n_individuals']} individuals ({s['n_genotypes']} genotypes x 3 "
            f"scenarios), {s['n_obs']} observations, {s['n_markers']} markers: fit "
            f"{s['seconds_fit']:.1f} s, outputs {s['seconds_outputs']:.1f} s, total with "
            f"simulation {s['seconds_total']:.1f} s; peak memory {s['peak_rss_gb']:.2f} GB; "
            f"causal markers in the top 20: {s['causal_in_top20']}.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
