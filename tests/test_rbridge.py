"""pymixnn.rbridge.call: the R package's way to see Python's warnings and errors as data."""

import warnings

import pytest

from pymixnn.diagnostics import ConvergenceWarning
from pymixnn.rbridge import Outcome, call


def _noisy(x, *, scale=1):
    warnings.warn("dropped 2 rows with a missing 'y' (first at row 6)", UserWarning)
    warnings.warn("fit did not converge: gradient", ConvergenceWarning)
    return x * scale


def test_call_returns_the_value_and_each_warning_in_order():
    out = call(_noisy, 2, scale=3)
    assert out == Outcome(
        value=6,
        warnings=["dropped 2 rows with a missing 'y' (first at row 6)", "fit did not converge: gradient"],
        categories=["UserWarning", "ConvergenceWarning"],
    )
    # the same warning again in a later call (Python's once-per-location registry is not in the way)
    assert call(_noisy, 1).warnings == out.warnings


def test_call_hands_back_the_exception_and_the_warnings_before_it():
    def fails():
        warnings.warn("dropped 1 rows", UserWarning)
        raise ValueError("column 'y' has 1 missing values (first at row 6)")

    out = call(fails)
    assert (out.value, out.warnings, out.error, out.error_type) == (
        None,
        ["dropped 1 rows"],
        "column 'y' has 1 missing values (first at row 6)",
        "ValueError",
    )
    assert out.traceback.startswith("Traceback") and "in fails" in out.traceback
    assert call({}.__getitem__, "k").error == "'k'"  # a KeyError keeps its key as the message


def test_call_leaves_the_warning_filters_as_they_were_and_lets_interrupts_through():
    before = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the user's filters decide
        assert call(_noisy, 1).categories == ["UserWarning"]
    assert warnings.filters == before

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call(interrupted)
