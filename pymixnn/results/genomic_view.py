"""The genomic outputs of a fit as one object, ``res.genomic`` (None for a fit without markers),
and the :class:`pymixnn.Results` methods that the functions of :mod:`pymixnn.results.genomic`
back (``res.marker_effects``, ``res.predict_genotypes(...)``, ...)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pymixnn.results import genomic as g
from pymixnn.results import genomic_predict as gp

__all__ = ["GenomicOutputs", "GenomicMixin"]


class GenomicOutputs:
    """Marker effects, genetic values and predictions for new genotypes of a genomic fit.

    >>> res.genomic.top_markers(5)  # doctest: +SKIP
    """

    def __init__(self, results):
        self.results = results

    @property
    def posterior(self):
        """The posterior of the marker effects (:class:`pymixnn.inference.records.GenomicPosterior`)."""
        return self.results.estimation.genomic

    @property
    def params(self) -> list[str]:
        """The parameters with marker effects."""
        return list(self.posterior["params"])

    @property
    def marker_matrix(self):
        """The fit's marker matrix (None for a reloaded fit without ``markers=``)."""
        return self.results.marker_matrix

    @property
    def marker_effects(self) -> pd.DataFrame:
        """See :func:`pymixnn.results.genomic.marker_effects`."""
        return g.marker_effects(self.results)

    def top_markers(self, n: int = 20, parameter: str | None = None) -> pd.DataFrame:
        """See :func:`pymixnn.results.genomic.top_markers`."""
        return g.top_markers(self.results, n, parameter)

    def plot_manhattan(self, path: str | Path, parameter: str | None = None, *, top: int = 10):
        """See :func:`pymixnn.results.genomic.plot_manhattan`."""
        return g.plot_manhattan(self.results, path, parameter, top=top)

    @property
    def variance_explained(self) -> pd.DataFrame:
        """See :func:`pymixnn.results.genomic.variance_explained`."""
        return g.variance_explained(self.results)

    @property
    def genetic_values(self) -> pd.DataFrame:
        """See :func:`pymixnn.results.genomic.genetic_values`."""
        return g.genetic_values(self.results)

    def genotype_parameters(self, markers_new, scenario=None) -> pd.DataFrame:
        """See :func:`pymixnn.results.genomic.genotype_parameters`."""
        return gp.genotype_parameters(self.results, markers_new, scenario)

    def predict_genotypes(self, markers_new, x_grid, scenario=None, **kwargs) -> pd.DataFrame:
        """See :func:`pymixnn.results.genomic.predict_genotypes` (``level``, ``n_draws``, ``band``,
        ``individual``, ``seed``)."""
        return gp.predict_genotypes(self.results, markers_new, x_grid, scenario, **kwargs)

    def __repr__(self) -> str:
        post = self.posterior
        return f"<pymixnn genomic outputs: marker effects on {self.params} ({post['prior']} prior)>"


class GenomicMixin:
    """Methods of :class:`pymixnn.Results` on a genomic fit (a ValueError on other fits)."""

    @property
    def is_genomic(self) -> bool:
        """True for a fit with marker effects (``genomic=``)."""
        return bool(getattr(self.estimation, "genomic", None))

    @property
    def genomic(self) -> GenomicOutputs | None:
        """The genomic outputs as one object (:class:`GenomicOutputs`); None without markers."""
        return GenomicOutputs(self) if self.is_genomic else None

    @property
    def marker_matrix(self):
        """The marker matrix of a genomic fit (:class:`pymixnn.data.markers.MarkerMatrix`); None
        without markers or for a reloaded fit not given ``markers=``."""
        info = getattr(self, "_markers", None)
        return None if info is None else info["matrix"]

    @property
    def marker_effects(self) -> pd.DataFrame:
        """Marker effects per parameter: parameter, marker, effect, sd (per allele, transformed
        scale), effect_std, sd_std (per marker sd), inclusion (horseshoe), chr, pos (with a map)."""
        return g.marker_effects(self)

    def top_markers(self, n: int = 20, parameter: str | None = None) -> pd.DataFrame:
        """The n strongest markers per parameter (inclusion probability, or ``|effect| / sd``)."""
        return g.top_markers(self, n, parameter)

    def plot_manhattan(self, path: str | Path, parameter: str | None = None, *, top: int = 10):
        """Manhattan-style PNG per parameter (a directory, or a .png for one parameter)."""
        return g.plot_manhattan(self, path, parameter, top=top)

    @property
    def variance_explained(self) -> pd.DataFrame:
        """Variance of each parameter with marker effects by source, and the markers' share."""
        return g.variance_explained(self)

    @property
    def genetic_values(self) -> pd.DataFrame:
        """Posterior mean genetic value per phenotyped genotype (and scenario) and parameter."""
        return g.genetic_values(self)

    def genotype_parameters(self, markers_new, scenario=None) -> pd.DataFrame:
        """Predicted genetic values (mean, sd) and typical parameters of new genotypes."""
        return gp.genotype_parameters(self, markers_new, scenario)

    def predict_genotypes(self, markers_new, x_grid, scenario=None, **kwargs) -> pd.DataFrame:
        """Predicted curves with ``level`` bands for genotypes never phenotyped: ``band="mean"``
        for the genotype's typical curve, ``band="individual"`` for one new individual of it
        (wider); keywords ``level``, ``n_draws``, ``band``, ``individual``, ``seed``; see
        :func:`pymixnn.genomic_results.predict_genotypes`."""
        return gp.predict_genotypes(self, markers_new, x_grid, scenario, **kwargs)
