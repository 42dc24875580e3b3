"""Continuous observations with the model's residual error model (and M3 left-censoring)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from pymixnn.model.observation.base import LOG_2PI, Observation, row_error

__all__ = ["Normal"]


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Normal(Observation):
    """Continuous y with the model's residual error model (saemix's error.model); left-censored
    rows (``censoring=`` column of fit: 1 where y is below the limit of quantification and y
    holds that limit) enter through the M3 likelihood P(y* < LOQ) = Phi((LOQ - f) / g(f)).

    Parameters
    ----------
    error : {"constant", "proportional", "combined", "exponential"}, default "constant"
        The residual error model; a fit binds it to its model's ``error``.

    Returns
    -------
    Normal
        The family spec, ``observation="gaussian"`` of :func:`pymixnn.fit` (the default).
    """

    error: str = "constant"  # bound to the model's error model by ``bind``
    name = "gaussian"
    has_error_model: ClassVar[bool] = True

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
            terms = -0.5 * z**2 - torch.log(g) - 0.5 * LOG_2PI - log_y
        elif self.error == "constant":
            # the scale's log and reciprocal once, not per cell: fewer and cheaper passes over
            # the cells, forward and backward (a product's derivative is a product, a
            # quotient's takes three passes)
            a = params["a"]
            z = (y - f) * (1.0 / a)
            terms = torch.addcmul(-(torch.log(a) + 0.5 * LOG_2PI), z, z, value=-0.5)
        else:
            z = (y - f) / g
            terms = -0.5 * z**2 - torch.log(g) - 0.5 * LOG_2PI
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
                raise row_error(
                    censored.name,
                    "must be 0 (observed) or 1 (below the limit of quantification, y holding the limit)",
                    censored,
                    bad,
                )

    def pad_value(self, model):
        return 1.0  # log y is taken for the exponential error model

    def describe(self, model):
        return f"{self.error} error model"

    def statistic(self):
        return "percentiles"
