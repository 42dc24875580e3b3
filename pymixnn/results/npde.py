"""Normalised prediction distribution errors (npde) and prediction discrepancies (pd), computed as
the R package npde (version 3.5, ``autonpde``; Brendel et al. 2006, Comets et al. 2008) computes
them, from replicates of the data simulated under the model.

For observation j of individual i with K simulated replicates:

- ``pd`` is the fraction of replicates strictly below the observation (npde's
  ``rowMeans(apply(matsim, 2, "<", yobs))``); ``npd = qnorm(pd)``.
- ``npde``: with E_i the mean and V_i the covariance (``cov``, denominator K - 1) of the simulated
  vectors of individual i, observations and replicates are decorrelated by a matrix A_i with
  A_i V_i A_i' = I ("cholesky", npde's default: A_i = L_i^-1 with V_i = L_i L_i'; "inverse":
  the symmetric V_i^-1/2 from the eigen-decomposition; "polar": the inverse of the polar factor
  of chol(V_i), the same symmetric root computed otherwise; an individual with one observation:
  1 / sd). pde is the fraction of decorrelated replicates strictly below the decorrelated
  observation, and ``npde = qnorm(pde)``.
- Ties (npde's default ``ties=TRUE``, deterministic): pd or pde equal to 0 becomes 1 / (2K) and
  equal to 1 becomes 1 - 1 / (2K). With ``ties=False`` npde jitters them (pd + U(0, 1/K); 0 by
  U(0, 1/K); 1 by U(1 - 1/K, 1)); here the draws come from ``numpy.random.default_rng(seed)``,
  the same law as npde's but not R's stream of numbers.
- Rows flagged in ``omit`` (npde's ``cens.method = "omit"``, e.g. left-censored rows) and rows
  with a missing y (npde's MDV) get NaN and are left out of E_i, V_i and the decorrelation.

When V_i of an individual cannot be factorised (too few replicates, a degenerate model), npde
reports no npde at all; so does this module: every ``npde`` is NaN, a warning names the
individual and ``attrs["decorrelation_error"]`` keeps the message; pd are still given.

npde is a diagnostic for continuous data: npde 3.5 has no method for counts, binary or ordinal
observations, and :func:`npde_results` refuses fits with such observation families.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> ids = np.repeat([1, 2, 3], 4)
>>> sims = rng.normal(size=(500, 12))
>>> table = npde_from_simulations(rng.normal(size=12), ids, sims)
>>> list(table.columns)
['ypred', 'pd', 'npd', 'npde']
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from pymixnn.results.scipy_stats import stats
from pymixnn.validation.errors import show_value

__all__ = ["npde_from_simulations", "npde_tests", "npde_results", "DECORRELATION_METHODS"]

DECORRELATION_METHODS = ("cholesky", "inverse", "polar")
MIN_N_SIM = 100  # npde's documentation asks for at least 1000; fewer makes pd coarse (steps of 1/K)


def _check_method(decorr_method: str) -> None:
    if decorr_method not in DECORRELATION_METHODS:
        raise ValueError(f"decorr_method must be one of {DECORRELATION_METHODS}, got {decorr_method!r}")


def _decorrelator(cov: np.ndarray, method: str) -> np.ndarray:
    """A with A cov A' = I, the transpose of npde's ``ymat`` (``t(ymat) %*% (y - E)``)."""
    if cov.shape[0] == 1:
        if not cov[0, 0] > 0:  # npde would divide by sqrt(0) and compare NaN
            raise np.linalg.LinAlgError("the simulated values have no variance")
        return 1.0 / np.sqrt(cov)
    if method == "inverse":  # npde's decorr.inverse: V^1/2 = Q diag(sqrt(l)) Q^-1, then its inverse
        values, vectors = np.linalg.eigh(cov)
        if not np.all(values > 0):
            raise np.linalg.LinAlgError("covariance matrix not positive definite")
        root = vectors @ np.diag(np.sqrt(values)) @ np.linalg.inv(vectors)
        return np.linalg.inv(root).T
    upper = np.linalg.cholesky(cov).T  # R's chol(): V = R'R
    if method == "cholesky":  # decorr.chol: ymat = solve(R)
        return np.linalg.inv(upper).T
    u, _, vt = np.linalg.svd(upper)  # decorr.polar: R = U D W', ymat = solve((U W')' R)
    return np.linalg.inv((u @ vt).T @ upper).T


def _below(sims: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Fraction of the rows of ``sims`` (K, n) strictly below ``values`` (n,), per column."""
    return (sims < values).mean(axis=0)


def _handle_ties(p: np.ndarray, n_sim: int, ties: bool, rng: np.random.Generator) -> np.ndarray:
    """npde's treatment of pd / pde at 0 and 1 (``ties=TRUE``) or its jitter (``ties=FALSE``)."""
    p = p.copy()
    ok = ~np.isnan(p)
    low, high = ok & (p == 0), ok & (p == 1)
    if ties:
        p[low], p[high] = 1 / (2 * n_sim), 1 - 1 / (2 * n_sim)
        return p
    inner = ok & ~low & ~high
    p[inner] += rng.uniform(0, 1 / n_sim, inner.sum())
    p[low] = rng.uniform(0, 1 / n_sim, low.sum())
    p[high] = rng.uniform(1 - 1 / n_sim, 1, high.sum())
    return p


def _validated(y, ids, sims, omit) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Arrays (y, ids, sims, kept rows) after one-line checks of the shapes and values."""
    y = np.asarray(y, dtype=np.float64)
    ids, sims = np.asarray(ids), np.asarray(sims, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"y must be one-dimensional (n_obs,), got shape {y.shape}")
    if ids.shape != y.shape:
        raise ValueError(f"ids must have the shape of y {y.shape}, got {ids.shape}")
    if sims.ndim != 2 or sims.shape[1] != y.shape[0] or sims.shape[0] < 2:
        raise ValueError(f"sims must have shape (n_sim >= 2, n_obs={y.shape[0]}), got {sims.shape}")
    keep = ~np.isnan(y)
    if omit is not None:
        omit = np.asarray(omit, dtype=bool)
        if omit.shape != y.shape:
            raise ValueError(f"omit must have the shape of y {y.shape}, got {omit.shape}")
        keep &= ~omit
    bad = keep & ~np.isfinite(sims).all(axis=0)
    if bad.any():
        raise ValueError(f"sims has non-finite values in column {int(np.flatnonzero(bad)[0])} (0-based)")
    return y, ids, sims, keep


def npde_from_simulations(
    y,
    ids,
    sims,
    *,
    decorr_method: str = "cholesky",
    ties: bool = True,
    seed: int = 0,
    omit=None,
) -> pd.DataFrame:
    """pd and npde of each observation from replicates simulated under the model, as npde's
    ``autonpde`` computes them (see the module docstring for the algorithm).

    Parameters
    ----------
    y : array_like, shape (n_obs,)
        Observations; NaN marks a missing one (its pd and npde are NaN).
    ids : array_like, shape (n_obs,)
        Individual of each observation (observations of an individual need not be contiguous).
    sims : array_like, shape (n_sim, n_obs)
        Replicates of ``y`` simulated under the model, one row per replicate.
    decorr_method : {"cholesky", "inverse", "polar"}
        npde's ``decorr.method``.
    ties : bool
        npde's ``ties``: True (npde's default) keeps ties and moves pd, pde of 0 and 1 to 1/(2K)
        and 1 - 1/(2K); False jitters them with draws from ``seed``.
    seed : int
        Seed of the jitter when ``ties=False`` (unused otherwise).
    omit : array_like of bool, shape (n_obs,), optional
        Rows left out (npde's ``cens.method="omit"``, e.g. censored rows): pd and npde NaN.

    Returns
    -------
    pandas.DataFrame
        One row per observation, in the order of ``y``: ``ypred`` (mean of the replicates, E_i),
        ``pd``, ``npd`` (``qnorm(pd)``) and ``npde``. ``attrs`` holds ``n_sim``,
        ``decorr_method``, ``ties`` and, when the decorrelation failed,
        ``decorrelation_error``.
    """
    _check_method(decorr_method)
    y, ids, sims, keep = _validated(y, ids, sims, omit)
    n_sim, n_obs = sims.shape
    rng = np.random.default_rng(seed)
    ypred, pd_raw, pde = (np.full(n_obs, np.nan) for _ in range(3))
    ypred[keep] = sims[:, keep].mean(axis=0)
    pd_raw[keep] = _below(sims[:, keep], y[keep])
    error = None
    codes = pd.factorize(ids)[0]
    for code in np.unique(codes[keep]):
        rows = np.flatnonzero(keep & (codes == code))
        block = sims[:, rows]
        mean = block.mean(axis=0)
        try:
            a = _decorrelator(np.atleast_2d(np.cov(block, rowvar=False)), decorr_method)
        except np.linalg.LinAlgError as exc:
            error = (
                f"npde: the {decorr_method} decorrelation failed for individual {show_value(ids[rows[0]])} "
                f"({exc}; {len(rows)} observations, {n_sim} replicates): npde not computed, pd given"
            )
            break
        pde[rows] = _below((block - mean) @ a.T, a @ (y[rows] - mean))
    pd_values = _handle_ties(pd_raw, n_sim, ties, rng)
    if error is None:
        npde = stats.norm.ppf(_handle_ties(pde, n_sim, ties, rng))
    else:
        warnings.warn(error, RuntimeWarning, stacklevel=2)
        npde = np.full(n_obs, np.nan)
    out = pd.DataFrame({"ypred": ypred, "pd": pd_values, "npd": stats.norm.ppf(pd_values), "npde": npde})
    out.attrs.update(n_sim=n_sim, decorr_method=decorr_method, ties=bool(ties))
    if error is not None:
        out.attrs["decorrelation_error"] = error
    return out


def npde_tests(npde_values) -> pd.DataFrame:
    """The tests of npde's ``gof.test`` (``parametric=TRUE``) that npde are N(0, 1).

    Mean 0: Student's t-test (``t.test``). Variance 1: npde's "Fisher variance test", the
    chi-square statistic (n - 1) s^2 with p = 2 min(F, 1 - F), F its chi2(n - 1) distribution
    function. Normality: Shapiro-Wilk (``shapiro.test``; R refuses n > 5000, scipy warns that its
    p-value may be inaccurate there). Each p-value is Bonferroni-adjusted, min(3 p, 1), as npde
    reports them; the global test is min(1, 3 min(p_mean, p_variance, p_normality)).

    Parameters
    ----------
    npde_values : array_like
        npde (NaN values are dropped, as npde's ``na.omit``); at least 3.

    Returns
    -------
    pandas.DataFrame
        Rows ``mean``, ``variance``, ``normality``, ``global``; columns ``method``,
        ``statistic`` (t, chi-square, W; NaN for the global test), ``p_value`` (adjusted, as
        npde prints) and ``p_value_raw``. ``attrs`` holds npde's descriptive statistics:
        ``n_obs``, ``mean``, ``se_mean``, ``variance``, ``se_variance``, ``skewness`` and
        ``kurtosis`` (npde's definitions).
    """
    x = np.asarray(npde_values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    n = x.size
    if n < 3:
        raise ValueError(f"npde_tests needs at least 3 non-missing values, got {n}")
    t = stats.ttest_1samp(x, 0.0)
    chi = x.var(ddof=1) * (n - 1)
    cdf = stats.chi2.cdf(chi, n - 1)
    p_var = 2 * min(cdf, 1 - cdf)  # npde: 2*min(pchisq(chi,n1-1),1-pchisq(chi,n1-1))
    sw = stats.shapiro(x)
    raw = np.array([t.pvalue, p_var, sw.pvalue, np.nan])
    adjusted = np.minimum(3 * raw, 1.0)
    raw[3] = adjusted[3] = min(1.0, 3 * np.min(raw[:3]))
    out = pd.DataFrame(
        {
            "method": ["t-test", "Fisher variance test", "Shapiro-Wilk", "Bonferroni (3 x min p)"],
            "statistic": [t.statistic, chi, sw.statistic, np.nan],
            "p_value": adjusted,
            "p_value_raw": raw,
        },
        index=pd.Index(["mean", "variance", "normality", "global"], name="test"),
    )
    dev = x - x.mean()
    m2, m3, m4 = (np.sum(dev**k) for k in (2, 3, 4))
    out.attrs.update(
        n_obs=n,
        mean=float(x.mean()),
        se_mean=float(x.std(ddof=1) / np.sqrt(n)),
        variance=float(x.var(ddof=1)),
        se_variance=float(x.var(ddof=1) * np.sqrt(2 / (n - 1))),
        skewness=float(m3 / (m2 * np.sqrt(m2 / n))),
        kurtosis=float(m4 * n / m2**2 - 3),
    )
    return out


def _continuous(res) -> None:
    """A ValueError unless every observation of the fit is continuous (Gaussian family)."""
    obs = res.observation
    families = getattr(obs, "families", None) or (obs,)
    names = sorted({f.name for f in families} - {"gaussian"})
    if names:
        raise ValueError(
            f"npde is for continuous observations; this fit has the observation family {names[0]!r} "
            "(npde 3.5 has no method for discrete data): use res.vpc() to check it instead"
        )


def npde_results(res, *, n_sim: int = 1000, seed: int = 0, decorr_method: str = "cholesky") -> pd.DataFrame:
    """npde and pd of each observation of a fit, from ``n_sim`` replicates of the data simulated
    under the fitted model at the population level (new random effects from the fitted law,
    then the residual error), as npde's ``autonpde`` computes them; the table behind
    ``Results.npde``.

    Left-censored rows are left out (npde's ``cens.method="omit"``: pd and npde NaN); fits with
    discrete observation families raise a ValueError (npde is for continuous data).

    Parameters
    ----------
    res : pymixnn.Results
        A fitted model.
    n_sim : int
        Number of simulated replicates K (at least 100; npde recommends 1000 or more).
    seed : int
        Seed of the simulations.
    decorr_method : {"cholesky", "inverse", "polar"}
        npde's ``decorr.method``.

    Returns
    -------
    pandas.DataFrame
        In the user's row order with the data's row labels: id, x and y columns, ``ypred``
        (mean of the replicates), ``pd``, ``npd``, ``npde`` (and ``censored`` when the fit has
        a censoring column). ``attrs["tests"]``: :func:`npde_tests` of the npde as a dict
        (``pd.DataFrame.from_dict(attrs["tests"], orient="index")`` gives the table; a
        DataFrame in ``attrs`` would break ``pd.concat`` of two tables), ``attrs["summary"]``
        its descriptive statistics, plus ``n_sim``, ``seed``, ``decorr_method``, ``ties``.
    """
    if isinstance(n_sim, bool) or not isinstance(n_sim, (int, np.integer)) or n_sim < MIN_N_SIM:
        raise ValueError(f"n_sim must be an integer >= {MIN_N_SIM}, got {n_sim!r}")
    _check_method(decorr_method)
    _continuous(res)
    d = res.data
    censored = d.aux.get("censored")
    omit = None if censored is None else np.asarray(censored) > 0
    sims = res.evaluator.simulated(int(n_sim), seed=int(seed))
    values = npde_from_simulations(
        d.y, d.frame[d.id_col].to_numpy(), sims, decorr_method=decorr_method, omit=omit
    )
    out = d.frame[[d.id_col, *d.x_cols, d.y_col]].copy()
    for col in values.columns:
        out[col] = values[col].to_numpy()
    if omit is not None:
        out["censored"] = omit
    out = out.iloc[d.user_order]  # the user's row order and row labels
    tests = npde_tests(out["npde"]) if out["npde"].notna().sum() >= 3 else None
    out.attrs = dict(values.attrs, seed=int(seed))
    out.attrs["tests"] = None if tests is None else tests.to_dict(orient="index")
    out.attrs["summary"] = None if tests is None else dict(tests.attrs)
    return out
