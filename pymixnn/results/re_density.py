"""The fitted law of the individual parameters: samples, marginal densities, moments and modes.

Used by :meth:`pymixnn.Results.re_density` and :meth:`pymixnn.Results.re_summary`. The law is that
of ``phi = mu + Zbar beta + eta`` (transformed scale) for an individual with the average covariate
row ``Zbar`` of the data, and of ``psi = h(phi)`` (natural scale). Marginal densities are exact for
Gaussian and mixture laws; for a flow they are kernel estimates from 200,000 draws of the fitted law
(bandwidth: Scott's rule on 40,000 of them), whose bias is well below the curvature of a mode.

Modes of a marginal are the local maxima of its density on a 400-point grid that rise above 5% of
the highest one and are separated from the next mode by a dip of at least 10% of the lower peak,
so sampling ripples of a kernel estimate are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pymixnn.results.scipy_stats import stats

__all__ = ["REDensity", "count_modes", "law_table"]


@dataclass
class REDensity:
    """Draws of the fitted law and marginal log-densities on a grid.

    samples : DataFrame of draws of phi (transformed scale), one column per parameter with a
        random effect; ``psi_samples`` the same draws on the natural scale.
    grid : long DataFrame with columns parameter, phi, psi, log_density (of phi), density.
    law : "gaussian", "mixture" or "flow".
    """

    samples: pd.DataFrame
    psi_samples: pd.DataFrame
    grid: pd.DataFrame
    law: str


def count_modes(density: np.ndarray, *, floor: float = 0.05, dip: float = 0.10) -> int:
    """Number of modes of a density evaluated on an increasing grid (see the module docstring)."""
    f = np.asarray(density, float)
    top = f.max()
    peaks = [i for i in range(1, len(f) - 1) if f[i] >= f[i - 1] and f[i] > f[i + 1] and f[i] >= floor * top]
    if f[0] > f[1] and f[0] >= floor * top:
        peaks.insert(0, 0)
    if f[-1] > f[-2] and f[-1] >= floor * top:
        peaks.append(len(f) - 1)
    if not peaks:
        return 1
    kept = [peaks[0]]
    for p in peaks[1:]:
        q = kept[-1]
        valley = f[q : p + 1].min()
        if valley <= (1 - dip) * min(f[q], f[p]):
            kept.append(p)
        elif f[p] > f[q]:
            kept[-1] = p
    return len(kept)


def marginal_grid(samples: np.ndarray, exact_logpdf, *, size: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Grid over the central 99.98% of the draws (padded) and the log-density there."""
    lo, hi = np.quantile(samples, [1e-4, 1 - 1e-4])
    pad = 0.1 * (hi - lo)
    grid = np.linspace(lo - pad, hi + pad, size)
    if exact_logpdf is not None:
        return grid, exact_logpdf(grid)
    sub = samples[:: max(1, len(samples) // 40_000)]
    kde = stats.gaussian_kde(sub)
    return grid, np.log(np.maximum(kde(grid), 1e-300))


def law_table(phi: pd.DataFrame, psi: pd.DataFrame, grid: pd.DataFrame) -> pd.DataFrame:
    """Mean, median, sd, skewness of psi (and phi), and the number of modes, per parameter."""
    rows = {}
    for name in phi.columns:
        g = grid[grid["parameter"] == name]
        rows[name] = {
            "mean": psi[name].mean(),
            "median": psi[name].median(),
            "sd": psi[name].std(),
            "skewness": stats.skew(psi[name]),
            "mean_phi": phi[name].mean(),
            "sd_phi": phi[name].std(),
            "skewness_phi": stats.skew(phi[name]),
            "n_modes": count_modes(g["density"].to_numpy()),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "parameter"
    return table
