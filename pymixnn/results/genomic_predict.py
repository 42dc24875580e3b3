"""Predictions for genotypes never phenotyped, from their markers (results layer of a genomic fit):
predicted genetic values and typical parameters (:func:`genotype_parameters`) and predicted curves
with bands (:func:`predict_genotypes`). Also reachable as :mod:`pymixnn.results.genomic`'s
functions and as ``Results`` methods."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pymixnn.model import transforms as tr
from pymixnn.results.genomic import genomic_posterior, require_marker_matrix
from pymixnn.validation.errors import show_value

__all__ = ["genotype_parameters", "predict_genotypes", "BANDS"]


def _scenarios(res, scenario) -> list[dict]:
    """The covariate values (and interaction level) of each prediction scenario."""
    gen = genomic_posterior(res)
    columns = list(
        dict.fromkeys(list(res.design.columns) + ([gen["interaction"]] if gen.get("interaction") else []))
    )
    if scenario is None:
        if not columns:
            return [{}]
        if len(columns) == 1:
            vals = pd.unique(res.data.covariates[columns[0]])
            return [{columns[0]: v} for v in sorted(vals, key=str)]
        raise ValueError(f"the fit has covariates {columns}: give scenario={{column: value}}")
    if isinstance(scenario, dict):
        missing = [c for c in columns if c not in scenario]
        if missing:
            raise ValueError(f"scenario={scenario!r} lacks {missing} (the fit's covariates are {columns})")
        return [dict(scenario)]
    values = list(scenario) if isinstance(scenario, (list, tuple)) else [scenario]
    if len(columns) != 1:
        raise ValueError(
            f"scenario={scenario!r}: the fit has covariates {columns}; give a dict {{column: value}} for each"
            if columns
            else f"scenario={scenario!r}: this fit has no scenario covariate"
        )
    observed = set(pd.unique(res.data.covariates[columns[0]]))
    bad = [v for v in values if v not in observed and not isinstance(v, (int, float))]
    if bad:
        raise ValueError(
            f"scenario {show_value(bad[0])} is not a level of {columns[0]!r}: {sorted(observed, key=str)}"
        )
    return [{columns[0]: v} for v in values]


def _new_markers(res, markers_new):
    from pymixnn.data.markers import read_markers

    mm = require_marker_matrix(res, "prediction for new genotypes")
    raw = read_markers(markers_new, id=res.estimation.genomic.get("markers_id"))
    return list(raw.index.astype(str)), mm.standardize(raw)


def genotype_parameters(res, markers_new, scenario=None) -> pd.DataFrame:
    """Predicted genetic values of genotypes never phenotyped (from their markers): per genotype,
    scenario and parameter with marker effects, the mean and sd of the genetic value on the
    transformed scale (sd including the unknown genotype residual), and ``psi``, the typical
    individual's parameter (random effect 0) on the natural scale."""
    import torch

    ids, G = _new_markers(res, markers_new)
    out = []
    for sc, phi0, by_param in _predictive_by_scenario(res, G, scenario):
        for p, (k, mean, var) in by_param.items():
            psi = tr.forward(
                res.model.transforms[p], torch.as_tensor(phi0[:, k] + mean, dtype=torch.float64)
            ).numpy()
            df = pd.DataFrame(
                {"genotype": ids, "parameter": p, "value": mean, "sd": np.sqrt(var), "psi": psi}
            )
            for c, v in sc.items():
                df.insert(1, c, v)
            out.append(df)
    return pd.concat(out, ignore_index=True)


def _predictive_by_scenario(res, G: np.ndarray, scenario):
    """Per prediction scenario: (scenario, phi0 = the population parameters (n, P) at its
    covariates, {parameter: (column k, predictive mean, predictive variance)} of the new
    genotypes' genetic values)."""
    from pymixnn.inference.genomic_predictive import predictive

    gen = genomic_posterior(res)
    G_train = require_marker_matrix(res, "prediction").values[np.asarray(gen["cell_genotype"])]
    n = G.shape[0]
    for sc in _scenarios(res, scenario):
        Z = res.design.transform(pd.DataFrame([sc] * n)) if res.design.n_effects else np.zeros((n, 0))
        level = _level(res, gen, sc)
        by_param = {}
        for p, rec in zip(gen["params"], gen["per_param"]):
            mean, var = predictive(G, rec, G_train, np.asarray(gen["cell_level"]), level=level)
            by_param[p] = (res.model.parameters.index(p), mean, var)
        yield sc, res.evaluator.phi_population(Z), by_param


def _level(res, gen, sc: dict) -> int:
    if not gen.get("interaction"):
        return 0
    levels = gen["levels"]
    value = sc[gen["interaction"]]
    if value not in levels:
        raise ValueError(f"{gen['interaction']!r} = {value!r} is not a fitted level: {levels}")
    return levels.index(value)


BANDS = ("mean", "individual")


def _band(band: str | None, individual: bool | None) -> str:
    """The band kind from ``band=`` / the older ``individual=``; warn when neither chose it."""
    import warnings

    if band is not None and band not in BANDS:
        raise ValueError(
            f"band must be 'mean' (the genotype's typical curve) or 'individual' (a new "
            f"individual of the genotype), got {band!r}"
        )
    if individual is not None:
        implied = "individual" if individual else "mean"
        if band is not None and band != implied:
            raise ValueError(f"band={band!r} contradicts individual={individual!r}: give only band=")
        return implied
    if band is None:
        warnings.warn(
            "predict_genotypes: the lower/upper band is for the genotype's typical (mean) "
            "curve, not for a single new individual of that genotype (much narrower); "
            "pass band='individual' for the band of one new individual, or band='mean' "
            "to silence this warning",
            UserWarning,
            stacklevel=4,
        )
        return "mean"
    return band


def predict_genotypes(
    res,
    markers_new,
    x_grid,
    scenario=None,
    *,
    level: float = 0.9,
    n_draws: int = 1000,
    band: str | None = None,
    individual: bool | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Predicted curves for genotypes never phenotyped, from their markers.

    For each genotype, scenario and point of ``x_grid`` (an array for a single x column, or a
    DataFrame with the fit's x columns): ``pred``, the curve of a typical individual at the
    genotype's predicted genetic value, and a ``level`` interval (``lower``, ``upper``) by
    ``n_draws`` draws, of the kind given by ``band`` (column ``band`` of the result):

    * ``band="mean"``: the band of the genotype's typical (mean) curve, over the posterior of
      its genetic value (marker effects and the unknown genotype residual) only. It does not
      cover single individuals: on held-out mice a 90% mean band covered 40% of them.
    * ``band="individual"``: the band of one new individual of that genotype: the genetic value's
      posterior plus a new individual's random effect drawn from the fitted law.

    Without ``band`` (and without the older ``individual=``, where ``individual=True`` means
    ``band="individual"``) the band is "mean" and a UserWarning says so."""
    kind = _band(band, individual)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    ids, G = _new_markers(res, markers_new)
    xcols = res.data.x_cols
    if not isinstance(x_grid, pd.DataFrame):
        if len(xcols) != 1:
            raise ValueError(f"the model reads x columns {xcols}: give x_grid as a DataFrame")
        x_grid = pd.DataFrame({xcols[0]: np.asarray(x_grid).ravel()})
    missing = [c for c in xcols if c not in x_grid.columns]
    if missing:
        raise ValueError(f"x_grid lacks the x column(s) {missing}")
    grid = res.data.x_matrix(x_grid)  # dates become elapsed time as in the fit
    if not np.isfinite(grid).all():
        raise ValueError("x_grid has non-finite values")
    rng = np.random.default_rng(seed)
    fm = res.evaluator
    P = len(res.model.parameters)
    T = grid.shape[0]
    out = []
    for sc, phi0, by_param in _predictive_by_scenario(res, G, scenario):
        mean = np.zeros((len(ids), P))
        draws = np.zeros((n_draws, len(ids), P))
        for k, m, v in by_param.values():
            mean[:, k] = m
            draws[:, :, k] = m + np.sqrt(v) * rng.standard_normal((n_draws, len(ids)))
        if kind == "individual":
            eta = fm.law_draws(n_draws * len(ids), seed=seed).reshape(n_draws, len(ids), -1)
            draws = draws + fm.eta_full(eta.reshape(-1, eta.shape[-1])).reshape(n_draws, len(ids), P)
        curves_typ = fm.curves(phi0 + mean, grid).ravel()  # the typical individual's curve
        curves = fm.curves((phi0[None] + draws).reshape(-1, P), grid).reshape(n_draws, len(ids), T)
        lo, hi = np.quantile(curves, [(1 - level) / 2, (1 + level) / 2], axis=0)
        df = pd.DataFrame({"genotype": np.repeat(ids, T)})
        for c, v in sc.items():
            df[c] = v
        for j, c in enumerate(xcols):
            df[c] = np.tile(grid[:, j], len(ids))
        df["pred"] = curves_typ
        df["lower"], df["upper"] = lo.ravel(), hi.ravel()
        df["band"] = kind
        out.append(df)
    return pd.concat(out, ignore_index=True)
