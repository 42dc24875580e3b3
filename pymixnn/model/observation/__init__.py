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

from dataclasses import replace

from pymixnn.model.observation.base import Observation
from pymixnn.model.observation.binary import Bernoulli, Binomial
from pymixnn.model.observation.continuous import Normal
from pymixnn.model.observation.counts import NegativeBinomial, Poisson, ZeroInflatedPoisson
from pymixnn.model.observation.custom import LogLikelihood
from pymixnn.model.observation.ordinal import Ordinal, resolve_levels

__all__ = [
    "Observation",
    "Normal",
    "Poisson",
    "NegativeBinomial",
    "ZeroInflatedPoisson",
    "Binomial",
    "Bernoulli",
    "Ordinal",
    "LogLikelihood",
    "FAMILIES",
    "observation",
    "to_dict",
    "from_dict",
    "bind",
    "resolve_levels",
]


FAMILIES = {
    "gaussian": Normal,
    "normal": Normal,
    "poisson": Poisson,
    "negative_binomial": NegativeBinomial,
    "zero_inflated_poisson": ZeroInflatedPoisson,
    "zip": ZeroInflatedPoisson,
    "binomial": Binomial,
    "bernoulli": Bernoulli,
    "ordinal": Ordinal,
}


def observation(spec="gaussian") -> Observation:
    """An observation model from a name, a spec object, or a callable log-likelihood.

    Parameters
    ----------
    spec : str, Observation or callable, default "gaussian"
        A family name ("gaussian", "poisson", "negative_binomial", "zero_inflated_poisson",
        "binomial", "bernoulli", "ordinal"), a spec object (its link checked), or a callable
        ``log p(y | f, params)`` (made a :class:`pymixnn.LogLikelihood`).

    Returns
    -------
    Observation
        The family spec.

    Examples
    --------
    >>> import pymixnn
    >>> pymixnn.observation("poisson")
    Poisson(link='log')
    """
    if isinstance(spec, Observation):
        link = getattr(spec, "link", None)
        if link is not None and link not in type(spec).links:
            raise ValueError(
                f"link {link!r} is not available for observation={spec.name!r}; "
                f"use one of {list(type(spec).links)}"
            )
        return spec
    if isinstance(spec, str):
        key = spec.lower()
        if key not in FAMILIES:
            raise ValueError(
                f"unknown observation {spec!r}; use one of "
                f"{[k for k in FAMILIES if k not in ('normal', 'zip')]}, a spec such as "
                "pymixnn.Poisson(link='identity'), or pymixnn.LogLikelihood(...)"
            )
        return FAMILIES[key]()
    if callable(spec):
        return LogLikelihood(spec)
    raise TypeError(
        f"observation must be a name, an observation spec or a callable, got {type(spec).__name__}"
    )


def bind(obs: Observation, model) -> Observation:
    """The spec with what it takes from the model (the Gaussian family's error model)."""
    if obs.has_error_model:
        return replace(obs, error=model.error)
    return obs


def to_dict(obs: Observation) -> dict:
    out = {"name": obs.name}
    if hasattr(obs, "link"):
        out["link"] = obs.link
    if isinstance(obs, Ordinal):
        out["levels"] = list(obs.levels) if obs.levels is not None else None
    if isinstance(obs, LogLikelihood):
        out.update(
            parameters=dict(obs.parameters),
            transforms=dict(obs.transforms),
            function=getattr(obs.function, "__name__", "function"),
        )
    return out


def from_dict(record: dict | None, custom: Observation | None = None) -> Observation:
    if not record or record.get("name") == "gaussian":
        return Normal()
    if record["name"] == "loglik":
        if custom is None:
            raise ValueError(
                "these results were fitted with a user log-likelihood: pass it again, "
                "Results.load(path, model=..., observation=pymixnn.LogLikelihood(...))"
            )
        return custom
    cls = FAMILIES[record["name"]]
    kwargs = {}
    if "link" in record:
        kwargs["link"] = record["link"]
    if cls is Ordinal:
        kwargs["levels"] = tuple(record["levels"])
    return cls(**kwargs)
