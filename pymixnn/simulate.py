"""Simulate nonlinear mixed-effects data with known truth (tests, benchmarks, vignettes).

The model is the one pymixnn fits: for individual i = 1..N and observation j,

    phi_i = h^{-1}(mu) + eta_i,   eta_i ~ N(0, diag(omega2)),   psi_i = h(phi_i)
    y_ij  = f(psi_i, x_j) + sqrt(a^2 + b^2 f(psi_i, x_j)^2) * e_ij,   e_ij ~ N(0, 1)

with h the parameter transform (saemix's ``transform.par``: identity, log, probit, logit), ``mu``
the fixed effects on the natural scale, and a constant (``b = 0``) or combined residual error.
Everyone shares the same design ``x``. This module needs only NumPy and pandas.

The random numbers are drawn in a fixed order from ``numpy.random.default_rng(seed)``: first all
random effects (an (N, P) array of standard normals), then all residuals (an (N, T) array), so the
same seed gives the same frame.

>>> from pymixnn.simulate import simulate_logistic
>>> df = simulate_logistic(n_individuals=3, n_obs=4, seed=1)
>>> df.shape
(12, 3)
>>> df.attrs["truth"]["A"]
100.0
>>> list(df.attrs["psi"].columns)
['A', 'B', 'C']
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from statistics import NormalDist

import numpy as np
import pandas as pd

__all__ = ["simulate_nlme", "simulate_logistic", "simulate_senescence", "simulate_censored_pk",
           "simulate_markers", "simulate_genomic",
           "logistic", "onecpt_oral", "RandomEffectLaw1D", "NormalMixture1D",
           "SkewNormal1D"]

_TRANSFORM_NAMES = {0: "identity", 1: "log", 2: "probit", 3: "logit",
                    "identity": "identity", "log": "log", "probit": "probit", "logit": "logit"}


def _transform_name(name: str | int) -> str:
    key = name.lower() if isinstance(name, str) else name
    if isinstance(key, bool) or key not in _TRANSFORM_NAMES:
        raise ValueError(f"unknown transform {name!r}; use 'identity', 'log', 'probit', 'logit' "
                         "or saemix codes 0-3")
    return _TRANSFORM_NAMES[key]


def _to_phi(name: str, psi: float) -> float:
    """h^{-1}(psi) for one natural-scale value."""
    if name == "identity":
        return float(psi)
    in_support = psi > 0 if name == "log" else 0 < psi < 1
    if not in_support:
        raise ValueError(f"value {psi!r} is outside the support of the {name!r} transform")
    if name == "log":
        return math.log(psi)
    if name == "probit":
        return NormalDist().inv_cdf(psi)
    return math.log(psi / (1 - psi))


def _to_psi(name: str, phi: np.ndarray) -> np.ndarray:
    """h(phi), elementwise."""
    if name == "identity":
        return phi
    if name == "log":
        return np.exp(phi)
    if name == "probit":
        return 0.5 * (1 + np.vectorize(math.erf, otypes=[float])(phi / math.sqrt(2)))
    return 1 / (1 + np.exp(-phi))


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
    laws: Mapping[str, "RandomEffectLaw1D"] | None = None,
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

    kinds = [_transform_name(transforms[p]) for p in names]
    mu_phi = np.array([_to_phi(kind, mu_natural[p]) for kind, p in zip(kinds, names)])

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_individuals, len(names)))      # random effects first ...
    e = rng.standard_normal((n_individuals, n_obs))           # ... then residuals
    phi = mu_phi + z * np.sqrt(omega2_values)
    for p, law in laws.items():
        # after the residuals, so the Gaussian parts of the design stay the same draws
        k = names.index(p)
        phi[:, k] = mu_phi[k] + law.sample(rng, n_individuals)
    psi = np.column_stack([_to_psi(kind, phi[:, k]) for k, kind in enumerate(kinds)])

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


class RandomEffectLaw1D:
    """A zero-mean law for one random effect (transformed scale): ``sample``, ``logpdf``, ``variance``."""

    variance: float

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        raise NotImplementedError

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class NormalMixture1D(RandomEffectLaw1D):
    """sum_k w_k N(m_k, s_k^2), recentred to mean 0 (so ``mu`` stays the mean of phi).

    >>> law = NormalMixture1D.separated(weight=0.4, separation=4.0, sd=0.1)
    >>> [round(m, 3) for m in law.means], round(law.variance, 4)
    ([-0.24, 0.16], 0.0484)
    """

    def __init__(self, weights: Sequence[float], means: Sequence[float], sds: Sequence[float]):
        w = np.asarray(weights, float)
        if np.any(w <= 0) or abs(w.sum() - 1) > 1e-9:
            raise ValueError(f"weights must be positive and sum to 1, got {list(weights)}")
        m, s = np.asarray(means, float), np.asarray(sds, float)
        self.weights, self.means, self.sds = w, m - (w * m).sum(), s
        self.variance = float((w * (s**2 + self.means**2)).sum())

    @classmethod
    def separated(cls, weight: float, separation: float, sd: float) -> "NormalMixture1D":
        """Two components of equal sd, ``separation`` sds apart, the first with ``weight``."""
        return cls([weight, 1 - weight], [0.0, separation * sd], [sd, sd])

    def sample(self, rng, n):
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        return self.means[k] + self.sds[k] * rng.standard_normal(n)

    def logpdf(self, x):
        x = np.asarray(x, float)[..., None]
        comp = (np.log(self.weights) - np.log(self.sds) - 0.5 * np.log(2 * np.pi)
                - 0.5 * ((x - self.means) / self.sds) ** 2)
        top = comp.max(-1, keepdims=True)
        return (top + np.log(np.exp(comp - top).sum(-1, keepdims=True)))[..., 0]

    def __repr__(self):
        return (f"NormalMixture1D(weights={self.weights.round(4).tolist()}, "
                f"means={self.means.round(4).tolist()}, sds={self.sds.round(4).tolist()})")


class SkewNormal1D(RandomEffectLaw1D):
    """Azzalini's skew normal with shape ``alpha`` and scale ``omega``, recentred to mean 0."""

    def __init__(self, alpha: float, omega: float):
        from scipy import stats

        self.alpha, self.omega = float(alpha), float(omega)
        self._dist = stats.skewnorm(self.alpha, scale=self.omega)
        self._mean = float(self._dist.mean())
        self.variance = float(self._dist.var())

    def sample(self, rng, n):
        delta = self.alpha / np.sqrt(1 + self.alpha**2)
        u0, v = rng.standard_normal(n), rng.standard_normal(n)
        x = delta * np.abs(u0) + np.sqrt(1 - delta**2) * v
        return self.omega * x - self._mean

    def logpdf(self, x):
        return self._dist.logpdf(np.asarray(x, float) + self._mean)

    def __repr__(self):
        return f"SkewNormal1D(alpha={self.alpha}, omega={self.omega})"


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
    names = ("A", "B", "C")
    return simulate_nlme(
        logistic, names,
        mu_natural={"A": A, "B": B, "C": C},
        omega2=dict(zip(names, omega2)),
        transforms=dict.fromkeys(names, "log"),
        x=t,
        n_individuals=n_individuals,
        a=sigma,
        b=0.0,
        seed=seed,
        laws=laws,
    )


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

    Returns columns id, t, leaves, y; ``attrs["truth"]`` (T50, s, omega2.s, the onset law's repr
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
    t50 = onset + law.sample(rng, n_plants)
    s = scale * np.exp(math.sqrt(omega2_scale) * rng.standard_normal(n_plants))
    n_leaves = rng.integers(lo, hi + 1, size=n_plants)
    p = 1 / (1 + np.exp(-(t[None, :] - t50[:, None]) / s[:, None]))
    y = rng.binomial(np.repeat(n_leaves[:, None], t.size, axis=1), p)
    ids = np.arange(1, n_plants + 1)
    df = pd.DataFrame({"id": np.repeat(ids, t.size), "t": np.tile(t, n_plants),
                       "leaves": np.repeat(n_leaves, t.size), "y": y.ravel()})
    df.attrs["truth"] = {"T50": onset, "s": scale, "omega2.T50": float(law.variance),
                         "omega2.s": omega2_scale, "law.T50": repr(law)}
    df.attrs["psi"] = pd.DataFrame({"T50": t50, "s": s}, index=pd.Index(ids, name="id"))
    df.attrs["onset_law"] = law
    return df


def onecpt_oral(psi: np.ndarray, x: np.ndarray) -> np.ndarray:
    """One-compartment oral model in NumPy (x columns dose, time), as pymixnn.models.pk."""
    ka, v, cl = psi[..., 0], psi[..., 1], psi[..., 2]
    k = cl / v
    return x[..., 0] * ka / (v * (ka - k)) * (np.exp(-k * x[..., 1]) - np.exp(-ka * x[..., 1]))


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
    t = (np.array([0.25, 0.5, 1, 2, 3.5, 5, 7, 9, 12, 18, 24, 30]) if times is None
         else np.asarray(times, float))
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    design = np.column_stack([np.full(t.size, dose), t])
    names = ("ka", "V", "CL")
    df = simulate_nlme(onecpt_oral, names, mu_natural={"ka": ka, "V": V, "CL": CL},
                       omega2=dict(zip(names, omega2)), transforms=dict.fromkeys(names, "log"),
                       x=design, n_individuals=n_individuals, a=a, b=b,
                       x_names=["dose", "time"], seed=seed)
    loq = float(np.quantile(df["y"], fraction)) if fraction > 0 else -np.inf
    df["y_true"] = df["y"]
    df["cens"] = (df["y"] < loq).astype(int)
    df.loc[df["cens"] == 1, "y"] = loq
    df.attrs["loq"] = loq
    return df


def simulate_markers(n_genotypes: int = 250, n_markers: int = 60_000, *, maf: tuple[float, float] = (0.05, 0.5),
                     seed: int = 0) -> pd.DataFrame:
    """Unlinked biallelic markers coded 0/1/2 (Hardy-Weinberg, minor-allele frequency uniform on
    ``maf``), genotypes ``G0001``... as index, markers ``snp00001``... as columns; float32."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(maf[0], maf[1], n_markers).astype(np.float32)
    values = (rng.random((n_genotypes, n_markers), dtype=np.float32) < p).astype(np.float32)
    values += (rng.random((n_genotypes, n_markers), dtype=np.float32) < p)
    width = len(str(n_genotypes))
    return pd.DataFrame(values, index=pd.Index([f"G{k + 1:0{width}d}" for k in range(n_genotypes)],
                                               name="genotype"),
                        columns=[f"snp{j + 1:05d}" for j in range(n_markers)])


def simulate_genomic(markers: pd.DataFrame, *, n_scenarios: int = 3, times: Sequence[float] | None = None,
                     n_causal: int = 10, mu: Mapping[str, float] | None = None,
                     var_markers: Mapping[str, float] | None = None,
                     var_residual: Mapping[str, float] | None = None,
                     omega2: Mapping[str, float] | None = None,
                     scenario_effect: Sequence[float] = (0.0, -0.2, -0.5),
                     sigma: float = 2.0, effects: str = "equal", max_ld: float | None = 0.95,
                     seed: int = 0) -> pd.DataFrame:
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
    drawn among markers whose largest |correlation| with any other marker is below it (a marker
    with a near-duplicate cannot be told from it on these genotypes), and the causal markers of
    one parameter have pairwise |correlation| below 0.5 (distinct loci); u_g ~ N(0, var_residual) (genotype residual), eta_i ~
    N(0, omega2). Defaults: mu A=100, B=8, C=2.5 (days); var_markers 0.04 / 0.02 / 0.01;
    var_residual 0.01 / 0.005 / 0.005; omega2 0.01 each; 21 daily times 0..20.

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
        raise ValueError(f"only {len(candidates)} markers qualify as causal (max_ld={max_ld}); "
                         f"{n_causal * len(params)} needed")
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
            raise ValueError(f"could not draw {n_causal} causal markers in distinct loci for "
                             f"{params[k]}; lower n_causal")
        taken.update(picked)
        chosen.extend(picked)
    chosen = np.asarray(chosen)
    genetic = pd.DataFrame(index=markers.index.astype(str))
    causal, effect_sizes = {}, {}
    for k, p in enumerate(params):
        cols = chosen[k * n_causal:(k + 1) * n_causal]
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
    levels = ["WW", "WD", "SD", "S4", "S5", "S6"][:n_scenarios] if n_scenarios <= 6 else \
        [f"S{k + 1}" for k in range(n_scenarios)]
    eta = rng.standard_normal((n_geno, n_scenarios, len(params)))
    noise = rng.standard_normal((n_geno, n_scenarios, len(t)))
    for gi, g in enumerate(genetic.index):
        for s in range(n_scenarios):
            psi = []
            for k, p in enumerate(params):
                phi = (math.log(mu[p]) + (scenario_effect[s] if p == "A" else 0.0)
                       + genetic[p].iloc[gi] + genetic[f"u_{p}"].iloc[gi]
                       + math.sqrt(omega2[p]) * eta[gi, s, k])
                psi.append(math.exp(phi))
            A, B, C = psi
            y = A / (1.0 + np.exp(-(t - B) / C)) + sigma * noise[gi, s]
            rows.append(pd.DataFrame({"id": f"{g}_{levels[s]}", "genotype": g, "scenario": levels[s],
                                      "t": t, "y": y}))
    df = pd.concat(rows, ignore_index=True)
    df.attrs["truth"] = dict(mu=mu, var_markers=var_markers, var_residual=var_residual, omega2=omega2,
                             causal=causal, effects=effect_sizes, genetic=genetic,
                             scenario_effect=list(scenario_effect[:n_scenarios]), sigma=sigma,
                             levels=levels)
    return df
