"""Spatially structured random effects on individual parameters: plants in a greenhouse or a field,
trees in a stand, whose neighbours share a micro-environment.

``Spatial(params=["A"], coords=["Row", "Col"], kind="gp")`` adds to the transformed value of each
named parameter a Gaussian random field f_p(s) evaluated at the individual's location s (its
coordinates, constant within an individual), on top of mu + covariates + levels + eta_i:

    phi_i = mu + beta x_i + ... + f(s_i) + eta_i,   f ~ GP(0, sd^2 rho(|s - s'| / range))

``kind="gp"``: an exact Gaussian process over the distinct locations (dense, for up to a few
thousand of them; the reference for sparse kinds to come), ``kernel`` "exponential"
(rho(d) = exp(-d), a Matern 1/2) or "gaussian" (exp(-d^2)). Individuals at the same location share
its field value. The field's ``sd`` and ``range`` (in coordinate units) are population parameters,
reported as ``spatial.<p>.sd`` and ``spatial.<p>.range`` with SEs. How the fit integrates the field
out is in :mod:`pymixnn.inference.levels` (the field is a level whose groups are the locations,
with a kernel covariance).

>>> Spatial(params=["A"], coords=["x", "y"])
Spatial(params=('A',), coords=('x', 'y'), kind='gp', kernel='exponential')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pymixnn.validation.errors import InputError, InputTypeError
from pymixnn.validation.model_checks import check_random_params

__all__ = ["Spatial", "KINDS", "KERNELS", "check_spatial", "spatial_columns", "spatial_locations"]

KINDS = ("gp",)  # "ar1xar1" and "matern" (sparse precisions) are not built yet
KERNELS = ("exponential", "gaussian")
# distinct locations of an exact (dense) Gaussian process: a Cholesky of n x n per evaluation
MAX_LOCATIONS = 3000


@dataclass(frozen=True)
class Spatial:
    """A spatial random field on the transformed ``params`` over the columns ``coords``."""

    params: tuple[str, ...]
    coords: tuple[str, ...]
    kind: str = "gp"
    kernel: str = "exponential"

    def __init__(
        self,
        params: Sequence[str] | str,
        coords: Sequence[str],
        kind: str = "gp",
        kernel: str = "exponential",
    ):
        params = (params,) if isinstance(params, str) else tuple(params)
        coords = (coords,) if isinstance(coords, str) else tuple(coords)
        if not params or not all(isinstance(p, str) for p in params) or len(set(params)) != len(params):
            raise InputError(f"Spatial(params=...) names distinct parameters, got {list(params)!r}")
        if not coords or not all(isinstance(c, str) for c in coords) or len(set(coords)) != len(coords):
            raise InputError(f"Spatial(coords=...) names distinct coordinate columns, got {list(coords)!r}")
        if kind not in KINDS:
            raise InputError(
                f"Spatial(kind={kind!r}): available kinds are {list(KINDS)} (an exact Gaussian "
                "process); the sparse 'ar1xar1' and 'matern' kinds are not built yet"
            )
        if kernel not in KERNELS:
            raise InputError(f"Spatial(kernel={kernel!r}): use one of {list(KERNELS)}")
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "coords", coords)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "kernel", kernel)

    def to_dict(self) -> dict[str, Any]:
        return dict(params=list(self.params), coords=list(self.coords), kind=self.kind, kernel=self.kernel)


def check_spatial(spatial: Any, model: Any) -> Spatial | None:
    """spatial= checked against the model before any data work (an error naming the parameter)."""
    if spatial is None:
        return None
    if not isinstance(spatial, Spatial):
        raise InputTypeError(
            f"spatial must be a pymixnn.Spatial(params=[...], coords=[...]), got {type(spatial).__name__}"
        )
    check_random_params(
        "Spatial(params=...)",
        spatial.params,
        model,
        "the fit integrates a field out through each individual's posterior of its own effects",
    )
    return spatial


def spatial_columns(spatial: Spatial | None) -> list[str]:
    return [] if spatial is None else list(spatial.coords)


def spatial_locations(spatial: Spatial, covariates: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The distinct locations (n_loc, k) and each individual's location (N,), from the
    individual-level covariate table (the data's check has made the columns numeric, finite and
    constant within an individual)."""
    coords = covariates[list(spatial.coords)].to_numpy(dtype=np.float64)
    locations, index = np.unique(coords, axis=0, return_inverse=True)
    if len(locations) < 3:
        raise InputError(
            f"Spatial(coords={list(spatial.coords)}): the individuals sit at {len(locations)} distinct "
            "location(s); a field needs at least 3"
        )
    if len(locations) > MAX_LOCATIONS:
        raise InputError(
            f"Spatial(kind='gp') is an exact dense Gaussian process: {len(locations)} distinct "
            f"locations, more than its {MAX_LOCATIONS}"
        )
    return locations, np.asarray(index, dtype=np.int64).reshape(-1)
