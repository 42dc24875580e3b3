"""The data layer split into one concept per module (issue 17): the former import paths still work,
and moving the validation and date conversion out of ``table.py`` changed no behaviour."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest


def test_public_import_paths():
    import pymixnn
    import pymixnn.data.markers as data_markers
    import pymixnn.markers as markers
    from pymixnn.data import Data
    from pymixnn.data.markers import MarkerMatrix, prepare_markers, read_map, read_markers
    from pymixnn.data.markers_io import read_map as io_read_map
    from pymixnn.data.markers_io import read_markers as io_read_markers
    from pymixnn.data.table import TIME_UNITS
    from pymixnn.data.table import Data as TableData

    assert Data is TableData is pymixnn.Data
    assert markers is data_markers
    assert read_map is io_read_map is markers.read_map and read_markers is io_read_markers
    assert MarkerMatrix is markers.MarkerMatrix and prepare_markers is markers.prepare_markers
    assert TIME_UNITS["h"] == (3600.0, "hours")
    assert markers._CHUNK_CELLS == 1 << 22  # patched by tests/test_markers.py


def _table() -> pd.DataFrame:
    dates = [
        "2021-03-04 06:00:00",
        "2021-03-05 00:00:00",
        "2021-03-04 00:00:30",
        "2021-03-06 00:00:00",
        "2021-03-07 00:00:00",
        "2021-03-07 00:00:00",
    ]
    return pd.DataFrame(
        {
            "id": ["b", "b", "a", "a", "c", "c"],
            "date": pd.to_datetime(dates).tz_localize("UTC"),
            "y": [1.0, np.nan, 2.0, 2.0, 3.0, 3.0],
            "w": [1, 1, 2, 2, 3, 3],
        },
        index=[5, 4, 3, 2, 1, 0],
    )


def test_dates_grouping_and_warnings_unchanged():
    from pymixnn.data import Data

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = Data.from_pandas(
            _table(), id="id", x="date", y="y", covariates=["w"], dropna=True, time_unit="h"
        )
    # both warnings point at the caller of Data.from_pandas, as before the split
    assert [(str(w.message), w.filename) for w in caught] == [
        ("dropped 1 rows with a missing 'y' (first at row 4)", __file__),
        ("1 rows repeat an earlier row's id, x and y (first at row 0); they are kept", __file__),
    ]
    assert repr(data) == (
        "Data: 3 individuals, 5 observations, x=['date'], y='y', covariates=['w']; "
        "x 'date' converted to hours since 2021-03-04 00:00:30 UTC"
    )
    assert data.time_label("date") == "date (hours since 2021-03-04 00:00:30 UTC)"
    np.testing.assert_allclose(
        data.x.ravel(),
        [0.0, 47.99166666666667, 5.991666666666666, 71.99166666666666, 71.99166666666666],
        rtol=1e-15,
    )
    assert data.user_order.tolist() == [2, 0, 1, 3, 4]
    assert data.covariates["w"].to_dict() == {"a": 2, "b": 1, "c": 3}
    np.testing.assert_allclose(
        data.x_matrix(_table().iloc[:2]).ravel(), [5.991666666666666, 23.991666666666667], rtol=1e-15
    )
    assert data.subset(["c", "a"]).user_order.tolist() == [0, 1, 2, 3]


def test_validation_messages_unchanged():
    from pymixnn.data import Data

    df = _table()
    kwargs = dict(id="id", x="date", y="y", covariates=["w"], dropna=True)
    with pytest.raises(ValueError, match=r"^column 'y' must be numeric: row 4 has value 'x'$"):
        Data.from_pandas(df.assign(y=["1", "x", 2, 2, 3, 3]), time_unit="h", **kwargs)
    with pytest.raises(ValueError, match=r"time_unit='h' converts dates, but no x column"):
        Data.from_pandas(df.assign(date=[1.0] * 6), time_unit="h", **kwargs)
    with pytest.raises(ValueError, match=r"x column 'date' holds dates .*: pass time_unit="):
        Data.from_pandas(df, **kwargs)
    with pytest.raises(
        ValueError,
        match=r"covariate 'w' varies within individual 'a' \(row 2 has 5, "
        r"earlier rows have 2\)",
    ):
        Data.from_pandas(df.assign(w=[1, 1, 2, 5, 3, 3]), time_unit="h", **kwargs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_repeated_rows_found_as_pandas_finds_them(seed):
    """checks._duplicated (a hash of each row, pandas' exact check on the rows whose hash repeats)
    flags exactly the rows ``DataFrame.duplicated`` flags: repeats of id, x and y, with -0.0
    equal to 0.0, rows that differ in one column only not flagged."""
    from pymixnn.data.checks import _duplicated

    rng = np.random.default_rng(seed)
    n = 5_000
    frame = pd.DataFrame(
        {
            "id": rng.integers(0, 300, n).astype(str),
            "t": rng.integers(0, 4, n).astype(float),
            "dose": rng.choice([0.0, -0.0, 1.5], n),
            "y": rng.integers(0, 3, n).astype(float),
        },
        index=rng.permutation(n) + 7,
    )
    codes, _ = pd.factorize(frame["id"], sort=True)
    want = frame.duplicated(subset=["id", "t", "dose", "y"]).to_numpy()
    got = _duplicated(frame, codes, ["t", "dose", "y"], "id")
    assert 0 < want.sum() < n and np.array_equal(got, want)
    # no repeats: nothing flagged (every hash unique, or candidates cleared by the exact check)
    unique = frame.loc[~want]
    codes, _ = pd.factorize(unique["id"], sort=True)
    assert not _duplicated(unique, codes, ["t", "dose", "y"], "id").any()
