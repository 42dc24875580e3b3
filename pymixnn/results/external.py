"""A fit by another program (saemix, nlme through :mod:`pymixnn.compare`) as the results layer holds
it: :class:`ExternalFit`, the program's estimates in pymixnn's terms, with no pymixnn parameter
vector, no ELBO trace and no importance-sampling output. :class:`pymixnn.Results` takes it in place
of the inference layer's ``Estimation``; the random effects of such a fit are Gaussian with the
program's ``omega``, which is what predictions, simulations and the VPC draw from.

This module imports nothing from :mod:`pymixnn.compare` (the bridges import it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["ExternalFit", "external_info", "gaussian_draws", "gaussian_logpdf", "not_available"]


@dataclass(frozen=True)
class ExternalFit:
    """A fit by another program (saemix, nlme) in pymixnn's terms: the parameter table (natural and
    transformed scales, SEs), the population parameters (``mu`` transformed scale, ``beta``
    covariate effects, ``omega``, residual ``error``), the individual parameters (``psi_map``
    natural scale, ``eta_map`` random effects), the log-likelihood and how it was computed. It
    has no pymixnn parameter vector and no ELBO trace. ``converged``: the program reported no
    convergence failure (nlme stops with an error on one; saemix runs its fixed iterations)."""

    engine: str
    table: list[dict]
    mu: np.ndarray
    beta: np.ndarray
    omega: np.ndarray
    error: dict[str, float]
    psi_map: np.ndarray
    eta_map: np.ndarray
    loglik: float
    loglik_method: str
    seconds: float
    se_method: str
    warnings: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    converged: bool = True

    @property
    def cov_params(self) -> np.ndarray:
        """Covariance of the table's transformed estimates (diagonal: the program's SEs)."""
        se_t = np.array([r["se_transformed"] for r in self.table])
        return np.diag(se_t**2)

    @property
    def loglik_se(self) -> float:
        """The Monte Carlo SE of the log-likelihood: NaN (the programs do not report one)."""
        return float("nan")

    @property
    def n_free(self) -> int:
        """The number of free parameters: the rows of the parameter table (nlme's and saemix's df)."""
        return len(self.table)

    def to_dict(self) -> dict[str, Any]:
        """Plain values of every field, for saving (numpy arrays stay arrays)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExternalFit:
        """The record written by :meth:`to_dict`; unknown keys are an error naming them."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"ExternalFit has no field(s) {unknown}; known: {known}")
        values = dict(values)
        for key in ("mu", "beta", "omega", "psi_map", "eta_map"):
            values[key] = np.asarray(values[key], dtype=float)
        values["warnings"] = tuple(values.get("warnings") or ())
        return cls(**values)


def external_info(ext: ExternalFit, settings: dict, versions: dict, date: str) -> dict[str, Any]:
    """``Results.info`` of an external fit (the keys of a pymixnn fit's: no optimizer steps or
    refinement rounds; ``is_samples`` the program's draws per individual for ll.is)."""
    return {
        "seed": settings.get("seed"),
        "device": "R",
        "dtype": "float64",
        "threads": 1,
        "seconds": float(ext.seconds),
        "seconds_by_stage": {"total": float(ext.seconds)},
        "steps": 0,
        "converged": bool(ext.converged),
        "refine_rounds": 0,
        "is_samples": int(ext.settings.get("nmc_is", 0)),
        "se_method": ext.se_method,
        "warnings": list(ext.warnings),
        "versions": versions,
        "date": date,
    }


def _root(omega: np.ndarray) -> np.ndarray:
    """A square root L of omega (L L' = omega): Cholesky, or the eigen root for a singular omega."""
    try:
        return np.linalg.cholesky(omega)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(omega)
        return v * np.sqrt(np.clip(w, 0.0, None))


def gaussian_draws(omega: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(n, d) draws of N(0, omega), as pymixnn's Gaussian law draws them (standard normals from a
    torch generator seeded with ``seed``, times the Cholesky factor)."""
    import torch

    omega = np.asarray(omega, dtype=float)
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn(int(n), omega.shape[0], generator=gen, dtype=torch.float64)
    return z.numpy() @ _root(omega).T


def gaussian_logpdf(omega: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Log-density of the rows of ``eta`` under N(0, omega)."""
    from scipy import stats

    omega = np.asarray(omega, dtype=float)
    return np.atleast_1d(
        stats.multivariate_normal(np.zeros(omega.shape[0]), omega, allow_singular=True).logpdf(eta)
    )


def not_available(engine: str, what: str, why: str) -> ValueError:
    """The ValueError of a pymixnn-only output asked of a fit by ``engine``."""
    return ValueError(f"{what} is not available for a fit by {engine} (pymixnn.compare): {why}")
