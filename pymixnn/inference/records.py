"""Typed records that cross the inference -> results boundary (plain numpy/Python values, frozen).

- :class:`LawFit` the fitted random-effects law (its spec, where its parameters sit in ``theta``,
  E[eta] moved into mu, mixture responsibilities, a flow's ridge penalty and its cross-validation,
  the table of an ``n_components="auto"`` choice);
- :class:`GenomicParamPosterior` / :class:`GenomicPosterior` the posterior of the marker effects of a
  genomic fit, with the marker matrix's description that prediction for new genotypes needs;
- :class:`RunInfo` how the fit ran: seed, device, dtype, threads, versions, seconds per stage,
  steps, warnings and the count of every fallback taken;
- :class:`Estimation` the plain numpy output of the inference layer, carrying the three above.

Records also answer ``record["key"]``, ``record.get("key")`` and ``"key" in record`` (a field
that is None counts as absent), so code written against the former dict records keeps working.

>>> rec = RunInfo(seed=1, device="cpu", dtype="float64", threads=1)
>>> rec.seed, rec["seed"], "versions" in rec, rec.get("versions", "-")
(1, 1, False, '-')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LawFit", "GenomicParamPosterior", "GenomicPosterior", "LevelsFit", "RunInfo", "Estimation"]


class _Record:
    """Read-only mapping view of a frozen dataclass (None fields count as absent)."""

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._field_names() and getattr(self, key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self else default

    def keys(self) -> list[str]:
        return [k for k in self._field_names() if k in self]

    def replace(self, **changes):
        """A copy with ``changes`` (dataclasses.replace)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the present fields (nested records as dicts), for saving."""
        out = {}
        for k in self.keys():
            v = getattr(self, k)
            if isinstance(v, _Record):
                v = v.to_dict()
            elif isinstance(v, (list, tuple)) and v and isinstance(v[0], _Record):
                v = [r.to_dict() for r in v]
            out[k] = v
        return out

    @classmethod
    def _field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """The record from a dict written by :meth:`to_dict` or by pymixnn 0.1's dict records;
        keys the record does not know are an error naming them."""
        unknown = sorted(set(values) - set(cls._field_names()))
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {unknown}; known: {list(cls._field_names())}")
        return cls(**values)


@dataclass(frozen=True)
class LawFit(_Record):
    """The fitted random-effects law. ``spec`` is the law spec as a dict
    (:func:`pymixnn.model.random_effects.to_dict`); ``theta[law_slice]`` its own parameters,
    ``theta[omega_slice]`` the base scale; ``shift`` is E[eta] under the law, moved into mu."""

    spec: dict
    seed: int
    shift: list = field(default_factory=list)
    n_theta: int = 0
    n_law: int = 0
    law_slice: list = field(default_factory=lambda: [0, 0])
    omega_slice: list = field(default_factory=lambda: [0, 0])
    full_omega: bool = False
    context: list | None = None  # (N, c) context rows of a conditional flow
    responsibilities: list | None = None  # (N, K) posterior component probabilities
    penalty: float | None = None  # a flow's ridge weight
    penalty_cv: list | None = None  # its cross-validation table (one dict per grid value)
    selection: list | None = None  # n_components="auto": one dict per K
    criterion: str | None = None  # the criterion of that choice ("bic", "aic", "icl")
    class_prob: list | None = None  # latent classes: (N, K) posterior class probabilities
    em_loglik: float | None = None  # latent classes: the start's EM log-likelihood (on draws)
    em_restarts: int | None = None  # latent classes: empty classes re-seeded in that EM


@dataclass(frozen=True)
class GenomicParamPosterior(_Record):
    """Posterior of the marker effects on one parameter (arrays over markers, cells, genotypes)."""

    mean: np.ndarray
    sd: np.ndarray
    D: np.ndarray
    D_levels: list
    s2u: float
    Kinv: np.ndarray
    alpha: np.ndarray
    y: np.ndarray
    R: np.ndarray
    fitted: np.ndarray
    main_cells: np.ndarray
    u: np.ndarray
    u_sd: np.ndarray
    levels_mean: list
    levels_sd: list
    inclusion: np.ndarray | None = None  # horseshoe: 1 - shrinkage per marker
    tau: float | None = None  # horseshoe: global scale


@dataclass(frozen=True)
class GenomicPosterior(_Record):
    """The genomic block of a fit: one :class:`GenomicParamPosterior` per parameter, the cells
    (genotype x interaction level), the offsets it adds to phi, and the marker matrix's
    description (names, scale, genotypes, map, report) for predictions on new genotypes."""

    params: list
    prior: str
    residual: bool
    updates: int
    genotype_rows: np.ndarray
    cell_genotype: np.ndarray
    cell_level: np.ndarray
    n_levels: int
    individual_cell: np.ndarray
    offset: np.ndarray
    per_param: list
    marker_names: list | None = None
    marker_scale: np.ndarray | None = None
    genotypes: list | None = None
    marker_map: dict | None = None
    interaction: str | None = None
    levels: list | None = None
    report: dict | None = None
    genotype_column: str | None = None
    markers_id: str | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        values = dict(values)
        values["per_param"] = [
            r if isinstance(r, GenomicParamPosterior) else GenomicParamPosterior.from_dict(r)
            for r in values["per_param"]
        ]
        return super().from_dict.__func__(cls, values)


@dataclass(frozen=True)
class LevelsFit(_Record):
    """Grouping levels of a fit (inference/levels.py): per level its parameters, covariance
    (``omega``), the level effects' posterior means and sds (groups x params, transformed scale,
    groups in the order of ``labels``) and each individual's group; the covariance of the reported
    entries (all levels' variances then covariances, ``entries_size`` per level); the GLS estimates
    of the level parameters' fixed effects (mu and covariate effects, entries ``fixed_index`` of
    theta) with their covariance; the offsets (N, P) and
    the log-likelihood correction that integrates the levels out."""

    names: list
    params: list
    full: list
    omega: list
    entries_cov: np.ndarray
    entries_size: list
    labels: list
    groups: list
    effects: list
    effects_sd: list
    fixed_index: list
    fixed_gls: np.ndarray
    fixed_cov: np.ndarray
    offset: np.ndarray
    loglik_correction: float
    n_hyper: int
    updates: int = 0
    rounds: int = 0
    pseudo_inverse: bool = False
    # per component: "level", or a spatial field's kind, "gp" or "ar1xar1" (groups: locations or
    # grid cells, ``labels`` their coordinates; ``omega`` its marginal variance sd^2), its kernel,
    # and the reported entries (a level's variances then covariances; a field's sd and range, or
    # sd, rho_row and rho_col)
    kinds: list | None = None
    kernels: list | None = None
    coords: list | None = None  # a field's coordinate columns
    entries: list | None = None
    # theta's Omega entries and their covariance from the levels' joint information
    omega_index: list | None = None
    omega_cov: np.ndarray | None = None


@dataclass(frozen=True)
class RunInfo(_Record):
    """How a fit ran. ``fallbacks`` counts every fallback taken, by name (zeroed gradient
    components, rejected steps, replaced start values, pseudo-inverse information, ...)."""

    seed: int
    device: str
    dtype: str
    threads: int
    versions: dict | None = None
    date: str | None = None
    seconds: dict = field(default_factory=dict)
    steps: int = 0
    refine_rounds: int = 0
    warnings: tuple = ()
    fallbacks: dict = field(default_factory=dict)
    # the messages of the fallbacks whose counts passed their thresholds (also in ``warnings``):
    # the fit raises each as a pymixnn.FallbackWarning
    fallback_warnings: tuple = ()
    # the gear that estimated the population parameters: "newton" (Newton steps on the marginal
    # likelihood from the Laplace-EM start) or "svi" (minibatch SVI, then the refinement); None
    # in files written before gears existed (all "svi")
    gear: str | None = None
    # the processes of a data-parallel fit (Control(distributed=True)); 1 otherwise
    processes: int = 1


def _as_record(cls, value):
    """A dict written by an earlier version as the record ``cls``; left as it is when it does not
    fit the record (e.g. an external engine's law dict)."""
    if not isinstance(value, dict):
        return value
    try:
        return cls.from_dict(value)
    except (TypeError, ValueError, KeyError):
        return value


@dataclass
class Estimation:
    """Plain numpy output of the inference layer (no torch object leaves it)."""

    table: list[dict]  # reported parameters: name, kind, parameter, estimate, se, est_t, se_t, scale
    theta: np.ndarray
    theta_cov: np.ndarray
    mu: np.ndarray  # (P,) transformed scale
    beta: np.ndarray
    omega: np.ndarray  # (d, d)
    error: dict[str, float]
    eta_map: np.ndarray  # (N, d)
    eta_map_cov: np.ndarray  # (N, d, d)
    eta_mean: np.ndarray  # (N, d) conditional mean
    psi_mean: np.ndarray  # (N, P)
    psi_sd: np.ndarray  # (N, P)
    loglik: float
    loglik_se: float
    loglik_individual: np.ndarray
    is_samples: int
    is_samples_fisher: int
    elbo_trace: np.ndarray
    steps: int
    converged: bool
    refine_rounds: int
    seconds: dict[str, float]
    device: str
    dtype: str
    threads: int
    se_method: str
    warnings: list[str]
    # the fitted random-effects law (a dict from an external engine or an older file that does
    # not fit LawFit stays a dict: both answer law["key"] and law.get("key"))
    law: LawFit | dict = field(default_factory=dict)
    # "is" (importance sampling) or "gq" (adaptive Gauss-Hermite quadrature with
    # ``quadrature_nodes`` nodes per random effect; is_samples is then the nodes per individual)
    loglik_method: str = "is"
    quadrature_nodes: int = 0
    # a genomic fit: the posterior of the marker effects (inference/genomic.py, export())
    genomic: GenomicPosterior | dict | None = None
    # grouping levels (inference/levels.py, LevelBlock.export)
    levels: LevelsFit | dict | None = None
    # covariance matrix of the reported parameters (``table`` order, natural scale): the inverse
    # observed Fisher information carried through the delta method; None where not computed
    cov_params: np.ndarray | None = None
    # convergence evidence at the estimates (see pymixnn/diagnostics.py): Newton decrement,
    # gradient in SE units, eigenvalues of the observed information, the start values tried
    diagnostics: dict | None = None
    # how the fit ran (seed, device, seconds per stage, fallback counts); None for external engines
    run: RunInfo | dict | None = None
    # local="amortized": the fitted encoder's plain state and the amortization gap per individual
    # (inference/amortized.py); None for per-individual local posteriors
    amortized: dict | None = None
    # the reported population parameters along the fit (reporting.parameter_path): names, stage
    # and step of each point, values (points x parameters); None for fits saved before it
    trace: dict | None = None

    def __post_init__(self) -> None:
        self.law = _as_record(LawFit, self.law)
        self.genomic = _as_record(GenomicPosterior, self.genomic)
        self.levels = _as_record(LevelsFit, self.levels)
        self.run = _as_record(RunInfo, self.run)
