"""Results in the user's row order: predictions, fitted values, residuals and simulations carry the
user's row labels in the user's order, whatever the order of the individuals in the data."""

import numpy as np
import pandas as pd
import pytest

import pymixnn

SPEC = dict(
    id="Id",
    x=["Dose", "Time"],
    y="Concentration",
    covariates={"V": ["Weight"]},
    init={"ka": 1.0, "V": 20.0, "CL": 0.5},
    seed=3,
    progress=False,
    max_steps=300,
)


@pytest.fixture(scope="module")
def fits():
    df = pymixnn.datasets.load("theo")
    shuffled = df.sample(frac=1.0, random_state=7)  # rows of all individuals interleaved
    assert not shuffled[["Id"]].equals(df[["Id"]])
    return df, shuffled, pymixnn.fit(df, "onecpt_oral", **SPEC), pymixnn.fit(shuffled, "onecpt_oral", **SPEC)


def test_outputs_follow_the_users_rows(fits):
    df, shuffled, sorted_fit, shuffled_fit = fits
    for res, frame in ((sorted_fit, df), (shuffled_fit, shuffled)):
        for out in (res.predict(), res.predict(level="individual"), res.fittedvalues, res.resid):
            assert isinstance(out, pd.Series)
            assert out.index.equals(frame.index)  # same labels, same order as the user's frame
        table = res.residuals()
        assert table.index.equals(frame.index)
        np.testing.assert_array_equal(table["Concentration"].to_numpy(), frame["Concentration"].to_numpy())
        # y - IPRED computed from the user's own column, row by row
        np.testing.assert_allclose(frame["Concentration"] - res.fittedvalues, res.resid, rtol=0, atol=1e-12)
        sim = res.simulate(2, seed=1)
        np.testing.assert_array_equal(sim.loc[sim["rep"] == 1, "Time"].to_numpy(), frame["Time"].to_numpy())


def test_shuffled_equals_sorted_after_alignment(fits):
    df, shuffled, sorted_fit, shuffled_fit = fits
    # the same data in another row order: individuals are ordered by id, so the fit is the same;
    # only the order of sums within an individual changes (rounding, ~1e-15), hence 1e-8 relative
    np.testing.assert_allclose(shuffled_fit.params["estimate"], sorted_fit.params["estimate"], rtol=1e-8)
    for level in ("population", "individual"):
        a = sorted_fit.predict(level=level)
        b = shuffled_fit.predict(level=level).reindex(a.index)
        np.testing.assert_allclose(b, a, rtol=1e-8, atol=1e-10)
    ra, rb = sorted_fit.residuals(), shuffled_fit.residuals().reindex(df.index)
    np.testing.assert_allclose(
        rb[["pred", "ipred", "ires", "iwres"]], ra[["pred", "ipred", "ires", "iwres"]], rtol=1e-8, atol=1e-10
    )
    # before this fix, assigning the regrouped arrays to the user's frame gave a mean |y - ipred|
    # several times the real one; now the assignment is exact
    shuffled = shuffled.assign(ipred=shuffled_fit.fittedvalues)
    mae = float(np.mean(np.abs(shuffled["Concentration"] - shuffled["ipred"])))
    assert mae == pytest.approx(float(np.mean(np.abs(sorted_fit.resid))), rel=1e-8)


def test_saved_results_keep_the_users_order(fits, tmp_path):
    _, shuffled, _, shuffled_fit = fits
    back = pymixnn.Results.load(shuffled_fit.save(tmp_path / "fit.json"))
    pd.testing.assert_series_equal(back.fittedvalues, shuffled_fit.fittedvalues)
    assert back.residuals().index.equals(shuffled.index)
