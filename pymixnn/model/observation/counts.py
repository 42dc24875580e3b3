"""Count observations: Poisson, negative binomial (NB2), zero-inflated Poisson."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pymixnn.model.observation.base import MAX_LOG_RATE, Observation, check_counts

__all__ = ["Poisson", "NegativeBinomial", "ZeroInflatedPoisson"]


@dataclass(frozen=True)
class Poisson(Observation):
    """Counts: y ~ Poisson(lambda), lambda = exp(f) (``link="log"``) or f (``"identity"``).

    Parameters
    ----------
    link : {"log", "identity"}, default "log"
        How the structural function f gives the rate lambda.

    Returns
    -------
    Poisson
        The family spec for ``fit(..., observation=...)`` (``observation="poisson"``).
    """

    link: str = "log"
    name = "poisson"
    links = ("log", "identity")

    def rate(self, f):
        return torch.exp(self.log_rate(f))

    def log_rate(self, f):
        # log rates are capped at 80 (rate 5.5e34, finite in float32): importance draws far in a
        # tail must give a finite log-density and finite gradients (a rate of inf makes the
        # zero-inflated branch's gradient NaN even where its value is finite)
        if self.link == "log":
            return f.clamp(max=MAX_LOG_RATE)
        return torch.log(f.clamp_min(1e-10))

    def log_prob(self, y, f, params, aux):
        return y * self.log_rate(f) - self.rate(f) - torch.lgamma(y + 1)

    def mean(self, f, params, aux):
        return self.rate(f)

    def variance(self, f, params, aux):
        return self.rate(f)

    def sample(self, f, params, aux, generator):
        return torch.poisson(self.rate(f), generator=generator)

    def validate(self, y, column, aux):
        check_counts(y, column, self.name)

    def working_response(self, y, aux):
        return np.log(y + 0.5) if self.link == "log" else y


@dataclass(frozen=True)
class NegativeBinomial(Poisson):
    """Overdispersed counts (NB2): mean lambda, variance lambda + alpha lambda^2 (statsmodels'
    ``alpha``, reported in ``res.sigma`` with its SE).

    Parameters
    ----------
    link : {"log", "identity"}, default "log"
        How the structural function f gives the mean lambda.

    Returns
    -------
    NegativeBinomial
        The family spec for ``fit(..., observation=...)`` (``"negative_binomial"``).
    """

    name = "negative_binomial"

    def parameter_names(self, model):
        return ("alpha",)

    def initial_raw(self, model, y, aux):
        return [math.log(0.3)]

    def log_prob(self, y, f, params, aux):
        alpha = params["alpha"]
        r = 1.0 / alpha
        log_mu = self.log_rate(f)
        # log(alpha mu / (1 + alpha mu)) and log(1 / (1 + alpha mu)), stable for large mu
        log_am = torch.log(alpha) + log_mu
        log1p_am = torch.nn.functional.softplus(log_am)
        return (
            torch.lgamma(y + r)
            - torch.lgamma(r)
            - torch.lgamma(y + 1)
            + y * (log_am - log1p_am)
            - r * log1p_am
        )

    def variance(self, f, params, aux):
        mu = self.rate(f)
        return mu + params["alpha"] * mu**2

    def sample(self, f, params, aux, generator):
        alpha = params["alpha"]
        mu = self.rate(f)
        # gamma-Poisson mixture: lambda ~ Gamma(1/alpha, rate 1/(alpha mu))
        shape = (1.0 / alpha).expand_as(mu)
        g = torch._standard_gamma(shape.contiguous()) if generator is None else _gamma(shape, generator)
        return torch.poisson(g * alpha * mu, generator=generator)


def _gamma(shape: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gamma(shape, 1) draws with an explicit generator (Marsaglia-Tsang, vectorized)."""
    boost = shape < 1
    a = torch.where(boost, shape + 1, shape)
    d = a - 1.0 / 3
    c = 1.0 / torch.sqrt(9 * d)
    out = torch.full_like(a, float("nan"))
    todo = torch.ones_like(a, dtype=torch.bool)
    for _ in range(100):
        x = torch.randn(a.shape, generator=generator, dtype=a.dtype)
        v = (1 + c * x) ** 3
        u = torch.rand(a.shape, generator=generator, dtype=a.dtype)
        ok = (v > 0) & (torch.log(u) < 0.5 * x**2 + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        take = ok & todo
        out = torch.where(take, d * v, out)
        todo = todo & ~take
        if not bool(todo.any()):
            break
    u = torch.rand(a.shape, generator=generator, dtype=a.dtype)
    return torch.where(boost, out * u ** (1.0 / shape), out)


@dataclass(frozen=True)
class ZeroInflatedPoisson(Poisson):
    """Excess zeros: y = 0 with probability p0, otherwise Poisson(lambda).

    Parameters
    ----------
    link : {"log", "identity"}, default "log"
        How the structural function f gives the Poisson rate lambda.

    Returns
    -------
    ZeroInflatedPoisson
        The family spec for ``fit(..., observation=...)`` (``"zero_inflated_poisson"``); ``p0`` is
        reported in ``res.sigma``.
    """

    name = "zero_inflated_poisson"

    def parameter_names(self, model):
        return ("p0",)

    def parameter_scales(self, model):
        return ("logit",)

    def initial_raw(self, model, y, aux):
        p = float(np.clip(np.mean(y == 0) / 2, 0.02, 0.5))
        return [math.log(p / (1 - p))]

    def natural(self, raw, model):
        return {"p0": torch.sigmoid(raw[0]), "logit_p0": raw[0]}

    def reported(self, raw, model):
        return [torch.sigmoid(raw[0])]

    def log_prob(self, y, f, params, aux):
        logit = params["logit_p0"]
        lam = self.rate(f)
        poisson = y * self.log_rate(f) - lam - torch.lgamma(y + 1)
        # log(p0 + (1 - p0) e^-lambda) = log p0 + softplus(-logit p0 - lambda): stable, with
        # finite higher derivatives, however large lambda is
        ls = torch.nn.functional.logsigmoid
        zero = ls(logit) + torch.nn.functional.softplus(-logit - lam)
        return torch.where(y == 0, zero, ls(-logit) + poisson)

    def mean(self, f, params, aux):
        return (1 - params["p0"]) * self.rate(f)

    def variance(self, f, params, aux):
        lam, p0 = self.rate(f), params["p0"]
        return (1 - p0) * lam * (1 + p0 * lam)

    def sample(self, f, params, aux, generator):
        counts = torch.poisson(self.rate(f), generator=generator)
        zero = torch.rand(f.shape, generator=generator, dtype=f.dtype) < params["p0"]
        return torch.where(zero, torch.zeros_like(counts), counts)
