"""Outputs of a genomic fit (results layer): marker effects, top markers, Manhattan plots, variance
explained and genetic values; predictions for genotypes never phenotyped are in genomic_predict.py.

All functions take a fitted :class:`pymixnn.Results` whose fit had ``genomic=``; they are exposed
as its methods and properties (``res.marker_effects``, ``res.predict_genotypes(...)``, ...).
Effects are on the transformed scale of each parameter (log A for a log-normal A): ``effect`` per
unit of the marker's coding (one allele), ``effect_std`` per standard deviation of the marker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pymixnn.model import transforms as tr

# genotype_parameters, predict_genotypes and BANDS are also read from here (module __getattr__)
__all__ = [
    "marker_effects",
    "top_markers",
    "plot_manhattan",
    "variance_explained",
    "genetic_values",
    "genomic_posterior",
    "require_marker_matrix",
    "reattach_markers",
]
_PREDICTIONS = ("genotype_parameters", "predict_genotypes", "BANDS")


def __getattr__(name: str):
    """The predictions for new genotypes live in :mod:`pymixnn.results.genomic_predict`."""
    if name in _PREDICTIONS:
        from pymixnn.results import genomic_predict

        return getattr(genomic_predict, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def genomic_posterior(res):
    """The genomic posterior of ``res``; a ValueError naming how to fit one when it has none."""
    gen = getattr(res.estimation, "genomic", None)
    if not gen:
        raise ValueError(
            "this fit has no genomic block: fit with genotype=... and "
            "genomic=pymixnn.Genomic(markers, params=[...])"
        )
    return gen


def require_marker_matrix(res, what: str):
    """The marker matrix of ``res``; a ValueError saying that ``what`` needs it when it is absent."""
    if res.marker_matrix is None:
        raise ValueError(
            f"{what} needs the marker matrix, which a saved fit does not keep: "
            "reload it with Results.load(path, markers=<the fit's marker matrix>)"
        )
    return res.marker_matrix


def _names(res, gen) -> list[str]:
    if res.marker_matrix is not None:
        return list(res.marker_matrix.names)
    return list(gen["marker_names"])


def marker_effects(res) -> pd.DataFrame:
    """One row per (parameter, marker): effect and posterior sd per allele, per marker sd, the
    inclusion probability (horseshoe), and chr / pos when a map was given; with an interaction,
    further rows per scenario level (``term`` = "column[level]")."""
    gen = genomic_posterior(res)
    names = _names(res, gen)
    scale = np.asarray(gen["marker_scale"])
    mp = gen.get("marker_map")
    frames = []
    levels = gen.get("levels") or [None]
    for p, rec in zip(gen["params"], gen["per_param"]):
        terms = [("main", rec["mean"], rec["sd"])]
        for k, (m_l, s_l) in enumerate(zip(rec["levels_mean"], rec["levels_sd"]), start=1):
            terms.append((f"{gen['interaction']}[{levels[k]}]", m_l, s_l))
        for term, mean, sd in terms:
            df = pd.DataFrame(
                {
                    "parameter": p,
                    "marker": names,
                    "effect": np.asarray(mean) / scale,
                    "sd": np.asarray(sd) / scale,
                    "effect_std": np.asarray(mean),
                    "sd_std": np.asarray(sd),
                }
            )
            if gen["prior"] == "horseshoe":
                df["inclusion"] = rec["inclusion"] if term == "main" else np.nan
            if len(terms) > 1:
                df.insert(1, "term", term)
            if mp is not None:
                df["chr"] = list(mp["chr"])
                df["pos"] = np.asarray(mp["pos"], dtype=float)
            frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _score(df: pd.DataFrame, prior: str) -> pd.Series:
    # ranking: the horseshoe's inclusion (1 - shrinkage), ties by |effect|; ridge: |effect| / sd
    if prior == "horseshoe":
        return df["inclusion"] + 1e-9 * df["effect_std"].abs()
    return df["effect_std"].abs() / df["sd_std"]


def top_markers(res, n: int = 20, parameter: str | None = None) -> pd.DataFrame:
    """The ``n`` strongest markers per parameter (main effects), ranked by inclusion probability
    (horseshoe) or ``|effect| / sd`` (ridge); column ``rank`` from 1."""
    gen = genomic_posterior(res)
    eff = marker_effects(res)
    if "term" in eff:
        eff = eff[eff["term"] == "main"].drop(columns="term")
    params = gen["params"] if parameter is None else [parameter]
    unknown = [p for p in params if p not in gen["params"]]
    if unknown:
        raise ValueError(f"parameter {unknown[0]!r} has no marker effects; they are on {gen['params']}")
    out = []
    for p in params:
        block = eff[eff["parameter"] == p].copy()
        block["score"] = _score(block, gen["prior"])
        block = block.sort_values("score", ascending=False, kind="stable").head(int(n))
        block.insert(1, "rank", np.arange(1, len(block) + 1))
        out.append(block.drop(columns="score"))
    return pd.concat(out, ignore_index=True)


def plot_manhattan(res, path: str | Path, parameter: str | None = None, *, top: int = 10) -> list[Path]:
    """Manhattan-style PNG per parameter: inclusion probability (horseshoe) or ``|effect| / sd``
    (ridge) by marker, by chromosome and position when a map was given (alternating colours),
    the ``top`` markers labelled. ``path``: a directory (files ``manhattan_<param>.png``) or, for
    one parameter, a .png file. Returns the written paths."""
    from pymixnn.results.plots import manhattan_png

    gen = genomic_posterior(res)
    params = gen["params"] if parameter is None else [parameter]
    path = Path(path)
    if path.suffix.lower() == ".png" and len(params) > 1:
        raise ValueError(
            f"{path} is one file but there are {len(params)} parameters "
            f"{params}: give a directory or parameter="
        )
    eff = marker_effects(res)
    if "term" in eff:
        eff = eff[eff["term"] == "main"]
    ylabel = (
        "inclusion probability (1 - shrinkage)" if gen["prior"] == "horseshoe" else "|effect| / posterior sd"
    )
    written = []
    for p in params:
        block = eff[eff["parameter"] == p].reset_index(drop=True)
        score = _score(block, gen["prior"]).to_numpy()
        out = path if path.suffix.lower() == ".png" else path / f"manhattan_{p}.png"
        written.append(
            manhattan_png(
                block,
                score,
                out,
                ylabel=ylabel,
                top=top,
                title=f"Marker effects on {p} ({gen['prior']} prior, {len(block)} markers)",
            )
        )
    return written


def _cell_residuals(gen: dict, rec: dict) -> np.ndarray:
    """The genotype residual u_g of each phenotyped cell's genotype (0 without a residual)."""
    cells = np.asarray(gen["cell_genotype"])
    if not rec["s2u"] > 0:
        return np.zeros(len(cells))
    position = {g: k for k, g in enumerate(gen["genotype_rows"])}
    return np.asarray(rec["u"])[[position[g] for g in cells]]


def genetic_values(res) -> pd.DataFrame:
    """Per phenotyped cell (genotype, and scenario level with an interaction) and parameter: the
    posterior mean genetic value on the transformed scale (``value``), split into the part the
    markers predict (``markers``) and the genotype residual (``residual``); ``psi`` is the
    parameter of a typical individual of that genotype (random effect 0; covariates at 0 and
    the fit's reference levels: see ``mu``)."""
    gen = genomic_posterior(res)
    rows = np.asarray(gen["cell_genotype"])
    geno = np.asarray(
        res.marker_matrix.genotypes if res.marker_matrix is not None else gen["genotypes"], dtype=object
    )
    out = []
    levels = gen.get("levels") or [None]
    mu = res.estimation.mu
    for p, rec in zip(gen["params"], gen["per_param"]):
        k = res.model.parameters.index(p)
        fitted = np.asarray(rec["fitted"])
        resid = _cell_residuals(gen, rec)
        df = pd.DataFrame(
            {
                "genotype": geno[rows],
                "parameter": p,
                "value": fitted,
                "markers": fitted - resid,
                "residual": resid,
            }
        )
        if gen.get("interaction"):
            df.insert(1, gen["interaction"], [levels[c] for c in gen["cell_level"]])
        import torch

        df["psi"] = tr.forward(
            res.model.transforms[p], torch.as_tensor(mu[k] + fitted, dtype=torch.float64)
        ).numpy()
        out.append(df)
    return pd.concat(out, ignore_index=True)


def variance_explained(res) -> pd.DataFrame:
    """Per parameter with marker effects, the variance of the transformed parameter split into:
    covariates (X beta over individuals), markers (G gamma over phenotyped genotypes), marker x
    scenario interaction, genotype residual (s2_u) and individual random effect (omega2); and
    the share explained by markers (markers / total) and the markers' share of the genetic
    variance (markers / (markers + interaction + residual))."""
    gen = genomic_posterior(res)
    cells = np.asarray(gen["cell_genotype"])
    genos, first = np.unique(cells, return_index=True)
    out = []
    for p, rec in zip(gen["params"], gen["per_param"]):
        Xb = np.zeros(res.data.n_individuals)
        for j, target in enumerate(res.design.parameters):
            if target == p:
                Xb += res.design.matrix[:, j] * res.estimation.beta[j]
        fitted = np.asarray(rec["fitted"])
        marker_cells = fitted - _cell_residuals(gen, rec)
        main = np.asarray(rec["main_cells"])  # G gamma (main effects only)
        var_markers = float(np.var(main[first]))
        var_inter = float(np.var(marker_cells - main)) if gen.get("interaction") else 0.0
        omega = float(res.omega.loc[p, p])
        total = float(np.var(Xb)) + var_markers + var_inter + rec["s2u"] + omega
        genetic = var_markers + var_inter + rec["s2u"]
        out.append(
            dict(
                parameter=p,
                covariates=float(np.var(Xb)),
                markers=var_markers,
                interaction=var_inter,
                genotype_residual=rec["s2u"],
                individual=omega,
                share_markers=var_markers / total if total > 0 else np.nan,
                share_markers_of_genetic=var_markers / genetic if genetic > 0 else np.nan,
                n_genotypes=int(len(genos)),
            )
        )
    return pd.DataFrame(out).set_index("parameter")


def reattach_markers(estimation, markers) -> dict:
    """The marker matrix of a reloaded genomic fit, rebuilt from the same source and checked
    against the saved markers and standardization."""
    import warnings

    from pymixnn.data.markers import prepare_markers

    gen = estimation.genomic
    if not gen:
        raise ValueError("markers= is only for a genomic fit; this one has no genomic block")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the counts were reported at fit time
        mm = prepare_markers(
            markers, [gen["genotypes"][r] for r in gen["genotype_rows"]], id=gen.get("markers_id")
        )
    if list(mm.names) != list(gen["marker_names"]) or not np.allclose(mm.scale, gen["marker_scale"]):
        raise ValueError(
            "markers= differs from the marker matrix of the fit (other markers or "
            "other values); pass the matrix the fit used"
        )
    return dict(
        matrix=mm, genotype=gen.get("genotype_column"), levels=gen.get("levels"), residual=gen["residual"]
    )
