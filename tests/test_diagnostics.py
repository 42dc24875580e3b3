"""Convergence and sanity report: a fit that does not maximize the likelihood, or whose estimates
are degenerate, is not `converged` and says why (ConvergenceWarning, summary, JSON); designs that
cannot identify the model are errors before any fitting."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import pymixnn

FAST = dict(seed=0, progress=False)


def _logistic(n=100, seed=1, sd_c=0.2):
    rng = np.random.default_rng(seed)
    t = np.linspace(1, 10, 10)
    rows = []
    for i in range(n):
        a, b, c = (
            100 * np.exp(rng.normal(0, 0.2)),
            5 * np.exp(rng.normal(0, 0.15)),
            1.5 * np.exp(rng.normal(0, sd_c)),
        )
        for tt in t:
            rows.append((i + 1, tt, a / (1 + np.exp(-(tt - b) / c)) + 2 * rng.normal()))
    return pd.DataFrame(rows, columns=["id", "t", "y"])


def _fit(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = pymixnn.fit(*args, **kwargs)
    return res, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


@pytest.fixture(scope="module")
def theo():
    df = pymixnn.datasets.load("theo")
    return _fit(
        df,
        "onecpt_oral",
        id="Id",
        x=["Dose", "Time"],
        y="Concentration",
        covariates={"V": ["Weight"]},
        init={"ka": 1.0, "V": 20.0, "CL": 0.5},
        **FAST,
    )


def test_a_good_fit_is_converged_and_says_how_it_knows(theo, tmp_path):
    res, caught = theo
    d = res.diagnostics
    assert list(d.columns) == ["value", "limit", "ok", "severity", "message"]
    assert res.converged and d["ok"].all()
    assert not [m for m in caught if "converge" in m]
    # at the maximum the Newton decrement is importance-sampling noise: measured 1.1e-3
    assert d.loc["newton_decrement", "value"] < 0.05
    assert d.loc["gradient", "value"] < 0.2
    assert d.loc["information", "value"] > 0.1  # well-identified parameters: 0.64 measured
    text = str(res.summary())
    assert "Convergence: yes (a Newton step would raise the log-likelihood by" in text
    record = res.to_dict()
    assert record["converged"] is True and record["diagnostics"]["information"]["ok"] is True
    json.dumps(record)
    back = pymixnn.Results.load(res.save(tmp_path / "theo.json"))
    pd.testing.assert_frame_equal(back.diagnostics, d)


def test_start_far_off_reaches_the_optimum_and_says_so():
    df = _logistic()
    good, _ = _fit(df, "logistic", id="id", x="t", y="y", init={"A": 100, "B": 5, "C": 1.5}, **FAST)
    bad, caught = _fit(df, "logistic", id="id", x="t", y="y", init={"A": 1, "B": 0.05, "C": 0.015}, **FAST)
    # 0.01x the truth: the self-start's pooled fit beats the given start's (-4041 against -4987),
    # the fit starts there and reaches the same maximum (measured: equal to 1e-11)
    assert bad.loglik == pytest.approx(good.loglik, abs=1.0)
    assert bad.converged
    assert any("the fit started from the self-start" in m for m in caught)
    assert bad.diagnostics.loc["starts", "message"].endswith("kept the self-start")


def test_variance_at_the_boundary_is_not_converged():
    rng = np.random.default_rng(1)
    rows = [
        (i, t, b0 + 1.0 * t + rng.normal(0, 1))
        for i in range(60)
        for b0 in [10 + rng.normal(0, 2)]
        for t in range(6)
    ]
    df = pd.DataFrame(rows, columns=["id", "t", "y"])  # no slope variation between individuals
    res, caught = _fit(df, "linear", id="id", x="t", y="y", **FAST)
    # collapsed: on the flat ridge towards 0 the Newton iteration stops anywhere (measured 2e-8
    # and 4.3e-4 with the same log-likelihood, depending on its metric); the check sees the
    # variance's log-scale SE (5.3 measured) where its sd is not below 1e-3
    omega2 = res.omega.loc["slope", "slope"]
    assert omega2 < 1e-3
    assert res.params.loc["omega2.slope", "se"] / omega2 > 2.5 or omega2 < 1e-6
    assert not res.converged
    assert not res.diagnostics.loc["variance_boundary", "ok"]
    assert any(m.startswith("fit did not converge: omega2.slope") for m in caught)
    assert "Convergence: NOT converged" in str(res.summary())


def test_unidentified_parameters_are_named():
    df = _logistic(n=60, seed=2)
    model = pymixnn.Model(
        lambda psi, x: psi[..., 0] * psi[..., 3] * torch.sigmoid((x[..., 0] - psi[..., 1]) / psi[..., 2]),
        ["A", "B", "C", "D"],
        transforms="log",
        random=["A", "B"],
    )
    res, caught = _fit(df, model, id="id", x="t", y="y", init={"A": 50, "B": 5, "C": 1.5, "D": 2}, **FAST)
    assert not res.converged and not res.diagnostics.loc["information", "ok"]
    # only A * D is identified: their estimates are perfectly correlated
    assert any("not positive definite" in m and "D and A" in m for m in caught)


def test_stopped_early_is_not_converged():
    df = _logistic(n=60, seed=3)
    res, caught = _fit(df, "logistic", id="id", x="t", y="y", refine=False, max_steps=5, **FAST)
    assert not res.converged
    assert res.diagnostics.loc["newton_decrement", "value"] > 0.5
    assert any("a Newton step would raise the log-likelihood" in m for m in caught)


def test_designs_that_cannot_identify_the_model_fail_before_fitting():
    df = pymixnn.datasets.load("theo")
    spec = dict(id="Id", x=["Dose", "Time"], y="Concentration", **FAST)
    one = df.groupby("Id").nth(3)  # one observation per individual, three random effects
    with pytest.raises(
        ValueError, match=r"at most 1 observation\(s\), too few for 3 random effects \(ka, V, CL\)"
    ):
        pymixnn.fit(one, "onecpt_oral", **spec)
    with pytest.raises(ValueError, match="a random effect and a residual error that one observation cannot"):
        pymixnn.fit(one, "onecpt_oral", random=["CL"], **spec)
    negative = df.assign(Time=df["Time"] - 5)
    with pytest.raises(
        ValueError, match=r"column 'Time' is the time after the dose .* must be >= 0: row 0 has value -4.75"
    ):
        pymixnn.fit(negative, "onecpt_oral", **spec)
