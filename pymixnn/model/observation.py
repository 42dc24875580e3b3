"""Observation models: how y_ij depends on the structural prediction f_ij = f(psi_i, x_ij).

Every family turns the structural function's output into the natural parameter of its law through
the family's link (the output is the linear predictor, as in a GLM, unless ``link="identity"``):

==========================  ============================================  =====================
``observation=``            law of y given f                              parameters
==========================  ============================================  =====================
"gaussian"                  y = f + g(f) e (the model's ``error``); M3    a, b (error model)
                            likelihood for left-censored rows
"poisson"                   Poisson(lambda), lambda = exp(f)              none
"negative_binomial"         NB2: mean lambda = exp(f), variance           alpha
                            lambda + alpha lambda^2 (statsmodels' alpha)
"zero_inflated_poisson"     0 with probability p0, else Poisson(exp(f))   p0
"binomial"                  Binomial(trials, p), p = 1 / (1 + exp(-f))    none
"bernoulli"                 Bernoulli(p), p = 1 / (1 + exp(-f))           none
"ordinal"                   proportional odds: P(y <= level k) =          threshold.k|k+1
                            1 / (1 + exp(-(c_k - f))), c_0 = 0            (c_1 < c_2 < ...)
LogLikelihood(fn, ...)      a user function log p(y | f, params)          user-named
==========================  ============================================  =====================

Ordinal thresholds follow saemix's knee example: the first threshold is 0 and the structural
function's intercept takes its place (saemix's ``alp1``); ``ordinal::clmm``'s thresholds are
``c_k - intercept`` and its effects are the same. Higher f means higher categories.

These objects are plain specs plus the torch log-densities the inference layer evaluates; the data
checks (``validate``) run on pandas before any torch work.

>>> import pymixnn
>>> pymixnn.observation("poisson").parameter_names(pymixnn.Model.named("linear"))
()
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar, Mapping

import numpy as np
import pandas as pd
import torch

from pymixnn.model import transforms as tr

__all__ = ["Observation", "Normal", "Poisson", "NegativeBinomial", "ZeroInflatedPoisson",
           "Binomial", "Bernoulli", "Ordinal", "LogLikelihood", "FAMILIES", "observation",
           "to_dict", "from_dict", "bind", "resolve_levels"]

_LOG_2PI = math.log(2 * math.pi)
_BIG = 1e4  # stands for an infinite threshold (sigmoid(1e4) is 1 in float64)
_MAX_LOG_RATE = 80.0


def _row_error(column: str, problem: str, values: pd.Series, bad) -> ValueError:
    pos = int(np.flatnonzero(np.asarray(bad))[0])
    value = values.iloc[pos]
    value = value.item() if isinstance(value, np.generic) else value
    return ValueError(f"column {column!r} {problem}: row {values.index[pos]!r} has value {value!r}")


def _check_counts(y: pd.Series, column: str, family: str) -> None:
    values = y.to_numpy(dtype=np.float64)
    bad = ~(values >= 0)
    if bad.any():
        raise _row_error(column, f"must hold non-negative counts for observation={family!r}", y, bad)
    bad = values != np.round(values)
    if bad.any():
        raise _row_error(column, f"must hold integer counts for observation={family!r}", y, bad)


@dataclass(frozen=True)
class Observation:
    """Base class of the observation models (see the module docstring)."""

    name = "observation"
    links: ClassVar[tuple[str, ...]] = ()
    needs: ClassVar[tuple[str, ...]] = ()  # auxiliary columns: "trials"

    # ---- parameters ----------------------------------------------------------------------------
    def parameter_names(self, model) -> tuple[str, ...]:
        return ()

    def parameter_scales(self, model) -> tuple[str, ...]:
        """Transform of each reported parameter (scale of its confidence interval)."""
        return ("log",) * len(self.parameter_names(model))

    def initial_raw(self, model, y: np.ndarray, aux: dict) -> list[float]:
        return []

    def natural(self, raw: torch.Tensor, model) -> dict[str, torch.Tensor]:
        return dict(zip(self.parameter_names(model), torch.exp(raw)))

    def reported(self, raw: torch.Tensor, model) -> list[torch.Tensor]:
        """Reported values of the parameters, in the order of ``parameter_names``."""
        return list(self.natural(raw, model).values())

    # ---- the law -------------------------------------------------------------------------------
    def inverse_link(self, f: torch.Tensor) -> torch.Tensor:
        link = getattr(self, "link", "identity")
        if link == "log":
            return torch.exp(f)
        if link == "logit":
            return torch.sigmoid(f)
        if link == "probit":
            return torch.special.ndtr(f)
        return f

    def log_prob(self, y, f, params, aux) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def mean(self, f, params, aux) -> torch.Tensor:
        return self.inverse_link(f)

    def variance(self, f, params, aux) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, f, params, aux, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover

    # ---- data ----------------------------------------------------------------------------------
    def validate(self, y: pd.Series, column: str, aux: Mapping[str, pd.Series]) -> None:
        """Raise a ValueError naming the column, row and value of the first impossible y."""

    def working_response(self, y: np.ndarray, aux: dict) -> np.ndarray:
        """y on the scale of the structural function, for data-based starting values."""
        return y

    def pad_value(self, model) -> float:
        return 0.0

    def describe(self, model) -> str:
        link = getattr(self, "link", None)
        return f"{self.name} observations" + (f" ({link} link)" if link else "")

    def statistic(self) -> str:
        """What a VPC shows for this family: "mean", "proportion" or "percentiles"."""
        return "mean"


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Normal(Observation):
    """Continuous y with the model's residual error model (saemix's error.model); left-censored
    rows (``censoring=`` column of fit: 1 where y is below the limit of quantification and y
    holds that limit) enter through the M3 likelihood P(y* < LOQ) = Phi((LOQ - f) / g(f))."""

    error: str = "constant"  # bound to the model's error model by ``bind``
    name = "gaussian"

    def parameter_names(self, model):
        return model.error_parameters

    def initial_raw(self, model, y, aux):
        init = dict(model.error_init or {})
        return [math.log(init.get(n, 1.0 if n == "a" else 0.1)) for n in model.error_parameters]

    def scale(self, f, params):
        """Residual standard deviation g(f) of the error model."""
        kind = self.error
        if kind in ("constant", "exponential"):
            return params["a"].expand_as(f)
        if kind == "proportional":
            return (params["b"] * f.abs()).clamp_min(1e-10)
        return torch.sqrt(params["a"] ** 2 + params["b"] ** 2 * f**2)

    def log_prob(self, y, f, params, aux):
        g = self.scale(f, params)
        if self.error == "exponential":
            log_y = torch.log(y)
            z = (log_y - torch.log(f.clamp_min(1e-10))) / g
            terms = -0.5 * z**2 - torch.log(g) - 0.5 * _LOG_2PI - log_y
        else:
            z = (y - f) / g
            terms = -0.5 * z**2 - torch.log(g) - 0.5 * _LOG_2PI
        censored = aux.get("censored")
        if censored is not None:
            terms = torch.where(censored > 0, torch.special.log_ndtr(z), terms)
        return terms

    def mean(self, f, params, aux):
        return f

    def variance(self, f, params, aux):
        return self.scale(f, params) ** 2

    def sample(self, f, params, aux, generator):
        e = torch.randn(f.shape, generator=generator, dtype=f.dtype)
        if self.error == "exponential":
            return f * torch.exp(self.scale(f, params) * e)
        return f + self.scale(f, params) * e

    def validate(self, y, column, aux):
        censored = aux.get("censored")
        if censored is not None:
            flags = censored.to_numpy(dtype=np.float64)
            bad = ~np.isin(flags, (0.0, 1.0))
            if bad.any():
                raise _row_error(censored.name, "must be 0 (observed) or 1 (below the limit of "
                                 "quantification, y holding the limit)", censored, bad)

    def pad_value(self, model):
        return 1.0  # log y is taken for the exponential error model

    def describe(self, model):
        return f"{self.error} error model"

    def statistic(self):
        return "percentiles"


@dataclass(frozen=True)
class Poisson(Observation):
    """Counts: y ~ Poisson(lambda), lambda = exp(f) (``link="log"``) or f (``"identity"``)."""

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
            return f.clamp(max=_MAX_LOG_RATE)
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
        _check_counts(y, column, self.name)

    def working_response(self, y, aux):
        return np.log(y + 0.5) if self.link == "log" else y


@dataclass(frozen=True)
class NegativeBinomial(Poisson):
    """Overdispersed counts (NB2): mean lambda, variance lambda + alpha lambda^2."""

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
        return (torch.lgamma(y + r) - torch.lgamma(r) - torch.lgamma(y + 1)
                + y * (log_am - log1p_am) - r * log1p_am)

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
    """Excess zeros: y = 0 with probability p0, otherwise Poisson(lambda)."""

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


@dataclass(frozen=True)
class Binomial(Observation):
    """Successes out of ``trials`` (a column given to fit as ``trials=``): y ~ Binomial(n, p)."""

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
            raise _row_error(trials.name, "must hold positive integer numbers of trials", trials, bad)
        _check_counts(y, column, self.name)
        bad = y.to_numpy(dtype=np.float64) > n
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise ValueError(f"column {column!r} has more successes than trials ({trials.name!r}): "
                             f"row {y.index[pos]!r} has {column}={y.iloc[pos]!r} and "
                             f"{trials.name}={trials.iloc[pos]!r}")

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
    """Binary y (0/1 or booleans): y ~ Bernoulli(p)."""

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
            raise _row_error(column, "must be 0 or 1 for observation='bernoulli'", y, bad)

    def working_response(self, y, aux):
        return super().working_response(y, {"trials": np.ones_like(y)})


@dataclass(frozen=True)
class Ordinal(Observation):
    """Ordered categories (proportional odds, cumulative logit): P(y <= level k) =
    sigmoid(c_k - f) with c_0 = 0 < c_1 < ... ; ``levels`` lists the categories in order (default:
    the sorted values found in the data)."""

    levels: tuple | None = None
    name = "ordinal"

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
        big = torch.tensor([_BIG], dtype=cuts.dtype, device=cuts.device)
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
            raise _row_error(column, f"holds a level not among the ordinal levels {list(self.levels)}",
                             y, ~known)

    def encode(self, y: pd.Series) -> np.ndarray:
        codes = {v: k for k, v in enumerate(self.levels)}
        return y.map(codes).to_numpy(dtype=np.float64)

    def working_response(self, y, aux):
        K = self.n_levels
        p = (y + 0.5) / K
        return np.log(p / (1 - p))

    def describe(self, model):
        return f"ordinal observations, {self.n_levels} levels {list(self.levels)} (proportional odds)"

    def statistic(self):
        return "proportion"


@dataclass(frozen=True)
class LogLikelihood(Observation):
    """A user's observation model: ``function(y, f, params) -> log p(y | f)`` element-wise in
    torch (y and f of the same shape, params a dict of scalar tensors on the natural scale).
    ``parameters`` maps each parameter name to its initial value; ``transforms`` gives each one's
    support ("log" for positive, the default; "logit" for (0, 1); "identity").
    ``simulate(f, params, generator) -> y`` is optional (for VPCs and simulated predictions);
    ``mean(f, params) -> E[y | f]`` is optional (default: f)."""

    function: Callable = None
    parameters: Mapping[str, float] = field(default_factory=dict)
    transforms: Mapping[str, str] | None = None
    simulate: Callable | None = field(default=None, compare=False)
    mean_function: Callable | None = field(default=None, compare=False)
    name = "loglik"

    def __post_init__(self):
        if not callable(self.function):
            raise TypeError("LogLikelihood needs a callable function(y, f, params)")
        params = {str(k): float(v) for k, v in dict(self.parameters).items()}
        trans = {k: tr.check((self.transforms or {}).get(k, "log")) for k in params}
        unknown = set(self.transforms or {}) - set(params)
        if unknown:
            raise ValueError(f"transforms given for unknown parameters {sorted(unknown)}")
        for k, v in params.items():
            if not tr.valid_natural(trans[k], v):
                raise ValueError(f"initial value of {k!r} is {v!r}, outside its {trans[k]!r} support")
        object.__setattr__(self, "parameters", params)
        object.__setattr__(self, "transforms", trans)

    def parameter_names(self, model):
        return tuple(self.parameters)

    def parameter_scales(self, model):
        return tuple(self.transforms[k] for k in self.parameters)

    def initial_raw(self, model, y, aux):
        return [float(tr.inverse(self.transforms[k], torch.tensor(v, dtype=torch.float64)))
                for k, v in self.parameters.items()]

    def natural(self, raw, model):
        return {k: tr.forward(self.transforms[k], raw[j]) for j, k in enumerate(self.parameters)}

    def log_prob(self, y, f, params, aux):
        return self.function(y, f, params)

    def mean(self, f, params, aux):
        return f if self.mean_function is None else self.mean_function(f, params)

    def variance(self, f, params, aux):
        return torch.full_like(f, float("nan"))

    def sample(self, f, params, aux, generator):
        if self.simulate is None:
            raise ValueError("this LogLikelihood has no simulate= function: simulated predictions "
                             "and VPCs need one")
        return self.simulate(f, params, generator)

    def describe(self, model):
        return f"user log-likelihood {getattr(self.function, '__name__', 'function')}"


FAMILIES = {"gaussian": Normal, "normal": Normal, "poisson": Poisson,
            "negative_binomial": NegativeBinomial, "zero_inflated_poisson": ZeroInflatedPoisson,
            "zip": ZeroInflatedPoisson, "binomial": Binomial, "bernoulli": Bernoulli,
            "ordinal": Ordinal}


def observation(spec="gaussian") -> Observation:
    """An observation model from a name, a spec object, or a callable log-likelihood."""
    if isinstance(spec, Observation):
        link = getattr(spec, "link", None)
        if link is not None and link not in type(spec).links:
            raise ValueError(f"link {link!r} is not available for observation={spec.name!r}; "
                             f"use one of {list(type(spec).links)}")
        return spec
    if isinstance(spec, str):
        key = spec.lower()
        if key not in FAMILIES:
            raise ValueError(f"unknown observation {spec!r}; use one of "
                             f"{[k for k in FAMILIES if k not in ('normal', 'zip')]}, a spec such as "
                             "pymixnn.Poisson(link='identity'), or pymixnn.LogLikelihood(...)")
        return FAMILIES[key]()
    if callable(spec):
        return LogLikelihood(spec)
    raise TypeError(f"observation must be a name, an observation spec or a callable, got "
                    f"{type(spec).__name__}")


def bind(obs: Observation, model) -> Observation:
    """The spec with what it takes from the model (the Gaussian family's error model)."""
    if isinstance(obs, Normal):
        return replace(obs, error=model.error)
    return obs


def to_dict(obs: Observation) -> dict:
    out = {"name": obs.name}
    if hasattr(obs, "link"):
        out["link"] = obs.link
    if isinstance(obs, Ordinal):
        out["levels"] = list(obs.levels) if obs.levels is not None else None
    if isinstance(obs, LogLikelihood):
        out.update(parameters=dict(obs.parameters), transforms=dict(obs.transforms),
                   function=getattr(obs.function, "__name__", "function"))
    return out


def from_dict(record: dict | None, custom: Observation | None = None) -> Observation:
    if not record or record.get("name") == "gaussian":
        return Normal()
    if record["name"] == "loglik":
        if custom is None:
            raise ValueError("these results were fitted with a user log-likelihood: pass it again, "
                             "Results.load(path, model=..., observation=pymixnn.LogLikelihood(...))")
        return custom
    cls = FAMILIES[record["name"]]
    kwargs = {}
    if "link" in record:
        kwargs["link"] = record["link"]
    if cls is Ordinal:
        kwargs["levels"] = tuple(record["levels"])
    return cls(**kwargs)


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
            raise ValueError(f"column {column!r}: cannot order the ordinal levels {shown} (not numbers); "
                             f"give them in increasing order: observation=pymixnn.Ordinal(levels={shown})")
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

