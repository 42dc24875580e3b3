"""Visual predictive checks: observed statistics by time bin against their distribution over data
sets simulated from a fitted model (``Results.vpc`` / ``Results.plot_vpc``).

The statistic follows the observation model: the mean count (Poisson, negative binomial, ZIP, user
log-likelihoods), the proportion of successes (binomial: successes / trials; bernoulli), the
proportion of each category (ordinal), or the 10th, 50th and 90th percentiles (Gaussian; with
left-censored data, simulated values below the censoring limit are set to the limit, as the
observed ones are, and the fraction below the limit is added).

With ``prediction_corrected=True`` (a pcVPC, Bergstrand et al. 2011, AAPS J 13:143) each
observed and simulated value is normalised by the population prediction of its row before the
statistics are taken: ``pc = lb + (y - lb) * (PRED_bin - lb) / (PRED - lb)`` with ``PRED_bin`` the
median PRED of the row's bin and ``lb`` the ``lower_bound`` (0 by default; Bergstrand's
``pcY = y * PRED_bin / PRED``). It removes the spread that doses and covariates put into a bin,
so data with several doses can be checked in one panel. Rows whose PRED is at or below the bound
(e.g. a concentration predicted 0 at the dosing time) cannot be corrected: they are left out,
counted in ``attrs["pc_excluded"]`` and a warning names how many.

Event data with several endpoints (DVID) are checked endpoint by endpoint, as ``vpc(...,
stratify = DVID)`` in R's vpc package: each endpoint's observations are binned by their own times
and summarised by the statistic of their own family (a concentration by its percentiles, a count
by its mean), and the table has a first column ``endpoint`` (the endpoint's name). With a single
endpoint, or data without events, the table has no ``endpoint`` column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["vpc_table", "time_bins", "time_column", "prediction_correct"]


def time_column(data, model, time: str | None = None, *, caller: str = "vpc()", others: bool = True) -> str:
    """The data column that is time, for a VPC or a plot over time.

    ``time`` given: an x column (or, with ``others``, another numeric column of the fitted data,
    e.g. a covariate to bin by). Not given: the only x column; else the x column the model declares
    as time (``Model.time``: a position in x or a column name); else a one-line ValueError asking
    for ``time=``: never a silent guess.
    """
    x_cols = list(data.x_cols)
    if time is not None:
        extra = [
            c
            for c in data.frame.columns
            if others
            and c not in x_cols
            and c not in (data.id_col, data.y_col)
            and c not in data.aux_cols.values()
            and pd.api.types.is_numeric_dtype(data.frame[c])
        ]
        if time not in x_cols and time not in extra:
            raise ValueError(
                f"time={time!r} is not a column of the fit: choose one of the x columns "
                f"{x_cols}" + (f" or the data columns {extra}" if extra else "")
            )
        return time
    if len(x_cols) == 1:
        return x_cols[0]
    declared = getattr(model, "time", None)
    if isinstance(declared, str) and declared in x_cols:
        return declared
    if declared is not None and not isinstance(declared, str) and declared < len(x_cols):
        return x_cols[declared]
    raise ValueError(f"x has several columns {x_cols}: pass time='<column>' to {caller}")


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


def _statistics(family, data, cens_limit: float | None):
    """(name, function of a (n_rep, n_obs_in_bin) array and the bin's rows in the data) per
    statistic of the observation ``family``."""
    kind = family.statistic()
    if kind == "percentiles":
        out = [(f"p{q}", lambda v, rows, q=q: np.percentile(v, q, axis=-1)) for q in (10, 50, 90)]
        if cens_limit is not None:
            out.append(("below limit", lambda v, rows: (v <= cens_limit).mean(-1)))
        return out
    if family.name == "ordinal":
        return [
            (f"P(y={level})", lambda v, rows, k=k: (v == k).mean(-1)) for k, level in enumerate(family.levels)
        ]
    if family.name == "binomial":
        trials = data.aux["trials"]
        return [("proportion", lambda v, rows: v.sum(-1) / trials[rows].sum())]
    if kind == "proportion":
        return [("proportion", lambda v, rows: v.mean(-1))]
    return [("mean", lambda v, rows: v.mean(-1))]


def endpoint_strata(res) -> list[tuple[str | None, np.ndarray, object]]:
    """(endpoint name, its rows in the data, its observation family) per endpoint of event data
    with several endpoints that has observations; otherwise one stratum (None, all rows, the
    fit's family: with a single per-endpoint family, that endpoint's own)."""
    d, obs = res.data, res.observation
    families = getattr(obs, "families", None)  # Endpoints: one family per endpoint code
    names = tuple(getattr(getattr(d, "events", None), "endpoints", None) or ())
    if len(names) <= 1 or "endpoint" not in d.aux:
        family = families[0] if families is not None and len(families) == 1 else obs
        return [(None, np.arange(d.n_obs), family)]
    code = np.asarray(d.aux["endpoint"]).astype(int)
    return [
        (name, np.flatnonzero(code == k), families[k] if families is not None else obs)
        for k, name in enumerate(names)
        if (code == k).any()
    ]


def prediction_correct(
    y: np.ndarray, sims: np.ndarray, pred: np.ndarray, b: np.ndarray, lower_bound: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bergstrand's prediction correction of observed ``y`` (n,) and simulated ``sims`` (R, n)
    values with population predictions ``pred`` (n,) and time bins ``b`` (n,):
    ``lb + (v - lb) * (median of pred in the bin - lb) / (pred - lb)``. Returns the corrected
    y and sims of the rows whose pred exceeds ``lower_bound``, and those rows (a boolean mask)."""
    keep = np.isfinite(pred) & (pred > lower_bound)
    ref = np.full_like(pred, np.nan, dtype=float)
    for k in np.unique(b[keep]):
        rows = keep & (b == k)
        ref[rows] = np.median(pred[rows])
    factor = np.where(keep, (ref - lower_bound) / np.where(keep, pred - lower_bound, 1.0), np.nan)
    pc_y = lower_bound + (y - lower_bound) * factor
    pc_sims = lower_bound + (sims - lower_bound) * factor
    return pc_y[keep], pc_sims[:, keep], keep


def vpc_table(
    res,
    *,
    n_sim: int = 200,
    bins=None,
    time: str | None = None,
    level_pi: float = 0.9,
    seed: int = 0,
    prediction_corrected: bool = False,
    lower_bound: float = 0.0,
) -> pd.DataFrame:
    """The table behind :meth:`pymixnn.Results.vpc`; ``time`` is resolved by :func:`time_column`;
    with several endpoints one block of rows per endpoint (:func:`endpoint_strata`);
    ``prediction_corrected``: a pcVPC (:func:`prediction_correct`)."""
    import warnings

    d = res.data
    time = time_column(d, res.model, time, caller="vpc()")
    if not 0 < level_pi < 1:
        raise ValueError(f"level_pi must be in (0, 1), got {level_pi!r}")
    if prediction_corrected and not np.isfinite(float(lower_bound)):
        raise ValueError(f"lower_bound must be a finite number, got {lower_bound!r}")
    t_all = d.frame[time].to_numpy(float)
    pred_all = res.evaluator.predict_rows(None, "population") if prediction_corrected else None
    sims_all = res.evaluator.simulated(int(n_sim), seed=seed)
    censored = d.aux.get("censored")
    lo_q, hi_q = 100 * (1 - level_pi) / 2, 100 * (1 + level_pi) / 2
    strata = endpoint_strata(res)
    records, excluded = [], 0
    for endpoint, idx, family in strata:
        if prediction_corrected and family.statistic() != "percentiles":
            raise ValueError(
                f"a prediction-corrected VPC needs continuous observations; this fit's "
                f"{'endpoint ' + repr(endpoint) + ' ' if endpoint else ''}family is {family.name!r}: "
                "use vpc() without prediction_corrected (stratify by dose with separate fits or bins)"
            )
        t, y, sims = t_all[idx], d.y[idx], sims_all[:, idx]
        b = time_bins(t, bins)  # each endpoint binned by its own times
        if prediction_corrected:
            if censored is not None and censored[idx].any():
                raise ValueError("a prediction-corrected VPC of censored data is not supported")
            y, sims, keep = prediction_correct(y, sims, pred_all[idx], b, float(lower_bound))
            excluded += int((~keep).sum())
            t, b, idx = t[keep], b[keep], idx[keep]
        cens_limit = None
        if censored is not None and censored[idx].any():
            cens_limit = float(y[censored[idx] > 0].min())
            sims = np.maximum(sims, cens_limit)
        for name, stat in _statistics(family, d, cens_limit):
            for k in np.unique(b):
                rows = np.flatnonzero(b == k)
                observed = float(stat(y[rows][None, :], idx[rows])[0])
                simulated = stat(sims[:, rows], idx[rows])
                records.append(
                    ({} if endpoint is None else dict(endpoint=endpoint))
                    | dict(
                        bin=int(k),
                        time=float(t[rows].mean()),
                        time_min=float(t[rows].min()),
                        time_max=float(t[rows].max()),
                        n_obs=int(rows.size),
                        statistic=name,
                        observed=observed,
                        sim_median=float(np.median(simulated)),
                        sim_lower=float(np.percentile(simulated, lo_q)),
                        sim_upper=float(np.percentile(simulated, hi_q)),
                    )
                )
    table = pd.DataFrame.from_records(records)
    table["outside"] = (table["observed"] < table["sim_lower"]) | (table["observed"] > table["sim_upper"])
    table.attrs.update(
        n_sim=int(n_sim),
        level_pi=level_pi,
        time=time,
        seed=seed,
        time_label=d.time_label(time),
        prediction_corrected=bool(prediction_corrected),
    )
    if prediction_corrected:
        table.attrs.update(lower_bound=float(lower_bound), pc_excluded=excluded)
        if excluded:
            warnings.warn(
                f"prediction-corrected VPC: {excluded} observation(s) whose population prediction is "
                f"at or below lower_bound={lower_bound:g} (e.g. at a dosing time) were left out",
                UserWarning,
                stacklevel=3,
            )
    if strata[0][0] is not None:
        table.attrs["endpoints"] = [e for e, _, _ in strata]
    return table
