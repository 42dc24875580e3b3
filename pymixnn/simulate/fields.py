"""Matérn random fields at fixed irregular locations (:mod:`pymixnn.model.matern`), for training
and checking a spatial estimator.

Field k is z_k = mean + sd_k L(range_k) e_k + nugget_k u_k with L L' the Matérn correlation (plus
:data:`JITTER` on the diagonal) and e_k, u_k independent standard normals drawn from
``numpy.random.default_rng(seed)``.

>>> import numpy as np
>>> loc = np.random.default_rng(0).random((50, 2))
>>> z = simulate_matern(loc, np.array([[0.3, 1.0, 0.0]]), nu=1.5, seed=1)
>>> z.shape
(1, 50)
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from pymixnn.model.matern import matern_correlation

__all__ = ["simulate_matern", "correlation_matrices", "JITTER"]

# added to the correlation matrix's diagonal (a relative nugget variance of 1e-6, a standard
# deviation of 0.1% of sd): a smooth field's correlation matrix at close locations is numerically
# singular without it. The likelihood estimator uses the same matrix.
JITTER = 1e-6


def correlation_matrices(dist: np.ndarray, ranges: np.ndarray, nu: float) -> np.ndarray:
    """(B, n, n) Matérn correlation matrices (with the jitter) for the pairwise distances ``dist``
    and B ranges."""
    kappa = np.sqrt(8.0 * nu) / np.asarray(ranges, dtype=float)
    r = matern_correlation(kappa[:, None, None] * dist[None], nu)
    idx = np.arange(dist.shape[0])
    r[:, idx, idx] += JITTER
    return r


def simulate_matern(
    locations: np.ndarray,
    params: np.ndarray,
    nu: float = 1.5,
    mean: float = 0.0,
    seed: int | np.random.Generator = 0,
    batch: int = 16,
) -> np.ndarray:
    """One field per row of ``params`` (columns range, sd, nugget; shape (m, 3)) at ``locations``
    (n, d); returns (m, n)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    loc = np.asarray(locations, dtype=float)
    params = np.atleast_2d(np.asarray(params, dtype=float))
    dist = cdist(loc, loc)
    m, n = params.shape[0], loc.shape[0]
    eps = rng.standard_normal((m, n))
    noise = rng.standard_normal((m, n))
    out = np.empty((m, n))
    for s in range(0, m, batch):
        p = params[s : s + batch]
        chol = np.linalg.cholesky(correlation_matrices(dist, p[:, 0], nu))
        out[s : s + batch] = p[:, 1:2] * np.einsum("bij,bj->bi", chol, eps[s : s + batch])
    return mean + out + params[:, 2:3] * noise
