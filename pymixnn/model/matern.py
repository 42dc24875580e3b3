"""The Matérn random field on irregular locations: its correlation function, the prior over its
hyperparameters that a simulation-trained estimator (:class:`pymixnn.SpatialEstimator`) learns
from, and the checks of locations and observed fields.

A zero-mean Matérn field f at locations s_1..s_n, observed as z_i = mu + f(s_i) + e_i:

    cov(f(s), f(s')) = sd^2 M_nu(kappa |s - s'|),   M_nu(h) = 2^(1-nu) / Gamma(nu) h^nu K_nu(h),
    range = sqrt(8 nu) / kappa   (the distance where the correlation falls to about 0.13),
    e_i ~ N(0, nugget^2) independent,

with nu the smoothness (0.5: exponential; 1.5 and 2.5 have closed forms; other values use the
modified Bessel function K_nu), and mu a constant mean that estimators treat as unknown. ``range``
is in coordinate units, as in the ``spatial.<p>.range`` rows of a fit.

>>> import numpy as np
>>> float(matern_correlation(np.array([0.0, 1.0]), 0.5)[1]) == float(np.exp(-1.0))
True
>>> prior = FieldPrior.of({"range": ("uniform", 0.05, 0.5), "sd": ("uniform", 0.5, 2.0)})
>>> prior.names
('range', 'sd', 'nugget')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import gammaln, kv

from pymixnn.model.prior import check_law, draw_laws
from pymixnn.validation.errors import InputError, show_value

__all__ = ["FieldPrior", "FIELD_PARAMETERS", "matern_correlation", "check_locations", "check_fields"]

# the hyperparameters, in the order of every estimate table
FIELD_PARAMETERS = ("range", "sd", "nugget")


def matern_correlation(h: np.ndarray, nu: float) -> np.ndarray:
    """M_nu(h) at scaled distances h = kappa * d >= 0 (1 at h = 0)."""
    h = np.asarray(h, dtype=float)
    if nu == 0.5:
        return np.exp(-h)
    if nu == 1.5:
        return (1.0 + h) * np.exp(-h)
    if nu == 2.5:
        return (1.0 + h + h * h / 3.0) * np.exp(-h)
    out = np.ones_like(h)
    pos = h > 0
    hp = h[pos]
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        log_m = (1.0 - nu) * math.log(2.0) - gammaln(nu) + nu * np.log(hp)
        out[pos] = np.exp(log_m) * kv(nu, hp)
    out[pos & ~np.isfinite(out)] = 0.0  # K_nu underflows far beyond the range
    return out


def _check_positive_law(name: str, law: tuple, allow_zero: bool) -> None:
    if law[0] == "normal":
        raise ValueError(f"prior for {name!r}: a normal law reaches negative values; use a (log)uniform one")
    low = law[1] if law[0] in ("fixed", "uniform") else None
    if low is not None and (low < 0 or (low == 0 and not allow_zero)):
        word = "non-negative" if allow_zero else "positive"
        raise ValueError(f"prior for {name!r}: {name} is {word}, the law {law!r} reaches {low}")


@dataclass(frozen=True)
class FieldPrior:
    """Independent laws of a Matérn field's ``range``, ``sd`` and ``nugget`` (see
    :mod:`pymixnn.model.prior` for the laws; a number holds one fixed; ``nugget`` defaults to 0)."""

    names: tuple[str, ...]
    laws: tuple[tuple, ...]

    @classmethod
    def of(cls, prior: Mapping[str, object] | FieldPrior) -> FieldPrior:
        if isinstance(prior, FieldPrior):
            return prior
        if not isinstance(prior, Mapping):
            raise TypeError(f"prior must be a dict of laws for {list(FIELD_PARAMETERS)}, got {prior!r}")
        unknown = [k for k in prior if k not in FIELD_PARAMETERS]
        if unknown:
            raise ValueError(
                f"prior given for unknown parameter(s) {unknown}; a field's are {FIELD_PARAMETERS}"
            )
        missing = [k for k in ("range", "sd") if k not in prior]
        if missing:
            raise ValueError(f"prior has no law for {missing} (give a number to hold one fixed)")
        laws = []
        for name in FIELD_PARAMETERS:
            law = check_law(name, prior.get(name, 0.0))
            _check_positive_law(name, law, allow_zero=name == "nugget")
            laws.append(law)
        if laws[0][0] == "fixed" and laws[1][0] == "fixed":
            raise ValueError("prior holds both range and sd fixed: there is nothing to estimate")
        return cls(FIELD_PARAMETERS, tuple(laws))

    @property
    def free(self) -> list[str]:
        """The hyperparameters the prior does not hold fixed."""
        return [n for n, law in zip(self.names, self.laws) if law[0] != "fixed"]

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws (n, 3): range, sd, nugget."""
        return draw_laws(self.laws, rng.random((n, len(self.names))))

    def bounds(self, name: str) -> tuple[float, float]:
        """The support of ``name``'s law (its 1e-4 and 1 - 1e-4 quantiles for an unbounded one)."""
        k = self.names.index(name)
        q = draw_laws((self.laws[k],), np.array([[1e-4], [1 - 1e-4]]))[:, 0]
        law = self.laws[k]
        if law[0] in ("uniform", "loguniform"):
            return float(law[1]), float(law[2])
        return float(q[0]), float(q[1])

    def to_dict(self) -> dict:
        return {n: (law[1] if law[0] == "fixed" else list(law)) for n, law in zip(self.names, self.laws)}


def check_locations(locations, coords: tuple[str, ...] | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Locations as an (n, d) float array: a DataFrame (``coords`` its columns, default all) or an
    array. One clear error for a missing or non-numeric coordinate (naming row, column and value),
    too few locations, or two identical locations."""
    if isinstance(locations, pd.DataFrame):
        cols = tuple(coords) if coords is not None else tuple(str(c) for c in locations.columns)
        absent = [c for c in cols if c not in locations.columns]
        if absent:
            raise InputError(f"locations have no column(s) {absent}; they have {list(locations.columns)}")
        frame = locations[list(cols)]
    else:
        arr = np.asarray(locations, dtype=object)
        if arr.ndim != 2:
            raise InputError(f"locations must be a table or an (n, 2) array, got shape {arr.shape}")
        cols = tuple(coords) if coords is not None else tuple(f"x{k + 1}" for k in range(arr.shape[1]))
        frame = pd.DataFrame(arr, columns=list(cols))
    if len(cols) not in (1, 2, 3):
        raise InputError(f"locations need 1 to 3 coordinate columns, got {len(cols)}: {list(cols)}")
    out = np.empty((len(frame), len(cols)))
    for j, c in enumerate(cols):
        num = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(num))
        if bad.size:
            r = int(bad[0])
            raise InputError(
                f"locations: coordinate {c!r} is missing or not a finite number at row {r} "
                f"(value {show_value(frame[c].iloc[r])}; {bad.size} such row(s))"
            )
        out[:, j] = num
    if len(out) < 10:
        raise InputError(f"a spatial estimator needs at least 10 locations, got {len(out)}")
    _, first, counts = np.unique(out, axis=0, return_index=True, return_counts=True)
    if (counts > 1).any():
        k = int(np.flatnonzero(counts > 1)[0])
        rows = np.flatnonzero((out == out[first[k]]).all(1))
        raise InputError(
            f"locations: rows {int(rows[0])} and {int(rows[1])} are the same location "
            f"{tuple(float(v) for v in out[rows[0]])}; give each location once"
        )
    return out, cols


def check_fields(fields, n: int) -> np.ndarray:
    """Observed fields as an (m, n) float array (one field per row, one column per location, in the
    locations' order); a 1-D input is one field. One clear error naming field and location for a
    non-finite value or a field whose length is not ``n``."""
    arr = fields.to_numpy() if isinstance(fields, (pd.DataFrame, pd.Series)) else fields
    try:  # the fast path: numbers already
        num = np.array(arr, dtype=float)  # a copy: a read-only array (from R) makes torch warn
    except (TypeError, ValueError):
        num = None
    if num is not None and num.ndim in (1, 2) and num.shape[-1] == n and np.isfinite(num).all():
        num = np.atleast_2d(num)
        flat = np.flatnonzero(num.std(axis=1) == 0)
        if flat.size:
            raise InputError(f"fields: field {int(flat[0])} is constant; its covariance cannot be estimated")
        return num
    arr = np.asarray(arr, dtype=object)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n:
        raise InputError(
            f"fields must have one value per location ({n}) in each row, got shape {tuple(arr.shape)}"
        )
    num = pd.DataFrame(arr).apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    bad = np.argwhere(~np.isfinite(num))
    if bad.size:
        i, j = (int(v) for v in bad[0])
        raise InputError(
            f"fields: field {i} at location {j} is missing or not a finite number "
            f"(value {show_value(arr[i, j])})"
        )
    flat = np.flatnonzero(num.std(axis=1) == 0)
    if flat.size:
        raise InputError(f"fields: field {int(flat[0])} is constant; its covariance cannot be estimated")
    return num
