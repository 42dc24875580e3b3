"""Tests for pymixnn.simulate: reproducibility, layout, truth, and recovery of the truth by nlme."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from r_helpers import nlme_logistic

from pymixnn.simulate import logistic, simulate_logistic, simulate_nlme

TRUTH = {"A": 100.0, "B": 5.0, "C": 1.5, "omega2.A": 0.04, "omega2.B": 0.0225, "omega2.C": 0.04, "a": 2.0}


# ---------------------------------------------------------------- layout and reproducibility
def test_same_seed_same_frame():
    first, second = simulate_logistic(50, seed=3), simulate_logistic(50, seed=3)
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(first.attrs["psi"], second.attrs["psi"])
    assert first.attrs["truth"] == second.attrs["truth"]


def test_other_seed_other_frame():
    assert not np.allclose(simulate_logistic(50, seed=3)["y"], simulate_logistic(50, seed=4)["y"])


def test_shape_and_columns():
    df = simulate_logistic(7, n_obs=5)
    assert list(df.columns) == ["id", "t", "y"]
    assert len(df) == 7 * 5
    assert pd.api.types.is_integer_dtype(df["id"])
    assert df["id"].tolist() == list(np.repeat(np.arange(1, 8), 5))
    np.testing.assert_array_equal(df.loc[df["id"] == 3, "t"], np.linspace(0, 10, 5))
    assert np.isfinite(df["y"]).all()


def test_times_override_n_obs():
    df = simulate_logistic(4, n_obs=10, times=[0.5, 2.0, 8.0])
    assert len(df) == 4 * 3
    np.testing.assert_array_equal(df.loc[df["id"] == 1, "t"], [0.5, 2.0, 8.0])


def test_truth_and_psi_attrs():
    df = simulate_logistic(20, seed=2)
    assert df.attrs["truth"] == TRUTH
    psi = df.attrs["psi"]
    assert list(psi.columns) == ["A", "B", "C"]
    assert psi.index.name == "id"
    assert psi.index.tolist() == list(range(1, 21))
    assert (psi.to_numpy() > 0).all()


def test_y_is_curve_plus_constant_error():
    # Recompute the structural curve from attrs["psi"]; the residuals are the sigma * e draws.
    df = simulate_logistic(500, seed=5)
    psi = df.attrs["psi"].loc[df["id"]].to_numpy()
    curve = psi[:, 0] / (1 + np.exp(-(df["t"].to_numpy() - psi[:, 1]) / psi[:, 2]))
    resid = df["y"].to_numpy() - curve
    # 5000 N(0, 2^2) draws: the SD of the sample SD is about 2/sqrt(2*5000) = 0.02; 5% is 5 SDs.
    assert np.std(resid) == pytest.approx(2.0, rel=0.05)
    assert abs(np.mean(resid)) < 0.1  # SD of the mean: 2/sqrt(5000) = 0.028


@pytest.mark.parametrize("name", ["A", "B", "C"])
def test_random_effect_variance(name):
    # For N = 1000 the SD of a sample variance of normal draws is omega2 * sqrt(2 / (N - 1)),
    # about 4.5% of omega2; 15% is more than 3 of those SDs.
    df = simulate_logistic(1000, seed=0)
    log_psi = np.log(df.attrs["psi"][name])
    assert np.var(log_psi, ddof=1) == pytest.approx(TRUTH[f"omega2.{name}"], rel=0.15)
    # and the median of a log-normal is its fixed effect: SD of the mean of log psi is
    # sqrt(omega2 / N) <= 0.0064, so 0.03 is more than 4 SDs.
    assert np.mean(log_psi) == pytest.approx(np.log(TRUTH[name]), abs=0.03)


# ---------------------------------------------------------------- the general simulator
def test_simulate_nlme_design_transforms_and_combined_error():
    x = np.column_stack([np.linspace(0, 1, 6), np.arange(6.0)])

    def f(psi, x):  # psi (N, 1, P), x (1, T, q) -> (N, T)
        return psi[..., 0] + psi[..., 1] * x[..., 0] + x[..., 1]

    df = simulate_nlme(
        f,
        ["p", "q"],
        mu_natural={"p": 10.0, "q": 0.3},
        omega2={"p": 0.0, "q": 0.5},
        transforms={"p": "identity", "q": 3},
        x=x,
        n_individuals=30,
        a=0.1,
        b=0.2,
        x_names=["u", "v"],
        seed=9,
    )
    assert list(df.columns) == ["id", "u", "v", "y"]
    assert len(df) == 30 * 6
    psi = df.attrs["psi"]
    assert (psi["p"] == 10.0).all()  # omega2 = 0: no random effect
    assert ((psi["q"] > 0) & (psi["q"] < 1)).all()  # logit keeps q in (0, 1)
    assert df.attrs["truth"] == {"p": 10.0, "q": 0.3, "omega2.p": 0.0, "omega2.q": 0.5, "a": 0.1, "b": 0.2}


def test_simulate_logistic_is_simulate_nlme():
    t = np.linspace(0, 10, 10)
    general = simulate_nlme(
        logistic,
        ["A", "B", "C"],
        mu_natural={"A": 100.0, "B": 5.0, "C": 1.5},
        omega2={"A": 0.04, "B": 0.0225, "C": 0.04},
        transforms={"A": "log", "B": "log", "C": "log"},
        x=t,
        n_individuals=25,
        a=2.0,
        seed=11,
    )
    pd.testing.assert_frame_equal(general, simulate_logistic(25, seed=11))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"transforms": {"A": "sqrt"}}, "unknown transform"),
        ({"mu_natural": {"A": -1.0}}, "outside the support"),
        ({"omega2": {}}, r"omega2 has no entry for parameter\(s\) \['A'\]"),
        ({"a": 0.0}, "not both 0"),
        ({"n_individuals": 0}, "at least 1"),
    ],
)
def test_simulate_nlme_bad_input(kwargs, message):
    args = {
        "mu_natural": {"A": 1.0},
        "omega2": {"A": 0.1},
        "transforms": {"A": "log"},
        "x": np.arange(3.0),
        "n_individuals": 2,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        simulate_nlme(lambda psi, x: psi[..., 0] * x[..., 0], ["A"], **args)


def test_simulate_nlme_checks_f_shape():
    with pytest.raises(ValueError, match=r"f returned shape \(2, 1\), expected \(2, 3\)"):
        simulate_nlme(
            lambda psi, x: psi[..., 0],
            ["A"],
            mu_natural={"A": 1.0},
            omega2={"A": 0.1},
            transforms={"A": "log"},
            x=np.arange(3.0),
            n_individuals=2,
        )


# ---------------------------------------------------------------- recovery by nlme
def test_nlme_recovers_logistic_truth():
    # tests/reference/logistic_nlme.R: nlme(y ~ exp(lA)/(1+exp(-(t-exp(lB))/exp(lC))), ...,
    # method = "ML"), started at log(100, 5, 1.5). Takes about 1 s; skips only without Rscript.
    fit = nlme_logistic(simulate_logistic(1000, seed=1))
    assert fit["converged"], fit["warnings"]
    assert fit["n_individuals"] == 1000 and fit["n_observations"] == 10_000
    # exp(fixef(fit)): the SEs of lA, lB, lC are about 0.006, 0.005, 0.007, so 2% is 3+ SEs.
    for name in ("A", "B", "C"):
        assert fit["natural"][name] == pytest.approx(TRUTH[name], rel=0.02), name
    # sigma(fit): the SD of an estimated SD from 10000 residuals is about 0.7%; 5% is 7 of them.
    assert fit["sigma"] == pytest.approx(TRUTH["a"], rel=0.05)
    # VarCorr(fit): sampling SD of omega2 is 4.5% (N = 1000) plus estimation noise and
    # linearisation bias; 20% is over 3.5 sampling SDs.
    for name in ("A", "B", "C"):
        assert fit["omega2"][f"l{name}"] == pytest.approx(TRUTH[f"omega2.{name}"], rel=0.20), name
