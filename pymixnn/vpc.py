"""Visual predictive checks: observed statistics by time bin against their distribution over data
sets simulated from a fitted model (``Results.vpc`` / ``Results.plot_vpc``).

The statistic follows the observation model: the mean count (Poisson, negative binomial, ZIP, user
log-likelihoods), the proportion of successes (binomial: successes / trials; bernoulli), the
proportion of each category (ordinal), or the 10th, 50th and 90th percentiles (Gaussian; with
left-censored data, simulated values below the censoring limit are set to the limit, as the
observed ones are, and the fraction below the limit is added).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["vpc_table", "time_bins"]


def time_bins(t: np.ndarray, bins=None) -> np.ndarray:
    """Bin index of each time: one bin per distinct time when there are at most 12 of them,
    otherwise ``bins`` (default 8) bins at quantiles of the observed times, or the given edges."""
    t = np.asarray(t, float)
    distinct = np.unique(t)
    if bins is None and distinct.size <= 12:
        return np.searchsorted(distinct, t)
    if bins is None or np.isscalar(bins):
        k = 8 if bins is None else int(bins)
        if k < 1:
            raise ValueError(f"bins must be a positive number of bins, got {bins!r}")
        edges = np.unique(np.quantile(t, np.linspace(0, 1, k + 1)))
    else:
        edges = np.unique(np.asarray(bins, float))
    inner = edges[1:-1]
    return np.searchsorted(inner, t, side="right")


def _statistics(res, cens_limit: float | None):
    """(name, function of a (n_rep, n_obs_in_bin) array and the bin's rows) per statistic."""
    obs = res.observation
    kind = obs.statistic()
    if kind == "percentiles":
        out = [(f"p{q}", lambda v, rows, q=q: np.percentile(v, q, axis=-1)) for q in (10, 50, 90)]
        if cens_limit is not None:
            out.append(("below limit", lambda v, rows: (v <= cens_limit).mean(-1)))
        return out
    if obs.name == "ordinal":
        return [(f"P(y={level})", lambda v, rows, k=k: (v == k).mean(-1))
                for k, level in enumerate(obs.levels)]
    if obs.name == "binomial":
        trials = res.data.aux["trials"]
        return [("proportion", lambda v, rows: v.sum(-1) / trials[rows].sum())]
    if kind == "proportion":
        return [("proportion", lambda v, rows: v.mean(-1))]
    return [("mean", lambda v, rows: v.mean(-1))]


def vpc_table(res, *, n_sim: int = 200, bins=None, time: str | None = None,
              level_pi: float = 0.9, seed: int = 0) -> pd.DataFrame:
    d = res.data
    time = time or d.x_cols[-1]
    if time not in d.x_cols:
        raise ValueError(f"time={time!r} is not one of the x columns {d.x_cols}")
    if not 0 < level_pi < 1:
        raise ValueError(f"level_pi must be in (0, 1), got {level_pi!r}")
    t = d.frame[time].to_numpy(float)
    b = time_bins(t, bins)
    y = d.y
    sims = res._simulated(int(n_sim), seed=seed)
    cens_limit = None
    if "censored" in d.aux and d.aux["censored"].any():
        cens_limit = float(y[d.aux["censored"] > 0].min())
        sims = np.maximum(sims, cens_limit)
    lo_q, hi_q = 100 * (1 - level_pi) / 2, 100 * (1 + level_pi) / 2
    records = []
    for name, stat in _statistics(res, cens_limit):
        for k in np.unique(b):
            rows = np.flatnonzero(b == k)
            observed = float(stat(y[rows][None, :], rows)[0])
            simulated = stat(sims[:, rows], rows)
            records.append(dict(bin=int(k), time=float(t[rows].mean()), time_min=float(t[rows].min()),
                                time_max=float(t[rows].max()), n_obs=int(rows.size), statistic=name,
                                observed=observed, sim_median=float(np.median(simulated)),
                                sim_lower=float(np.percentile(simulated, lo_q)),
                                sim_upper=float(np.percentile(simulated, hi_q))))
    table = pd.DataFrame.from_records(records)
    table["outside"] = (table["observed"] < table["sim_lower"]) | (table["observed"] > table["sim_upper"])
    table.attrs.update(n_sim=int(n_sim), level_pi=level_pi, time=time, seed=seed)
    return table
