"""Prediction of genetic values for genotypes from their markers under a genomic block's posterior
(genomic.py): exact Gaussian predictive means and variances given the prior scales."""

from __future__ import annotations

import numpy as np

__all__ = ["predictive"]


def predictive(
    G: np.ndarray,
    rec: dict,
    G_train: np.ndarray,
    cell_level: np.ndarray,
    level: int = 0,
    new_genotype: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted genetic values (mean, variance) for genotypes with standardized markers ``G``
    (n_new, M) at interaction level ``level``, exact under the Gaussian posterior given the prior
    scales: mean = k' K^-1 y, variance = x' D x - k' K^-1 k (+ s2_u for a genotype not in the
    data). ``G_train`` are the training cells' marker rows, ``cell_level`` their levels."""
    G = np.asarray(G, dtype=np.float32)
    D = rec["D"].astype(np.float32)
    GD = G * D
    k = (GD @ G_train.T).astype(np.float64)  # (n_new, n_cells)
    prior_var = (GD * G).sum(1).astype(np.float64)
    if level > 0:
        d_l = rec["D_levels"][level - 1]
        same = (cell_level == level).astype(np.float64)
        kl = d_l * (G @ G_train.T).astype(np.float64) * same
        k = k + kl
        prior_var = prior_var + d_l * (G.astype(np.float64) ** 2).sum(1)
    mean = k @ rec["alpha"]
    var = prior_var - np.einsum("ij,jk,ik->i", k, rec["Kinv"], k)
    if new_genotype:
        var = var + rec["s2u"]
    return mean, np.clip(var, 0.0, None)
