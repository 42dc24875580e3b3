"""The translation between pymixnn and R: an :class:`pymixnn.NLME` problem as the data R reads
(:func:`translate`), and a program's estimates back in pymixnn's terms as an :class:`ExternalFit`
(defined in :mod:`pymixnn.results.external`) and a :class:`pymixnn.Results` holding it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pymixnn.model import transforms as tr
from pymixnn.model.covariates import varying_columns
from pymixnn.model.named import NAMED_MODELS
from pymixnn.results.external import ExternalFit

__all__ = [
    "R_TWINS",
    "ExternalFit",
    "Translation",
    "translate",
    "write_csv",
    "num",
    "table_row",
    "population_phi",
    "external_fit",
    "external_results",
]

# structural functions in R (psi: individuals x parameters, natural scale; x: matrix of x columns),
# kept in the named-model registry
R_TWINS = {name: record.r_function for name, record in NAMED_MODELS.items() if record.r_function}


# ---- translation ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Translation:
    """A resolved problem as R reads it: the R twin of the structural function and the data frame
    (columns id (1..N), x1.., y, then cov1.. for the covariate design's columns)."""

    twin: str
    frame: pd.DataFrame


def translate(problem, r_function: str | None) -> Translation:
    """The R view of a :class:`pymixnn.NLME` problem; ``r_function`` (R source) for a custom model."""
    model, data, design = problem.model, problem.data, problem.design
    varying = varying_columns(design, getattr(data, "events", None))
    if varying:
        raise ValueError(f"the R bridges take individual-level covariates; {varying} are time-varying")
    if r_function is not None and not isinstance(r_function, str):
        raise TypeError(f"r_function must be R code as a string, got {type(r_function).__name__}")
    twin = r_function or R_TWINS.get(model.name or "")
    if twin is None:
        raise ValueError(
            f"model {model.name or 'custom'!r} has no R twin: pass r_function="
            "'function(psi, x) ...' (psi: individuals x parameters on the natural "
            "scale, x: the matrix of x columns)"
        )
    frame = pd.DataFrame({"id": np.asarray(data.index, dtype=np.int64) + 1})
    for j in range(len(data.x_cols)):
        frame[f"x{j + 1}"] = data.x[:, j]
    frame["y"] = data.y
    for j in range(design.n_effects):
        frame[f"cov{j + 1}"] = design.matrix[data.index, j]
    return Translation(twin=twin, frame=frame)


def write_csv(frame: pd.DataFrame, tmp: str) -> str:
    path = str(Path(tmp) / "data.csv")
    frame.to_csv(path, index=False, float_format="%.17g")
    return path


def num(v) -> float:
    """A JSON number from R, NaN for null."""
    return float("nan") if v is None else float(v)


def table_row(name, kind, param, est, se, scale) -> dict:
    """A row of the parameter table: the estimate and SE on the natural scale, and carried to the
    transformed scale by the delta method."""
    est, se = float(est), float(se)
    est_t, se_t = tr.delta_method(scale, est, se)
    return dict(
        name=name,
        kind=kind,
        parameter=param,
        estimate=est,
        se=se,
        estimate_transformed=est_t,
        se_transformed=se_t,
        scale=scale,
    )


# ---- another program's fit ----------------------------------------------------------------
def population_phi(problem, mu_natural: dict, beta) -> tuple[np.ndarray, np.ndarray]:
    """The transformed-scale population parameters ``mu`` of a program's natural-scale ones
    (``mu_natural``: {parameter: (estimate, se)}) and each individual's population ``phi`` (mu
    plus the covariate effects ``beta``), individuals x parameters."""
    import torch

    model, data, design = problem.model, problem.data, problem.design
    mu = np.array(
        [
            float(tr.inverse(model.transforms[p], torch.tensor(mu_natural[p][0], dtype=torch.float64)))
            for p in model.parameters
        ]
    )
    phi_pop = np.tile(mu, (data.n_individuals, 1))
    for j, p in enumerate(design.parameters):
        phi_pop[:, model.parameters.index(p)] += design.matrix[:, j] * beta[j]
    return mu, phi_pop


def external_fit(
    problem,
    rows,
    omega,
    error,
    psi_map,
    loglik,
    method,
    seconds,
    *,
    engine,
    se_method,
    settings,
    beta,
    mu_natural,
    warnings=None,
) -> ExternalFit:
    """The ExternalFit of a program's estimates on ``problem`` (transformed-scale population
    parameters and random effects derived from its natural-scale ones)."""
    import torch

    model = problem.model
    mu, phi_pop = population_phi(problem, mu_natural, beta)
    phi_map = np.column_stack(
        [
            tr.inverse(model.transforms[p], torch.as_tensor(psi_map[:, k], dtype=torch.float64)).numpy()
            for k, p in enumerate(model.parameters)
        ]
    )
    ri = [model.parameters.index(p) for p in model.random]
    return ExternalFit(
        engine=engine,
        table=list(rows),
        mu=mu,
        beta=np.asarray(beta, float),
        omega=np.asarray(omega, float),
        error=dict(error),
        psi_map=psi_map,
        eta_map=(phi_map - phi_pop)[:, ri],
        loglik=float(loglik),
        loglik_method=method,
        seconds=float(seconds),
        se_method=se_method,
        warnings=tuple(warnings or ()),
        settings=dict(settings),
    )


def external_results(problem, ext: ExternalFit):
    """A :class:`pymixnn.Results` holding ``ext`` (``res.external``, also ``res.estimation``): built
    from the program's estimates alone, with no pymixnn parameter vector or ELBO trace."""
    from pymixnn.model.observation import to_dict as observation_to_dict
    from pymixnn.results.results import Results

    settings = dict(
        ext.settings, engine=ext.engine, observation=observation_to_dict(problem.observation), refine=False
    )
    return Results(
        model=problem.model,
        data=problem.data,
        design=problem.design,
        estimation=ext,
        settings=settings,
        observation=problem.observation,
    )
