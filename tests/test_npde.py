"""npde and pd as the R package npde computes them (pymixnn.results.npde).

Reference numbers: tests/reference/npde/theo_npde.json, written by theo_npde.R (npde 3.5,
``autonpde(..., decorr.method = M, cens.method = "omit", ties = TRUE)``) from the theophylline
observations and 1000 replicates simulated under a pymixnn fit (theo_obs.csv, theo_sims.csv.gz,
written by export_theo.py); Python reads the same rounded replicates, so the numbers agree to
rounding error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import linalg, stats

import pymixnn
from pymixnn.results.npde import npde_from_simulations, npde_results, npde_tests
from tests.r_helpers import REFERENCE_DIR, run_rscript

NPDE_DIR = REFERENCE_DIR / "npde"
METHODS = ("cholesky", "inverse", "polar")


@pytest.fixture(scope="module")
def theo():
    """The committed observations, replicates (n_sim, n_obs) and npde's results."""
    obs = pd.read_csv(NPDE_DIR / "theo_obs.csv")
    ysim = pd.read_csv(NPDE_DIR / "theo_sims.csv.gz")["ysim"].to_numpy()
    ref = json.loads((NPDE_DIR / "theo_npde.json").read_text())
    return obs, ysim.reshape(-1, len(obs)), ref


@pytest.mark.parametrize("method", METHODS)
def test_pd_and_npde_match_the_npde_package(theo, method):
    obs, sims, ref = theo
    r = ref["results"][method]
    table = npde_from_simulations(obs["y"], obs["id"], sims, decorr_method=method)
    # tolerance: 1e-6. Same inputs, same algorithm: the differences are floating-point rounding of the
    # decorrelation (about 1e-14 seen); one replicate counted on the other side would move a
    # pde by 1/1000 and its npde by more than 1e-3, far above this tolerance.
    np.testing.assert_allclose(table["npde"], r["npde"], rtol=0, atol=1e-6)  # x@results@res$npde
    np.testing.assert_allclose(table["pd"], r["pd"], rtol=0, atol=1e-6)  # x@results@res$pd
    np.testing.assert_allclose(table["npd"], r["npd"], rtol=0, atol=1e-6)  # qnorm(x@results@res$pd)
    np.testing.assert_allclose(table["ypred"], r["ypred"], rtol=0, atol=1e-6)  # x@results@res$ypred


@pytest.mark.parametrize("method", METHODS)
def test_tests_match_gof_test(theo, method):
    obs, sims, ref = theo
    r = ref["results"][method]
    tests = npde_tests(npde_from_simulations(obs["y"], obs["id"], sims, decorr_method=method)["npde"])
    g = r["gof"]
    # gof.test(x)$p.value: Bonferroni-adjusted p-values as npde prints them.
    # tolerance: 0.01 absolute, the brief's bound; with the same npde they agree to about 1e-10
    # (scipy's and R's Shapiro-Wilk are two ports of Royston's AS R94), checked more tightly below.
    adjusted = [g["p_mean"], g["p_variance"], g["p_normality"], g["p_global"]]
    np.testing.assert_allclose(tests["p_value"], adjusted, rtol=0, atol=0.01)
    # t.test(npde)$p.value, 2*min(pchisq(chi), 1-pchisq(chi)), shapiro.test(npde)$p.value
    # tolerance: rtol 1e-6: R's and scipy's Shapiro-Wilk W agree to 2e-11 here (single-precision
    # constants in both ports), its p-value to 3e-9 relative; the t and chi-square tests to 1e-14.
    raw = [r["p_raw"]["mean"], r["p_raw"]["variance"], r["p_raw"]["normality"]]
    np.testing.assert_allclose(tests["p_value_raw"].iloc[:3], raw, rtol=1e-6)
    s = r["statistics"]  # t.test(npde)$statistic, var(npde)*(n-1), shapiro.test(npde)$statistic
    np.testing.assert_allclose(tests["statistic"].iloc[:3], [s["t"], s["chi2"], s["shapiro_w"]], rtol=1e-8)
    for key in ("mean", "se_mean", "variance", "se_variance", "skewness", "kurtosis"):  # gof.test(x)$...
        # tolerance: 1e-9 relative, the same sums in another order.
        assert tests.attrs[key] == pytest.approx(g[key], rel=1e-9, abs=1e-12), key
    assert tests.attrs["n_obs"] == g["n_obs"]


def _npde_installed() -> str | None:
    """Why the live npde check cannot run, or None when it can."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return "Rscript not found on PATH"
    probe = (
        '.libPaths(c(Sys.getenv("NPDE_LIB", "/opt/rlib-npde"), .libPaths())); '
        "suppressPackageStartupMessages({library(npde); library(jsonlite)})"
    )
    done = subprocess.run([rscript, "-e", probe], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        lib = os.environ.get("NPDE_LIB", "/opt/rlib-npde")
        return f"R package npde (CRAN only) not installed in NPDE_LIB={lib}: see tests/reference/README.md"
    return None


def test_live_npde_rerun_reproduces_the_committed_json(theo, tmp_path):
    reason = _npde_installed()
    if reason is not None:
        pytest.skip(reason)
    run_rscript(NPDE_DIR / "theo_npde.R", NPDE_DIR, tmp_path / "out.json", timeout=300)
    fresh = json.loads((tmp_path / "out.json").read_text())
    obs, sims, ref = theo
    for method in METHODS:
        table = npde_from_simulations(obs["y"], obs["id"], sims, decorr_method=method)
        # tolerance: 1e-6 as above (npde itself is deterministic with ties = TRUE)
        np.testing.assert_allclose(table["npde"], fresh["results"][method]["npde"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(table["pd"], fresh["results"][method]["pd"], rtol=0, atol=1e-6)


def _random_intercept_model(rng, n_rep, n_ind=200, times=(0.5, 1.0, 2.0, 4.0, 8.0)):
    """Draws (n_rep, n_ind * n_times) of y_ij = 2 + 0.3 t_j + b_i + e_ij, b_i ~ N(0, 1), e_ij ~
    N(0, 0.5^2), with the mean and covariance of one individual's vector."""
    t = np.asarray(times)
    mean = 2 + 0.3 * t
    cov = np.ones((t.size, t.size)) + 0.25 * np.eye(t.size)
    b = rng.normal(0, 1, (n_rep, n_ind, 1))
    e = rng.normal(0, 0.5, (n_rep, n_ind, t.size))
    return (mean + b + e).reshape(n_rep, -1), mean, cov, np.repeat(np.arange(n_ind), t.size)


def test_npde_under_the_true_model_are_standard_normal():
    rng = np.random.default_rng(2024)
    y, mean, cov, ids = _random_intercept_model(rng, 1)
    sims, *_ = _random_intercept_model(rng, 2000)
    table = npde_from_simulations(y[0], ids, sims)
    # Closed form: with the true mean and covariance, npde -> L^-1 (y_i - mean) as K grows (L the
    # Cholesky factor of the covariance), independent N(0, 1) values.
    exact = linalg.solve_triangular(
        np.linalg.cholesky(cov), (y[0].reshape(-1, mean.size) - mean).T, lower=True
    )
    exact = exact.T.ravel()
    central = np.abs(exact) < 2
    # tolerance: with K = 2000 the empirical cdf has sd sqrt(p(1-p)/K) <= 0.011, i.e. up to 0.06 on
    # the npde scale at |z| = 2 (0.03 at z = 0), and the estimated mean and covariance add about
    # |z|/sqrt(K); the largest of these 960 errors is 0.23 here (about 4 sd), the mean 0.038. A
    # wrong decorrelation (e.g. none: marginal standardisation) gives errors of order 1.
    diff = np.abs(table["npde"].to_numpy() - exact)[central]
    assert diff.max() < 0.35 and diff.mean() < 0.06
    tests = npde_tests(table["npde"])
    # tolerance: under the true model each raw p-value is U(0, 1); with this fixed seed none
    # falls below 0.05 (a wrong variance or decorrelation gives p-values near 0 with 1000 npde).
    assert (tests["p_value_raw"] > 0.05).all()
    assert abs(tests.attrs["mean"]) < 3 * tests.attrs["se_mean"]
    assert abs(tests.attrs["variance"] - 1) < 3 * tests.attrs["se_variance"]


def test_ties_and_jitter_follow_npde():
    ids = np.array([1, 1, 2])
    sims = np.random.default_rng(0).normal(size=(100, 3))
    table = npde_from_simulations([50.0, -50.0, 0.0], ids, sims)
    # ties = TRUE: pd of 1 and 0 become 1 - 1/(2K) and 1/(2K) (npde's computepd)
    assert table["pd"].iloc[0] == 1 - 1 / 200 and table["pd"].iloc[1] == 1 / 200
    jit = npde_from_simulations([50.0, -50.0, 0.0], ids, sims, ties=False, seed=3)
    again = npde_from_simulations([50.0, -50.0, 0.0], ids, sims, ties=False, seed=3)
    pd.testing.assert_frame_equal(jit, again)  # the jitter is seeded
    k = np.sum(sims[:, 2] < 0.0)
    assert 0.99 <= jit["pd"].iloc[0] <= 1 and 0 <= jit["pd"].iloc[1] <= 0.01
    assert k / 100 <= jit["pd"].iloc[2] <= (k + 1) / 100


def test_omitted_rows_and_failed_decorrelation():
    rng = np.random.default_rng(1)
    ids, sims = np.repeat([1, 2], 3), rng.normal(size=(200, 6))
    table = npde_from_simulations(rng.normal(size=6), ids, sims, omit=[0, 0, 1, 0, 0, 0])
    assert table.loc[2].isna().all() and table.drop(index=2).notna().all().all()
    sims[:, 4] = 1.0  # no variance: the covariance of individual 2 cannot be factorised
    with pytest.warns(RuntimeWarning, match="individual 2"):
        failed = npde_from_simulations(rng.normal(size=6), ids, sims)
    assert failed["npde"].isna().all() and failed["pd"].notna().all()  # npde gives pd only
    assert "cholesky" in failed.attrs["decorrelation_error"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(y=np.zeros((2, 3))), "one-dimensional"),
        (dict(ids=np.zeros(5)), "ids must have the shape"),
        (dict(sims=np.zeros((10, 5))), "sims must have shape"),
        (dict(sims=np.zeros(6)), "sims must have shape"),
        (dict(decorr_method="svd"), "decorr_method"),
    ],
)
def test_bad_input_gives_one_clear_error(kwargs, match):
    args = dict(y=np.zeros(6), ids=np.repeat([1, 2], 3), sims=np.zeros((10, 6)))
    args.update(kwargs)
    y, ids, sims = args.pop("y"), args.pop("ids"), args.pop("sims")
    with pytest.raises(ValueError, match=match):
        npde_from_simulations(y, ids, sims, **args)


@pytest.mark.parametrize("n_sim", [0, -5, 99, 1000.0, True])
def test_bad_n_sim_is_refused_before_any_work(n_sim):
    with pytest.raises(ValueError, match="n_sim must be an integer >= 100"):
        npde_results(None, n_sim=n_sim)


def test_discrete_fits_are_refused():
    fake = SimpleNamespace(observation=SimpleNamespace(name="poisson"))
    with pytest.raises(ValueError, match="continuous observations.*'poisson'"):
        npde_results(fake)
    with pytest.raises(ValueError, match="npde_tests needs at least 3"):
        npde_tests([0.1, np.nan, 0.2])


def test_npde_results_on_a_fit_in_the_users_row_order():
    df = pymixnn.datasets.load("theo").sample(frac=1.0, random_state=7)  # individuals interleaved
    res = pymixnn.fit(
        df,
        "onecpt_oral",
        id="Id",
        x=["Dose", "Time"],
        y="Concentration",
        covariates={"V": ["Weight"]},
        init={"ka": 1.0, "V": 20.0, "CL": 0.5},
        seed=3,
        progress=False,
        max_steps=300,
    )
    table = npde_results(res, n_sim=200, seed=5)
    assert table.index.equals(df.index)
    np.testing.assert_array_equal(table["Concentration"], df["Concentration"])
    d = res.data
    sims = res.evaluator.simulated(200, seed=5)
    direct = npde_from_simulations(d.y, d.frame[d.id_col].to_numpy(), sims).iloc[d.user_order]
    np.testing.assert_array_equal(table["npde"], direct["npde"])  # same simulations, same numbers
    tests = pd.DataFrame.from_dict(table.attrs["tests"], orient="index")
    assert list(tests.index) == ["mean", "variance", "normality", "global"]
    assert table.attrs["n_sim"] == 200 and table.attrs["decorr_method"] == "cholesky"
    assert stats.norm.cdf(table["npde"]).min() > 0
