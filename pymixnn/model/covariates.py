"""Low-dimensional covariate model on transformed parameters (saemix ``covariate.model``).

``phi_i[p] = mu[p] + sum_c beta_c(p) z_ic + eta_i[p]``. Continuous covariates enter as they are (not
centred, as in saemix, so ``mu`` is the value at covariate 0); a non-numeric covariate (strings,
categories, booleans) enters as one indicator per level other than its first (sorted) level.
Effect names follow saemix: ``beta_Weight(V)``; a level gets ``beta_Sex[M](V)``.

>>> import pandas as pd
>>> cov = pd.DataFrame({"Weight": [60.0, 80.0], "Sex": ["F", "M"]}, index=[1, 2])
>>> design = CovariateDesign.build({"V": ["Weight", "Sex"]}, cov, ("ka", "V", "CL"))
>>> design.names
['beta_Weight(V)', 'beta_Sex[M](V)']
>>> design.matrix.tolist()
[[60.0, 0.0], [80.0, 1.0]]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pymixnn.validation import InputError
from pymixnn.validation.errors import show_value

__all__ = [
    "CovariateDesign",
    "context_matrix",
    "membership_matrix",
    "latent_class_design",
    "covariate_design",
    "design_covariates",
    "normalize_mapping",
    "record_deviations",
    "varying_columns",
]


def normalize_mapping(covariates: Mapping[str, Sequence[str] | str] | None) -> dict[str, list[str]]:
    """``{"V": "Weight"}`` or ``{"V": ["Weight"]}`` -> ``{"V": ["Weight"]}``."""
    if covariates is None:
        return {}
    if not isinstance(covariates, Mapping):
        raise TypeError(
            "covariates must map parameter names to covariate columns, e.g. covariates={'V': ['Weight']}"
        )
    out: dict[str, list[str]] = {}
    for param, cols in covariates.items():
        cols = [cols] if isinstance(cols, str) else list(cols)
        if len(set(cols)) != len(cols):
            raise ValueError(f"covariate listed twice for parameter {param!r}: {cols}")
        out[str(param)] = [str(c) for c in cols]
    return out


def _is_categorical(series: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


@dataclass(frozen=True)
class CovariateDesign:
    """Covariate effects: their names, the parameter each acts on, and the individual design matrix."""

    names: list[str]
    parameters: list[str]  # parameter each effect acts on
    matrix: np.ndarray  # (n_individuals, n_effects) float64
    columns: list[str]  # covariate column behind each effect
    levels: list[object | None]  # level indicated by each effect (None: continuous)
    reference_levels: dict[str, object]
    # the mean design row of every individual of the fit, where ``matrix`` holds some of them (a
    # process's of a fit from shards, :meth:`rows`); None: ``matrix``'s own mean
    mean_row: list[float] | None = None

    @property
    def n_effects(self) -> int:
        return len(self.names)

    def average(self) -> np.ndarray:
        """(1, n_effects): the fit's average design row."""
        if self.mean_row is not None:
            return np.asarray(self.mean_row, dtype=np.float64).reshape(1, -1)
        return self.matrix.mean(axis=0, keepdims=True) if self.n_effects else np.zeros((1, 0))

    def rows(self, lo: int, hi: int) -> CovariateDesign:
        """The design of individuals lo..hi-1, keeping the whole fit's average row."""
        return dataclasses.replace(self, matrix=self.matrix[lo:hi], mean_row=self.average()[0].tolist())

    @classmethod
    def build(
        cls, mapping: Mapping[str, Sequence[str]], covariates: pd.DataFrame, parameters: Sequence[str]
    ) -> CovariateDesign:
        """Design for ``mapping`` ({param: [columns]}) from a one-row-per-individual table."""
        mapping = normalize_mapping(mapping)
        names, params, cols, levels, blocks = [], [], [], [], []
        reference: dict[str, object] = {}
        for param, columns in mapping.items():
            if param not in parameters:
                raise ValueError(
                    f"covariate model names parameter {param!r}, which the model does "
                    f"not have; parameters are {list(parameters)}"
                )
            for col in columns:
                if col not in covariates.columns:
                    raise ValueError(
                        f"covariate {col!r} (on {param}) is not among the data's "
                        f"covariates {list(covariates.columns)}"
                    )
                values = covariates[col]
                if _is_categorical(values):
                    observed = pd.unique(values)
                    ordered = (
                        list(values.cat.categories)
                        if isinstance(values.dtype, pd.CategoricalDtype)
                        else sorted(observed, key=str)
                    )
                    ordered = [lv for lv in ordered if lv in set(observed)]
                    if len(ordered) < 2:
                        raise ValueError(
                            f"categorical covariate {col!r} has a single level "
                            f"{ordered!r}: its effect on {param} is not identifiable"
                        )
                    reference[col] = ordered[0]
                    for level in ordered[1:]:
                        names.append(f"beta_{col}[{level}]({param})")
                        params.append(param)
                        cols.append(col)
                        levels.append(level)
                        blocks.append((values == level).to_numpy(dtype=np.float64))
                else:
                    x = values.to_numpy(dtype=np.float64)
                    # a time-varying covariate (design_covariates) may start at one value for all
                    if np.ptp(x) == 0 and col not in covariates.attrs.get("time_varying", ()):
                        raise ValueError(
                            f"covariate {col!r} is constant ({show_value(x[0])}) across "
                            f"individuals: its effect on {param} is not identifiable"
                        )
                    names.append(f"beta_{col}({param})")
                    params.append(param)
                    cols.append(col)
                    levels.append(None)
                    blocks.append(x)
        n = len(covariates)
        matrix = np.column_stack(blocks) if blocks else np.zeros((n, 0))
        return cls(names, params, matrix, cols, levels, reference)

    def transform(self, covariates: pd.DataFrame) -> np.ndarray:
        """Design matrix for new individuals (prediction), with the fitted coding."""
        out = np.zeros((len(covariates), self.n_effects))
        for j, (col, level) in enumerate(zip(self.columns, self.levels)):
            if col not in covariates.columns:
                raise ValueError(f"covariate {col!r} is needed for prediction but missing")
            values = covariates[col]
            if level is None:
                out[:, j] = values.to_numpy(dtype=np.float64)
            else:
                out[:, j] = (values == level).to_numpy(dtype=np.float64)
        return out


def context_matrix(covariates, columns: list[str], model, new_covariates=None) -> np.ndarray:
    """Context of a conditional flow, one row per individual: numeric covariates standardized,
    categorical ones coded as indicators of their non-reference levels (CovariateDesign's coding).
    With ``new_covariates`` (one row per new individual), their rows coded and scaled as those of
    the fitted ``covariates`` are."""
    coded = CovariateDesign.build({model.parameters[0]: columns}, covariates, model.parameters)
    matrix = coded.matrix.astype(np.float64)
    sd = matrix.std(axis=0)
    constant = [coded.names[j] for j in np.nonzero(sd == 0)[0]]
    if constant:
        raise InputError(
            f"flow context {columns}: {constant} take a single value in the data; "
            "a conditional flow needs covariates that vary between individuals"
        )
    if new_covariates is not None:
        return (coded.transform(new_covariates) - matrix.mean(axis=0)) / sd
    return (matrix - matrix.mean(axis=0)) / sd


def membership_matrix(
    covariates, columns: list[str], model, new_covariates=None
) -> tuple[np.ndarray, list[str]]:
    """The design of a latent-class membership model, one row per individual, and its term names:
    numeric covariates as they are (coefficients per unit, as lcmm's ``classmb``), categorical ones
    as indicators of their non-reference levels. With ``new_covariates``, their rows coded alike."""
    for col in columns:
        values = covariates[col].dropna().unique()
        if len(values) < 2:
            raise InputError(
                f"LatentClass membership column {col!r} takes a single value "
                f"({show_value(values[0] if len(values) else 'none')}) in the data; the membership model "
                "needs "
                "covariates that vary between individuals"
            )
    coded = CovariateDesign.build({model.parameters[0]: columns}, covariates, model.parameters)
    source = covariates if new_covariates is None else new_covariates
    matrix = coded.matrix if new_covariates is None else coded.transform(source)
    terms = [n[len("beta_") : n.rindex("(")] if n.startswith("beta_") else n for n in coded.names]
    return np.asarray(matrix, dtype=np.float64), terms


def latent_class_design(law, model, covariates) -> tuple[object, np.ndarray | None]:
    """A LatentClass spec completed from the model and the individuals' ``covariates`` (its ``on``
    default, the membership terms, the order of eta) and its membership design (None without
    membership covariates)."""
    import dataclasses

    matrix, terms = None, []
    if law.membership:
        matrix, terms = membership_matrix(covariates, list(law.membership), model)
    law = dataclasses.replace(
        law, on=law.on or tuple(model.random), membership_terms=tuple(terms), random_names=tuple(model.random)
    )
    return law, matrix


# ---- time-varying covariates (event data) -------------------------------------------------------
# An effect on a time-varying covariate z acts record by record: phi_ik = mu + beta z_ik + ...
# (carried forward between records). The design row of an individual holds z at its first record
# (its baseline: centring, the reported individual parameters); the change since then is
# ``record_deviations``, applied to every record's parameters (the event engine's one psi row per
# record).


def varying_columns(design: CovariateDesign, events) -> list[str]:
    """The design's columns that are time-varying in ``events`` (none without events)."""
    if events is None:
        return []
    return [c for c in dict.fromkeys(design.columns) if c in events.time_varying]


def design_covariates(
    covariates: pd.DataFrame, columns: Sequence[str], events, ids, dynamic: bool = True
) -> pd.DataFrame:
    """The individual-level covariate table of ``ids`` with the time-varying ``columns`` of
    ``events`` added at each individual's first record. ``dynamic``: whether the model is evaluated
    record by record (a compartment or ODE model); a closed-form curve cannot take them."""
    varying = [c for c in dict.fromkeys(columns) if events is not None and c in events.time_varying]
    if not varying:
        return covariates
    if not dynamic:
        raise InputError(
            f"covariates {varying} are time-varying: their effects act record by record, which needs a "
            "compartment model or an ODEModel; give a closed-form model individual-level covariates"
        )
    first = events.padded()["covariates"][:, 0, :]
    pos = pd.Index(events.ids).get_indexer(list(ids))
    extra = pd.DataFrame(
        {c: first[pos, events.time_varying.index(c)] for c in varying}, index=covariates.index
    )
    for c in varying:
        values = events.covariates[c].to_numpy(dtype=np.float64)
        if np.ptp(values) == 0:
            raise ValueError(
                f"time-varying covariate {c!r} is constant ({show_value(values[0])}): its effect is not "
                "identifiable"
            )
    out = pd.concat([covariates.drop(columns=varying, errors="ignore"), extra], axis=1)
    out.attrs["time_varying"] = tuple(varying)
    return out


def covariate_design(mapping, data, columns: Sequence[str], model, dynamic: bool) -> CovariateDesign:
    """The covariate design of ``mapping`` on ``data`` (a Data): individual-level covariates, and
    time-varying ones of event data at each individual's first record (:func:`design_covariates`)."""
    table = design_covariates(data.covariates, columns, data.events, data.ids, dynamic)
    return CovariateDesign.build(mapping, table, model.parameters)


def record_deviations(design: CovariateDesign, events, ids) -> np.ndarray | None:
    """(N, K, E) per individual of ``ids`` (in that order) and record of ``events``: the change
    of each effect's covariate since the individual's first record (0 for individual-level
    covariates); None when no effect is on a time-varying covariate."""
    varying = varying_columns(design, events)
    if not varying:
        return None
    values = events.padded()["covariates"]  # carried forward, padding included
    pos = pd.Index(events.ids).get_indexer(list(ids))
    out = np.zeros((len(pos), values.shape[1], design.n_effects))
    for j, col in enumerate(design.columns):
        if col in varying:
            v = values[pos, :, events.time_varying.index(col)]
            out[:, :, j] = v - v[:, :1]
    return out
