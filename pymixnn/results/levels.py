"""Results of a fit with grouping levels (``levels=``) or a spatial field (``spatial=``): the level
effects per group, the field at the locations and its map.

The covariances are rows ``omega2.<level>.<p>`` (and ``cov.<level>.<p_b>.<p_a>``) of ``res.params``,
kind "level"; the individuals' predictions include their groups' effects (nlme's innermost level).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pymixnn.model.spatial import kernel_correlation, matern_nu

__all__ = ["LevelsMixin", "field_at", "field_sd_at"]

# a Matérn field's mean at a new point: kriged from this many nearest fitted locations
KRIGE_NEIGHBOURS = 30
# locations over which the mean pair correlation of a Matérn field's locations is taken (sampled)
PAIR_SAMPLE = 2000


def _correlation(rec, k: int, d: np.ndarray, entries: np.ndarray) -> np.ndarray:
    """A gp's or a Matérn field's correlation at distances ``d``."""
    kernel = rec["kernels"][k]
    if rec["kinds"][k] == "matern":
        from pymixnn.model.matern import matern_correlation  # scipy.special: 0.25 s to import

        nu = matern_nu(kernel)
        return matern_correlation(np.sqrt(8.0 * nu) * d / entries[1], nu)
    return kernel_correlation(kernel, d / entries[1])


def _krige_nearest(rec, k: int, labels, effects, entries, points) -> np.ndarray:
    """A Matérn field's posterior mean at ``points``, kriged from the posterior means at the
    KRIGE_NEIGHBOURS nearest fitted locations of each (the nearest-neighbour approximation of
    k(s, S) K^-1 E[f(S)])."""
    from scipy.spatial import cKDTree

    m = min(KRIGE_NEIGHBOURS, len(labels))
    _, idx = cKDTree(labels).query(points, k=m)
    idx = idx.reshape(len(points), m)
    near = labels[idx]  # (n, m, d)
    K = _correlation(rec, k, np.sqrt(((near[:, :, None] - near[:, None]) ** 2).sum(-1)), entries)
    K = K + 1e-8 * np.eye(m)
    kx = _correlation(rec, k, np.sqrt(((near - points[:, None]) ** 2).sum(-1)), entries)
    w = np.linalg.solve(K, kx[..., None])[..., 0]
    return (w * effects[idx]).sum(1)


def _grid_cells(labels: np.ndarray, entries: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point's nearest grid cell (row-major index) and rho_row^dr rho_col^dc over its steps
    beyond the grid's edge (1 inside)."""
    off = (points != np.round(points)).any(axis=1)
    if off.any():
        raise ValueError(f"an AR1 x AR1 grid's coordinates are integer positions, got {points[off][0]}")
    lo, hi = labels.min(axis=0), labels.max(axis=0)
    n_col = int(hi[1] - lo[1]) + 1
    near = np.clip(points, lo, hi)
    cell = ((near[:, 0] - lo[0]) * n_col + (near[:, 1] - lo[1])).astype(np.int64)
    steps = np.abs(points - near)
    return cell, entries[1] ** steps[:, 0] * entries[2] ** steps[:, 1]


def field_sd_at(rec, k: int, points: np.ndarray) -> np.ndarray:
    """The posterior sd of an AR1 x AR1 field component ``k`` at ``points``: a cell's within the
    grid; beyond its edge, with a = rho_row^dr rho_col^dc, sqrt(a^2 var(f(edge)) + sd^2 (1 - a^2))
    (exact: given the grid, a point beyond it depends on its nearest edge cell alone). NaN for a
    Gaussian process's or Matérn field's new locations (their sd needs the field's posterior
    covariance, not kept)."""
    labels = np.asarray(rec["labels"][k], dtype=np.float64)
    sds = np.asarray(rec["effects_sd"][k], dtype=np.float64)[:, 0]
    entries = np.asarray(rec["entries"][k], dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    if rec["kinds"][k] == "ar1xar1":
        cell, a = _grid_cells(labels, entries, points)
        return np.sqrt(a**2 * sds[cell] ** 2 + entries[0] ** 2 * (1.0 - a**2))
    out = np.full(len(points), np.nan)
    same = (points[:, None, :] == labels[None, :, :]).all(-1)
    hit = same.any(1)
    out[hit] = sds[same[hit].argmax(1)]
    return out


def field_at(rec, k: int, points: np.ndarray) -> np.ndarray:
    """The posterior mean of field component ``k`` of a levels record at ``points`` (n, n_coords):
    at a fitted location (or a grid cell) its effect; elsewhere the kriged mean, exact given the
    effects' posterior mean (the field at a new point depends on the data only through the field
    at the fitted points): a Gaussian process's k(s, S) K^-1 E[f(S)]; beyond the edge of an AR1 x
    AR1 grid, rho_row^dr rho_col^dc times the nearest cell's (the AR1s are Markov); a Matérn
    field's kriged from the nearest fitted locations (:func:`_krige_nearest`)."""
    labels = np.asarray(rec["labels"][k], dtype=np.float64)
    effects = np.asarray(rec["effects"][k], dtype=np.float64)[:, 0]
    entries = np.asarray(rec["entries"][k], dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    bad = ~np.isfinite(points)
    if bad.any():
        raise ValueError(
            f"spatial coordinates: a new individual's location has {points[np.argwhere(bad)[0][0]]}"
        )
    if rec["kinds"][k] == "ar1xar1":
        cell, factor = _grid_cells(labels, entries, points)
        return effects[cell] * factor
    if rec["kinds"][k] == "matern":
        return _krige_nearest(rec, k, labels, effects, entries, points)
    dist = lambda a, b: np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))  # noqa: E731
    K = _correlation(rec, k, dist(labels, labels), entries) + 1e-8 * np.eye(len(labels))
    weights = np.linalg.solve(K, effects)
    return _correlation(rec, k, dist(points, labels), entries) @ weights


class LevelsMixin:
    """``level_names`` and ``level_effects(level)`` of :class:`pymixnn.Results`."""

    def _levels_record(self):
        rec = (
            None if getattr(self, "external", None) is not None else getattr(self.estimation, "levels", None)
        )
        if not rec:
            raise ValueError(
                "this fit has no grouping levels: fit with levels=[pymixnn.Level(column, params=[...])]"
            )
        return rec

    def _field_components(self) -> tuple:
        """The levels record, its components' kinds and the indices of the spatial fields (an
        error for a fit without a field)."""
        rec = self._levels_record()
        kinds = rec.get("kinds") or []
        comps = [k for k, kind in enumerate(kinds) if kind != "level"]
        if not comps:
            raise ValueError(
                "this fit has no spatial field: fit with spatial=pymixnn.Spatial(params, coords)"
            )
        return rec, kinds, comps

    @property
    def level_names(self) -> list[str]:
        """The grouping levels' columns ([] for a fit without levels; a spatial field is not one)."""
        rec = (
            None if getattr(self, "external", None) is not None else getattr(self.estimation, "levels", None)
        )
        if not rec:
            return []
        kinds = rec.get("kinds") or ["level"] * len(rec["names"])
        return [n for n, k in zip(rec["names"], kinds) if k == "level"]

    def level_effects(self, level: str) -> pd.DataFrame:
        """The effects of level ``level`` (its column name) per group: posterior mean and sd of
        each parameter's effect on the transformed scale (columns ``<p>`` and ``<p>.sd``, nlme's
        ``ranef(fit)$<level>``) and the number of individuals in the group, indexed by group."""
        rec = self._levels_record()
        names = self.level_names
        if level not in names:
            raise ValueError(f"no level {level!r} in this fit; its levels are {names}")
        k = list(rec["names"]).index(level)
        params = list(rec["params"][k])
        mean, sd = np.asarray(rec["effects"][k]), np.asarray(rec["effects_sd"][k])
        out = pd.DataFrame(
            {
                **{p: mean[:, j] for j, p in enumerate(params)},
                **{f"{p}.sd": sd[:, j] for j, p in enumerate(params)},
            },
            index=pd.Index(list(rec["labels"][k]), name=level),
        )
        out["n_individuals"] = np.bincount(np.asarray(rec["groups"][k]), minlength=len(out))
        return out

    def spatial_field(self, points=None) -> pd.DataFrame:
        """The spatial field's posterior, transformed scale. Without ``points``: one row per
        fitted location (a grid's field, kind "ar1xar1": per cell of the grid, empty cells
        included), its coordinates, for each parameter with a field the posterior mean ``<p>`` and
        sd ``<p>.sd``, and the number of individuals there. With ``points`` (a table with the
        coordinate columns, or an (m, d) array; e.g. a regular grid over the field): the mean and
        sd there (:func:`field_at`, :func:`field_sd_at`: exact for a grid's field everywhere; for
        a Gaussian process the kriged mean, and the sd at fitted locations only, NaN elsewhere)."""
        rec, kinds, comps = self._field_components()
        coords = self.settings["spatial"]["coords"]
        if points is not None:
            if isinstance(points, pd.DataFrame):
                absent = [c for c in coords if c not in points.columns]
                if absent:
                    raise ValueError(
                        f"points have no coordinate column(s) {absent}; the field's are {coords}"
                    )
                pts = points[coords].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
            else:
                pts = np.asarray(points, dtype=np.float64).reshape(-1, len(coords))
            out = pd.DataFrame(pts, columns=coords)
            for k in comps:
                p = rec["params"][k][0]
                out[p] = field_at(rec, k, pts)
                out[f"{p}.sd"] = field_sd_at(rec, k, pts)
            return out
        out = pd.DataFrame(np.asarray(rec["labels"][comps[0]], dtype=float), columns=coords)
        for k in comps:
            p = rec["params"][k][0]
            out[p] = np.asarray(rec["effects"][k])[:, 0]
            out[f"{p}.sd"] = np.asarray(rec["effects_sd"][k])[:, 0]
        out["n_individuals"] = np.bincount(np.asarray(rec["groups"][comps[0]]), minlength=len(out))
        return out

    def spatial_variance(self) -> pd.DataFrame:
        """How each parameter with a field splits its variance (transformed scale), one row per
        parameter: ``field`` (the field's marginal variance sd^2), ``field_over_locations`` (its
        expected variance across the fitted individuals at their locations, sd^2 (1 - the mean
        correlation over all pairs of individuals): what the field varies over this experiment,
        less than sd^2 when the locations are close relative to the range; over a sample of 2,000
        locations for a Matérn field's many), ``individual``
        (omega2.<p>), ``levels`` (the sum of omega2.<level>.<p>), ``share`` (field_over_locations
        over the sum of it, individual and levels) and ``share_marginal`` (the same with sd^2)."""
        rec, kinds, comps = self._field_components()
        est = self.params["estimate"]
        rows = []
        for k in comps:
            p = rec["params"][k][0]
            entries = np.asarray(rec["entries"][k], dtype=np.float64)
            labels = np.asarray(rec["labels"][k], dtype=np.float64)
            count = np.bincount(np.asarray(rec["groups"][k]), minlength=len(labels)).astype(np.float64)
            used, w = labels[count > 0], count[count > 0]  # individuals per location
            if len(used) > PAIR_SAMPLE:  # a Matérn field's many locations: a fixed sample of them
                pick = np.random.default_rng(0).choice(len(used), PAIR_SAMPLE, replace=False, p=w / w.sum())
                used, w = used[pick], np.ones(PAIR_SAMPLE)
            w = w / w.sum()
            d = np.abs(used[:, None, :] - used[None, :, :])
            if kinds[k] == "ar1xar1":
                corr = entries[1] ** d[..., 0] * entries[2] ** d[..., 1]
            else:
                corr = _correlation(rec, k, np.sqrt((d**2).sum(-1)), entries)
            field = float(entries[0] ** 2)
            over = field * (1.0 - float(w @ corr @ w))  # E of the variance across the individuals
            levels = sum(
                float(est[f"omega2.{name}.{p}"])
                for name, kind in zip(rec["names"], kinds)
                if kind == "level" and f"omega2.{name}.{p}" in est.index
            )
            ind = float(est[f"omega2.{p}"]) if f"omega2.{p}" in est.index else 0.0
            rows.append(
                dict(
                    parameter=p,
                    field=field,
                    field_over_locations=over,
                    individual=ind,
                    levels=levels,
                    share=over / (over + ind + levels),
                    share_marginal=field / (field + ind + levels),
                )
            )
        return pd.DataFrame(rows).set_index("parameter")

    def plot_spatial_field(self, path, param: str | None = None):
        """PNG map of the field's posterior mean at the locations (the first two coordinates),
        one panel per parameter with a field (or ``param`` only); returns the path."""
        from pymixnn.results.plots import new_figure, save_figure

        field = self.spatial_field()
        coords = self.settings["spatial"]["coords"]
        params = [param] if param else [c for c in self.settings["spatial"]["params"]]
        fig = new_figure(figsize=(4.8 * len(params), 4))
        axes = fig.subplots(1, len(params), squeeze=False)
        for ax, p in zip(axes[0], params):
            lim = float(np.abs(field[p]).max()) or 1.0
            sc = ax.scatter(
                field[coords[0]], field[coords[1]], c=field[p], cmap="RdBu_r", vmin=-lim, vmax=lim, s=18
            )
            fig.colorbar(sc, ax=ax, label=f"field on {p} (transformed scale)")
            ax.set_xlabel(coords[0])
            ax.set_ylabel(coords[1] if len(coords) > 1 else "")
            ax.set_title(f"spatial field: {p}")
        fig.tight_layout()
        return save_figure(fig, path)
