"""Conditional weighted residuals (CWRES; Hooker, Staatz and Karlsson 2007, Pharm Res 24:2187).

Each individual's model is linearized in its random effects around their conditional mode
(the MAP ``eta_i*``, as NONMEM's FOCE):

    f_i(eta) ~ f_i(eta_i*) + G_i (eta - eta_i*),     G_i = d f_i / d eta at eta_i*

so that under the model the observations have mean and covariance

    E_i = f_i(eta_i*) - G_i eta_i*,     C_i = G_i Omega G_i' + R_i

(``Omega`` the random effects' covariance, ``R_i`` the diagonal residual variance at the
individual predictions), and ``CWRES_i = C_i^(-1/2) (y_i - E_i)`` are uncorrelated standard normal
when the model is right. ``C_i^(-1/2)`` is the inverse Cholesky factor (as the npde package's
default decorrelation) or the inverse symmetric square root (``decorrelation="symmetric"``):
the values of individual residuals differ between the two, their distribution does not. With
the exponential error model (log y = log f + e) everything is on the log scale. The derivatives
G_i are central differences of the structural function (step ``1e-5`` on the random effects'
scale: exact for a model linear in eta, ~1e-10 relative otherwise), so every model kind (closed
form, compartments, ODEs) is covered.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["cwres_table", "DIFFERENCE_STEP"]

# central-difference step on the random effects' (transformed) scale
DIFFERENCE_STEP = 1e-5


def _inverse_root(C: np.ndarray, decorrelation: str) -> np.ndarray:
    """C^(-1/2): inverse Cholesky factor (lower) or inverse symmetric square root."""
    if decorrelation == "cholesky":
        L = np.linalg.cholesky(C)
        return np.linalg.solve(L, np.eye(C.shape[0]))
    w, V = np.linalg.eigh(C)
    return (V / np.sqrt(w)) @ V.T


def cwres_table(res, *, decorrelation: str = "cholesky") -> pd.DataFrame:
    """Per observation of a fit: id, x, y, ``pred`` (population prediction), ``ipred``
    (individual prediction at the MAP random effects), ``epred_foce`` (E_i above) and ``cwres``,
    in the user's row order (:meth:`pymixnn.Results.cwres`)."""
    import torch

    if decorrelation not in ("cholesky", "symmetric"):
        raise ValueError(f"decorrelation must be 'cholesky' or 'symmetric', got {decorrelation!r}")
    obs = res.observation
    if obs.name != "gaussian":
        raise ValueError(
            f"CWRES are defined for continuous (Gaussian) observations; this fit's family is "
            f"{obs.name!r}: use res.npde() or the Pearson residuals of res.residuals()"
        )
    d, fm = res.data, res.evaluator
    if "censored" in d.aux and np.asarray(d.aux["censored"]).any():
        raise ValueError("CWRES of censored observations are not defined: use res.npde() (pd) instead")
    rows = fm.design_rows(None)
    phi0 = fm.phi_population(rows["Z"]) + fm.known_offset(rows)
    eta = np.asarray(fm.estimation.eta_map, dtype=np.float64)
    omega = np.atleast_2d(np.asarray(fm.estimation.omega, dtype=np.float64))
    row_ind, x = rows["row_ind"], rows["x"]

    def f_at(e: np.ndarray) -> np.ndarray:
        return fm.evaluate(fm.psi((phi0 + fm.eta_full(e))[row_ind]), x)

    f_star = f_at(eta)
    n_re = eta.shape[1]
    G = np.zeros((d.n_obs, n_re))
    for j in range(n_re):
        up, down = eta.copy(), eta.copy()
        up[:, j] += DIFFERENCE_STEP
        down[:, j] -= DIFFERENCE_STEP
        G[:, j] = (f_at(up) - f_at(down)) / (2 * DIFFERENCE_STEP)
    with torch.no_grad():
        var = obs.variance(*fm.family_tensors(f_star, rows["aux"])).numpy()
    y = np.asarray(d.y, dtype=np.float64)
    if res.model.error == "exponential":  # log y = log f + e: linearize log f
        G = G / f_star[:, None]
        f_star, y = np.log(f_star), np.log(y)
    eta_rows = eta[row_ind]
    expected = f_star - np.einsum("nj,nj->n", G, eta_rows)
    out = np.full(d.n_obs, np.nan)
    for i in range(d.n_individuals):
        idx = np.flatnonzero(row_ind == i)
        Gi = G[idx]
        C = Gi @ omega @ Gi.T + np.diag(var[idx])
        out[idx] = _inverse_root(C, decorrelation) @ (y[idx] - expected[idx])
    table = d.frame[[d.id_col, *d.x_cols, d.y_col]].copy()
    table["pred"] = fm.predict_rows(None, "population")
    table["ipred"] = fm.predict_rows(None, "individual")
    table["epred_foce"] = np.exp(expected) if res.model.error == "exponential" else expected
    table["cwres"] = out
    table = table.iloc[d.user_order]
    table.attrs.update(decorrelation=decorrelation, scale="log" if res.model.error == "exponential" else "y")
    return table
