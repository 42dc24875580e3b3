"""Outputs of a genomic fit (results layer): marker effects, top markers, Manhattan plots, variance
explained, genetic values and curves predicted for genotypes never phenotyped.

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

__all__ = ["marker_effects", "top_markers", "plot_manhattan", "variance_explained",
           "genetic_values", "genotype_parameters", "predict_genotypes", "BANDS"]


def _genomic(res) -> dict:
    gen = getattr(res.estimation, "genomic", None)
    if not gen:
        raise ValueError("this fit has no genomic block: fit with genotype=... and "
                         "genomic=pymixnn.Genomic(markers, params=[...])")
    return gen


def _matrix(res, what: str):
    if res._markers is None:
        raise ValueError(f"{what} needs the marker matrix, which a saved fit does not keep: "
                         "reload it with Results.load(path, markers=<the fit's marker matrix>)")
    return res._markers["matrix"]


def _names(res, gen) -> list[str]:
    if res._markers is not None:
        return list(res._markers["matrix"].names)
    return list(gen["marker_names"])


def marker_effects(res) -> pd.DataFrame:
    """One row per (parameter, marker): effect and posterior sd per allele, per marker sd, the
    inclusion probability (horseshoe), and chr / pos when a map was given; with an interaction,
    further rows per scenario level (``term`` = "column[level]")."""
    gen = _genomic(res)
    names = _names(res, gen)
    scale = np.asarray(gen["marker_scale"])
    mp = gen.get("marker_map")
    frames = []
    levels = gen.get("levels") or [None]
    for p, rec in zip(gen["params"], gen["per_param"]):
        terms = [("main", rec["mean"], rec["sd"])]
        for l, (m_l, s_l) in enumerate(zip(rec["levels_mean"], rec["levels_sd"]), start=1):
            terms.append((f"{gen['interaction']}[{levels[l]}]", m_l, s_l))
        for term, mean, sd in terms:
            df = pd.DataFrame({"parameter": p, "marker": names,
                               "effect": np.asarray(mean) / scale, "sd": np.asarray(sd) / scale,
                               "effect_std": np.asarray(mean), "sd_std": np.asarray(sd)})
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
    (horseshoe) or |effect| / sd (ridge); column ``rank`` from 1."""
    gen = _genomic(res)
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
    """Manhattan-style PNG per parameter: inclusion probability (horseshoe) or |effect| / sd
    (ridge) by marker, by chromosome and position when a map was given (alternating colours),
    the ``top`` markers labelled. ``path``: a directory (files ``manhattan_<param>.png``) or, for
    one parameter, a .png file. Returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gen = _genomic(res)
    params = gen["params"] if parameter is None else [parameter]
    path = Path(path)
    if path.suffix.lower() == ".png" and len(params) > 1:
        raise ValueError(f"{path} is one file but there are {len(params)} parameters "
                         f"{params}: give a directory or parameter=")
    eff = marker_effects(res)
    if "term" in eff:
        eff = eff[eff["term"] == "main"]
    written = []
    for p in params:
        block = eff[eff["parameter"] == p].reset_index(drop=True)
        score = _score(block, gen["prior"]).to_numpy()
        ylabel = ("inclusion probability (1 - shrinkage)" if gen["prior"] == "horseshoe"
                  else "|effect| / posterior sd")
        fig, ax = plt.subplots(figsize=(10, 3.6))
        if "chr" in block:
            order = _chromosome_order(block["chr"])
            block["_c"] = block["chr"].map(order)
            block = block.assign(_s=score).sort_values(["_c", "pos"], kind="stable")
            offsets, ticks, labels, start = {}, [], [], 0.0
            for c, grp in block.groupby("_c", sort=True):
                span = float(grp["pos"].max() - grp["pos"].min()) if len(grp) > 1 else 1.0
                offsets[c] = start - float(grp["pos"].min())
                ticks.append(start + span / 2)
                labels.append(str(grp["chr"].iloc[0]))
                start += span * 1.04 + 1e-9
            xpos = block["pos"] + block["_c"].map(offsets)
            colors = np.where(block["_c"] % 2 == 0, "tab:blue", "tab:gray")
            ax.scatter(xpos, block["_s"], s=8, c=colors)
            ax.set_xticks(ticks)
            ax.set_xticklabels(labels)
            ax.set_xlabel("chromosome (position)")
            score_sorted, names, xs = block["_s"].to_numpy(), block["marker"].to_numpy(), xpos.to_numpy()
        else:
            xs = np.arange(len(block))
            ax.scatter(xs, score, s=8, c="tab:blue")
            ax.set_xlabel("marker (matrix order)")
            score_sorted, names = score, block["marker"].to_numpy()
        for k in np.argsort(-score_sorted)[:top]:
            ax.annotate(str(names[k]), (xs[k], score_sorted[k]), fontsize=7, rotation=30,
                        xytext=(2, 2), textcoords="offset points")
        ax.set_ylabel(ylabel)
        ax.set_title(f"Marker effects on {p} ({gen['prior']} prior, {len(block)} markers)")
        fig.tight_layout()
        out = path if path.suffix.lower() == ".png" else path / f"manhattan_{p}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        written.append(out)
    return written


def _chromosome_order(chrs: pd.Series) -> dict:
    def key(c):
        s = str(c)
        return (0, int(s), s) if s.isdigit() else (1, 0, s)

    return {c: k for k, c in enumerate(sorted(pd.unique(chrs), key=key))}


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
    gen = _genomic(res)
    rows = np.asarray(gen["cell_genotype"])
    geno = np.asarray(res._markers["matrix"].genotypes if res._markers is not None
                      else gen["genotypes"], dtype=object)
    out = []
    levels = gen.get("levels") or [None]
    mu = res.estimation.mu
    for p, rec in zip(gen["params"], gen["per_param"]):
        k = res.model.parameters.index(p)
        fitted = np.asarray(rec["fitted"])
        resid = _cell_residuals(gen, rec)
        df = pd.DataFrame({"genotype": geno[rows], "parameter": p, "value": fitted,
                           "markers": fitted - resid, "residual": resid})
        if gen.get("interaction"):
            df.insert(1, gen["interaction"], [levels[l] for l in gen["cell_level"]])
        import torch

        df["psi"] = tr.forward(res.model.transforms[p],
                               torch.as_tensor(mu[k] + fitted, dtype=torch.float64)).numpy()
        out.append(df)
    return pd.concat(out, ignore_index=True)


def variance_explained(res) -> pd.DataFrame:
    """Per parameter with marker effects, the variance of the transformed parameter split into:
    covariates (X beta over individuals), markers (G gamma over phenotyped genotypes), marker x
    scenario interaction, genotype residual (s2_u) and individual random effect (omega2); and
    the share explained by markers (markers / total) and the markers' share of the genetic
    variance (markers / (markers + interaction + residual))."""
    gen = _genomic(res)
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
        out.append(dict(parameter=p, covariates=float(np.var(Xb)), markers=var_markers,
                        interaction=var_inter, genotype_residual=rec["s2u"], individual=omega,
                        share_markers=var_markers / total if total > 0 else np.nan,
                        share_markers_of_genetic=var_markers / genetic if genetic > 0 else np.nan,
                        n_genotypes=int(len(genos))))
    return pd.DataFrame(out).set_index("parameter")


def _scenarios(res, scenario) -> list[dict]:
    """The covariate values (and interaction level) of each prediction scenario."""
    gen = _genomic(res)
    columns = list(dict.fromkeys(list(res.design.columns)
                                 + ([gen["interaction"]] if gen.get("interaction") else [])))
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
        raise ValueError(f"scenario={scenario!r}: the fit has covariates {columns}; give a dict "
                         "{column: value} for each" if columns else
                         f"scenario={scenario!r}: this fit has no scenario covariate")
    observed = set(pd.unique(res.data.covariates[columns[0]]))
    bad = [v for v in values if v not in observed and not isinstance(v, (int, float))]
    if bad:
        raise ValueError(f"scenario {bad[0]!r} is not a level of {columns[0]!r}: "
                         f"{sorted(observed, key=str)}")
    return [{columns[0]: v} for v in values]


def _new_markers(res, markers_new):
    from pymixnn.data.markers import read_markers

    mm = _matrix(res, "prediction for new genotypes")
    raw = read_markers(markers_new, id=res.estimation.genomic.get("markers_id"))
    return list(raw.index.astype(str)), mm.standardize(raw)


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
        mm = prepare_markers(markers, [gen["genotypes"][r] for r in gen["genotype_rows"]],
                             id=gen.get("markers_id"))
    if list(mm.names) != list(gen["marker_names"]) or not np.allclose(mm.scale, gen["marker_scale"]):
        raise ValueError("markers= differs from the marker matrix of the fit (other markers or "
                         "other values); pass the matrix the fit used")
    return dict(matrix=mm, genotype=gen.get("genotype_column"), levels=gen.get("levels"),
                residual=gen["residual"])


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
            psi = tr.forward(res.model.transforms[p],
                             torch.as_tensor(phi0[:, k] + mean, dtype=torch.float64)).numpy()
            df = pd.DataFrame({"genotype": ids, "parameter": p, "value": mean, "sd": np.sqrt(var),
                               "psi": psi})
            for c, v in sc.items():
                df.insert(1, c, v)
            out.append(df)
    return pd.concat(out, ignore_index=True)


def _predictive_by_scenario(res, G: np.ndarray, scenario):
    """Per prediction scenario: (scenario, phi0 = the population parameters (n, P) at its
    covariates, {parameter: (column k, predictive mean, predictive variance)} of the new
    genotypes' genetic values)."""
    from pymixnn.inference.genomic import predictive

    gen = _genomic(res)
    G_train = _matrix(res, "prediction").values[np.asarray(gen["cell_genotype"])]
    n = G.shape[0]
    for sc in _scenarios(res, scenario):
        Z = (res.design.transform(pd.DataFrame([sc] * n)) if res.design.n_effects
             else np.zeros((n, 0)))
        level = _level(res, gen, sc)
        by_param = {}
        for p, rec in zip(gen["params"], gen["per_param"]):
            mean, var = predictive(G, rec, G_train, np.asarray(gen["cell_level"]), level=level)
            by_param[p] = (res.model.parameters.index(p), mean, var)
        yield sc, res._phi_population(Z), by_param


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
        raise ValueError(f"band must be 'mean' (the genotype's typical curve) or 'individual' (a new "
                         f"individual of the genotype), got {band!r}")
    if individual is not None:
        implied = "individual" if individual else "mean"
        if band is not None and band != implied:
            raise ValueError(f"band={band!r} contradicts individual={individual!r}: give only band=")
        return implied
    if band is None:
        warnings.warn("predict_genotypes: the lower/upper band is for the genotype's typical (mean) "
                      "curve, not for a single new individual of that genotype (much narrower); "
                      "pass band='individual' for the band of one new individual, or band='mean' "
                      "to silence this warning", UserWarning, stacklevel=4)
        return "mean"
    return band


def predict_genotypes(res, markers_new, x_grid, scenario=None, *, level: float = 0.9,
                      n_draws: int = 1000, band: str | None = None, individual: bool | None = None,
                      seed: int = 0) -> pd.DataFrame:
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
            eta = res._law_draws(n_draws * len(ids), seed=seed).reshape(n_draws, len(ids), -1)
            draws = draws + res._eta_full(eta.reshape(-1, eta.shape[-1])).reshape(n_draws, len(ids), P)
        typical = res._psi(phi0 + mean)  # (n, P)
        curves_typ = res._evaluate(np.repeat(typical, T, axis=0), np.tile(grid, (len(ids), 1)))
        psi_d = res._psi((phi0[None] + draws).reshape(-1, P))  # (D*n, P)
        curves = res._evaluate(np.repeat(psi_d, T, axis=0), np.tile(grid, (n_draws * len(ids), 1)))
        curves = curves.reshape(n_draws, len(ids), T)
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
