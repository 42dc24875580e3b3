"""Genomic covariates: marker effects on individual parameters (the model layer's spec).

A genomic fit adds genotype-level terms to the individual parameters (transformed scale)::

    phi_i[p] = mu[p] + X_i beta + G_g(i) gamma_p + G_g(i) delta_{p,s(i)} + u_g(i)[p] + eta_i[p]

- ``G_g`` the standardized markers of individual i's genotype (pymixnn.markers);
- ``gamma_p`` the marker effects on parameter p, with a ridge prior (Gaussian, i.e. GBLUP; its
  variance estimated) or a horseshoe prior (sparse: most markers shrunk to zero, a few kept);
- ``delta_{p,s}`` optional scenario-by-marker effects (``interaction="scenario"``; ridge prior, one
  block per non-reference level of that column);
- ``u_g`` the genotype residual (genetic value the markers do not explain), present when genotypes
  have several individuals (``residual="auto"``), else confounded with eta_i and left out;
- ``eta_i`` the individual random effects (the law of the fit: Gaussian, mixture, flow).

>>> spec = Genomic(markers=None, params=["A", "B"], prior="ridge")
>>> spec.params, spec.prior
(('A', 'B'), 'ridge')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Genomic", "PRIORS"]

PRIORS = ("horseshoe", "ridge")


@dataclass(frozen=True)
class Genomic:
    """Marker effects for ``pymixnn.fit(..., genotype=..., genomic=Genomic(...))``.

    Parameters
    ----------
    markers : pandas.DataFrame, tuple or path
        The marker matrix, genotypes x markers: a DataFrame (genotype ids as index, or in the
        column ``id``), a tuple ``(array, ids[, names])``, a CSV path (first column the genotype
        id) or a PLINK ``.bed`` path (read by bed-reader). Missing values are mean-imputed
        (counted), monomorphic and all-missing markers dropped (counted), the rest standardized.
    params : list of str
        The model parameters that get marker effects (each needs a random effect).
    prior : {"horseshoe", "ridge"}, default "horseshoe"
        Sparse (reports inclusion probabilities) or ridge (GBLUP).
    map : pandas.DataFrame or path, optional
        Marker map (columns marker, chr, pos) for the Manhattan plot; a PLINK file brings its own.
    interaction : str, optional
        A column constant within individual (e.g. "scenario"): adds scenario-by-marker effects
        with a ridge prior.
    residual : bool or "auto", default "auto"
        Genotype residual u_g ("auto": when genotypes have on average more than one individual).
    id : str, optional
        Genotype-id column of a marker DataFrame / CSV (default: the index / first column).
    global_scale : float, default 1.0
        Scale A of the horseshoe's half-Cauchy prior on its global scale tau, relative to the
        standard deviation of the genotype-level parameter values.
    max_iter : int, default 3
        Inner iterations of the closed-form variational updates at each genomic update.

    Returns
    -------
    Genomic
        The spec for ``fit(..., genotype=..., genomic=...)``; the fit then has ``marker_effects``,
        ``top_markers()``, ``variance_explained``, ``genetic_values`` and ``predict_genotypes()``.
    """

    markers: Any
    params: Sequence[str]
    prior: str = "horseshoe"
    map: Any = None
    interaction: str | None = None
    residual: bool | str = "auto"
    id: str | None = None
    global_scale: float = 1.0
    max_iter: int = 3

    def __post_init__(self):
        params = [self.params] if isinstance(self.params, str) else list(self.params or [])
        if not params or not all(isinstance(p, str) for p in params):
            raise ValueError(
                f"Genomic(params=...) must name the model parameters that get marker "
                f"effects, e.g. params=['A', 'B']; got {self.params!r}"
            )
        if len(set(params)) != len(params):
            raise ValueError(f"Genomic(params=...) lists a parameter twice: {params}")
        object.__setattr__(self, "params", tuple(params))
        if self.prior not in PRIORS:
            raise ValueError(f"Genomic(prior=...) must be one of {list(PRIORS)}, got {self.prior!r}")
        if self.residual not in (True, False, "auto"):
            raise ValueError(f"Genomic(residual=...) must be True, False or 'auto', got {self.residual!r}")
        if not (isinstance(self.global_scale, (int, float)) and self.global_scale > 0):
            raise ValueError(f"Genomic(global_scale=...) must be positive, got {self.global_scale!r}")
        if not (isinstance(self.max_iter, int) and self.max_iter >= 1):
            raise ValueError(f"Genomic(max_iter=...) must be a positive integer, got {self.max_iter!r}")

    def to_dict(self) -> dict:
        """JSON-friendly description (not the markers themselves)."""
        return dict(
            params=list(self.params),
            prior=self.prior,
            interaction=self.interaction,
            residual=self.residual,
            global_scale=self.global_scale,
        )
