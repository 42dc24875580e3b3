"""Several endpoints (NONMEM's DVID): one observation law per endpoint, each observation evaluated
by the law of its own endpoint (the ``endpoint`` auxiliary column of event data).

Gaussian endpoints each have their own residual error model and parameters, reported as
``a.cp``, ``b.cp``, ...; other families (Poisson counts, ...) keep their own parameters with the
endpoint's name appended (``alpha.count``).

>>> from pymixnn.model.observation.endpoints import Endpoints
>>> e = Endpoints.build(("cp", "pca"), {}, {"cp": "proportional", "pca": "constant"})
>>> e.parameter_names(None)
('b.cp', 'a.pca')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from pymixnn.model.observation.base import Observation
from pymixnn.model.observation.continuous import Normal

__all__ = ["Endpoints", "ERROR_PARAMETERS"]

ERROR_PARAMETERS = {"constant": ("a",), "proportional": ("b",), "combined": ("a", "b"), "exponential": ("a",)}


def _base_names(family: Observation) -> tuple[str, ...]:
    if family.has_error_model:
        return ERROR_PARAMETERS[family.error]
    return tuple(family.parameter_names(None))


@dataclass(frozen=True)
class Endpoints(Observation):
    """One family per endpoint, in the order of the data's endpoint codes."""

    endpoints: tuple[str, ...] = ()
    families: tuple[Observation, ...] = ()
    name = "endpoints"

    @classmethod
    def build(cls, endpoints, observation: Mapping[str, object], error: Mapping[str, str]) -> Endpoints:
        """The family of each endpoint: ``observation[endpoint]`` when given (a name or spec),
        else Gaussian with ``error[endpoint]``; a Gaussian endpoint without an error model, or a
        name that is not an endpoint of the data, is an error."""
        from pymixnn.model.observation import observation as resolve
        from pymixnn.model.spec import ERROR_MODELS
        from pymixnn.validation import InputError

        endpoints = tuple(str(e) for e in endpoints)
        unknown = sorted(set(map(str, observation)) - set(endpoints)) + sorted(
            set(map(str, error)) - set(endpoints)
        )
        if unknown:
            raise InputError(f"endpoints {unknown} are not in the data's DVID values {list(endpoints)}")
        families = []
        for e in endpoints:
            if e in observation:
                fam = resolve(observation[e])
                if fam.has_error_model:
                    if e not in error:
                        raise InputError(
                            f"endpoint {e!r} is Gaussian but has no error model: give error={{{e!r}: ...}}"
                        )
                    fam = replace(fam, error=error[e])
            elif e in error:
                if error[e] not in ERROR_MODELS:
                    raise InputError(f"error[{e!r}] must be one of {list(ERROR_MODELS)}, got {error[e]!r}")
                fam = Normal(error=error[e])
            else:
                raise InputError(
                    f"endpoint {e!r} has no error model or observation family: give "
                    f"error={{{e!r}: 'constant'}} (or 'proportional', 'combined', 'exponential') or "
                    f"observation={{{e!r}: 'poisson'}}"
                )
            if isinstance(fam, Endpoints):
                raise InputError("an endpoint's observation family cannot itself hold endpoints")
            families.append(fam)
        return cls(endpoints=endpoints, families=tuple(families))

    # ---- parameters ----------------------------------------------------------------------------
    def _sizes(self) -> list[int]:
        return [len(_base_names(f)) for f in self.families]

    def parameter_names(self, model) -> tuple[str, ...]:
        return tuple(f"{n}.{e}" for e, f in zip(self.endpoints, self.families) for n in _base_names(f))

    def parameter_scales(self, model) -> tuple[str, ...]:
        out: list[str] = []
        for f in self.families:
            out += ["log"] * len(_base_names(f)) if f.has_error_model else list(f.parameter_scales(model))
        return tuple(out)

    def _blocks(self, raw: torch.Tensor):
        start = 0
        for k, size in enumerate(self._sizes()):
            yield k, raw[start : start + size]
            start += size

    def initial_raw(self, model, y: np.ndarray, aux: dict) -> list[float]:
        code = np.asarray(aux["endpoint"])
        out: list[float] = []
        for k, f in enumerate(self.families):
            yk = y[code == k]
            if f.has_error_model:  # a: 10% of the endpoint's spread, b: 10%
                spread = float(np.std(yk)) if yk.size > 1 and np.std(yk) > 0 else 1.0
                out += [
                    float(np.log(0.1 * spread)) if n == "a" else float(np.log(0.1)) for n in _base_names(f)
                ]
            else:
                out += list(f.initial_raw(model, yk, {k2: np.asarray(v)[code == k] for k2, v in aux.items()}))
        return out

    def _natural_k(self, k: int, raw: torch.Tensor, model) -> dict[str, torch.Tensor]:
        f = self.families[k]
        if f.has_error_model:
            return dict(zip(_base_names(f), torch.exp(raw)))
        return f.natural(raw, model)

    def natural(self, raw: torch.Tensor, model) -> dict[str, torch.Tensor]:
        return {
            f"{k}:{n}": v
            for k, block in self._blocks(raw)
            for n, v in self._natural_k(k, block, model).items()
        }

    def reported(self, raw: torch.Tensor, model) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for k, block in self._blocks(raw):
            f = self.families[k]
            out += list(torch.exp(block)) if f.has_error_model else list(f.reported(block, model))
        return out

    # ---- the law, cell by cell -----------------------------------------------------------------
    @staticmethod
    def _own(params: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
        prefix = f"{k}:"
        return {n[len(prefix) :]: v for n, v in params.items() if n.startswith(prefix)}

    def _each(self, method: str, y, f, params, aux, *extra):
        code = aux["endpoint"]
        out = None
        for k, fam in enumerate(self.families):
            mine = code == k
            fk = torch.where(mine, f, torch.ones_like(f))  # other endpoints' cells: a harmless value
            args = (fk, self._own(params, k), aux, *extra)
            if y is not None:
                args = (torch.where(mine, y, torch.full_like(y, fam.pad_value(None))), *args)
            value = getattr(fam, method)(*args)
            out = value if out is None else torch.where(mine, value, out)
        return out

    def log_prob(self, y, f, params, aux) -> torch.Tensor:
        return self._each("log_prob", y, f, params, aux)

    def mean(self, f, params, aux) -> torch.Tensor:
        return self._each("mean", None, f, params, aux)

    def variance(self, f, params, aux) -> torch.Tensor:
        return self._each("variance", None, f, params, aux)

    def sample(self, f, params, aux, generator) -> torch.Tensor:
        return self._each("sample", None, f, params, aux, generator)

    # ---- data ----------------------------------------------------------------------------------
    def validate(self, y: pd.Series, column: str, aux: Mapping[str, pd.Series]) -> None:
        code = np.asarray(aux["endpoint"]).astype(int)
        censored = aux.get("censored")
        for k, fam in enumerate(self.families):
            mine = code == k
            if censored is not None and not fam.has_error_model:  # M3 needs the Gaussian law
                bad = mine & (censored.to_numpy(dtype=np.float64) != 0)
                if bad.any():
                    from pymixnn.validation.errors import InputError, show_value

                    row = show_value(censored.index[int(np.flatnonzero(bad)[0])])
                    raise InputError(
                        f"column {censored.name!r} flags row {row} as censored (below "
                        f"the limit of quantification), but it is an observation of endpoint "
                        f"{self.endpoints[k]!r}, whose family {fam.name!r} has no censored "
                        "likelihood: left censoring (M3) applies to Gaussian endpoints only"
                    )
            if fam.has_error_model and fam.error in ("proportional", "exponential"):
                bad = mine & ~(y.to_numpy(dtype=np.float64) > 0)
                if bad.any():
                    from pymixnn.model.observation.base import row_error

                    raise row_error(
                        column,
                        f"must be > 0 for endpoint {self.endpoints[k]!r} ({fam.error} error model)",
                        y,
                        bad,
                    )
            fam.validate(y[mine], column, {r: s[mine] for r, s in aux.items() if r != "endpoint"})

    def pad_value(self, model) -> float:
        return 1.0

    def describe(self, model) -> str:
        return "endpoints: " + ", ".join(
            f"{e} ({f.describe(model)})" for e, f in zip(self.endpoints, self.families)
        )

    def statistic(self) -> str:
        return "percentiles"


def split_spec(observation, error):
    """(observation, error, per-endpoint spec or None): dicts of ``observation=`` / ``error=`` keyed
    by endpoint become a spec for :meth:`Endpoints.build` (the Gaussian default in their place)."""
    if not isinstance(observation, Mapping) and not isinstance(error, Mapping):
        return observation, error, None
    from pymixnn.validation import InputError

    if not isinstance(observation, Mapping) and observation not in ("gaussian", None):
        raise InputError(
            f"error= per endpoint goes with observation= per endpoint (a dict) or the default; got "
            f"observation={observation!r}"
        )
    spec = (
        dict(observation) if isinstance(observation, Mapping) else {},
        dict(error) if isinstance(error, Mapping) else {},
    )
    return "gaussian", (None if isinstance(error, Mapping) else error), spec


def resolve_endpoints(spec, data) -> Endpoints:
    """The Endpoints family of a per-endpoint spec on event data (its DVID endpoints)."""
    from pymixnn.validation import InputError

    events = getattr(data, "events", None)
    if events is None:
        raise InputError(
            "error= / observation= given per endpoint need event data with a DVID column: "
            "pymixnn.Data.from_nonmem(..., dvid='DVID')"
        )
    return Endpoints.build(events.endpoints, *spec)
