"""Binomial (with a trials column) and Bernoulli observations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pymixnn.model.observation.base import Observation, check_counts, row_error
from pymixnn.validation.errors import show_value

__all__ = ["Binomial", "Bernoulli"]


@dataclass(frozen=True)
class Binomial(Observation):
    """Successes out of ``trials`` (a column given to fit as ``trials=``): y ~ Binomial(n, p).

    Parameters
    ----------
    link : {"logit", "probit", "identity"}, default "logit"
        How the structural function f gives the probability p.

    Returns
    -------
    Binomial
        The family spec for ``fit(..., observation=..., trials=...)`` (``"binomial"``).
    """

    link: str = "logit"
    name = "binomial"
    links = ("logit", "probit", "identity")
    needs = ("trials",)

    def log_p(self, f):
        """(log p, log(1 - p))."""
        if self.link == "logit":
            return torch.nn.functional.logsigmoid(f), torch.nn.functional.logsigmoid(-f)
        if self.link == "probit":
            return torch.special.log_ndtr(f), torch.special.log_ndtr(-f)
        p = f.clamp(1e-10, 1 - 1e-10)
        return torch.log(p), torch.log1p(-p)

    def _trials(self, aux):
        return aux["trials"]

    def log_prob(self, y, f, params, aux):
        n = self._trials(aux)
        lp, lq = self.log_p(f)
        choose = torch.lgamma(n + 1) - torch.lgamma(y + 1) - torch.lgamma(n - y + 1)
        return choose + y * lp + (n - y) * lq

    def mean(self, f, params, aux):
        return self._trials(aux) * self.inverse_link(f).clamp(0, 1)

    def variance(self, f, params, aux):
        p = self.inverse_link(f).clamp(0, 1)
        return self._trials(aux) * p * (1 - p)

    def sample(self, f, params, aux, generator):
        n = self._trials(aux)
        p = self.inverse_link(f).clamp(0, 1)
        # sum of n Bernoulli draws (trials are small: organ counts, questionnaire items)
        n_max = int(n.max())
        u = torch.rand((*f.shape, max(n_max, 1)), generator=generator, dtype=f.dtype)
        k = torch.arange(max(n_max, 1), dtype=f.dtype)
        return ((u < p.unsqueeze(-1)) & (k < n.unsqueeze(-1))).sum(-1).to(f.dtype)

    def validate(self, y, column, aux):
        trials = aux["trials"]
        n = trials.to_numpy(dtype=np.float64)
        bad = ~(n >= 1) | (n != np.round(n))
        if bad.any():
            raise row_error(trials.name, "must hold positive integer numbers of trials", trials, bad)
        check_counts(y, column, self.name)
        bad = y.to_numpy(dtype=np.float64) > n
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"column {column!r} has more successes than trials ({trials.name!r}): "
                f"row {show_value(y.index[pos])} has {column}={show_value(y.iloc[pos])} and "
                f"{trials.name}={show_value(trials.iloc[pos])}"
            )

    def working_response(self, y, aux):
        p = (y + 0.5) / (aux["trials"] + 1.0)
        if self.link == "logit":
            return np.log(p / (1 - p))
        if self.link == "probit":
            from scipy.stats import norm

            return norm.ppf(p)
        return p

    def statistic(self):
        return "proportion"


@dataclass(frozen=True)
class Bernoulli(Binomial):
    """Binary y (0/1 or booleans): y ~ Bernoulli(p).

    Parameters
    ----------
    link : {"logit", "probit", "identity"}, default "logit"
        How the structural function f gives the probability p.

    Returns
    -------
    Bernoulli
        The family spec for ``fit(..., observation=...)`` (``"bernoulli"``).
    """

    name = "bernoulli"
    needs = ()

    def _trials(self, aux):
        return 1.0

    def log_prob(self, y, f, params, aux):
        lp, lq = self.log_p(f)
        return y * lp + (1 - y) * lq

    def mean(self, f, params, aux):
        return self.inverse_link(f).clamp(0, 1)

    def variance(self, f, params, aux):
        p = self.mean(f, params, aux)
        return p * (1 - p)

    def sample(self, f, params, aux, generator):
        p = self.mean(f, params, aux)
        return (torch.rand(f.shape, generator=generator, dtype=f.dtype) < p).to(f.dtype)

    def validate(self, y, column, aux):
        bad = ~np.isin(y.to_numpy(dtype=np.float64), (0.0, 1.0))
        if bad.any():
            raise row_error(column, "must be 0 or 1 for observation='bernoulli'", y, bad)

    def working_response(self, y, aux):
        return super().working_response(y, {"trials": np.ones_like(y)})
