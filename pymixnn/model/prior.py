"""Priors on a model's population parameters, for the neural estimator (:func:`pymixnn.amortize`).

A prior is one independent law per population parameter, named as in ``Results.params``: the
fixed effects by parameter name on the natural (psi) scale, ``omega2.<p>`` for each random effect's
variance, and the residual error parameters (``a``, ``b``). Each law is a tuple
``(kind, *arguments)``:

- ``("uniform", low, high)``, ``("loguniform", low, high)`` (uniform in log),
- ``("normal", mean, sd)``, ``("lognormal", meanlog, sdlog)``,

or a number, which holds that parameter fixed. Draws are NumPy; the estimator works on the
unconstrained scale ``phi`` (the model's transform for a fixed effect, log for a variance or a
residual error parameter).

>>> from pymixnn.model.named import named
>>> prior = Prior.of(named("logistic"), {"A": ("uniform", 80, 120), "B": ("uniform", 4, 6),
...     "C": ("uniform", 1.2, 1.8), "omega2.A": ("loguniform", 0.02, 0.08),
...     "omega2.B": ("loguniform", 0.02, 0.08), "omega2.C": ("loguniform", 0.02, 0.08),
...     "a": ("uniform", 1, 3)})
>>> prior.sample(np.random.default_rng(0), 2).shape
(2, 7)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtri

from pymixnn.model import transforms as tr
from pymixnn.model.spec import Model

__all__ = ["Prior", "PRIOR_KINDS", "check_law", "draw_laws", "population_names"]

PRIOR_KINDS = ("uniform", "loguniform", "normal", "lognormal")


def population_names(model: Model) -> list[str]:
    """The population parameters of ``model`` in ``Results.params`` order (fixed effects, the random
    effects' variances, residual error parameters)."""
    return list(model.parameters) + [f"omega2.{p}" for p in model.random] + list(model.error_parameters)


def check_law(name: str, law) -> tuple:
    if isinstance(law, (int, float, np.integer, np.floating)) and not isinstance(law, bool):
        if not math.isfinite(float(law)):
            raise ValueError(f"prior for {name!r}: a fixed value must be finite, got {law!r}")
        return ("fixed", float(law))
    if not isinstance(law, (tuple, list)) or len(law) != 3 or law[0] not in PRIOR_KINDS:
        raise ValueError(
            f"prior for {name!r} must be a number (held fixed) or a tuple (kind, arg1, arg2) with kind one "
            f"of {list(PRIOR_KINDS)}, got {law!r}"
        )
    kind, p1, p2 = law[0], float(law[1]), float(law[2])
    if not (math.isfinite(p1) and math.isfinite(p2)):
        raise ValueError(f"prior for {name!r}: arguments must be finite, got {law!r}")
    if kind in ("uniform", "loguniform") and not p1 < p2:
        raise ValueError(f"prior for {name!r}: {kind} needs low < high, got {law!r}")
    if kind == "loguniform" and p1 <= 0:
        raise ValueError(f"prior for {name!r}: loguniform needs low > 0, got {law!r}")
    if kind in ("normal", "lognormal") and not p2 > 0:
        raise ValueError(f"prior for {name!r}: {kind} needs sd > 0, got {law!r}")
    return (kind, p1, p2)


def _check_support(name: str, law: tuple, scale: str) -> None:
    """Every draw of ``law`` must lie in the support of the parameter's scale."""
    unbounded_below = tr.valid_natural(scale, -1e300)
    unbounded_above = tr.valid_natural(scale, 1e300)
    if law[0] == "fixed":
        ends = [law[1]]
    elif law[0] in ("uniform", "loguniform"):
        ends = [law[1], law[2]]
    else:
        ends = []
    bad = [v for v in ends if not tr.valid_natural(scale, v)]
    if law[0] == "normal" and not (unbounded_below and unbounded_above):
        bad = ["values below 0" if not unbounded_below else "values above 1"]
    if law[0] == "lognormal" and not unbounded_above:
        bad = ["values above 1"]
    if bad:
        raise ValueError(
            f"prior for {name!r}: {law!r} reaches {bad[0]}, outside the support of its {scale!r} scale"
        )


def draw_laws(laws: tuple[tuple, ...], u: np.ndarray) -> np.ndarray:
    """Uniforms ``u`` (n, len(laws)) mapped by each law's quantile function (checked laws: see
    :func:`check_law`); natural scale."""
    out = np.empty_like(u)
    for k, law in enumerate(laws):
        kind = law[0]
        if kind == "fixed":
            out[:, k] = law[1]
        elif kind == "uniform":
            out[:, k] = law[1] + (law[2] - law[1]) * u[:, k]
        elif kind == "loguniform":
            out[:, k] = np.exp(math.log(law[1]) + (math.log(law[2]) - math.log(law[1])) * u[:, k])
        elif kind == "normal":
            out[:, k] = law[1] + law[2] * ndtri(u[:, k])
        else:
            out[:, k] = np.exp(law[1] + law[2] * ndtri(u[:, k]))
    return out


@dataclass(frozen=True)
class Prior:
    """Independent priors by population parameter name (see the module docstring); build it with
    :meth:`of`, which checks the names against the model and each law's support against the
    parameter's scale."""

    names: tuple[str, ...]  # every population parameter, Results.params order
    laws: tuple[tuple, ...]  # (kind, *arguments) per name; ("fixed", value) for a fixed one
    scales: tuple[str, ...]  # the transform to the unconstrained scale, per name

    @classmethod
    def of(cls, model: Model, prior: Mapping[str, object]) -> Prior:
        if isinstance(prior, Prior):
            return prior
        if not isinstance(prior, Mapping):
            raise TypeError(f"prior must be a dict of laws by parameter name, got {type(prior).__name__}")
        if model.omega != "diagonal":
            raise ValueError("the neural estimator needs a diagonal omega (model.omega='diagonal')")
        names = population_names(model)
        unknown = [k for k in prior if k not in names]
        if unknown:
            raise ValueError(f"prior given for unknown parameter(s) {unknown}; the model's are {names}")
        missing = [k for k in names if k not in prior]
        if missing:
            raise ValueError(f"prior has no law for {missing} (give a number to hold one fixed)")
        scales = [model.transforms[p] for p in model.parameters]
        scales += ["log"] * (len(names) - len(scales))
        laws = []
        for name, scale in zip(names, scales):
            law = check_law(name, prior[name])
            _check_support(name, law, scale)
            laws.append(law)
        return cls(tuple(names), tuple(laws), tuple(scales))

    @property
    def free(self) -> list[str]:
        """The parameters the prior does not hold fixed (the estimator's outputs)."""
        return [n for n, law in zip(self.names, self.laws) if law[0] != "fixed"]

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws, shape (n, len(names)), natural scale, columns in ``names`` order. One uniform
        (n, P) array is drawn and mapped by each law's quantile function, so the first rows are the
        same whatever ``n``."""
        return draw_laws(self.laws, rng.random((n, len(self.names))))

    def frame(self, draws: np.ndarray) -> pd.DataFrame:
        """Draws as a DataFrame with the parameter names as columns."""
        return pd.DataFrame(
            np.asarray(draws, dtype=float).reshape(-1, len(self.names)), columns=list(self.names)
        )

    def to_dict(self) -> dict:
        """The prior as given (a fixed parameter as its number), for saving and reports."""
        return {n: (law[1] if law[0] == "fixed" else list(law)) for n, law in zip(self.names, self.laws)}
