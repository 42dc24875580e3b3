"""Latent classes of trajectories with known truth: logistic growth whose classes differ in their
fixed effects, with class probabilities that may depend on a binary covariate (tests, benchmarks
and vignette 09 of :class:`pymixnn.LatentClass`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["simulate_latent_classes", "CLASS_TRUTH"]

# three classes differing in A and B (log-scale distances 4.6 to 7 within-class SDs)
CLASS_TRUTH = dict(A=(70.0, 100.0, 140.0), B=(3.0, 5.5, 4.0), C=1.5, probs=(0.3, 0.4, 0.3))


def simulate_latent_classes(
    n_individuals: int = 600,
    n_obs: int = 10,
    *,
    A: Sequence[float] = CLASS_TRUTH["A"],
    B: Sequence[float] = CLASS_TRUTH["B"],
    C: float = CLASS_TRUTH["C"],
    probs: Sequence[float] | Sequence[Sequence[float]] = CLASS_TRUTH["probs"],
    omega2: tuple[float, float, float] = (0.01, 0.01, 0.04),
    sigma: float = 2.0,
    covariate_share: float = 0.5,
    seed: int = 0,
) -> pd.DataFrame:
    """Logistic growth y_ij = A_i / (1 + exp(-(t_j - B_i) / C_i)) + sigma e_ij in K latent classes:
    log A_i ~ N(log A[k_i], omega2[0]), log B_i ~ N(log B[k_i], omega2[1]), log C_i ~ N(log C,
    omega2[2]), t_j = linspace(0, 10, n_obs).

    ``probs``: the class probabilities (K,), or two rows (2, K): those of individuals with covariate
    z = 0 and z = 1 (z ~ Bernoulli(``covariate_share``), a column ``z`` of the table).

    Returns columns id, t, y (and z); ``attrs["classes"]`` the true class of each individual
    (1..K, in id order), ``attrs["truth"]`` the class-specific A and B, C, omega2, sigma and the
    probabilities (with a covariate also the membership coefficients of the multinomial logit,
    class 1 the reference: ``membership.class{k}.intercept`` and ``membership.class{k}.z``).
    """
    p = np.asarray(probs, dtype=float)
    A, B = np.asarray(A, float), np.asarray(B, float)
    K = A.size
    if B.size != K or p.shape[-1] != K or p.ndim > 2 or (p.ndim == 2 and p.shape[0] != 2):
        raise ValueError(
            f"A, B and probs must describe the same K classes, got {A.size}, {B.size}, {p.shape}"
        )
    if np.any(p <= 0) or np.any(np.abs(p.sum(-1) - 1) > 1e-9):
        raise ValueError(f"class probabilities must be positive and sum to 1, got {p.tolist()}")
    rng = np.random.default_rng(seed)
    n = int(n_individuals)
    z = None
    if p.ndim == 2:
        z = (rng.random(n) < covariate_share).astype(int)
        cls = np.array([rng.choice(K, p=p[zi]) for zi in z])
    else:
        cls = rng.choice(K, size=n, p=p)
    e = rng.standard_normal((n, 3))
    a = A[cls] * np.exp(np.sqrt(omega2[0]) * e[:, 0])
    b = B[cls] * np.exp(np.sqrt(omega2[1]) * e[:, 1])
    c = C * np.exp(np.sqrt(omega2[2]) * e[:, 2])
    t = np.linspace(0.0, 10.0, n_obs)
    f = a[:, None] / (1 + np.exp(-(t[None, :] - b[:, None]) / c[:, None]))
    y = f + sigma * rng.standard_normal(f.shape)
    ids = np.arange(1, n + 1)
    df = pd.DataFrame({"id": np.repeat(ids, n_obs), "t": np.tile(t, n), "y": y.ravel()})
    if z is not None:
        df["z"] = np.repeat(z, n_obs)
    truth = {f"A.class{k + 1}": A[k] for k in range(K)} | {f"B.class{k + 1}": B[k] for k in range(K)}
    truth |= {"C": C, "omega2.A": omega2[0], "omega2.B": omega2[1], "omega2.C": omega2[2], "a": sigma}
    if p.ndim == 2:
        for k in range(1, K):
            truth[f"membership.class{k + 1}.intercept"] = float(np.log(p[0, k] / p[0, 0]))
            truth[f"membership.class{k + 1}.z"] = float(np.log(p[1, k] / p[1, 0]) - np.log(p[0, k] / p[0, 0]))
    else:
        truth |= {f"prob.{k + 1}": float(p[k]) for k in range(K)}
    df.attrs["truth"] = truth
    df.attrs["classes"] = cls + 1
    df.attrs["psi"] = pd.DataFrame({"A": a, "B": b, "C": c}, index=pd.Index(ids, name="id"))
    return df
