"""Simulators of genomic data with known truth: unlinked biallelic markers and logistic growth
curves of genotypes x scenarios driven by causal markers (for ``fit(..., genomic=...)``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["simulate_markers", "simulate_genomic"]


def simulate_markers(
    n_genotypes: int = 250, n_markers: int = 60_000, *, maf: tuple[float, float] = (0.05, 0.5), seed: int = 0
) -> pd.DataFrame:
    """Unlinked biallelic markers coded 0/1/2 (Hardy-Weinberg, minor-allele frequency uniform on
    ``maf``), genotypes ``G0001``... as index, markers ``snp00001``... as columns; float32."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(maf[0], maf[1], n_markers).astype(np.float32)
    values = (rng.random((n_genotypes, n_markers), dtype=np.float32) < p).astype(np.float32)
    values += rng.random((n_genotypes, n_markers), dtype=np.float32) < p
    width = len(str(n_genotypes))
    return pd.DataFrame(
        values,
        index=pd.Index([f"G{k + 1:0{width}d}" for k in range(n_genotypes)], name="genotype"),
        columns=[f"snp{j + 1:05d}" for j in range(n_markers)],
    )


def simulate_genomic(
    markers: pd.DataFrame,
    *,
    n_scenarios: int = 3,
    times: Sequence[float] | None = None,
    n_causal: int = 10,
    mu: Mapping[str, float] | None = None,
    var_markers: Mapping[str, float] | None = None,
    var_residual: Mapping[str, float] | None = None,
    omega2: Mapping[str, float] | None = None,
    scenario_effect: Sequence[float] = (0.0, -0.2, -0.5),
    sigma: float = 2.0,
    effects: str = "equal",
    max_ld: float | None = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Logistic growth curves of genotypes x water scenarios driven by markers, with known truth.

    For genotype g (a row of ``markers``, genotypes x markers coded 0/1/2 or 0/1), scenario s and
    the individual (plant) i = (g, s), on the log scale of A (asymptote), B (inflection time) and
    C (scale):

        phi_i[p] = log mu[p] + scenario_effect[s] (A only) + G_g gamma_p + u_g[p] + eta_i[p]
        y_ij = A_i / (1 + exp(-(t_j - B_i) / C_i)) + sigma e_ij

    ``G`` is the marker matrix standardized over all its rows (as ``pymixnn.markers`` does);
    gamma_p has ``n_causal`` non-zero entries per parameter (distinct markers; ``effects="equal"``:
    equal magnitudes with random signs, as in QTL simulation studies, or ``"normal"``: N(0, 1)
    draws; rescaled so that the variance of G gamma_p over genotypes is ``var_markers[p]``
    exactly). With ``max_ld`` (default 0.95; ignored above 5,000 markers), causal markers are
    drawn among markers whose largest absolute correlation with any other marker is below it (a marker
    with a near-duplicate cannot be told from it on these genotypes), and the causal markers of
    one parameter have pairwise absolute correlation below 0.5 (distinct loci); u_g ~ N(0, var_residual)
    (genotype residual), eta_i ~ N(0, omega2). Defaults: mu A=100, B=8, C=2.5 (days); var_markers
    0.04 / 0.02 / 0.01; var_residual 0.01 / 0.005 / 0.005; omega2 0.01 each; 21 daily times 0..20.

    Returns the long frame (id, genotype, scenario, t, y) with ``attrs["truth"]``: mu, the
    variances, ``causal`` {param: marker names}, ``effects`` {param: standardized effects of
    the causal markers}, ``genetic`` (DataFrame per genotype: A, B, C marker parts and
    ``u_A``...), ``scenario_effect``.
    """
    rng = np.random.default_rng(seed)
    params = ("A", "B", "C")
    mu = {"A": 100.0, "B": 8.0, "C": 2.5, **(mu or {})}
    var_markers = {"A": 0.04, "B": 0.02, "C": 0.01, **(var_markers or {})}
    var_residual = {"A": 0.01, "B": 0.005, "C": 0.005, **(var_residual or {})}
    omega2 = {"A": 0.01, "B": 0.01, "C": 0.01, **(omega2 or {})}
    t = np.arange(21.0) if times is None else np.asarray(times, dtype=float)
    if len(scenario_effect) < n_scenarios:
        raise ValueError(f"scenario_effect has {len(scenario_effect)} values for {n_scenarios} scenarios")
    raw = markers.to_numpy(dtype=np.float64)
    mean, sd = np.nanmean(raw, axis=0), np.nanstd(raw, axis=0)
    usable = np.flatnonzero(sd > 0)
    G = (np.where(np.isnan(raw), mean, raw)[:, usable] - mean[usable]) / sd[usable]
    names = np.asarray(markers.columns)[usable]
    n_geno = len(markers)
    candidates = np.arange(len(usable))
    R = None
    if max_ld is not None and len(usable) <= 5000:
        R = np.abs(np.corrcoef(G.T))
        np.fill_diagonal(R, 0.0)
        candidates = np.flatnonzero(R.max(0) < max_ld)
    if len(candidates) < n_causal * len(params):
        raise ValueError(
            f"only {len(candidates)} markers qualify as causal (max_ld={max_ld}); "
            f"{n_causal * len(params)} needed"
        )
    order = rng.permutation(candidates)
    chosen, taken = [], set()
    for k in range(len(params)):
        picked: list[int] = []
        for j in order:
            if j in taken or (R is not None and any(R[j, q] >= 0.5 for q in picked)):
                continue
            picked.append(int(j))
            if len(picked) == n_causal:
                break
        if len(picked) < n_causal:
            raise ValueError(
                f"could not draw {n_causal} causal markers in distinct loci for {params[k]}; lower n_causal"
            )
        taken.update(picked)
        chosen.extend(picked)
    chosen = np.asarray(chosen)
    genetic = pd.DataFrame(index=markers.index.astype(str))
    causal, effect_sizes = {}, {}
    for k, p in enumerate(params):
        cols = chosen[k * n_causal : (k + 1) * n_causal]
        if effects == "equal":
            b = rng.choice([-1.0, 1.0], size=n_causal)
        elif effects == "normal":
            b = rng.standard_normal(n_causal)
        else:
            raise ValueError(f"effects must be 'equal' or 'normal', got {effects!r}")
        value = G[:, cols] @ b
        scale = math.sqrt(var_markers[p] / value.var()) if var_markers[p] > 0 else 0.0
        causal[p], effect_sizes[p] = list(names[cols]), (b * scale).tolist()
        genetic[p] = value * scale
        genetic[f"u_{p}"] = rng.normal(0.0, math.sqrt(var_residual[p]), n_geno)
    rows = []
    levels = (
        ["WW", "WD", "SD", "S4", "S5", "S6"][:n_scenarios]
        if n_scenarios <= 6
        else [f"S{k + 1}" for k in range(n_scenarios)]
    )
    eta = rng.standard_normal((n_geno, n_scenarios, len(params)))
    noise = rng.standard_normal((n_geno, n_scenarios, len(t)))
    for gi, g in enumerate(genetic.index):
        for s in range(n_scenarios):
            psi = []
            for k, p in enumerate(params):
                phi = (
                    math.log(mu[p])
                    + (scenario_effect[s] if p == "A" else 0.0)
                    + genetic[p].iloc[gi]
                    + genetic[f"u_{p}"].iloc[gi]
                    + math.sqrt(omega2[p]) * eta[gi, s, k]
                )
                psi.append(math.exp(phi))
            A, B, C = psi
            y = A / (1.0 + np.exp(-(t - B) / C)) + sigma * noise[gi, s]
            rows.append(
                pd.DataFrame({"id": f"{g}_{levels[s]}", "genotype": g, "scenario": levels[s], "t": t, "y": y})
            )
    df = pd.concat(rows, ignore_index=True)
    df.attrs["truth"] = dict(
        mu=mu,
        var_markers=var_markers,
        var_residual=var_residual,
        omega2=omega2,
        causal=causal,
        effects=effect_sizes,
        genetic=genetic,
        scenario_effect=list(scenario_effect[:n_scenarios]),
        sigma=sigma,
        levels=levels,
    )
    return df
