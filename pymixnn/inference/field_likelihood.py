"""Maximum-likelihood estimates of a Matérn field's hyperparameters from one observed field (the
reference a simulation-trained spatial estimator is compared with).

For z = mu 1 + f + e (:mod:`pymixnn.model.matern`), cov(z) = sd^2 (R(range) + t^2 I) with
t = nugget / sd, the constant mean mu and sd^2 are profiled out in closed form (generalized least
squares), and -2 log L(range, t) = n log(2 pi sd^2) + log|R + t^2 I| + n is minimized over log
range (and log t when the nugget is free) inside the prior's support: a bounded Brent search when
only the range is free, L-BFGS-B from the best point of a coarse grid otherwise. Every evaluation
is one dense n x n Cholesky (the exact likelihood, as in a ``kind="gp"`` fit).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize

from pymixnn.model.matern import FieldPrior
from pymixnn.simulate.fields import correlation_matrices

__all__ = ["FieldML", "field_ml"]


@dataclass(frozen=True)
class FieldML:
    """One field's maximum-likelihood estimates."""

    range: float
    sd: float
    nugget: float
    mean: float
    loglik: float
    evaluations: int
    seconds: float


def _profile(z: np.ndarray, corr: np.ndarray, t2: float) -> tuple[float, float, float]:
    """(-2 log L, sd^2, mu) with mu and sd^2 profiled out, for cov = sd^2 (corr + t2 I)."""
    n = z.shape[0]
    v = corr + t2 * np.eye(n) if t2 > 0 else corr
    try:
        c = linalg.cho_factor(v, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return math.inf, math.nan, math.nan
    ones = np.ones(n)
    vi1, viz = linalg.cho_solve(c, ones, check_finite=False), linalg.cho_solve(c, z, check_finite=False)
    mu = float(viz.sum() / vi1.sum())
    q = float(z @ viz - mu * viz.sum())  # (z - mu)' V^-1 (z - mu)
    s2 = max(q / n, 1e-300)
    logdet = 2.0 * float(np.log(np.diag(c[0])).sum())
    return n * math.log(2 * math.pi * s2) + logdet + n, s2, mu


def field_ml(z: np.ndarray, dist: np.ndarray, nu: float, prior: FieldPrior) -> FieldML:
    """The ML estimates for one field ``z`` (n,) at locations with pairwise distances ``dist``.
    Parameters the prior holds fixed stay at their values; ``sd`` must be free when the nugget is
    (the two are estimated through their ratio)."""
    t0 = time.perf_counter()
    law = dict(zip(prior.names, prior.laws))
    free = set(prior.free)
    evals = [0]
    cache: dict = {}

    def corr(log_r: float) -> np.ndarray:
        if log_r not in cache:
            cache.clear()
            cache[log_r] = correlation_matrices(dist, np.array([math.exp(log_r)]), nu)[0]
        return cache[log_r]

    def m2ll(log_r: float, t2: float, sd: float | None) -> tuple[float, float, float]:
        evals[0] += 1
        if sd is None:
            return _profile(z, corr(log_r), t2)
        # sd held fixed: -2 log L at that sd (mu still profiled)
        val, s2, mu = _profile(z, corr(log_r) + t2 * np.eye(len(z)), 0.0)
        n = len(z)
        q = s2 * n
        logdet = val - n * math.log(2 * math.pi * s2) - n
        return n * math.log(2 * math.pi * sd**2) + logdet + q / sd**2, sd**2, mu

    lo_r, hi_r = (math.log(b) for b in prior.bounds("range"))
    fixed_r = law["range"][1] if "range" not in free else None
    sd_fixed = law["sd"][1] if "sd" not in free else None
    nug_free = "nugget" in free
    if nug_free and sd_fixed is not None:
        raise ValueError("the likelihood estimator needs sd free when the nugget is free")
    nug0 = law["nugget"][1] if not nug_free else 0.0

    def t2_of(sd: float | None) -> float:  # a fixed nugget's share of the variance at this sd
        return 0.0 if nug0 == 0 else (nug0 / sd) ** 2 if sd is not None else math.nan

    if not nug_free and (nug0 == 0 or sd_fixed is not None):

        def objective(lr):
            return m2ll(lr, t2_of(sd_fixed), sd_fixed)[0]

        if fixed_r is None:
            res = optimize.minimize_scalar(
                objective, bounds=(lo_r, hi_r), method="bounded", options={"xatol": 1e-4}
            )
            log_r = float(res.x)
        else:
            log_r = math.log(fixed_r)
        val, s2, mu = m2ll(log_r, t2_of(sd_fixed), sd_fixed)
        sd, nugget = math.sqrt(s2), nug0
    else:
        # two of (range, sd, nugget) on a log scale: the ratio t = nugget / sd with sd profiled, or
        # sd itself when a fixed nonzero nugget stops the profiling
        sd_lo, sd_hi = prior.bounds("sd")
        if nug_free:
            nl, nh = prior.bounds("nugget")
            lo_2, hi_2 = math.log(max(nl, 1e-3 * sd_lo) / sd_hi), math.log(max(nh, 1e-3 * sd_lo) / sd_lo)
        else:
            lo_2, hi_2 = math.log(sd_lo), math.log(sd_hi)

        def unpack(x):
            lr = x[0] if fixed_r is None else math.log(fixed_r)
            if nug_free:
                return lr, math.exp(2 * x[-1]), None
            sd = math.exp(x[-1])
            return lr, (nug0 / sd) ** 2, sd

        def objective(x):
            return m2ll(*unpack(x))[0]

        grid_r = np.linspace(lo_r, hi_r, 6) if fixed_r is None else [None]
        grid = [([gr] if gr is not None else []) + [g2] for gr in grid_r for g2 in np.linspace(lo_2, hi_2, 5)]
        start = min(grid, key=objective)
        bounds = ([(lo_r, hi_r)] if fixed_r is None else []) + [(lo_2, hi_2)]
        res = optimize.minimize(objective, np.array(start), method="L-BFGS-B", bounds=bounds)
        log_r, t2, sd_given = unpack(res.x)
        val, s2, mu = m2ll(log_r, t2, sd_given)
        sd = math.sqrt(s2)
        nugget = math.sqrt(t2) * sd if nug_free else nug0
    return FieldML(
        range=math.exp(log_r),
        sd=float(sd),
        nugget=float(nugget),
        mean=float(mu),
        loglik=-0.5 * float(val),
        evaluations=evals[0],
        seconds=time.perf_counter() - t0,
    )
