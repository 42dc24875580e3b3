"""Simulators of observations that are not continuous and Gaussian, with known truth: binomial
senescence counts and left-censored PK concentrations (below a limit of quantification)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pymixnn.simulate.laws import NormalMixture1D, RandomEffectLaw1D
from pymixnn.simulate.nlme import onecpt_oral, simulate_lognormal

__all__ = ["simulate_senescence", "simulate_censored_pk"]


def simulate_senescence(
    n_plants: int = 300,
    *,
    times: Sequence[float] | np.ndarray | None = None,
    onset: float = 34.0,
    onset_law: RandomEffectLaw1D | None = None,
    scale: float = 4.0,
    omega2_scale: float = 0.04,
    leaves: tuple[int, int] = (10, 16),
    seed: int = 0,
) -> pd.DataFrame:
    """Senescent leaves out of each plant's leaves over time (binomial counts with a logistic
    progression): y_ij ~ Binomial(n_i, p_ij), logit p_ij = (t_j - T50_i) / s_i.

    T50_i = onset + onset_law draw (default: bimodal, 40% early and 60% late plants, the modes
    15 days apart, sd 3 days each); log s_i ~ N(log scale, omega2_scale); n_i uniform on the
    integers of ``leaves``; everyone observed at ``times`` (default every 4 days, days 0-60).

    Returns columns id, t, leaves, y; ``attrs["strategy"]`` (each plant's onset strategy, the
    mixture component 1..K it was drawn from), ``attrs["truth"]`` (T50, s, omega2.s, the onset law's repr
    and variance) and ``attrs["psi"]`` (individual T50 and s), ``attrs["onset_law"]`` (the law of
    T50 - onset, with ``logpdf`` and ``sample``).
    """
    t = np.arange(0.0, 61.0, 4.0) if times is None else np.asarray(times, float)
    law = onset_law if onset_law is not None else NormalMixture1D([0.4, 0.6], [0.0, 15.0], [3.0, 3.0])
    if n_plants < 1:
        raise ValueError(f"n_plants must be at least 1, got {n_plants}")
    lo, hi = leaves
    if not 1 <= lo <= hi:
        raise ValueError(f"leaves must be (low, high) with 1 <= low <= high, got {leaves}")
    rng = np.random.default_rng(seed)
    strategy = None
    if hasattr(law, "sample_with_labels"):  # a mixture of onsets: each plant's strategy
        draws, strategy = law.sample_with_labels(rng, n_plants)
        t50 = onset + draws
    else:
        t50 = onset + law.sample(rng, n_plants)
    s = scale * np.exp(math.sqrt(omega2_scale) * rng.standard_normal(n_plants))
    n_leaves = rng.integers(lo, hi + 1, size=n_plants)
    p = 1 / (1 + np.exp(-(t[None, :] - t50[:, None]) / s[:, None]))
    y = rng.binomial(np.repeat(n_leaves[:, None], t.size, axis=1), p)
    ids = np.arange(1, n_plants + 1)
    df = pd.DataFrame(
        {
            "id": np.repeat(ids, t.size),
            "t": np.tile(t, n_plants),
            "leaves": np.repeat(n_leaves, t.size),
            "y": y.ravel(),
        }
    )
    df.attrs["truth"] = {
        "T50": onset,
        "s": scale,
        "omega2.T50": float(law.variance),
        "omega2.s": omega2_scale,
        "law.T50": repr(law),
    }
    df.attrs["psi"] = pd.DataFrame({"T50": t50, "s": s}, index=pd.Index(ids, name="id"))
    df.attrs["onset_law"] = law
    # the onset strategy (mixture component, 1 = the first: by default the early plants) of each
    # plant, in id order; None for a law without components
    df.attrs["strategy"] = None if strategy is None else strategy + 1
    return df


def simulate_censored_pk(
    n_individuals: int = 200,
    *,
    fraction: float = 0.2,
    times: Sequence[float] | np.ndarray | None = None,
    dose: float = 320.0,
    ka: float = 1.5,
    V: float = 30.0,
    CL: float = 3.0,
    omega2: tuple[float, float, float] = (0.2, 0.05, 0.1),
    a: float = 0.1,
    b: float = 0.15,
    seed: int = 0,
) -> pd.DataFrame:
    """One-compartment oral PK (log-normal ka, V, CL; combined error) with the lowest
    ``fraction`` of the concentrations below a limit of quantification (LOQ).

    Returns columns id, dose, time, y, cens, y_true: censored rows (cens = 1) hold the LOQ in y
    (the M3 convention of ``fit(..., censoring="cens")``); y_true keeps the simulated value.
    ``attrs["truth"]`` holds the parameters and ``attrs["loq"]`` the limit.
    """
    t = (
        np.array([0.25, 0.5, 1, 2, 3.5, 5, 7, 9, 12, 18, 24, 30])
        if times is None
        else np.asarray(times, float)
    )
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    design = np.column_stack([np.full(t.size, dose), t])
    df = simulate_lognormal(
        onecpt_oral,
        {"ka": ka, "V": V, "CL": CL},
        omega2,
        x=design,
        n_individuals=n_individuals,
        a=a,
        b=b,
        x_names=["dose", "time"],
        seed=seed,
    )
    loq = float(np.quantile(df["y"], fraction)) if fraction > 0 else -np.inf
    df["y_true"] = df["y"]
    df["cens"] = (df["y"] < loq).astype(int)
    df.loc[df["cens"] == 1, "y"] = loq
    df.attrs["loq"] = loq
    return df
