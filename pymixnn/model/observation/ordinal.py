"""Ordered categories (proportional odds), and how their levels are found in the data."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from pymixnn.model.observation.base import BIG, Observation, row_error

__all__ = ["Ordinal", "resolve_levels"]


@dataclass(frozen=True)
class Ordinal(Observation):
    """Ordered categories (proportional odds, cumulative logit): P(y <= level k) =
    sigmoid(c_k - f) with c_0 = 0 < c_1 < ...

    Parameters
    ----------
    levels : sequence, optional
        The categories in order (default: the sorted values found in the data).

    Returns
    -------
    Ordinal
        The family spec for ``fit(..., observation=...)`` (``"ordinal"``); the thresholds are
        reported as ``threshold.2|3``, ... in ``res.sigma``.
    """

    levels: tuple | None = None
    name = "ordinal"
    encodes_response: ClassVar[bool] = True

    def __post_init__(self):
        if self.levels is not None:
            levels = tuple(v.item() if isinstance(v, np.generic) else v for v in self.levels)
            if len(levels) < 2 or len(set(levels)) != len(levels):
                raise ValueError(f"Ordinal levels must be at least 2 distinct values, got {list(levels)}")
            object.__setattr__(self, "levels", levels)

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    def parameter_names(self, model):
        lv = self.levels
        return tuple(f"threshold.{lv[k]}|{lv[k + 1]}" for k in range(1, len(lv) - 1))

    def initial_raw(self, model, y, aux):
        # cumulative proportions of the pooled data: c_k = logit F_k - logit F_0
        K = self.n_levels
        F = np.clip(np.cumsum(np.bincount(y.astype(int), minlength=K))[:-1] / len(y), 0.02, 0.98)
        c = np.log(F / (1 - F))
        gaps = np.maximum(np.diff(c), 0.1)
        return [float(v) for v in np.log(gaps)]

    def cuts(self, raw):
        zero = torch.zeros(1, dtype=raw.dtype, device=raw.device)
        return torch.cat([zero, torch.cumsum(torch.exp(raw), 0)])

    def natural(self, raw, model):
        return {"cuts": self.cuts(raw)}

    def reported(self, raw, model):
        return list(self.cuts(raw)[1:])

    def _bounds(self, y, cuts):
        big = torch.tensor([BIG], dtype=cuts.dtype, device=cuts.device)
        ext = torch.cat([-big, cuts, big])  # ext[k + 1] = c_k
        k = y.long()
        return ext[k], ext[k + 1]  # lower c_{k-1}, upper c_k

    def log_prob(self, y, f, params, aux):
        lower, upper = self._bounds(y, params["cuts"])
        # log(sigmoid(u - f) - sigmoid(l - f)) = logsig(u - f) + logsig(f - l) + log(1 - e^(l - u))
        ls = torch.nn.functional.logsigmoid
        return ls(upper - f) + ls(f - lower) + torch.log(-torch.expm1(lower - upper))

    def probabilities(self, f, params):
        """P(y = level k), (..., K)."""
        cuts = params["cuts"]
        cum = torch.sigmoid(cuts - f.unsqueeze(-1))
        ones = torch.ones_like(cum[..., :1])
        cum = torch.cat([cum, ones], -1)
        return torch.diff(cum, dim=-1, prepend=torch.zeros_like(ones))

    def mean(self, f, params, aux):
        """Expected category index (0 .. K-1)."""
        probs = self.probabilities(f, params)
        return (probs * torch.arange(probs.shape[-1], dtype=f.dtype)).sum(-1)

    def variance(self, f, params, aux):
        probs = self.probabilities(f, params)
        k = torch.arange(probs.shape[-1], dtype=f.dtype)
        m = (probs * k).sum(-1)
        return (probs * k**2).sum(-1) - m**2

    def sample(self, f, params, aux, generator):
        probs = self.probabilities(f, params)
        u = torch.rand(f.shape, generator=generator, dtype=f.dtype).unsqueeze(-1)
        return (torch.cumsum(probs, -1)[..., :-1] < u).sum(-1).to(f.dtype)

    def validate(self, y, column, aux):
        if self.levels is None:
            return
        known = pd.Series(y).isin(list(self.levels)).to_numpy()
        if not known.all():
            raise row_error(
                column, f"holds a level not among the ordinal levels {list(self.levels)}", y, ~known
            )

    def encode(self, y: pd.Series) -> np.ndarray:
        codes = {v: k for k, v in enumerate(self.levels)}
        return y.map(codes).to_numpy(dtype=np.float64)

    def resolve_response(self, y: pd.Series, column: str) -> Ordinal:
        resolved = resolve_levels(self, y, column)
        resolved.validate(y[y.notna()], column, {})
        return resolved

    def encode_response(self, y: pd.Series) -> np.ndarray:
        return self.encode(y)

    def decode_simulated(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(self.levels, dtype=object)[np.asarray(codes).astype(int)]

    def working_response(self, y, aux):
        K = self.n_levels
        p = (y + 0.5) / K
        return np.log(p / (1 - p))

    def describe(self, model):
        return f"ordinal observations, {self.n_levels} levels {list(self.levels)} (proportional odds)"

    def statistic(self):
        return "proportion"


def resolve_levels(obs: Observation, y: pd.Series, column: str) -> Observation:
    """An Ordinal spec with its levels, when not given: an ordered categorical's categories, or
    the values of y sorted when they are numbers (or strings of numbers, sorted by value). Other
    levels (strings such as "low", "mid", "high") have no order the data can tell: an error that
    lists them and shows ``Ordinal(levels=[...])``, rather than an alphabetical order."""
    if not isinstance(obs, Ordinal) or obs.levels is not None:
        return obs
    categorical = isinstance(y.dtype, pd.CategoricalDtype)
    if categorical and y.cat.ordered:
        levels = list(y.cat.categories)
    else:
        values = list(y.cat.categories) if categorical else list(pd.unique(y.dropna()))
        values = [v.item() if isinstance(v, np.generic) else v for v in values]
        levels = _numeric_order(values)
        if levels is None:
            shown = values if len(values) <= 20 else values[:20] + ["..."]
            raise ValueError(
                f"column {column!r}: cannot order the ordinal levels {shown} (not numbers); "
                f"give them in increasing order: observation=pymixnn.Ordinal(levels={shown})"
            )
    if len(levels) < 2:
        raise ValueError(f"column {column!r} has a single level {levels}; ordinal data need at least 2")
    return Ordinal(levels=tuple(levels))


def _numeric_order(values: list) -> list | None:
    """The values sorted by their numeric value (numbers, booleans, or strings of finite
    numbers such as "1", "2", "10"), or None when some are not numbers."""
    keys = []
    for v in values:
        if isinstance(v, (int, float, bool)):
            key = float(v)
        elif isinstance(v, str):
            try:
                key = float(v)
            except ValueError:
                return None
        else:
            return None
        if not math.isfinite(key):
            return None
        keys.append(key)
    if len(set(keys)) < len(keys):  # "1" and "1.0", or 1 and True: one value under two labels
        return None
    return [values[k] for k in np.argsort(keys, kind="stable")]
