"""Goodness-of-fit figures and their tables: the saemix/Monolix panels (observations against
population and individual predictions, residuals against time and predictions), NPDE panels,
random effects against covariates, and the convergence trace of the population parameters.

Smoothers are statsmodels' lowess (as saemix's and xpose's); every figure is a PNG written by
:func:`pymixnn.results.plots.save_figure`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from pymixnn.results.plots import new_figure, save_figure
from pymixnn.results.scipy_stats import stats

__all__ = [
    "gof_figure",
    "npde_figure",
    "eta_covariate_table",
    "eta_covariates_figure",
    "trace_table",
    "trace_figure",
    "candidate_covariates",
    "individual_covariates",
]


def _smooth(ax, x: np.ndarray, y: np.ndarray) -> None:
    """A lowess line (frac 2/3, as R's lowess) through finite (x, y), when there are enough points."""
    from statsmodels.nonparametric.smoothers_lowess import lowess

    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() >= 10 and np.ptp(x[ok]) > 0:
        fit = lowess(y[ok], x[ok], frac=2 / 3, return_sorted=True)
        ax.plot(fit[:, 0], fit[:, 1], color="tab:red", lw=1.2)


def _scatter(ax, x, y, xlabel: str, ylabel: str, *, identity: bool = False, zero: bool = False) -> None:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ax.scatter(x, y, s=8, alpha=0.6, color="C0", edgecolors="none")
    if identity:
        lo = np.nanmin(np.concatenate([x, y]))
        hi = np.nanmax(np.concatenate([x, y]))
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
    if zero:
        for level, style in ((0, "-"), (-1.96, ":"), (1.96, ":")):
            ax.axhline(level, color="black", lw=0.8, ls=style)
    _smooth(ax, x, y)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)


def _qq(ax, values: np.ndarray, label: str) -> None:
    v = np.sort(np.asarray(values, float)[np.isfinite(values)])
    q = stats.norm.ppf((np.arange(1, v.size + 1) - 0.5) / v.size)
    ax.scatter(q, v, s=8, alpha=0.6, color="C0", edgecolors="none")
    ax.plot(q, q, color="black", lw=0.8)
    ax.set_xlabel("N(0, 1) quantiles", fontsize=8)
    ax.set_ylabel(f"{label} quantiles", fontsize=8)
    ax.set_title(f"QQ plot of {label}", fontsize=9)
    ax.tick_params(labelsize=7)


def _hist(ax, values: np.ndarray, label: str) -> None:
    v = np.asarray(values, float)[np.isfinite(values)]
    ax.hist(v, bins=max(10, int(np.sqrt(v.size))), density=True, color="C0", alpha=0.5)
    grid = np.linspace(-4, 4, 200)
    ax.plot(grid, stats.norm.pdf(grid), color="black", lw=1)
    ax.set_xlabel(label, fontsize=8)
    ax.set_ylabel("density", fontsize=8)
    ax.set_title(f"Distribution of {label}", fontsize=9)
    ax.tick_params(labelsize=7)


def gof_figure(res, resid: pd.DataFrame, checks: pd.DataFrame | None, time: str, label: str = "NPDE"):
    """Eight panels: observations vs PRED and vs IPRED (identity lines), IWRES vs time and vs
    IPRED (saemix's four), then ``label`` (the ``npde`` column of ``checks``: NPDE, or CWRES when
    no simulation is wanted) vs time and vs PRED, its QQ plot and its histogram with the N(0, 1)
    density (of IWRES when ``checks`` is None); lowess lines in red."""
    d = res.data
    fig = new_figure(figsize=(13.0, 6.6))
    ax = fig.subplots(2, 4).flat
    y = resid[d.y_col].to_numpy(float)
    _scatter(ax[0], resid["pred"], y, "population prediction (PRED)", "observation", identity=True)
    ax[0].set_title("Observations vs PRED", fontsize=9)
    _scatter(ax[1], resid["ipred"], y, "individual prediction (IPRED)", "observation", identity=True)
    ax[1].set_title("Observations vs IPRED", fontsize=9)
    t_label = d.time_label(time)
    _scatter(ax[2], resid[time], resid["iwres"], t_label, "IWRES", zero=True)
    ax[2].set_title("IWRES vs time", fontsize=9)
    _scatter(ax[3], resid["ipred"], resid["iwres"], "IPRED", "IWRES", zero=True)
    ax[3].set_title("IWRES vs IPRED", fontsize=9)
    if checks is not None:
        v = checks["npde"].to_numpy(float)
        _scatter(ax[4], checks[time], v, t_label, label, zero=True)
        ax[4].set_title(f"{label} vs time", fontsize=9)
        _scatter(ax[5], resid["pred"], v, "PRED", label, zero=True)
        ax[5].set_title(f"{label} vs PRED", fontsize=9)
    else:
        ax[4].axis("off")
        ax[5].axis("off")
        v, label = resid["iwres"].to_numpy(float), "IWRES"
    _qq(ax[6], v, label)
    _hist(ax[7], v, label)
    fig.suptitle(f"Goodness of fit: {res.observation.describe(res.model)}", fontsize=10)
    fig.tight_layout()
    return fig


def npde_figure(res, npde: pd.DataFrame, time: str):
    """The npde package's default plot: QQ plot and histogram of NPDE, NPDE vs time and vs PRED,
    with the tests of mean 0, variance 1 and normality in the title."""
    fig = new_figure(figsize=(9.0, 7.0))
    ax = fig.subplots(2, 2).flat
    v = npde["npde"].to_numpy(float)
    _qq(ax[0], v, "NPDE")
    _hist(ax[1], v, "NPDE")
    _scatter(ax[2], npde[time], v, res.data.time_label(time), "NPDE", zero=True)
    ax[2].set_title("NPDE vs time", fontsize=9)
    _scatter(ax[3], npde["pred"], v, "population prediction (PRED)", "NPDE", zero=True)
    ax[3].set_title("NPDE vs PRED", fontsize=9)
    tests = npde.attrs.get("tests")  # {test: {"statistic", "p_value", ...}} (npde.npde_tests)
    if isinstance(tests, dict) and tests:
        text = ", ".join(f"{k}: p={float(v['p_value']):.3g}" for k, v in tests.items())
        fig.suptitle(f"NPDE ({npde.attrs.get('n_sim')} simulations). {text}", fontsize=9)
    fig.tight_layout()
    return fig


def individual_covariates(res, data: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per fitted individual (indexed by id, in the order of ``res.random_effects()``)
    with the columns of ``data`` (default: the fitted data, which holds only the columns the fit
    used) that are constant within every individual, other than the id, x and y columns. A
    ``data`` without the id column or without some fitted individual raises a ValueError."""
    d = res.data
    frame = d.frame if data is None else data
    if d.id_col not in frame.columns:
        raise ValueError(f"data has no id column {d.id_col!r}")
    missing = pd.Index(d.ids).difference(pd.Index(pd.unique(frame[d.id_col])))
    if len(missing):
        raise ValueError(f"data has no rows for the fitted individual(s) {list(missing[:5])}")
    taken = {d.id_col, d.y_col, *d.x_cols, *d.aux_cols.values()}
    per_id = frame.groupby(d.id_col, sort=False)
    constant = [
        c for c in frame.columns if c not in taken and bool((per_id[c].nunique(dropna=False) <= 1).all())
    ]
    return per_id[constant].first().loc[list(d.ids)]


def candidate_covariates(
    res, covariates: list[str] | None = None, data: pd.DataFrame | None = None
) -> list[str]:
    """The given ``covariates`` (checked: columns of ``data``, or of the fitted data, constant
    within individuals), or every such column: the candidates of a covariate model."""
    covs = individual_covariates(res, data)
    if covariates is None:
        return list(covs.columns)
    frame = res.data.frame if data is None else data
    missing = [c for c in covariates if c not in frame.columns]
    if missing:
        where = "data" if data is not None else "the fitted data (pass data= with the candidate columns)"
        raise ValueError(f"covariates {missing} are not columns of {where}")
    varying = [c for c in covariates if c not in covs.columns]
    if varying:
        raise ValueError(f"covariates {varying} vary within individuals (or are id, x or y columns)")
    return list(covariates)


def eta_covariate_table(
    res, covariates: list[str] | None = None, kind: str = "map", data: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per random effect and candidate covariate: the test of association of the
    individual random effects (``kind``: "map" or "mean") with the covariate: Spearman's rank
    correlation for a numeric covariate with more than 5 values, Kruskal-Wallis otherwise."""
    eta = res.random_effects(kind=kind)
    names = candidate_covariates(res, covariates, data)
    covs = individual_covariates(res, data)
    covs.index = eta.index
    rows = []
    for c in names:
        x = covs[c]
        numeric = pd.api.types.is_numeric_dtype(x) and x.nunique() > 5
        for p in eta.columns:
            e = eta[p].to_numpy(float)
            if numeric:
                r, pv = stats.spearmanr(x.to_numpy(float), e, nan_policy="omit")
                test, stat = "spearman", float(r)
            else:
                groups = [e[(x == level).to_numpy()] for level in pd.unique(x.dropna())]
                groups = [g for g in groups if g.size]
                if len(groups) < 2:
                    continue
                stat, pv = stats.kruskal(*groups)
                test, stat = "kruskal", float(stat)
            rows.append(dict(parameter=p, covariate=c, test=test, statistic=stat, p_value=float(pv)))
    return pd.DataFrame(rows, columns=["parameter", "covariate", "test", "statistic", "p_value"])


def eta_covariates_figure(res, covariates: list[str], kind: str = "map", data: pd.DataFrame | None = None):
    """A grid of random effects (rows) against covariates (columns): scatter and lowess for a
    numeric covariate, boxes for a categorical one; each panel titled with its test's p-value."""
    eta = res.random_effects(kind=kind)
    covs = individual_covariates(res, data)
    covs.index = eta.index
    table = eta_covariate_table(res, covariates, kind, data).set_index(["parameter", "covariate"])
    nrow, ncol = eta.shape[1], len(covariates)
    fig = new_figure(figsize=(max(3.0 * ncol, 4.0), 2.6 * nrow + 0.5))
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for i, p in enumerate(eta.columns):
        for j, c in enumerate(covariates):
            ax, x, e = axes[i, j], covs[c], eta[p].to_numpy(float)
            if pd.api.types.is_numeric_dtype(x) and x.nunique() > 5:
                _scatter(ax, x.to_numpy(float), e, c, f"eta {p}")
                ax.axhline(0, color="black", lw=0.8)
            else:
                levels = list(pd.unique(x.dropna()))
                ax.boxplot([e[(x == lv).to_numpy()] for lv in levels])
                ax.set_xticks(range(1, len(levels) + 1), [str(lv) for lv in levels])
                ax.set_xlabel(c, fontsize=8)
                ax.set_ylabel(f"eta {p}", fontsize=8)
                ax.tick_params(labelsize=7)
            if (p, c) in table.index:
                row = table.loc[(p, c)]
                ax.set_title(f"{row['test']} p={row['p_value']:.3g}", fontsize=8)
    fig.suptitle(f"Random effects ({kind}) against covariates", fontsize=10)
    fig.tight_layout()
    return fig


def trace_table(res) -> pd.DataFrame:
    """The population parameters along the fit: one row per recorded point (``stage``: "start",
    "svi" every 50 steps, "presample" after each round on a subsample (the Newton gear at large
    N), "refine" after each refinement round, a law stage's points labelled with the law, then
    "final"), ``step`` (SVI step or refinement round) and one column per reported
    parameter (saemix names, natural scale)."""
    rec = getattr(res.estimation, "trace", None)
    if not rec:
        raise ValueError(
            "this fit carries no parameter trace (a fit by another program, or saved before "
            "pymixnn recorded it): refit it to plot the convergence trace"
        )
    values = np.asarray(rec["values"], dtype=np.float64)
    out = pd.DataFrame(values, columns=list(rec["names"]))
    out.insert(0, "step", np.asarray(rec["step"], dtype=np.int64))
    out.insert(0, "stage", list(rec["stage"]))
    return out


def trace_figure(res, table: pd.DataFrame):
    """One panel per population parameter: its value along the SVI steps, then each refinement
    round (shaded), the estimate (dashed) and its 95% confidence interval (dotted); and the
    ELBO per observation along the SVI steps."""
    names = [c for c in table.columns if c not in ("stage", "step")]
    svi = (table["stage"].str.startswith("svi") | (table["stage"] == "start")).to_numpy()
    steps = table["step"].to_numpy(float)
    last = float(steps[svi].max()) if svi.any() else 0.0
    width = max(last / 10, 1.0)
    x = steps.copy()
    refine = ~svi
    x[refine] = last + width * np.arange(1, refine.sum() + 1)
    n = len(names) + 1
    ncol = min(4, n)
    nrow = math.ceil(n / ncol)
    fig = new_figure(figsize=(3.3 * ncol, 2.5 * nrow + 0.5))
    axes = fig.subplots(nrow, ncol, squeeze=False).flat
    ci = res.conf_int() if getattr(res, "external", None) is None else None
    for ax, name in zip(axes, names):
        v = table[name].to_numpy(float)
        ax.plot(x[svi], v[svi], color="C0", lw=1)
        ax.plot(x[refine], v[refine], "o-", color="C1", ms=3, lw=1)
        if refine.any():
            ax.axvspan(last, x.max() + width / 2, color="0.9", zorder=0)
        ax.axhline(v[-1], color="black", lw=0.8, ls="--")
        if ci is not None and name in ci.index:
            for bound in ci.loc[name].to_numpy(float):
                if np.isfinite(bound):
                    ax.axhline(bound, color="black", lw=0.6, ls=":")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("SVI step (shaded: refinement rounds)", fontsize=7)
        ax.tick_params(labelsize=7)
    ax = axes[len(names)]
    elbo = np.asarray(res.estimation.elbo_trace, float)
    if elbo.size:
        ax.plot(np.arange(1, elbo.size + 1), elbo, color="0.4", lw=0.5)
        ax.set_ylim(np.percentile(elbo, 2), elbo.max() + 0.1 * abs(elbo.max()))
    ax.set_title("ELBO per observation" if elbo.size else "ELBO: no SVI (gear 'newton')", fontsize=9)
    ax.set_xlabel("SVI step", fontsize=7)
    ax.tick_params(labelsize=7)
    for extra in list(axes)[n:]:
        extra.axis("off")
    fig.suptitle("Convergence of the population parameters", fontsize=10)
    fig.tight_layout()
    return fig


def write(fig, path: str | Path) -> Path:
    """Save a figure of this module (PNG)."""
    return save_figure(fig, path)
