"""`NLME`: a nonlinear mixed-effects problem (data, model, random-effects law, observation family,
genomic spec, grouping levels), resolved and validated once, then fitted (statsmodels' MixedLM).

Building an ``NLME`` does every check of the data and of the model against them with numpy and
pandas only; :meth:`NLME.fit` evaluates the structural function (torch) and runs the estimation.
``pymixnn.fit(...)`` is ``NLME(...).fit(...)``; ``pymixnn.compare.saemix`` / ``nlme`` read the same
resolved problem.

>>> import pymixnn
>>> df = pymixnn.datasets.load("orange")
>>> problem = pymixnn.NLME(df, "logistic", id="Tree", x="age", y="circumference")
>>> problem.model.parameters, problem.data.n_individuals
(('A', 'B', 'C'), 5)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pymixnn.control import Control
from pymixnn.data.markers import individual_markers
from pymixnn.data.nonmem import event_time_column
from pymixnn.data.table import Data
from pymixnn.data.varying import covariate_roles
from pymixnn.docstrings import fill_doc
from pymixnn.model import transforms as tr
from pymixnn.model.covariates import (
    context_matrix,
    covariate_design,
    latent_class_design,
    normalize_mapping,
    varying_columns,
)
from pymixnn.model.dynamics.models import bind_data, is_dynamic, model_covariates, stepwise
from pymixnn.model.function_check import check_function
from pymixnn.model.levels import check_level_columns, check_levels, level_setup
from pymixnn.model.named import Model, resolve
from pymixnn.model.observation import Observation
from pymixnn.model.observation import observation as resolve_observation
from pymixnn.model.observation.endpoints import resolve_endpoints, split_spec
from pymixnn.model.random_effects import resolve as resolve_law
from pymixnn.model.spatial import check_spatial, spatial_columns
from pymixnn.validation import (
    InputError,
    InputTypeError,
    check_columns_unique,
    check_covariates_in_data,
    check_data_aux,
    check_design,
    check_genomic,
    check_genotype_role,
    check_init,
    check_names,
    check_observation_columns,
    check_random_effects,
    check_response_dtype,
    check_response_support,
)

__all__ = ["NLME", "context_columns"]


def context_columns(law: Any) -> list[str]:
    """The covariate columns a random-effects law is conditioned on (a conditional flow's)."""
    columns = getattr(law, "context_columns", None)
    if columns is None:
        columns = getattr(law, "context", None)
    return list(columns or ())


@fill_doc
class NLME:
    """A nonlinear mixed-effects problem, checked once (statsmodels' ``MixedLM``); :meth:`fit` fits it.

    Parameters
    ----------
    %(problem_parameters)s

    Returns
    -------
    NLME
        The checked problem; building it evaluates nothing in torch. Its attributes: ``data``
        (:class:`pymixnn.Data`), ``model`` (the :class:`pymixnn.Model` with its overrides),
        ``design`` (the covariate design), ``covariates`` (parameter -> columns), ``law`` (the
        random-effects law spec), ``observation`` (the family, ordinal levels resolved),
        ``context_columns`` / ``context_matrix`` (a conditional flow's), ``genotype``,
        ``genomic``, ``markers`` (the prepared marker matrix of a genomic fit), ``levels`` /
        ``spatial`` / ``level_setup`` (grouping levels and a spatial field: the specs, each
        individual's group and location), ``start`` (:meth:`initial_values`) and ``fallbacks``
        (counts of values replaced while resolving, e.g. ``start_values_replaced``).
    """

    def __init__(
        self,
        data: pd.DataFrame | Data,
        model: Model | str,
        *,
        id: str | None = None,
        x: str | Sequence[str] | None = None,
        y: str | None = None,
        covariates: Mapping[str, Sequence[str] | str] | None = None,
        dropna: bool = False,
        time_unit: str | None = None,
        init: Mapping[str, float] | None = None,
        error: str | None = None,
        omega: str | None = None,
        random: Sequence[str] | None = None,
        transforms: Mapping[str, str] | str | None = None,
        random_effects: Any = "gaussian",
        n_components: int | str | None = None,
        context: Sequence[str] | str | None = None,
        observation: Any = "gaussian",
        trials: str | None = None,
        censoring: str | None = None,
        genotype: str | None = None,
        genomic: Any = None,
        levels: Any = None,
        spatial: Any = None,
    ) -> None:
        if not isinstance(dropna, (bool, np.bool_)):
            raise InputError(f"dropna must be True or False, got {dropna!r}")
        self.covariates = normalize_mapping(covariates)
        model = resolve(model)
        observation, error, per_endpoint = split_spec(observation, error)
        obs = resolve_observation(observation)
        frame = data.frame if isinstance(data, Data) else data
        aux = check_observation_columns(frame, obs, trials, censoring, error)
        self.law = resolve_law(random_effects, n_components=n_components, context=context)
        overrides = {
            k: v
            for k, v in dict(error=error, omega=omega, random=random, transforms=transforms).items()
            if v is not None
        }
        check_names(random, model, "random")
        check_names(transforms if isinstance(transforms, Mapping) else None, model, "transforms")
        if overrides:
            model = model.replace(**overrides)
        check_random_effects(model, self.law, genomic)
        check_init(init, model)
        self.context_columns = context_columns(self.law)
        genomic_columns = check_genomic(genotype, genomic, model)
        self.levels = check_levels(levels, model, self.law, genomic, spatial)
        self.spatial = check_spatial(spatial, model)
        covariate_columns = list(
            dict.fromkeys(
                [c for cols in self.covariates.values() for c in cols]
                + self.context_columns
                + genomic_columns
                + [lv.name for lv in self.levels]
                + spatial_columns(self.spatial)
            )
        )
        if isinstance(data, pd.DataFrame):
            check_columns_unique(
                data,
                [id, *([x] if isinstance(x, str) else list(x or [])), y, *aux.values(), *covariate_columns],
            )
            check_response_dtype(data, y, obs)
        if obs.encodes_response:
            data, obs = _encode_response(data, obs, y)
        if isinstance(data, Data):
            roles = {"id": [data.id_col], "x": list(data.x_cols), "y": [data.y_col]}
        else:
            roles = {"id": [id], "x": [x] if isinstance(x, str) else list(x or []), "y": [y]}
        check_genotype_role(genotype, roles), check_level_columns(self.levels, roles, data, self.spatial)
        if is_dynamic(model) and isinstance(data, pd.DataFrame):  # NONMEM columns
            data = Data.from_nonmem(
                data,
                id=id or "ID",
                time=event_time_column(x),
                dv=y or "DV",
                censoring=censoring,
                **covariate_roles(data, id or "ID", covariate_columns, model_covariates(model)),
            )
        data = _as_data(data, id, x, y, covariate_columns, bool(dropna), aux, time_unit)
        model = bind_data(model, data)
        obs = obs if per_endpoint is None else resolve_endpoints(per_endpoint, data)
        _check_model_on_data(model, data, obs)
        check_design(model, data, obs)
        self.data, self.model, self.observation = data, model, obs
        self.genotype, self.genomic, self.init = genotype, genomic, init
        self.covariate_columns = covariate_columns
        self.fallbacks: dict[str, int] = {"start_values_replaced": 0}
        self._derive(data)

    def _derive(self, source) -> None:
        """What the problem derives from the data: the covariate design (from ``source``'s
        covariates and ids: the problem's Data, or every process's of a fit from shards,
        sharding.py), start values, markers and levels."""
        data, model, columns = self.data, self.model, self.covariate_columns
        self.design = covariate_design(self.covariates, source, columns, model, is_dynamic(model))
        if varying_columns(self.design, data.events):  # one parameter row per record
            self.model = model = stepwise(model)
        if self.law.name == "latent_class":  # its membership design, and the names it needs
            self.law, self.context_matrix = latent_class_design(self.law, model, data.covariates)
        else:
            self.context_matrix = (
                context_matrix(data.covariates, self.context_columns, model) if self.context_columns else None
            )
        self.start = self.initial_values()
        genomic = self.genomic
        self.markers = individual_markers(genomic, self.genotype, data) if genomic is not None else None
        self.level_setup = level_setup(self.levels, data.covariates, data.ids, self.spatial)

    # ---- start values ----------------------------------------------------------------------
    def initial_values(self) -> dict[str, float]:
        """Fixed effects to start from, natural scale: the user's ``init`` over the model's init
        over its data-based self-start. A self-start value outside its transform's support is
        replaced by a default (log: 1, logit/probit: 0.5, identity: 0), counted in
        ``fallbacks["start_values_replaced"]`` and warned."""
        values, replaced = self._start_values(self.model, self.init)
        self._count_replaced(replaced, values)
        return values

    def start_candidates(self) -> list[tuple[str, dict[str, float]]]:
        """Candidate start values: the given ones and, when they differ from it, the data-based
        self-start alone; the estimation keeps the one with the best pooled fit (and says so)."""
        starts = [("given", self.start)]
        if self.model.self_start is None:
            return starts
        try:
            auto, replaced = self._start_values(self.model.replace(init=None), None)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError):  # a self-start failing here
            return starts
        if any(not np.isclose(auto[p], self.start[p], rtol=1e-6) for p in self.model.parameters):
            try:
                self.check_function(auto)
            except ValueError:
                return starts
            self._count_replaced(replaced, auto)
            starts.append(("self-start", auto))
        return starts

    def _start_values(self, model: Model, init) -> tuple[dict[str, float], list[tuple[str, float]]]:
        values: dict[str, float] = {}
        if model.self_start is not None:
            # on the scale of the structural function: log counts, logits of proportions, ...
            values.update(model.self_start(*self._start_data()))
        values.update({p: 0.0 for p in model.neural_parameters})  # a network's random columns
        values.update(model.init or {})
        values.update({str(k): float(v) for k, v in (init or {}).items()})
        missing = [p for p in model.parameters if p not in values]
        if missing:
            raise InputError(
                f"no initial value for {missing}: give init={{...}} (natural scale) or a "
                "model with a self_start"
            )
        replaced = []
        for p in model.parameters:
            if not tr.valid_natural(model.transforms[p], values[p]):
                if model.init is None and init is None:  # self-start fell outside the support
                    replaced.append((p, values[p]))
                    values[p] = tr.default_natural(model.transforms[p])
                else:
                    raise InputError(
                        f"initial value of {p!r} is {values[p]!r}, outside the support of "
                        f"its {model.transforms[p]!r} transform"
                    )
        return {p: float(values[p]) for p in model.parameters}, replaced

    def _start_data(self) -> tuple[np.ndarray, np.ndarray]:
        """x and the working response the self-start reads (every individual's)."""
        return self.data.x, self.observation.working_response(self.data.y, self.data.aux)

    def _count_replaced(self, replaced: list[tuple[str, float]], values: Mapping[str, float]) -> None:
        if not replaced:
            return
        self.fallbacks["start_values_replaced"] += len(replaced)
        shown = ", ".join(f"{p} = {v!r} replaced by {values[p]!r}" for p, v in replaced)
        warnings.warn(
            f"start values: the model's self-start gave values outside the support of their "
            f"transform ({shown}); give init= to choose them",
            UserWarning,
            stacklevel=4,
        )

    def check_function(self, values: Mapping[str, float]) -> None:
        """The structural function at ``values`` on the first individual (model/function_check.py)."""
        check_function(self.model, self.data, values)

    # ---- genomic ---------------------------------------------------------------------------
    def genomic_setup(self):
        """The cells of the genomic block for the estimation (None without ``genomic``)."""
        if self.markers is None:
            return None
        from pymixnn.inference.genomic import GenomicSetup

        genomic, info = self.genomic, self.markers
        residual = genomic.residual
        if residual == "auto":
            residual = self.data.n_individuals > info["n_genotypes"]
        return GenomicSetup(
            G=info["matrix"].values,
            cell_genotype=info["cells"][:, 0],
            cell_level=info["cells"][:, 1],
            n_levels=len(info["levels"]),
            individual_cell=info["individual_cell"],
            params=tuple(genomic.params),
            prior=genomic.prior,
            residual=bool(residual),
            global_scale=float(genomic.global_scale),
            max_iter=int(genomic.max_iter),
        )

    # ---- fitting ---------------------------------------------------------------------------
    def fit(self, control: Control | None = None, **algorithm: Any):
        """Fit the problem: ``control`` a :class:`pymixnn.Control`, or its fields as keywords
        (``algorithm``: ``max_steps=200``); returns a :class:`pymixnn.Results`."""
        from pymixnn.control import resolve_control
        from pymixnn.fitting import fit_problem

        return fit_problem(self, resolve_control(control, algorithm))

    def __repr__(self) -> str:
        d = self.data
        return (
            f"NLME(model={self.model.name or 'custom'!r}, law={self.law.name!r}, "
            f"observation={self.observation.name!r}, {d.n_individuals} individuals, {d.n_obs} rows)"
        )


# ---- helpers ------------------------------------------------------------------------------------
def _as_data(
    data,
    id,
    x,
    y,
    covariate_columns: list[str],
    dropna: bool,
    aux: dict[str, str],
    time_unit: str | None = None,
) -> Data:
    if isinstance(data, Data):
        if time_unit is not None and time_unit != data.time_unit:
            raise InputError(
                f"time_unit={time_unit!r} applies to a DataFrame; the Data object has "
                f"time_unit={data.time_unit!r}: give it to Data.from_pandas"
            )
        check_covariates_in_data(covariate_columns, data)
        check_data_aux(data, aux)
        return data
    if isinstance(data, pd.DataFrame):
        if id is None or x is None or y is None:
            raise InputError("with a DataFrame, give the columns: fit(df, model, id=..., x=..., y=...)")
        return Data.from_pandas(
            data,
            id=id,
            x=x,
            y=y,
            covariates=covariate_columns or None,
            dropna=dropna,
            aux=aux or None,
            time_unit=time_unit,
        )
    raise InputTypeError(f"data must be a pandas DataFrame or a pymixnn.Data, got {type(data).__name__}")


def _check_model_on_data(model: Model, data: Data, obs: Observation) -> None:
    """Column count, support of y for the error model / observation family (clear errors)."""
    if model.x_names is not None and len(model.x_names) != len(data.x_cols):
        raise InputError(
            f"model {model.name!r} reads {len(model.x_names)} x column(s) "
            f"{list(model.x_names)}, but x={data.x_cols} has {len(data.x_cols)}"
        )
    frame = data.frame
    if not obs.encodes_response:  # coded responses (ordinal levels) are checked before Data
        obs.validate(
            frame[data.y_col],
            data.y_col,
            {role: frame[col].rename(col) for role, col in data.aux_cols.items()},
        )
    check_response_support(model, data, obs)


def _encode_response(data, obs: Observation, y):
    """A coded response (ordinal: category codes 0..K-1 of the levels given, or of the sorted
    values / an ordered categorical's categories); a value outside them is an error naming its row."""
    if isinstance(data, Data):
        frame, column = data.frame, data.y_col
    else:
        if y not in getattr(data, "columns", []):
            return data, obs  # Data.from_pandas reports the missing column
        frame, column = data, y
    values = frame[column]
    obs = obs.resolve_response(values, column)
    codes = obs.encode_response(values)
    if isinstance(data, Data):
        if not np.array_equal(codes, data.y):
            raise InputError(
                f"{obs.name} data given as a pymixnn.Data must hold the codes 0..K-1 of "
                f"the levels {list(obs.levels)}; pass the DataFrame instead"
            )
        return data, obs
    out = frame.copy()
    out[column] = codes
    return out, obs
