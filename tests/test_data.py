"""Tests for pymixnn.data.Data (validation, layout) and the bundled datasets."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from pymixnn import datasets
from pymixnn.data import Data


def _frame(**overrides: list) -> pd.DataFrame:
    """Three individuals (ids 3, 1, 2 in order of first appearance), interleaved rows; Data
    orders them by sorted id (1, 2, 3, as nlme and lme4), so a fit does not depend on row order."""
    columns = {
        "id": [3, 3, 1, 3, 1, 2],
        "Time": [0.0, 1.0, 0.0, 2.0, 1.0, 0.0],
        "y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "Weight": [69.0, 69.0, 80.0, 69.0, 80.0, 55.0],
    }
    columns.update(overrides)
    return pd.DataFrame(columns, index=[10, 11, 12, 13, 14, 15])


def _build(df: pd.DataFrame, **kwargs) -> Data:
    kwargs = {"id": "id", "x": "Time", "y": "y", "covariates": ["Weight"], **kwargs}
    return Data.from_pandas(df, **kwargs)


# ---------------------------------------------------------------- bad input
def test_not_a_dataframe():
    with pytest.raises(TypeError, match="DataFrame"):
        _build(_frame().to_dict())


def test_missing_column():
    with pytest.raises(ValueError, match=r"column 'Foo' not found in data; available columns: "):
        _build(_frame(), x=["Time", "Foo"])


def test_column_in_two_roles():
    with pytest.raises(ValueError, match=r"\['Time'\] used more than once"):
        _build(_frame(), y="Time")


def test_empty_frame():
    with pytest.raises(ValueError, match="no rows"):
        _build(_frame().iloc[:0])


def test_missing_id():
    df = _frame(id=[3, 3, 1, None, 1, 2])
    with pytest.raises(ValueError, match=r"column 'id' has a missing id: row 13 has value nan"):
        _build(df)


def test_non_numeric_x():
    df = _frame(Time=[0.0, 1.0, "0.5", "abc", 1.0, 0.0])  # "0.5" is coerced, "abc" is not
    with pytest.raises(ValueError, match=r"column 'Time' must be numeric: row 13 has value 'abc'"):
        _build(df)


def test_non_numeric_y():
    df = _frame(y=[1.0, 2.0, 3.0, 4.0, "high", 6.0])
    with pytest.raises(ValueError, match=r"column 'y' must be numeric: row 14 has value 'high'"):
        _build(df)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_x(bad):
    df = _frame(Time=[0.0, 1.0, 0.0, 2.0, bad, 0.0])
    with pytest.raises(ValueError, match=rf"column 'Time' must be finite.*row 14 has value {bad}"):
        _build(df)


def test_missing_covariate():
    df = _frame(Weight=[69.0, 69.0, np.nan, 69.0, 80.0, 55.0])
    with pytest.raises(ValueError, match=r"column 'Weight' must be finite.*row 12 has value nan"):
        _build(df)


def test_infinite_y():
    df = _frame(y=[1.0, -np.inf, 3.0, 4.0, 5.0, 6.0])
    with pytest.raises(ValueError, match=r"column 'y' must be finite: row 11 has value -inf"):
        _build(df)


def test_missing_y_without_dropna():
    df = _frame(y=[1.0, 2.0, np.nan, 4.0, np.nan, 6.0])
    message = r"column 'y' has 2 missing values \(first at row 12\); pass dropna=True"
    with pytest.raises(ValueError, match=message):
        _build(df)


def test_missing_y_with_dropna():
    df = _frame(y=[1.0, np.nan, 3.0, 4.0, np.nan, 6.0])
    with pytest.warns(UserWarning, match=r"dropped 2 rows with a missing 'y' \(first at row 11\)"):
        data = _build(df, dropna=True)
    assert data.n_dropped == 2
    assert data.n_obs == 4
    assert list(data.frame.index) == [12, 15, 10, 13]
    assert list(data.user_frame().index) == [10, 12, 13, 15]


def test_individual_without_observations():
    df = _frame(y=[1.0, 2.0, 3.0, 4.0, 5.0, np.nan])
    with pytest.warns(UserWarning, match="dropped 1 rows"):
        with pytest.raises(ValueError, match="individual 2 has no observation left"):
            _build(df, dropna=True)


def test_covariate_varies_within_individual():
    df = _frame(Weight=[69.0, 69.0, 80.0, 70.1, 80.0, 55.0])
    message = (
        "covariate 'Weight' varies within individual 3 (row 13 has 70.1, earlier rows have 69.0); "
        "covariates must be constant within an individual"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        _build(df)


def test_duplicated_rows_warn_and_are_kept():
    df = _frame(Time=[0.0, 1.0, 0.0, 1.0, 1.0, 0.0], y=[1.0, 2.0, 3.0, 2.0, 5.0, 6.0])
    with pytest.warns(UserWarning, match=r"1 rows repeat .* \(first at row 13\); they are kept"):
        data = _build(df)
    assert data.n_obs == 6


# ---------------------------------------------------------------- layout
def test_row_order_index_and_ids():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = _build(_frame())
    assert list(data.frame.columns) == ["id", "Time", "y", "Weight"]
    assert list(data.frame.index) == [12, 14, 15, 10, 11, 13]
    assert data.ids.tolist() == [1, 2, 3]
    assert data.ids.dtype == np.int64
    assert data.index.dtype == np.int64
    assert data.index.tolist() == [0, 0, 1, 2, 2, 2]
    assert data.n_obs_per_individual.tolist() == [2, 1, 3]
    assert data.y.tolist() == [3.0, 5.0, 6.0, 1.0, 2.0, 4.0]
    # the user's order: frame positions of the source rows, and values mapped back to it
    assert data.user_order.tolist() == [3, 4, 0, 5, 1, 2]
    back = data.to_user_order(data.y, name="y")
    assert back.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] and list(back.index) == [10, 11, 12, 13, 14, 15]
    assert data.x.shape == (6, 1) and data.x.dtype == np.float64
    assert data.covariates["Weight"].tolist() == [80.0, 55.0, 69.0]
    assert data.covariates.index.tolist() == [1, 2, 3]
    assert data.n_dropped == 0
    assert repr(data) == ("Data: 3 individuals, 6 observations, x=['Time'], y='y', covariates=['Weight']")


def test_padded_and_row_positions():
    data = _build(_frame())
    x_pad, y_pad, mask = data.padded()
    assert x_pad.shape == (3, 3, 1) and y_pad.shape == (3, 3) and mask.shape == (3, 3)
    assert mask.dtype == bool and mask.sum() == data.n_obs
    assert y_pad.tolist() == [[3.0, 5.0, 0.0], [6.0, 0.0, 0.0], [1.0, 2.0, 4.0]]
    positions = data.row_positions()
    assert positions.dtype == np.int64
    assert positions.tolist() == [[0, 1, -1], [2, -1, -1], [3, 4, 5]]
    np.testing.assert_array_equal(y_pad[mask], data.y[positions[mask]])


def test_no_covariates_gives_empty_table():
    data = _build(_frame(), covariates=None)
    assert data.covariates.shape == (3, 0)
    assert data.covariate_cols == []


def test_categorical_and_bool_covariates_kept():
    sex = pd.Categorical(["F", "F", "M", "F", "M", "F"])
    df = _frame(Sex=sex, Smoker=[True, True, False, True, False, False])
    data = _build(df, covariates=["Sex", "Smoker"])
    assert isinstance(data.covariates["Sex"].dtype, pd.CategoricalDtype)
    assert data.covariates["Sex"].tolist() == ["M", "F", "F"]  # ids 1, 2, 3
    assert data.covariates["Smoker"].dtype == bool


def test_bool_x_is_cast_to_float():
    data = _build(_frame(Time=[False, True, False, True, True, False]))
    assert data.x.dtype == np.float64
    assert data.x[:, 0].tolist() == [0.0, 1.0, 0.0, 0.0, 1.0, 1.0]


def test_subset():
    data = _build(_frame())
    sub = data.subset([2, 3])
    assert sub.ids.tolist() == [2, 3]
    assert sub.n_obs == 4
    assert sub.index.tolist() == [0, 1, 1, 1]
    assert list(sub.frame.index) == [15, 10, 11, 13]
    assert list(sub.user_frame().index) == [10, 11, 13, 15]
    assert sub.covariates.shape == (2, 1)
    with pytest.raises(ValueError, match=r"unknown id\(s\) \[7\]"):
        data.subset([7])


def test_from_csv(tmp_path):
    path = tmp_path / "d.csv"
    _frame().to_csv(path, index=False)
    data = Data.from_csv(path, id="id", x=["Time"], y="y", covariates=["Weight"])
    assert (data.n_individuals, data.n_obs) == (3, 6)


# ---------------------------------------------------------------- datasets
def test_theo():
    spec = datasets.info("theo")
    data = Data.from_pandas(
        datasets.load("theo"), id=spec["id"], x=spec["x"], y=spec["y"], covariates=["Weight"]
    )
    # the saemix theo table has no time-0 samples: 120 rows (base R's Theoph has 132)
    assert (data.n_individuals, data.n_obs) == (12, 120)
    assert data.x_cols == ["Dose", "Time"]
    assert data.covariates.shape == (12, 1)
    x_pad, y_pad, mask = data.padded()
    assert x_pad.shape == (12, 10, 2) and mask.sum() == 120


@pytest.mark.parametrize(
    ("name", "shape", "n_individuals"),
    [
        ("theo", (120, 6), 12),
        ("oxboys", (234, 4), 26),
        ("orange", (35, 3), 5),
        ("soybean", (412, 5), 48),
        ("rapi", (3616, 4), 818),
        ("epil", (236, 9), 59),
        ("toenail", (1908, 5), 294),
        ("knee", (508, 8), 127),
        ("phenoarch", (40542, 10), 1673),
        ("wheat2", (224, 6), 224),
    ],
)
def test_every_dataset_loads_as_data(name, shape, n_individuals):
    df = datasets.load(name)
    spec = datasets.info(name)
    assert df.shape == shape
    assert set(spec) == {"description", "source", "license", "id", "x", "y", "covariates", "citation"}
    data = Data.from_pandas(df, id=spec["id"], x=spec["x"], y=spec["y"], covariates=spec["covariates"])
    assert data.n_individuals == n_individuals


def test_unknown_dataset():
    assert datasets.names() == [
        "epil",
        "grav2",
        "knee",
        "orange",
        "oxboys",
        "phenoarch",
        "rapi",
        "soybean",
        "theo",
        "toenail",
        "wheat2",
    ]
    with pytest.raises(ValueError, match=r"unknown data set 'nope'; available: \['epil'"):
        datasets.load("nope")
