"""Grouping levels above or beside the individual: plants in genotypes, trees in plots, patients in
centres (nlme's nested ``random = list(plot = ..., tree = ...)``, lme4's ``(1 | plot)``).

A :class:`Level` adds to the transformed parameters of every individual in group g of the level a
Gaussian random effect ``b_g ~ N(0, Omega_level)`` shared by the group, on top of the individual's
own ``eta_i ~ N(0, Omega)``:

    phi_i = mu + covariate effects + sum over levels of b_{level, g(i)} + eta_i

Levels may be nested (trees in plots: each tree's plot is one group) or crossed (plants in
genotypes and in blocks); the level column is constant within an individual and its labels are
global (nested labels that repeat across plots, such as tree "1" in every plot, are a different
column's job: the individual is the lowest level). How the fit integrates the levels out is in
:mod:`pymixnn.inference.levels`.

>>> Level("plot", params=["A"])
Level(name='plot', params=('A',), omega='diagonal')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pymixnn.validation.errors import InputError, InputTypeError, show_value
from pymixnn.validation.model_checks import check_random_params

__all__ = ["Level", "LevelSetup", "check_levels", "check_level_columns", "level_setup", "MAX_EFFECTS"]

OMEGA_KINDS = ("diagonal", "full")
# with several levels the fit's dense algebra over the level effects (inference/levels.py) costs a
# Cholesky of n_b x n_b per likelihood evaluation, n_b = sum over levels of groups x parameters
# (2,000: ~0.1 s); one level is block-diagonal (per group), without a limit
MAX_EFFECTS = 4000


@dataclass(frozen=True)
class Level:
    """A grouping level above or beside the individual: plots of trees, genotypes of plants.

    Parameters
    ----------
    name : str
        The data column holding each individual's group (constant within an individual; labels
        are global, so nested labels that repeat across groups need a combined column).
    params : str or list of str
        The parameters with a random effect at that level (each also random at the individual
        level).
    omega : {"diagonal", "full"}, default "diagonal"
        Covariance structure of the level's effects.

    Returns
    -------
    Level
        The spec for ``fit(..., levels=[...])``; reported as ``omega2.<level>.<p>`` rows with SEs,
        the effects by ``res.level_effects(name)``.
    """

    name: str
    params: tuple[str, ...] = ()
    omega: str = "diagonal"

    def __init__(self, name: str, params: Sequence[str] | str = (), omega: str = "diagonal"):
        if not isinstance(name, str) or not name:
            raise InputTypeError(f"Level(name=...) is the grouping column's name, got {name!r}")
        params = (params,) if isinstance(params, str) else tuple(params)
        if not params or not all(isinstance(p, str) for p in params):
            raise InputError(f"Level({name!r}, params=...) names at least one parameter, got {params!r}")
        if len(set(params)) != len(params):
            raise InputError(f"Level({name!r}, params={list(params)}) names a parameter twice")
        if omega not in OMEGA_KINDS:
            raise InputError(f"Level({name!r}, omega={omega!r}): use one of {list(OMEGA_KINDS)}")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "omega", omega)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": list(self.params), "omega": self.omega}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Level:
        return cls(d["name"], d["params"], d.get("omega", "diagonal"))


@dataclass(frozen=True)
class LevelSetup:
    """Numpy inputs of the level block (built by the problem): per level its name, parameters,
    whether its covariance is full, each individual's group (N,) and the group labels."""

    names: tuple[str, ...]
    params: tuple[tuple[str, ...], ...]
    full: tuple[bool, ...]
    groups: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray, ...]
    # per component: "level", or the kind of a spatial field (pymixnn.Spatial) on one parameter:
    # "gp", whose groups are the distinct locations (labels: their coordinates) and whose
    # covariance is the kernel's over their distances, or "ar1xar1", whose groups are the cells,
    # or "matern" (kernel "matern<nu>"), whose ``distances`` are a summary (smallest, median,
    # largest: model/vecchia.py) and ``vecchia`` each individual's conditioning set (N, m)
    kinds: tuple[str, ...] = ()
    kernels: tuple[str | None, ...] = ()
    distances: tuple[np.ndarray | None, ...] = ()
    vecchia: tuple[np.ndarray | None, ...] = ()
    # an "ar1xar1" field's grid shape (rows, columns): its groups are the cells, row-major
    grids: tuple[tuple[int, int] | None, ...] = ()
    range_init: tuple[float | None, ...] = ()  # a gp's or Matérn field's start range (Spatial)
    coords: tuple[str, ...] = ()  # a field's coordinate columns


def check_levels(
    levels: Any, model: Any, law: Any = None, genomic: Any = None, spatial: Any = None
) -> list[Level]:
    """levels= as a list of Level, checked against the model, the random-effects law and genomic=
    (before any data work): an error naming the level and the parameter otherwise. Returns the
    list ([] without levels). The law and genomic= checks hold for a spatial field too."""
    what = "levels=" if levels is not None else "spatial="
    if levels is None and spatial is None:
        return []
    if law is not None and getattr(law, "name", "gaussian") != "gaussian":
        raise InputError(
            f"{what} works with Gaussian random effects so far, not random_effects={law.name!r} "
            "(it is integrated out through the individual-level Gaussian prior)"
        )
    if genomic is not None:
        raise InputError(
            f"{what} with genomic= is not supported yet (the genomic fit has its own genotype level: "
            "Genomic(residual=True), the genotype residual)"
        )
    if levels is None:
        return []
    if isinstance(levels, Level):
        levels = [levels]
    if not isinstance(levels, (list, tuple)) or not all(isinstance(lv, Level) for lv in levels):
        raise InputTypeError(
            "levels must be a list of pymixnn.Level(column, params=[...]), got "
            f"{type(levels).__name__}: e.g. levels=[pymixnn.Level('plot', params=['A'])]"
        )
    names = [lv.name for lv in levels]
    if len(set(names)) != len(names):
        raise InputError(f"levels= names the column {sorted({n for n in names if names.count(n) > 1})} twice")
    for lv in levels:
        check_random_params(
            f"Level({lv.name!r}, params=...)",
            lv.params,
            model,
            "the fit integrates a level out through each individual's posterior of its own effects",
        )
    return list(levels)


def check_level_columns(
    levels: list[Level], roles: dict[str, list], frame: Any = None, spatial: Any = None
) -> None:
    """A level column that is the id, an x or the y column, or (a DataFrame ``frame``) that varies
    within an individual; a spatial coordinate column likewise, or not numeric: an error naming
    the column, the individual and the row."""
    coords = list(spatial.coords) if spatial is not None else []
    for name in [lv.name for lv in levels] + coords:
        for role, columns in roles.items():
            if name in columns:
                raise InputError(
                    f"{'coordinate' if name in coords else 'level'} column {name!r} is the {role} "
                    "column: levels and fields group individuals by other columns"
                )
    if not isinstance(frame, pd.DataFrame) or not roles.get("id") or roles["id"][0] not in frame.columns:
        return
    ids = frame[roles["id"][0]]
    for name in coords:
        if name in frame.columns and not pd.api.types.is_numeric_dtype(frame[name]):
            bad = pd.to_numeric(frame[name], errors="coerce").isna() & frame[name].notna()
            row = int(bad.to_numpy().nonzero()[0][0]) if bad.any() else 0
            raise InputError(
                f"coordinate column {name!r} must be numeric: row {frame.index[row]} has "
                f"{show_value(frame[name].iloc[row])}"
            )
    from pymixnn.model.spatial import check_grid

    for name in [lv.name for lv in levels] + coords:
        if name not in frame.columns:
            continue  # the data check names the missing column
        col = frame[name].astype(object).where(frame[name].notna(), None)
        first = col.groupby(ids, sort=False).transform("first")
        varies = (col != first) & col.notna() & first.notna()
        if varies.any():
            row = varies.to_numpy().nonzero()[0][0]
            what = (
                "an individual has one location"
                if name in coords
                else "a level groups whole individuals (a level within individuals, such as "
                "occasions, is not supported yet)"
            )
            raise InputError(
                f"{'coordinate' if name in coords else 'level'} column {name!r} varies within "
                f"individual {show_value(ids.iloc[row])} (row {frame.index[row]} has "
                f"{show_value(col.iloc[row])}, its "
                f"first row {show_value(first.iloc[row])}): {what}"
            )
    check_grid(spatial, frame, ids)


def level_setup(
    levels: list[Level], covariates: pd.DataFrame, ids: np.ndarray, spatial: Any = None
) -> LevelSetup | None:
    """Each individual's group per level from the individual-level covariate table (the data's
    check has made the columns constant within an individual); errors naming the level when a
    level has one group, or one individual per group (then it is the individual level). A
    ``spatial`` field (pymixnn.Spatial) adds one component per parameter, over the locations."""
    if not levels and spatial is None:
        return None
    groups, labels = [], []
    for lv in levels:
        col = covariates[lv.name]
        missing = np.flatnonzero(col.isna().to_numpy())
        if missing.size:
            raise InputError(
                f"level column {lv.name!r} is missing for individual {show_value(ids[missing[0]])} "
                f"({missing.size} individuals in all): every individual needs its group"
            )
        codes, uniques = pd.factorize(col, sort=True)
        n_groups = len(uniques)
        if n_groups < 2:
            raise InputError(
                f"level {lv.name!r} has a single group ({show_value(uniques[0])}): a level's variance needs "
                "at "
                "least 2 groups (drop the level, or use a covariate)"
            )
        if n_groups == len(ids):
            raise InputError(
                f"level {lv.name!r} has one individual per group ({n_groups} groups): it is the "
                "individual level itself; group individuals by a coarser column"
            )
        groups.append(np.asarray(codes, dtype=np.int64))
        labels.append(np.asarray(uniques))
    n_b = sum(len(lab) * len(lv.params) for lab, lv in zip(labels, levels))
    if len(levels) > 1 and n_b > MAX_EFFECTS:
        raise InputError(
            f"levels= has {n_b} level effects (groups x parameters over the levels), more than the "
            f"{MAX_EFFECTS} that the dense algebra of several levels handles: use fewer parameters "
            "per level or coarser groups (one level has no limit)"
        )
    setup = LevelSetup(
        names=tuple(lv.name for lv in levels),
        params=tuple(lv.params for lv in levels),
        full=tuple(lv.omega == "full" and len(lv.params) > 1 for lv in levels),
        groups=tuple(groups),
        labels=tuple(labels),
        kinds=("level",) * len(levels),
        kernels=(None,) * len(levels),
        distances=(None,) * len(levels),
        grids=(None,) * len(levels),
    )
    if spatial is None:
        return setup
    from pymixnn.model.spatial import grid_cells, spatial_locations

    k = len(spatial.params)
    grid, dist, sets, kernel = None, None, None, spatial.kernel if spatial.kind == "gp" else None
    if spatial.kind == "ar1xar1":
        locations, index, grid = grid_cells(spatial, covariates)
    elif spatial.kind == "matern":
        from pymixnn.model.spatial import matern_kernel_name
        from pymixnn.model.vecchia import distance_summary, vecchia_sets

        if levels:
            raise InputError(
                "Spatial(kind='matern') is fitted without levels= beside it (its nearest-neighbour "
                "algebra does not take other levels yet): use kind='gp' with levels"
            )
        locations, index = spatial_locations(spatial, covariates)
        coords = covariates[list(spatial.coords)].to_numpy(dtype=np.float64)
        dist, sets = distance_summary(coords), vecchia_sets(coords, spatial.neighbours)
        kernel = matern_kernel_name(spatial.nu)
    else:
        locations, index = spatial_locations(spatial, covariates)
        dist = np.sqrt(((locations[:, None, :] - locations[None, :, :]) ** 2).sum(-1))
    return LevelSetup(
        names=setup.names + ("spatial",) * k,
        params=setup.params + tuple((p,) for p in spatial.params),
        full=setup.full + (False,) * k,
        groups=setup.groups + (index,) * k,
        labels=setup.labels + (locations,) * k,
        kinds=setup.kinds + (spatial.kind,) * k,
        kernels=setup.kernels + (kernel,) * k,
        distances=setup.distances + (dist,) * k,
        vecchia=(None,) * len(levels) + (sets,) * k,
        grids=(None,) * len(levels) + (grid,) * k,
        range_init=(None,) * len(levels) + (spatial.range_init,) * k,
        coords=tuple(spatial.coords),
    )
