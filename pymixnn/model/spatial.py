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
reported as ``spatial.<p>.sd`` and ``spatial.<p>.range`` with SEs.

``kind="ar1xar1"``: a separable AR1 x AR1 field on a row/column grid (greenhouse pots, field
plots; ``coords`` the row and the column, integer positions, one individual per cell), the
correlation of two cells rho_row^|dr| rho_col^|dc|, over every cell of the grid's bounding box
(empty cells included: the field there is predicted). Its precision is sparse and exact,
kron(Q_row, Q_col) / sd^2 with tridiagonal AR1 precisions, and its log-determinant closed-form;
reported as ``spatial.<p>.sd``, ``spatial.<p>.rho_row`` and ``spatial.<p>.rho_col``.

``kind="matern"``: a Matérn field of smoothness ``nu`` (0.5, 1.5 or 2.5) on irregular
locations, cov sd^2 M_nu(sqrt(8 nu) d / range) (``range`` where the correlation falls to about
0.13), for 10^4 to 10^6 individuals: the fit integrates it out by a nearest-neighbour (Vecchia)
approximation, each individual conditioned on its ``neighbours`` nearest predecessors in a fixed
random order (model/vecchia.py): memory and time linear in the number of individuals. One
parameter, and no ``levels=`` beside it; reported as ``spatial.<p>.sd`` and ``spatial.<p>.range``.

How the fit integrates a field out is in :mod:`pymixnn.inference.levels` (the field is a level
whose groups are the locations or cells, with a structured covariance: inference/fields.py).

>>> Spatial(params=["A"], coords=["x", "y"])
Spatial(params=('A',), coords=('x', 'y'), kind='gp', kernel='exponential')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pymixnn.validation.errors import InputError, InputTypeError, is_real, show_value
from pymixnn.validation.model_checks import check_random_params

__all__ = [
    "Spatial",
    "KINDS",
    "KERNELS",
    "KERNEL_POWER",
    "kernel_correlation",
    "MAX_CELLS",
    "MATERN_NU",
    "matern_kernel_name",
    "matern_nu",
    "check_grid",
    "check_spatial",
    "grid_cells",
    "spatial_columns",
    "spatial_locations",
]

KINDS = ("gp", "ar1xar1", "matern")
KERNELS = ("exponential", "gaussian", "spherical")
# smoothness of a Matérn field: closed-form correlations
MATERN_NU = (0.5, 1.5, 2.5)
# a Matérn field's individuals (the nearest-neighbour approximation is linear in them)
MAX_MATERN = 2_000_000
# a gp kernel's correlation at scaled distance d is exp(-d^KERNEL_POWER[kernel]) (nlme's corExp and
# corGaus), or the spherical 1 - 1.5 d + 0.5 d^3 below d = 1 and 0 beyond (corSpher; positive
# definite in up to 3 dimensions): kernel_correlation, which the fit's prior and the kriging of new
# locations share
KERNEL_POWER = {"exponential": 1, "gaussian": 2}
# distinct locations of an exact (dense) Gaussian process: a Cholesky of n x n per evaluation
MAX_LOCATIONS = 3000
# cells of an AR1 x AR1 grid: its prior precision is sparse, the posterior's Cholesky (with the
# individuals' information and the other levels) dense, n x n per evaluation
MAX_CELLS = 4000


def kernel_correlation(kernel: str, scaled):
    """A gp kernel's correlation at the scaled distances ``scaled`` (distance / range; a numpy
    array or a torch tensor, the same type back)."""
    if kernel == "spherical":
        inside = scaled < 1
        s = scaled * inside  # beyond the range: 0 (the cubic is not evaluated there)
        return (1 - 1.5 * s + 0.5 * s**3) * inside
    power = -(scaled ** KERNEL_POWER[kernel])
    return power.exp() if hasattr(power, "exp") else np.exp(power)


def matern_kernel_name(nu: float) -> str:
    """The kernel label of a Matérn field of smoothness nu in the fit's records: "matern1.5"."""
    return f"matern{float(nu)}"


def matern_nu(kernel: str) -> float:
    """The smoothness of a Matérn kernel label (:func:`matern_kernel_name`)."""
    return float(kernel[len("matern") :])


@dataclass(frozen=True)
class Spatial:
    """A spatial random field on the transformed ``params`` over the columns ``coords``.

    Parameters
    ----------
    params : str or list of str
        The parameters whose transformed values get the field (each also random at the individual
        level, unless ``random=[]``).
    coords : list of str
        The coordinate columns (constant within an individual).
    kind : {"gp", "ar1xar1", "matern"}, default "gp"
        An exact Gaussian process over the distinct locations (up to 3,000), a separable AR1 x AR1
        field on a row x column grid of integer positions (one individual per cell, up to 4,000
        cells), or a Matérn field of one parameter by nearest neighbours (10^4 to 10^6
        individuals; no ``levels=`` beside it).
    kernel : {"exponential", "gaussian", "spherical"}, default "exponential"
        The correlation of a gp: exp(-d), exp(-d^2) or the spherical 1 - 1.5 d + 0.5 d^3 below
        d = 1 (nlme's corExp, corGaus, corSpher), d the distance over the range.
    nu : {0.5, 1.5, 2.5}, default 1.5
        Smoothness of a Matérn field.
    neighbours : int, default 15
        Nearest predecessors each individual is conditioned on (Matérn field).
    range_init : float, optional
        Start of a gp's or Matérn field's range in coordinate units (as nlme's
        ``corExp(value = ...)``); default: the best of 1/8 to 2 median distances.

    Returns
    -------
    Spatial
        The spec for ``fit(..., spatial=...)``; its sd and range (or rho_row, rho_col) are reported
        as ``spatial.<p>.*`` rows with SEs, the field by ``res.spatial_field()``.
    """

    params: tuple[str, ...]
    coords: tuple[str, ...]
    kind: str = "gp"
    kernel: str = "exponential"
    nu: float = 1.5
    neighbours: int = 15
    range_init: float | None = None

    def __init__(
        self,
        params: Sequence[str] | str,
        coords: Sequence[str],
        kind: str = "gp",
        kernel: str = "exponential",
        nu: float = 1.5,
        neighbours: int = 15,
        range_init: float | None = None,
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
                "process, a separable AR1 x AR1 grid, a Matérn field by nearest neighbours)"
            )
        if kind == "matern":
            if len(params) != 1:
                raise InputError(
                    f"Spatial(kind='matern') carries one parameter's field, got {list(params)} (the "
                    "fields of several parameters are kind 'gp' or 'ar1xar1')"
                )
            if not isinstance(nu, (int, float)) or float(nu) not in MATERN_NU:
                raise InputError(f"Spatial(kind='matern', nu={nu!r}): nu is one of {list(MATERN_NU)}")
            if isinstance(neighbours, bool) or not isinstance(neighbours, int) or not 1 <= neighbours <= 1000:
                raise InputError(
                    f"Spatial(kind='matern', neighbours={neighbours!r}): an integer from 1 to 1000 "
                    "(each individual's nearest predecessors it is conditioned on)"
                )
        if kind == "ar1xar1" and len(coords) != 2:
            raise InputError(
                f"Spatial(kind='ar1xar1') is a row x column grid: coords names 2 columns (row, column), "
                f"got {list(coords)}"
            )
        if kernel not in KERNELS:
            raise InputError(f"Spatial(kernel={kernel!r}): use one of {list(KERNELS)}")
        if kernel == "spherical" and len(coords) > 3:
            raise InputError(
                f"Spatial(kernel='spherical') is a correlation in up to 3 dimensions; coords names "
                f"{len(coords)} columns {list(coords)}"
            )
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "coords", coords)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "kernel", kernel)
        object.__setattr__(self, "nu", float(nu) if isinstance(nu, (int, float)) else nu)
        object.__setattr__(self, "neighbours", neighbours)
        if range_init is not None:
            if kind == "ar1xar1" or not is_real(range_init) or not (0 < range_init < math.inf):
                raise InputError(
                    f"Spatial(range_init={range_init!r}): the start of a gp's or Matérn field's range, "
                    "a positive number in coordinate units (as nlme's corExp(value = ...))"
                )
            range_init = float(range_init)
        object.__setattr__(self, "range_init", range_init)

    def __repr__(self) -> str:
        extra = f", nu={self.nu}, neighbours={self.neighbours}" if self.kind == "matern" else ""
        extra += "" if self.range_init is None else f", range_init={self.range_init}"
        return (
            f"Spatial(params={self.params!r}, coords={self.coords!r}, kind={self.kind!r}, "
            f"kernel={self.kernel!r}{extra})"
        )

    def to_dict(self) -> dict[str, Any]:
        out = dict(params=list(self.params), coords=list(self.coords), kind=self.kind, kernel=self.kernel)
        if self.kind == "matern":
            out.update(nu=self.nu, neighbours=self.neighbours)
        if self.range_init is not None:
            out.update(range_init=self.range_init)
        return out


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
        "the fit integrates a field out through each individual's posterior of its own effects "
        "(without any, through its score)",
    )
    return spatial


def spatial_columns(spatial: Spatial | None) -> list[str]:
    return [] if spatial is None else list(spatial.coords)


def spatial_locations(spatial: Spatial, covariates: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The distinct locations (n_loc, k) and each individual's location (N,), from the
    individual-level covariate table (the data's check has made the columns numeric, finite and
    constant within an individual); at most MAX_LOCATIONS for a gp, MAX_MATERN for a Matérn field."""
    coords = covariates[list(spatial.coords)].to_numpy(dtype=np.float64)
    locations, index = np.unique(coords, axis=0, return_inverse=True)
    if len(locations) < 3:
        raise InputError(
            f"Spatial(coords={list(spatial.coords)}): the individuals sit at {len(locations)} distinct "
            "location(s); a field needs at least 3"
        )
    if spatial.kind == "matern":
        if len(coords) > MAX_MATERN:
            raise InputError(f"Spatial(kind='matern'): {len(coords)} individuals, more than its {MAX_MATERN}")
    elif len(locations) > MAX_LOCATIONS:
        raise InputError(
            f"Spatial(kind='gp') is an exact dense Gaussian process: {len(locations)} distinct "
            f"locations, more than its {MAX_LOCATIONS}"
        )
    return locations, np.asarray(index, dtype=np.int64).reshape(-1)


def check_grid(spatial: Spatial | None, frame: pd.DataFrame, ids: pd.Series) -> None:
    """An AR1 x AR1 grid's coordinates (numeric already): integer positions, and one individual
    per cell; an error naming the row, the column and the value otherwise."""
    if spatial is None or spatial.kind != "ar1xar1" or not all(c in frame.columns for c in spatial.coords):
        return
    for name in spatial.coords:
        values = frame[name].to_numpy(dtype=np.float64)
        bad = np.flatnonzero(np.isfinite(values) & (values != np.round(values)))
        if bad.size:
            raise InputError(
                f"coordinate column {name!r} of Spatial(kind='ar1xar1') holds grid positions (integers): "
                f"row {frame.index[bad[0]]} has {show_value(values[bad[0]])}"
            )
    cells = frame[list(spatial.coords)].assign(_id=ids.to_numpy()).drop_duplicates()
    dup = cells.duplicated(subset=list(spatial.coords), keep=False)
    if dup.any():
        first = cells[dup].iloc[:2]
        cell = tuple(first[list(spatial.coords)].iloc[0].tolist())  # Python numbers, not numpy's
        row = frame.index[(ids == first["_id"].iloc[1]).to_numpy()][0]
        raise InputError(
            f"Spatial(kind='ar1xar1'): the grid cell {dict(zip(spatial.coords, cell))} holds individuals "
            f"{show_value(first['_id'].iloc[0])} and {show_value(first['_id'].iloc[1])} (row {row}); the "
            "grid has one individual per cell (use kind='gp' for shared locations)"
        )


def grid_cells(spatial: Spatial, covariates: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Every cell of the grid's bounding box (n_row x n_col, 2), row-major, each individual's cell
    (N,) and the grid's shape, from the individual-level covariate table."""
    rc = np.rint(covariates[list(spatial.coords)].to_numpy(dtype=np.float64)).astype(np.int64)
    lo = rc.min(axis=0)
    n_row, n_col = (rc.max(axis=0) - lo + 1).tolist()
    if n_row < 2 or n_col < 2 or n_row * n_col > MAX_CELLS:
        raise InputError(
            f"Spatial(kind='ar1xar1'): the grid spans {n_row} x {n_col} cells of {list(spatial.coords)}; "
            f"it needs at least 2 rows and 2 columns and at most {MAX_CELLS} cells"
        )
    rows, cols = np.meshgrid(np.arange(n_row) + lo[0], np.arange(n_col) + lo[1], indexing="ij")
    labels = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.float64)
    index = (rc[:, 0] - lo[0]) * n_col + (rc[:, 1] - lo[1])
    return labels, index, (int(n_row), int(n_col))
