"""Checks of a fit's settings, and of the model against the data, before any torch work.

Each check raises a one-line :class:`InputError` (a ``ValueError``; :class:`InputTypeError`, also a
``TypeError``, for a wrong kind of object) that names the setting, column, row or value at fault,
and, for a misspelt name, the closest valid one.
:func:`pymixnn.fit` calls them in this order: :func:`check_settings` first (before any data
work), :func:`check_columns_unique` and :func:`check_response_dtype` on the user's DataFrame,
:func:`check_names`, :func:`check_init` and :func:`check_random_effects` on the model,
:func:`check_response_support` once the :class:`pymixnn.Data` is built; :class:`pymixnn.Data`
itself calls :func:`check_columns_unique` and :func:`check_ids`, and ``Results.load`` calls
:func:`check_loaded_model`. The checks live in errors.py (error types, closest-name hints),
settings.py (with an example of check_settings), data_checks.py and model_checks.py, all importable
from here; numpy and pandas only.

>>> closest("Ka", ["ka", "V", "CL"])
'ka'
"""

from pymixnn.validation.data_checks import (
    BOOLEAN_Y_FAMILIES,
    check_columns_unique,
    check_covariates_in_data,
    check_data_aux,
    check_ids,
    check_observation_columns,
    check_response_dtype,
    check_response_support,
)
from pymixnn.validation.errors import InputError, InputTypeError, closest, did_you_mean
from pymixnn.validation.model_checks import (
    X_DOMAINS,
    check_design,
    check_genomic,
    check_genotype_role,
    check_init,
    check_loaded_model,
    check_names,
    check_random_effects,
)
from pymixnn.validation.settings import DEVICES, DTYPES, LIKELIHOODS, check_settings

# errors print as pymixnn.validation.InputError, the path users import them from
InputError.__module__ = InputTypeError.__module__ = __name__

__all__ = [
    "InputError",
    "InputTypeError",
    "closest",
    "did_you_mean",
    "check_settings",
    "check_columns_unique",
    "check_covariates_in_data",
    "check_ids",
    "check_response_dtype",
    "check_names",
    "check_init",
    "check_random_effects",
    "check_response_support",
    "check_loaded_model",
    "check_design",
    "check_observation_columns",
    "check_data_aux",
    "check_genomic",
    "check_genotype_role",
    "X_DOMAINS",
    "BOOLEAN_Y_FAMILIES",
    "DTYPES",
    "DEVICES",
    "LIKELIHOODS",
]
