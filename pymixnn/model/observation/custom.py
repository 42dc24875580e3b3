"""A user's own observation model from a log-likelihood function."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from pymixnn.model import transforms as tr
from pymixnn.model.observation.base import Observation

__all__ = ["LogLikelihood"]


@dataclass(frozen=True)
class LogLikelihood(Observation):
    """A user's observation model, given by its log-likelihood.

    Parameters
    ----------
    function : callable
        ``function(y, f, params) -> log p(y | f)`` element-wise in torch (y and f of the same
        shape, params a dict of scalar tensors on the natural scale).
    parameters : dict of str to float
        Each observation parameter's name and initial value.
    transforms : dict of str to str, optional
        Each parameter's support: "log" for positive (the default), "logit" for (0, 1),
        "identity".
    simulate : callable, optional
        ``simulate(f, params, generator) -> y`` (for VPCs and simulated predictions).
    mean_function : callable, optional
        ``mean_function(f, params) -> E[y | f]`` (default: f).

    Returns
    -------
    LogLikelihood
        The family spec for ``fit(..., observation=...)``; its parameters are reported in
        ``res.sigma`` with SEs.
    """

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
        return [
            float(tr.inverse(self.transforms[k], torch.tensor(v, dtype=torch.float64)))
            for k, v in self.parameters.items()
        ]

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
            raise ValueError(
                "this LogLikelihood has no simulate= function: simulated predictions and VPCs need one"
            )
        return self.simulate(f, params, generator)

    def describe(self, model):
        return f"user log-likelihood {getattr(self.function, '__name__', 'function')}"
