"""The Gaussian nonlinear mixed-effects simulator (:func:`simulate_nlme`, see :mod:`pymixnn.simulate`
for the model) and its textbook case, logistic growth; the NumPy structural models they use."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pymixnn.model import transforms as tr
from pymixnn.simulate.laws import RandomEffectLaw1D

__all__ = [
    "simulate_nlme",
    "simulate_lognormal",
    "simulate_logistic",
    "logistic",
    "onecpt_oral",
    "transform_name",
]

_TRANSFORM_KEYS = {
    **{name: name for name in tr.TRANSFORMS},
    **{code: name for name, code in tr.SAEMIX_CODES.items()},
}


def transform_name(name: str | int) -> str:
    """The transform's name in the table of :mod:`pymixnn.model.transforms` (names or saemix codes)."""
    key = name.lower() if isinstance(name, str) else name
    if isinstance(key, bool) or key not in _TRANSFORM_KEYS:
        raise ValueError(
            f"unknown transform {name!r}; use 'identity', 'log', 'probit', 'logit' or saemix codes 0-3"
        )
    return _TRANSFORM_KEYS[key]


def logistic(psi: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y = A / (1 + exp(-(t - B) / C)) with psi[..., :] = (A, B, C) and t = x[..., 0] (nlme SSlogis)."""
    return psi[..., 0] / (1 + np.exp(-(x[..., 0] - psi[..., 1]) / psi[..., 2]))


def simulate_nlme(
    f: Callable[[np.ndarray, np.ndarray], np.ndarray],
    param_names: Sequence[str],
    *,
    mu_natural: Mapping[str, float],
    omega2: Mapping[str, float],
    transforms: Mapping[str, str | int],
    x: np.ndarray,
    n_individuals: int,
    a: float = 1.0,
    b: float = 0.0,
    x_names: Sequence[str] | None = None,
    seed: int = 0,
    laws: Mapping[str, RandomEffectLaw1D] | None = None,
) -> pd.DataFrame:
    """Simulate a long table from a nonlinear mixed-effects model with a diagonal omega.

    Parameters
    ----------
    f : NumPy structural model, ``f(psi, x)`` with psi of shape (N, 1, P) and x of shape (1, T, q),
        returning the (N, T) predictions.
    param_names : the P parameter names, in the order f reads them from psi's last axis.
    mu_natural : fixed effects on the natural (psi) scale, by name.
    omega2 : variances of the random effects on the transformed (phi) scale, by name; 0 gives a
        parameter without random effect.
    transforms : transform per name ('identity', 'log', 'probit', 'logit' or saemix codes 0-3).
    x : shared design, shape (T, q), or (T,) for one column.
    n_individuals : N.
    a, b : residual error sd = sqrt(a^2 + b^2 f^2); b = 0 is the constant error model.
    x_names : column names for x (default ``t`` for one column, else ``x1..xq``).
    seed : seed of ``numpy.random.default_rng``.
    laws : non-Gaussian laws of some random effects, by parameter name (e.g.
        ``{"A": NormalMixture1D([0.4, 0.6], [-0.24, 0.16], [0.1, 0.1])}``); their draws replace the
        Gaussian ones (independent of the others) and their ``omega2`` entry may be omitted.

    Returns
    -------
    DataFrame with columns ``id`` (1..N), the x columns and ``y``, sorted by id then design row.
    ``attrs["truth"]`` holds the fixed effects (natural scale, by parameter name), ``omega2.<name>``
    and the residual parameters ``a`` (and ``b`` when b != 0), in saemix's naming;
    ``attrs["psi"]`` is a DataFrame of the individual parameters indexed by id.
    """
    names = list(param_names)
    laws = dict(laws or {})
    unknown = set(laws) - set(names)
    if unknown:
        raise ValueError(f"laws given for unknown parameters {sorted(unknown)}")
    omega2 = {**dict(omega2), **{p: float(law.variance) for p, law in laws.items()}}
    for label, mapping in (("mu_natural", mu_natural), ("omega2", omega2), ("transforms", transforms)):
        missing = [p for p in names if p not in mapping]
        if missing:
            raise ValueError(f"{label} has no entry for parameter(s) {missing}")
    if n_individuals < 1:
        raise ValueError(f"n_individuals must be at least 1, got {n_individuals}")
    if a < 0 or b < 0 or a == b == 0:
        raise ValueError(f"residual error needs a >= 0, b >= 0 and not both 0; got a={a}, b={b}")
    omega2_values = np.array([float(omega2[p]) for p in names])
    if np.any(omega2_values < 0):
        raise ValueError(f"omega2 must be non-negative, got {dict(omega2)}")

    design = np.asarray(x, dtype=float)
    if design.ndim == 1:
        design = design[:, None]
    if design.ndim != 2:
        raise ValueError(f"x must have shape (T, q) or (T,), got {np.shape(x)}")
    n_obs, q = design.shape
    if x_names is None:
        x_names = ["t"] if q == 1 else [f"x{k + 1}" for k in range(q)]
    x_names = list(x_names)
    if len(x_names) != q or set(x_names) & {"id", "y"}:
        raise ValueError(f"x_names must give {q} names other than 'id' and 'y', got {x_names}")

    kinds = [transform_name(transforms[p]) for p in names]
    mu_phi = np.array([tr.inverse_scalar(kind, mu_natural[p]) for kind, p in zip(kinds, names)])

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_individuals, len(names)))  # random effects first ...
    e = rng.standard_normal((n_individuals, n_obs))  # ... then residuals
    phi = mu_phi + z * np.sqrt(omega2_values)
    for p, law in laws.items():
        # after the residuals, so the Gaussian parts of the design stay the same draws
        k = names.index(p)
        phi[:, k] = mu_phi[k] + law.sample(rng, n_individuals)
    psi = np.column_stack([tr.forward_numpy(kind, phi[:, k]) for k, kind in enumerate(kinds)])

    pred = np.asarray(f(psi[:, None, :], design[None, :, :]), dtype=float)
    if pred.shape != (n_individuals, n_obs):
        raise ValueError(f"f returned shape {pred.shape}, expected {(n_individuals, n_obs)}")
    y = pred + np.sqrt(a**2 + b**2 * pred**2) * e

    ids = np.arange(1, n_individuals + 1)
    df = pd.DataFrame({"id": np.repeat(ids, n_obs)})
    for k, name in enumerate(x_names):
        df[name] = np.tile(design[:, k], n_individuals)
    df["y"] = y.ravel()

    truth: dict[str, float] = {p: float(mu_natural[p]) for p in names}
    truth.update({f"omega2.{p}": float(omega2[p]) for p in names})
    truth.update({f"law.{p}": repr(law) for p, law in laws.items()})
    truth["a"] = float(a)
    if b != 0:
        truth["b"] = float(b)
    df.attrs["truth"] = truth
    df.attrs["psi"] = pd.DataFrame(psi, index=pd.Index(ids, name="id"), columns=names)
    return df


def simulate_lognormal(
    f: Callable[[np.ndarray, np.ndarray], np.ndarray],
    mu_natural: Mapping[str, float],
    omega2: Sequence[float],
    **options: Any,
) -> pd.DataFrame:
    """:func:`simulate_nlme` with every parameter log-normal: ``mu_natural`` by name in the order
    f reads them, ``omega2`` their variances in that order; ``options`` as simulate_nlme's."""
    names = tuple(mu_natural)
    omega = dict(zip(names, omega2))
    return simulate_nlme(
        f, names, mu_natural=dict(mu_natural), omega2=omega, transforms=dict.fromkeys(names, "log"), **options
    )


def simulate_logistic(
    n_individuals: int = 1000,
    n_obs: int = 10,
    *,
    A: float = 100.0,
    B: float = 5.0,
    C: float = 1.5,
    omega2: tuple[float, float, float] = (0.04, 0.0225, 0.04),
    sigma: float = 2.0,
    times: Sequence[float] | np.ndarray | None = None,
    seed: int = 0,
    laws: Mapping[str, RandomEffectLaw1D] | None = None,
) -> pd.DataFrame:
    """Logistic growth with log-normal A, B, C and constant error (the nlme/saemix textbook case).

    y_ij = A_i / (1 + exp(-(t_ij - B_i) / C_i)) + sigma e_ij, with log A_i ~ N(log A, omega2[0]),
    log B_i ~ N(log B, omega2[1]), log C_i ~ N(log C, omega2[2]) independent. Everyone is observed
    at ``times``, by default ``np.linspace(0, 10, n_obs)``; given times override n_obs.

    Returns a DataFrame with columns id, t, y and ``attrs["truth"]`` = {A, B, C, omega2.A,
    omega2.B, omega2.C, a (= sigma)}, ``attrs["psi"]`` = individual A, B, C indexed by id.
    """
    t = np.linspace(0.0, 10.0, n_obs) if times is None else np.asarray(times, dtype=float)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"times must be a non-empty 1-d sequence, got shape {t.shape}")
    return simulate_lognormal(
        logistic,
        {"A": A, "B": B, "C": C},
        omega2,
        x=t,
        n_individuals=n_individuals,
        a=sigma,
        b=0.0,
        seed=seed,
        laws=laws,
    )


def onecpt_oral(psi: np.ndarray, x: np.ndarray) -> np.ndarray:
    """One-compartment oral model in NumPy (x columns dose, time), as pymixnn.models.pk."""
    ka, v, cl = psi[..., 0], psi[..., 1], psi[..., 2]
    k = cl / v
    return x[..., 0] * ka / (v * (ka - k)) * (np.exp(-k * x[..., 1]) - np.exp(-ka * x[..., 1]))


def simulate_dose_groups(
    doses: Sequence[float] = (10.0, 30.0, 300.0),
    n_per_group: int = 60,
    *,
    times: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 24.0),
    ka: float = 1.5,
    V: float = 20.0,
    CL: float = 2.0,
    omega2: tuple[float, float, float] = (0.1, 0.04, 0.09),
    b: float = 0.15,
    seed: int = 0,
) -> pd.DataFrame:
    """One-compartment oral concentrations of groups of individuals given different doses (linear
    pharmacokinetics: the concentration is proportional to the dose), the data of a
    prediction-corrected VPC.

    Log-normal ka, V, CL (variances ``omega2`` in that order), proportional error of sd
    ``b`` * f. Group g (seed ``seed + g``) has ``n_per_group`` individuals with ids numbered on
    from the previous group's. Returns a DataFrame with columns id, Dose, Time, y (sorted by id
    then time) and ``attrs["truth"]`` (ka, V, CL, omega2.ka, omega2.V, omega2.CL, b).
    """
    if len(doses) < 1 or any(float(dv) <= 0 for dv in doses):
        raise ValueError(f"doses must be positive, got {list(doses)}")
    frames = []
    t = np.asarray(times, dtype=float)
    for g, dose in enumerate(doses):
        x = np.column_stack([np.full(t.size, float(dose)), t])
        df = simulate_lognormal(
            onecpt_oral,
            {"ka": ka, "V": V, "CL": CL},
            omega2,
            x=x,
            x_names=["Dose", "Time"],
            n_individuals=n_per_group,
            a=0.0,
            b=b,
            seed=seed + g,
        )
        df["id"] = df["id"] + g * n_per_group
        frames.append(df)
    truth = dict(frames[0].attrs["truth"])
    truth.pop("a", None)
    for frame in frames:  # (attrs holding frames cannot be compared by concat)
        frame.attrs = {}
    out = pd.concat(frames, ignore_index=True)
    out.attrs["truth"] = truth
    return out
