"""Checks of the model against the problem: parameter names in settings, start values, random
effects, a saved model on load, the design's x domains and the genomic spec."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pymixnn.validation.errors import InputError, InputTypeError, did_you_mean, is_real, show_value

if TYPE_CHECKING:  # pragma: no cover
    from pymixnn.data.table import Data
    from pymixnn.model.named import Model

__all__ = [
    "model_name",
    "check_names",
    "check_init",
    "check_random_effects",
    "check_random_params",
    "check_loaded_model",
    "X_DOMAINS",
    "check_design",
    "check_genomic",
    "check_genotype_role",
]


# ---------------------------------------------------------------------------------- the model
def model_name(model: Model) -> str:
    return model.name or getattr(model.function, "__name__", "custom")


def check_names(names: Any, model: Model, setting: str) -> None:
    """Parameter names given to a setting (``random=``, keys of ``transforms=``): each must be
    one of the model's parameters; the error names the closest one."""
    if names is None or isinstance(names, str) and setting != "random":
        return
    if isinstance(names, str):
        raise InputError(
            f"random must be a list of parameter names, e.g. random=[{names!r}], got the string {names!r}"
        )
    for name in names:
        if name not in model.parameters:
            raise InputError(
                f"{setting}= names {name!r}, not a parameter of model {model_name(model)!r}"
                f"{did_you_mean(name, model.parameters)}; its parameters are "
                f"{list(model.parameters)}"
            )


def check_init(init: Any, model: Model) -> None:
    """``init=`` of :func:`pymixnn.fit`: a mapping from the model's parameter names to finite
    numbers (a misspelt key would otherwise be lost silently)."""
    if init is None:
        return
    if not isinstance(init, Mapping):
        raise InputTypeError(f"init must be a mapping {{parameter: value}}, got {type(init).__name__}")
    for key, value in init.items():
        if key not in model.parameters:
            hint = did_you_mean(key, model.parameters)
            if key in model.error_parameters:
                hint = " (a residual error parameter: set it with Model(error_init={...}))"
            raise InputError(
                f"init names {key!r}, not a parameter of model {model_name(model)!r}{hint}; "
                f"its parameters are {list(model.parameters)}"
            )
        if not (is_real(value) and math.isfinite(value)):
            raise InputError(f"init[{key!r}] must be a finite number, got {value!r}")


def check_random_effects(model: Model, law: Any = None, genomic: Any = None) -> None:
    """A model without individual random effects (``random=[]``: nonlinear regression, as nlme's
    ``gnls``/``gls``, or with grouping levels / a spatial field carrying the random variation) takes
    the Gaussian law and no marker matrix: an error naming what needs random effects."""
    name = getattr(law, "name", "gaussian")
    if name == "latent_class" and model.random:
        on = list(law.on or ())
        unknown = [p for p in on if p not in model.parameters]
        if unknown:
            raise InputError(
                f"LatentClass(on={on}) names {unknown}, which model {model_name(model)!r} does not "
                f"have; its parameters are {list(model.parameters)}"
            )
        check_random_params(
            f"LatentClass(on={on})",
            on,
            model,
            "class-specific fixed effects sit on the random effects' means",
        )
    if model.random:
        return
    if name != "gaussian":
        raise InputError(
            f"random=[] with random_effects={name!r}: a random-effects law needs individual random "
            f"effects, e.g. random=[{model.parameters[0]!r}]; model {model_name(model)!r} has "
            f"parameters {list(model.parameters)}"
        )
    if genomic is not None:
        raise InputError(
            "random=[] with genomic=...: the markers explain between-individual variation of "
            f"parameters with random effects, e.g. random=[{model.parameters[0]!r}]"
        )


def check_random_params(what: str, params: Sequence[str], model: Model, why: str) -> None:
    """``params`` of ``what`` (e.g. "Level('plot', params=...)") are parameters of the model, each
    with a random effect at the individual level (``why``: what needs it): an error naming them."""
    unknown = [p for p in params if p not in model.parameters]
    if unknown:
        raise InputError(
            f"{what} names {unknown}, which model {model_name(model)!r} does not have; its "
            f"parameters are {list(model.parameters)}"
        )
    fixed = [p for p in params if p not in model.random]
    if fixed and model.random:  # without any (random=[]) the levels carry the random variation
        raise InputError(
            f"{what} puts an effect on {fixed}, which have no random effect at the individual "
            f"level: add them to random= (now {list(model.random)}), or fit without individual "
            f"random effects (random=[]); {why}"
        )


def check_loaded_model(model: Model, saved: Mapping[str, Any], path: Any) -> None:
    """The model given to ``Results.load(path, model=...)`` against the saved model record:
    parameter names and order, transforms, random effects, covariance, error model and the
    meaning of the x columns."""
    given = {
        "parameters": list(model.parameters),
        "transforms": dict(model.transforms),
        "random": list(model.random),
        "omega": model.omega,
        "error": model.error,
        "x_names": list(model.x_names) if model.x_names else None,
    }
    diffs = []
    for key, value in given.items():
        if key not in saved or (key == "x_names" and (value is None or saved[key] is None)):
            continue
        want = saved[key]
        want = list(want) if isinstance(want, tuple) else want
        if value != want:
            diffs.append(f"{key} {value!r} given, {want!r} saved")
            if key == "parameters":
                break  # transforms and random effects then differ by their names too
    if diffs:
        name = f" of model {saved['name']!r}" if saved.get("name") else ""
        raise InputError(f"{path}: the model given does not match the saved fit{name}: " + "; ".join(diffs))


# ---------------------------------------------------------------------------------- the problem
# named models whose x columns have a physical domain: (column position, meaning, lower bound)
X_DOMAINS = {"onecpt_oral": [(0, "dose", 0.0), (1, "time after the dose", 0.0)]}


def check_design(model: Model, data: Data, observation: Any) -> None:
    """x inside a named model's domain (the closed-form one-compartment curve is meaningless at
    negative times: a fit there reported V = 3.8e6 as converged), and enough observations per
    individual for the random effects to be told apart from each other and from the residual
    error (one observation per individual with three random effects gave ka = 1.8e-5,
    CL = 2.7e-7, reported as converged)."""
    for j, meaning, lower in X_DOMAINS.get(model.name or "", []):
        if j < len(data.x_cols):
            bad = np.flatnonzero(data.x[:, j] < lower)
            if bad.size:
                col = data.x_cols[j]
                raise InputError(
                    f"column {col!r} is the {meaning} of model {model.name!r} and must "
                    f"be >= {lower:g}: row {show_value(data.frame.index[bad[0]])} has value "
                    f"{data.x[bad[0], j]:g} ({bad.size} such rows)"
                )
    d, most = len(model.random), int(data.n_obs_per_individual.max())
    gaussian = observation.name == "gaussian"
    if d and (most < d or (gaussian and most == 1)):
        why = (
            f"{d} random effects ({', '.join(model.random)})"
            if most < d
            else "a random effect and a residual error that one observation cannot tell apart"
        )
        raise InputError(
            f"every individual has at most {most} observation(s), too few for {why}: "
            f"the individual parameters are not identifiable; give fewer random "
            f"effects (random=[...]) or data with more observations per individual"
        )


def check_genomic(genotype: Any, genomic: Any, model: Model) -> list[str]:
    """The genomic arguments against the model; returns the individual-level columns they need."""
    from pymixnn.model.genomic import Genomic

    if genomic is None:
        if genotype is not None:
            raise InputError(
                f"genotype={genotype!r} is used with genomic=pymixnn.Genomic(markers, "
                "params=[...]): give the marker matrix"
            )
        return []
    if not isinstance(genomic, Genomic):
        raise InputTypeError(
            f"genomic must be a pymixnn.Genomic(markers, params=[...]), got {type(genomic).__name__}"
        )
    if genotype is None:
        raise InputError(
            "genomic=... needs genotype=<column naming each individual's genotype> "
            "(the rows of the marker matrix)"
        )
    check_random_params(
        "Genomic(params=...)", genomic.params, model, "the markers explain between-individual variation"
    )
    cols = [genotype] + ([genomic.interaction] if genomic.interaction else [])
    if genomic.interaction == genotype:
        raise InputError(f"Genomic(interaction=...) must be another column than genotype={genotype!r}")
    return cols


def check_genotype_role(genotype: Any, roles: Mapping[str, Sequence[Any]]) -> None:
    """genotype= naming the id, an x or the y column (``roles``: role -> columns): an error that
    names genotype=."""
    if genotype is None:
        return
    for role, columns in roles.items():
        if genotype in columns:
            raise InputError(
                f"genotype={genotype!r} is the {role} column: genotype= names the column "
                "holding each individual's genotype (the rows of the marker matrix), "
                f"another column than {role}="
                + (
                    f"; if each individual is its own genotype, copy it: df['genotype'] = df[{genotype!r}]"
                    if role == "id"
                    else ""
                )
            )
