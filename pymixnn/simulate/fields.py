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
import pandas as pd
from scipy.spatial.distance import cdist

from pymixnn.model.matern import matern_correlation

__all__ = [
    "simulate_matern",
    "simulate_matern_sites",
    "simulate_field_growth",
    "correlation_matrices",
    "JITTER",
]

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


def simulate_matern_sites(
    n: int, range_: float, sd: float, nu: float = 1.5, seed: int = 0, resolution: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct random sites of the unit square and an exact draw of a zero-mean Matérn
    field there (sd, range as in :mod:`pymixnn.model.matern`), for 10^4 to 10^6 sites: the sites
    are cell centres of a ``resolution`` x ``resolution`` lattice drawn without replacement, and
    the field on the whole lattice is drawn by circulant embedding (Wood & Chan 1994: the
    covariance on a torus twice the size, diagonalized by the FFT; exact when its eigenvalues are
    non-negative, otherwise the torus is doubled again, up to 8x). Returns (sites (n, 2), field (n,))."""
    if not 1 <= n <= resolution**2:
        raise ValueError(f"n={n}: between 1 and resolution^2 = {resolution**2} sites")
    rng = np.random.default_rng(seed)
    h = 1.0 / resolution
    kappa = np.sqrt(8.0 * nu) / range_
    for pad in (2, 4, 8):
        m = pad * resolution
        lag = np.minimum(np.arange(m), m - np.arange(m)) * h
        dist = np.sqrt(lag[:, None] ** 2 + lag[None, :] ** 2)
        eig = np.fft.fft2(sd**2 * matern_correlation(kappa * dist, nu)).real
        if eig.min() >= -1e-8 * eig.max():
            break
    else:
        raise ValueError(f"range {range_}: the circulant embedding is not positive at 8x padding")
    noise = rng.standard_normal((m, m)) + 1j * rng.standard_normal((m, m))
    field = np.fft.fft2(np.sqrt(np.clip(eig, 0.0, None) / (m * m)) * noise).real[:resolution, :resolution]
    cells = rng.choice(resolution * resolution, size=n, replace=False)
    rows, cols = np.divmod(cells, resolution)
    sites = np.stack([(rows + 0.5) * h, (cols + 0.5) * h], axis=1)
    return sites, field[rows, cols]


def simulate_field_growth(
    n: int, range_: float = 0.05, sd: float = 0.3, nu: float = 1.5, seed: int = 2
) -> tuple[pd.DataFrame, np.ndarray]:
    """Logistic growth on a Matérn field (issue 22's design): ``n`` individuals at distinct
    random sites of the unit square (:func:`simulate_matern_sites`, seed ``seed``), one each,
    measured at t = 1, 3, 5, 7, 9, 12: y = A / (1 + exp(-(t - B) / 1.5)) + N(0, 0.5^2), log A =
    log 20 + f(s) + eta_A, B = 5 exp(eta_B), sd(eta) = 0.1 (seed ``seed + 1``). Returns the
    long table (columns id, time, y, sx, sy) and the field at the sites (n,)."""
    sites, field = simulate_matern_sites(n, range_, sd, nu, seed=seed)
    rng = np.random.default_rng(seed + 1)
    times = np.array([1.0, 3, 5, 7, 9, 12])
    A = np.exp(np.log(20) + field + 0.1 * rng.standard_normal(n))
    B = 5 * np.exp(0.1 * rng.standard_normal(n))
    curves = A[:, None] / (1 + np.exp(-(times[None] - B[:, None]) / 1.5))
    y = curves + 0.5 * rng.standard_normal(curves.shape)
    rep = lambda v: np.repeat(v, len(times))  # noqa: E731
    table = pd.DataFrame(
        dict(
            id=rep(np.arange(n)),
            time=np.tile(times, n),
            y=y.ravel(),
            sx=rep(sites[:, 0]),
            sy=rep(sites[:, 1]),
        )
    )
    return table, field
