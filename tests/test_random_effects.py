"""Random-effects laws on simulated truths (the flows issue's acceptance points 1-3) and their API.

Design of the recovery tests: logistic growth, N = 500 individuals x 10 observations (A=100, B=5,
C=1.5, sigma=2, log B and log C Gaussian), seed 3; the law of log A is bimodal, skewed or Gaussian.
Distances between laws are 1-D Wasserstein distances on 200,000 draws of each (Monte Carlo error
below 0.001, against distances of 0.005-0.05 here).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import trapezoid  # np.trapz: gone in NumPy 2.4
from scipy.stats import wasserstein_distance

import pymixnn
from pymixnn.simulate import NormalMixture1D, SkewNormal1D, simulate_logistic

# the recovery fits are slow (make test-all); the argument checks below run in make test

N, SEED = 500, 3


def _fit(df, re, **kw):
    return pymixnn.fit(df, "logistic", id="id", x="t", y="y", random_effects=re, seed=1, progress=False, **kw)


def _w1(res, law, name="A", centre=np.log(100.0)):
    draws = res.re_density(n_samples=200_000, seed=1).samples[name].to_numpy()
    truth = centre + law.sample(np.random.default_rng(7), 200_000)
    return wasserstein_distance(draws, truth)


@pytest.fixture(scope="module")
def bimodal():
    law = NormalMixture1D.separated(0.4, 4.0, 0.1)
    df = simulate_logistic(N, 10, laws={"A": law}, seed=SEED)
    return law, df, {re: _fit(df, re) for re in ("gaussian", "mixture", "flow")}


@pytest.fixture(scope="module")
def skewed():
    law = SkewNormal1D(alpha=8.0, omega=0.35)
    df = simulate_logistic(N, 10, laws={"A": law}, seed=SEED)
    return law, df, {re: _fit(df, re) for re in ("gaussian", "flow")}


@pytest.fixture(scope="module")
def gaussian_truth():
    law = NormalMixture1D([1.0], [0.0], [0.2])
    df = simulate_logistic(N, 10, laws={"A": law}, seed=SEED)
    return law, df, {re: _fit(df, re) for re in ("gaussian", "flow")}


@pytest.mark.slow
def test_bimodal_truth(bimodal):
    law, _, fits = bimodal
    g, m, f = fits["gaussian"], fits["mixture"], fits["flow"]
    # acceptance 1: both flexible laws beat the Gaussian by more than 10 log-likelihood units
    # (measured: about 80 units; the MC SEs of ll.is are below 0.6)
    assert f.loglik - g.loglik > 10
    assert m.loglik - g.loglik > 10
    # the fitted marginal of log A is closer to the truth: distance at most half the Gaussian's
    w_g, w_f, w_m = _w1(g, law), _w1(f, law), _w1(m, law)
    assert w_f <= 0.5 * w_g, (w_f, w_g)
    assert w_m <= 0.5 * w_g, (w_m, w_g)
    # the 2-component mixture recovers the 0.40 proportion within 0.05 (binomial SE of the
    # realized proportion with N=500 is 0.022)
    p = m.params["estimate"]
    low = min((1, 2), key=lambda k: p[f"mean.{k}.A"])
    assert abs(p[f"prob.{low}"] - 0.40) < 0.05
    # component means 4 sd apart: log A at -0.24 and +0.16 around log 100 (truth), SE ~0.01
    assert abs(np.log(p[f"mean.{low}.A"]) - (np.log(100) - 0.24)) < 0.05
    # two modes in the fitted marginal of log A, one in B and C, for the flow and the mixture
    for res in (f, m):
        modes = res.re_summary()["n_modes"]
        assert modes.to_dict() == {"A": 2, "B": 1, "C": 1}
    assert g.re_summary()["n_modes"].to_dict() == {"A": 1, "B": 1, "C": 1}
    # the parameters without a bimodal law are unaffected: B, C, sigma within 2% of truth
    for res in (g, m, f):
        assert abs(res.fixed_effects["B"] / 5 - 1) < 0.02
        assert abs(res.fixed_effects["C"] / 1.5 - 1) < 0.02
        assert abs(res.sigma["a"] / 2 - 1) < 0.03


@pytest.mark.slow
def test_skewed_truth(skewed):
    law, _, fits = skewed
    g, f = fits["gaussian"], fits["flow"]
    # acceptance 2: the flow beats the Gaussian on ll.is (by more than the MC SE of the
    # difference, below 1 unit) and on the distance to the true law of log A
    assert f.loglik - g.loglik > 2
    assert _w1(f, law) < _w1(g, law)
    # the fitted law is right-skewed (truth: skewness of log A 0.89 for shape 8)
    assert f.re_summary().loc["A", "skewness_phi"] > 0.3
    assert f.re_summary().loc["A", "n_modes"] == 1


@pytest.mark.slow
def test_gaussian_truth(gaussian_truth):
    _, _, fits = gaussian_truth
    g, f = fits["gaussian"], fits["flow"]
    # acceptance 3: flows must not overfit. ll.is within 3 units of the Gaussian model's
    assert abs(f.loglik - g.loglik) <= 3, (f.loglik, g.loglik, f.estimation.law.get("penalty_cv"))
    # no spurious second mode
    assert (f.re_summary()["n_modes"] == 1).all()
    # fixed effects within 2% of the Gaussian fit
    for p in ("A", "B", "C"):
        assert abs(f.fixed_effects[p] / g.fixed_effects[p] - 1) < 0.02, p


@pytest.mark.slow
def test_flow_results_api(bimodal, tmp_path):
    _, _, fits = bimodal
    f, g, m = fits["flow"], fits["gaussian"], fits["mixture"]
    table = pymixnn.compare_fits(g, m, f)
    assert list(table.columns) == ["gaussian", "mixture", "flow"]
    assert table.loc["ll.is", "flow"] == pytest.approx(f.loglik)
    assert table.loc["AIC", "mixture"] == pytest.approx(m.aic)
    assert np.isnan(table.loc["prob.1", "gaussian"])
    assert f.df_modelwc == len(f.estimation.theta) > g.df_modelwc
    dens = f.re_density(n_samples=20_000, grid_size=100)
    assert set(dens.grid["parameter"]) == {"A", "B", "C"} and len(dens.grid) == 300
    # each marginal density integrates to 1 over its grid (trapezoid rule; the grid covers
    # the central 99.98% of the draws)
    for name, grp in dens.grid.groupby("parameter"):
        assert trapezoid(grp["density"], grp["phi"]) == pytest.approx(1.0, abs=0.02), name
    assert dens.samples.shape == (20_000, 3)
    # the joint log-density agrees with the law's own moments: Gaussian law = multivariate normal
    eta = np.zeros((1, 3))
    expected = -0.5 * np.linalg.slogdet(2 * np.pi * g.omega.to_numpy())[1]
    assert g.re_logpdf(eta)[0] == pytest.approx(expected, rel=1e-10)
    assert np.isfinite(f.re_logpdf(f.random_effects().to_numpy())).all()
    corr = f.re_correlation(n_samples=20_000)
    assert corr.shape == (3, 3) and np.allclose(np.diag(corr), 1)
    # the simulated random effects are independent: |correlation| below 0.2 under the fitted law
    assert (corr.abs().to_numpy()[~np.eye(3, dtype=bool)] < 0.2).all()
    probs = m.component_probabilities()
    assert probs.shape == (N, 2) and np.allclose(probs.sum(axis=1), 1)
    png = f.plot_random_effects(tmp_path / "re.png", truth={"A": np.log(bimodal[1].attrs["psi"]["A"])})
    assert png.stat().st_size > 10_000
    text = str(f.summary())
    # three random effects: the log-likelihood by the 7^3 rule (marginal.reported_quadrature_nodes)
    assert "normalizing-flow random effects" in text and "ll.gq" in text
    assert "Mixture components" in str(m.summary())
    # save/load keeps the law: the same density draws after reloading
    path = f.save(tmp_path / "flow.json")
    back = pymixnn.Results.load(path)
    assert back.random_effects_law == f.random_effects_law
    np.testing.assert_array_equal(
        back.re_density(n_samples=1000).samples.to_numpy(), f.re_density(n_samples=1000).samples.to_numpy()
    )


@pytest.fixture(scope="module")
def small_bimodal():
    return simulate_logistic(200, 10, laws={"A": NormalMixture1D.separated(0.4, 4.0, 0.1)}, seed=11)


@pytest.mark.slow
def test_flow_with_minibatches(small_bimodal):
    # batch_size < N: the flow's SVI stage runs on minibatches of 64 individuals
    f = _fit(small_bimodal, pymixnn.Flow(penalty=100.0), batch_size=64)
    g = _fit(small_bimodal, "gaussian", batch_size=64)
    assert f.info["seconds_by_stage"]["svi_law"] > 0
    assert f.loglik - g.loglik > 10  # bimodality: ~30 units at N = 200
    for p, truth in {"B": 5.0, "C": 1.5}.items():
        assert abs(f.fixed_effects[p] / truth - 1) < 0.03


@pytest.mark.slow
def test_mixture_components_chosen_by_bic(small_bimodal):
    res = _fit(small_bimodal, pymixnn.Mixture(n_components="auto", max_components=2))
    table = pd.DataFrame(res.estimation.law["selection"])
    assert table["n_components"].tolist() == [1, 2]
    # BIC prefers the 2 components by tens of units on this bimodal truth
    assert table.loc[1, "bic"] < table.loc[0, "bic"] - 10
    assert res.random_effects_law.n_components == 2
    assert "chosen by bic" in str(res.summary())
    # after the Newton-gear Gaussian fit the mixture goes from its EM start to the refinement
    # (MixtureLaw.skip_svi): no SVI step anywhere; after an SVI Gaussian stage SVI shapes it
    assert res.info["gear"] == "newton" and res.info["steps"] == 0 and "svi_law" in res.run.seconds
    from pymixnn.inference.laws import build_law

    law = build_law(pymixnn.Mixture(n_components=2), 3, False)
    assert law.skip_svi(200, 512, after_svi=False) and not law.skip_svi(200, 512, after_svi=True)
    svi = _fit(small_bimodal, pymixnn.Mixture(n_components=2), gear="svi")
    assert svi.info["gear"] == "svi" and svi.run.seconds["svi_law"] > 0.5
    # the same maximum either way (the refinement's tolerance, 0.01 SE; ll.is MC SE ~0.05)
    two = next(r for r in res.estimation.law["selection"] if r["n_components"] == 2)
    assert abs(svi.loglik - two["loglik"]) < 0.5


@pytest.mark.slow
def test_conditional_flow():
    # log A is N(-0.15, 0.08^2) in group 0 and N(+0.15, 0.08^2) in group 1: a law that depends on
    # the group. A flow conditioned on the group captures it; a Gaussian without the covariate
    # cannot (the marginal is bimodal)
    rng = np.random.default_rng(5)
    df = simulate_logistic(200, 10, seed=5)
    psi = df.attrs["psi"]
    group = (psi.index.to_numpy() > 100).astype(int)
    A = 100 * np.exp(np.where(group == 1, 0.15, -0.15) + 0.08 * rng.standard_normal(200))
    i = df["id"].to_numpy() - 1
    curve = 1 / (1 + np.exp(-(df["t"] - psi["B"].to_numpy()[i]) / psi["C"].to_numpy()[i]))
    df["y"] = A[i] * curve + 2.0 * rng.standard_normal(len(df))
    df["group"] = group[i]
    g = _fit(df, "gaussian")
    f = _fit(df, "flow", context=["group"], covariates=None)
    assert f.random_effects_law.context == ("group",)
    assert f.loglik - g.loglik > 10
    assert f.re_density(n_samples=5000).samples.shape == (5000, 3)
    with pytest.raises(ValueError, match="depends on its context"):
        f.re_logpdf(np.zeros((1, 3)))


@pytest.mark.slow
def test_flow_on_pk_model_with_covariates():
    df = pymixnn.datasets.load("theo")
    kw = dict(
        id="Id",
        x=["Dose", "Time"],
        y="Concentration",
        covariates={"V": ["Weight"]},
        seed=632545,
        progress=False,
    )
    g = pymixnn.fit(df, "onecpt_oral", **kw)
    f = pymixnn.fit(df, "onecpt_oral", random_effects="flow", **kw)
    # 12 subjects: cross-validation keeps the flow near the Gaussian model
    assert abs(f.loglik - g.loglik) < 3
    assert abs(f.fixed_effects["CL"] / g.fixed_effects["CL"] - 1) < 0.05
    assert "beta_Weight(V)" in f.params.index


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(random_effects="student"), "random_effects must be"),
        (dict(random_effects="gaussian", n_components=2), "n_components"),
        (dict(random_effects="mixture", n_components=1), "n_components must be"),
        (dict(random_effects="flow", context=["nope"]), "nope"),
        (dict(random_effects=pymixnn.Flow(), n_components=2), "spec object"),
    ],
)
def test_bad_random_effects_arguments(bad, match):
    df = simulate_logistic(20, 5, seed=0)
    with pytest.raises((ValueError, TypeError), match=match):
        pymixnn.fit(df, "logistic", id="id", x="t", y="y", progress=False, **bad)


def test_bad_flow_spec():
    with pytest.raises(ValueError, match="kind"):
        pymixnn.Flow(kind="planar")
    with pytest.raises(ValueError, match="penalty"):
        pymixnn.Flow(penalty=-1)
    with pytest.raises(ValueError, match="hidden"):
        pymixnn.Flow(hidden=(0,))


@pytest.mark.slow
def test_cli_mixture(tmp_path, small_bimodal):
    import json

    from pymixnn.cli import main

    path = tmp_path / "growth.csv"
    small_bimodal.to_csv(path, index=False)
    out = tmp_path / "fit.json"
    code = main(
        [
            "fit",
            str(path),
            "--model",
            "logistic",
            "--id",
            "id",
            "--x",
            "t",
            "--y",
            "y",
            "--random-effects",
            "mixture",
            "--n-components",
            "2",
            "--json",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    record = json.loads(out.read_text())
    assert record["random_effects"]["name"] == "mixture"
    assert record["random_effects"]["n_components"] == 2
    assert record["random_effects"]["df"] == 14  # 3 mu + 2 x 3 variances + 3 offsets + 1 weight + a
    assert (
        main(
            [
                "fit",
                str(path),
                "--model",
                "logistic",
                "--id",
                "id",
                "--x",
                "t",
                "--y",
                "y",
                "--random-effects",
                "mixture",
                "--n-components",
                "two",
            ]
        )
        == 2
    )


@pytest.mark.slow
def test_flow_same_seed_same_numbers():
    # seed= makes a flow fit bit-identical run to run (CV folds, draws, layer orders all seeded)
    df = simulate_logistic(80, 8, laws={"A": NormalMixture1D.separated(0.4, 4.0, 0.1)}, seed=2)
    a = _fit(df, pymixnn.Flow(penalty_grid=(10.0, 1000.0)))
    b = _fit(df, pymixnn.Flow(penalty_grid=(10.0, 1000.0)))
    np.testing.assert_array_equal(a.estimation.theta, b.estimation.theta)
    assert a.loglik == b.loglik
