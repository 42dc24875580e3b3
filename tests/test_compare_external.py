"""A bridge fit is held as another program's record (pymixnn.results.external.ExternalFit): no
pymixnn parameter vector or ELBO trace is made up, what needs them says so, and what the program's
estimates determine (predictions, residuals, simulations from N(0, omega), the summary, save/load)
works from them. nlme on Orange, against nlme's own fitted values (R through Rscript)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from r_helpers import run_rscript

import pymixnn
from pymixnn import compare, datasets
from pymixnn.results.external import ExternalFit

needs_r = pytest.mark.skipif(not compare.r_available(), reason="R or rpy2 is not installed")

ORANGE = dict(
    id="Tree",
    x="age",
    y="circumference",
    transforms="identity",
    random=["A"],
    init={"A": 170, "B": 700, "C": 350},
)

# nlme on Orange as tests/reference/nlme_direct.R fits it, with its fitted values at both levels
_FITTED_R = """
suppressPackageStartupMessages({ library(nlme); library(jsonlite) })
args <- commandArgs(trailingOnly = TRUE)
orange <- read.csv(args[1])
orange$Tree <- factor(orange$Tree, levels = unique(orange$Tree))
fo <- nlme(circumference ~ SSlogis(age, Asym, xmid, scal), data = orange,
           fixed = Asym + xmid + scal ~ 1, random = Asym ~ 1, groups = ~ Tree,
           start = c(Asym = 170, xmid = 700, scal = 350), method = "ML",
           control = nlmeControl(maxIter = 200, msMaxIter = 200, pnlsMaxIter = 20))
f <- fitted(fo, level = 0:1)
writeLines(toJSON(list(pred = unname(f[, 1]), ipred = unname(f[, 2]),
                       resid = unname(residuals(fo, level = 1))), digits = NA), args[2])
"""


@pytest.fixture(scope="module")
def orange_fit():
    return compare.nlme(datasets.load("orange"), "logistic", **ORANGE)


@pytest.fixture(scope="module")
def nlme_fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nlme_fitted")
    script, csv, out = tmp / "fitted.R", tmp / "orange.csv", tmp / "out.json"
    script.write_text(_FITTED_R)
    datasets.load("orange").to_csv(csv, index=False)
    run_rscript(script, csv, out)
    return json.loads(out.read_text())


@needs_r
def test_bridge_results_hold_the_external_record(orange_fit):
    res = orange_fit
    ext = res.external
    assert isinstance(ext, ExternalFit) and res.estimation is ext
    assert ext.engine.startswith("nlme ") and res.engine == ext.engine
    # nothing pymixnn-only is made up: no parameter vector, no ELBO trace, no IS output
    for name in ("theta", "theta_cov", "elbo_trace", "psi_mean", "eta_mean", "loglik_individual"):
        assert not hasattr(ext, name)
    assert res.law is None and res.run is None and res.random_effects_law.name == "gaussian"
    assert res.df_modelwc == len(ext.table) == 5 and np.isnan(res.loglik_se)
    with pytest.raises(ValueError, match=r"not available for a fit by nlme .*use kind=\"map\""):
        res.individual_params("mean")
    with pytest.raises(ValueError, match="not available for a fit by nlme"):
        res.random_effects("mean")
    with pytest.raises(ValueError, match="only for random_effects='mixture'"):
        res.component_probabilities()


@needs_r
def test_bridge_predictions_equal_nlme_fitted_values(orange_fit, nlme_fitted):
    res = orange_fit
    # the bridge's optimum equals nlme's to ~1e-8 relative (numerical vs analytic derivatives)
    np.testing.assert_allclose(res.predict(level="population"), nlme_fitted["pred"], rtol=1e-6)
    np.testing.assert_allclose(res.predict(level="individual"), nlme_fitted["ipred"], rtol=1e-6)
    np.testing.assert_allclose(res.fittedvalues, nlme_fitted["ipred"], rtol=1e-6)
    np.testing.assert_allclose(res.resid, nlme_fitted["resid"], rtol=1e-5, atol=1e-5)
    table = res.residuals()
    np.testing.assert_allclose(table["ipred"], nlme_fitted["ipred"], rtol=1e-6)
    np.testing.assert_allclose(table["iwres"], table["ires"] / res.sigma["a"], rtol=1e-12)
    # individual parameters: the population ones plus nlme's random effects
    psi = res.individual_params()
    np.testing.assert_allclose(psi["A"] - res.fixed_effects["A"], res.random_effects()["A"], rtol=1e-10)


@needs_r
def test_bridge_summary_intervals_and_comparison(orange_fit):
    res = orange_fit
    text = str(res.summary())
    assert "fitted by nlme " in text and "(through pymixnn.compare)" in text
    assert "seed None" not in text and "logLik" in text
    assert "Convergence: yes (the estimation engine reported convergence)" in text
    ci = res.conf_int()
    assert (ci["lower"] < res.params["estimate"]).loc[["A", "B", "C"]].all()
    cov = res.cov_params()
    np.testing.assert_allclose(np.diag(cov), res.bse**2)
    table = pymixnn.compare_fits(res)
    assert table.loc["engine"].iloc[0] == res.engine and table.loc["df"].iloc[0] == 5


@needs_r
def test_bridge_simulations_draw_from_the_gaussian_law(orange_fit):
    res = orange_fit
    eta = res.evaluator.law_draws(20_000, seed=3)
    assert eta.shape == (20_000, 1)
    assert eta.var() == pytest.approx(res.omega.loc["A", "A"], rel=0.05)
    np.testing.assert_array_equal(eta, res.evaluator.law_draws(20_000, seed=3))
    sims = res.simulate(3, seed=1)
    assert len(sims) == 3 * res.nobs and np.isfinite(sims["y_sim"]).all()
    vpc = res.vpc(n_sim=20, seed=1)
    assert {"sim_median", "sim_lower", "sim_upper"} <= set(vpc.columns)
    logpdf = res.re_logpdf(np.zeros((1, 1)))
    assert logpdf[0] == pytest.approx(-0.5 * np.log(2 * np.pi * res.omega.loc["A", "A"]))
    assert res.shrinkage.shape == (1,)


@needs_r
def test_bridge_results_save_and_load(orange_fit, tmp_path):
    res = orange_fit
    back = pymixnn.Results.load(res.save(tmp_path / "nlme.json"))
    assert isinstance(back.external, ExternalFit) and back.engine == res.engine
    pd.testing.assert_frame_equal(back.params, res.params)
    pd.testing.assert_series_equal(back.predict(level="individual"), res.predict(level="individual"))
    assert back.loglik == res.loglik and back.loglik_method == "nlme.ML"
    assert back.to_json() == res.to_json()
    record = json.loads((tmp_path / "nlme.json").read_text())
    assert "external" in record and "estimation" not in record


def test_saemix_shaped_record_without_r(tmp_path):
    """A saemix-like record (ll.is, a covariate effect, full omega) built without R: the Results
    works from its estimates alone, and what needs pymixnn's own output says which engine."""
    from pymixnn.compare.translation import external_fit, external_results, table_row

    theo = datasets.load("theo")
    problem = pymixnn.NLME(
        theo,
        "onecpt_oral",
        id="Id",
        x=["Dose", "Time"],
        y="Concentration",
        covariates={"V": ["Weight"]},
        omega="full",
    )
    mu_nat = {"ka": (1.6, 0.3), "V": (31.0, 1.5), "CL": (2.7, 0.2)}
    beta = [0.01]
    omega = np.array([[0.4, 0.01, 0.02], [0.01, 0.02, 0.005], [0.02, 0.005, 0.07]])
    rows = [table_row(p, "fixed", p, v, se, "log") for p, (v, se) in mu_nat.items()]
    rows.insert(2, table_row(problem.design.names[0], "beta", "V", beta[0], 0.005, "identity"))
    rows += [
        table_row(f"omega2.{p}", "omega", p, omega[k, k], 0.01, "log")
        for k, p in enumerate(["ka", "V", "CL"])
    ]
    rows.append(table_row("a", "sigma", "a", 0.7, 0.05, "log"))
    n = problem.data.n_individuals
    psi = np.tile([mu_nat[p][0] for p in ("ka", "V", "CL")], (n, 1)) * np.linspace(0.9, 1.1, n)[:, None]
    ext = external_fit(
        problem,
        rows,
        omega,
        {"a": 0.7},
        psi,
        -180.0,
        "is",
        2.5,
        engine="saemix 3.4",
        se_method="saemix: linearisation",
        settings=dict(seed=632545, nmc_is=5000),
        beta=np.array(beta),
        mu_natural=mu_nat,
    )
    res = external_results(problem, ext)
    np.testing.assert_allclose(res.individual_params().to_numpy(), psi, rtol=1e-10)
    assert res.df_modelwc == len(rows) and res.aic == pytest.approx(360.0 + 2 * len(rows))
    text = str(res.summary())
    assert "fitted by saemix 3.4" in text and "seed 632545, 2.5 s in R" in text
    assert "5000 draws per individual" in text
    assert res.simulate(2, seed=0).shape[0] == 2 * res.nobs
    assert res.re_density(n_samples=2000, grid_size=20).law == "gaussian"
    back = pymixnn.Results.load(res.save(tmp_path / "saemix.json"))
    assert back.to_json() == res.to_json()
    np.testing.assert_array_equal(back.external.eta_map, ext.eta_map)
