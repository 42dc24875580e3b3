"""The graph-network estimator of a Matérn field (pymixnn.SpatialEstimator): the correlation
function, the simulator, the exact likelihood estimator, the network (accuracy, equivariance,
reproducibility, save/load), bad input, the CLI; the issue's acceptance (500 locations, 1,000
fields) is the slow test and ``python -m benchmarks spatial_estimator``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from scipy.spatial.distance import cdist
from scipy.special import gamma, kv

import pymixnn
from pymixnn.inference.field_likelihood import field_ml
from pymixnn.model.matern import FieldPrior, matern_correlation
from pymixnn.simulate.fields import JITTER, simulate_matern
from pymixnn.validation import InputError

PRIOR = {"range": ("uniform", 0.1, 0.6), "sd": ("uniform", 0.5, 2.0)}


@pytest.fixture(scope="module")
def trained():
    """100 locations, 12,800 training fields (~8 s on one thread)."""
    torch.set_num_threads(1)
    loc = np.random.default_rng(0).random((100, 2))
    est = pymixnn.SpatialEstimator(kind="matern", locations=loc, nu=1.5, prior=PRIOR)
    return est.train(12_800, seed=0, progress=False)


@pytest.mark.parametrize("nu", [0.5, 1.5, 2.5])
def test_matern_closed_forms_equal_the_bessel_formula(nu):
    h = np.array([0.01, 0.3, 1.0, 2.7, 8.0])
    bessel = 2 ** (1 - nu) / gamma(nu) * h**nu * kv(nu, h)
    np.testing.assert_allclose(matern_correlation(h, nu), bessel, rtol=1e-12)
    # the generic path (nu = 1, K_1) at 0 and far away
    assert matern_correlation(np.array([0.0]), 1.0)[0] == 1.0
    np.testing.assert_allclose(matern_correlation(np.array([1.0]), 1.0), kv(1, 1.0), rtol=1e-12)
    # at the range (h = sqrt(8 nu)) the correlation is about 0.13 for every nu (0.14 for 1.5)
    assert 0.08 < matern_correlation(np.array([np.sqrt(8 * nu)]), nu)[0] < 0.15


def test_simulated_fields_have_the_matern_covariance():
    loc = np.random.default_rng(3).random((6, 2))
    theta = np.tile([0.4, 1.5, 0.2], (20_000, 1))
    z = simulate_matern(loc, theta, nu=1.5, seed=4)
    kappa = np.sqrt(12) / 0.4
    want = 1.5**2 * (matern_correlation(kappa * cdist(loc, loc), 1.5) + JITTER * np.eye(6)) + 0.04 * np.eye(6)
    # 20,000 fields: a covariance entry's Monte Carlo sd is at most sqrt(2 / 20000) * 2.29 = 0.023
    np.testing.assert_allclose(np.cov(z.T), want, atol=0.09)


def test_likelihood_estimate_is_the_maximum_of_the_exact_likelihood():
    loc = np.random.default_rng(5).random((150, 2))
    z = simulate_matern(loc, np.array([[0.3, 1.2, 0.0]]), nu=1.5, mean=2.0, seed=6)[0]
    prior = FieldPrior.of(PRIOR)
    d = cdist(loc, loc)
    fit = field_ml(z, d, 1.5, prior)

    def loglik(r, sd, mu):
        cov = sd**2 * (matern_correlation(np.sqrt(12) / r * d, 1.5) + JITTER * np.eye(150))
        return stats.multivariate_normal(np.full(150, mu), cov).logpdf(z)

    assert fit.loglik == pytest.approx(loglik(fit.range, fit.sd, fit.mean), abs=1e-6)
    # no point nearby is higher (a maximum, not just a stationary point of the profile)
    for dr, ds, dm in [(1.02, 1, 0), (0.98, 1, 0), (1, 1.02, 0), (1, 0.98, 0), (1, 1, 0.05), (1, 1, -0.05)]:
        assert loglik(fit.range * dr, fit.sd * ds, fit.mean + dm) < fit.loglik
    # one field of 150 locations: the truth (0.3, 1.2) lies within about 2 SEs
    assert 0.18 < fit.range < 0.45 and 0.8 < fit.sd < 1.7


def test_likelihood_with_a_nugget_beats_the_truth_and_recovers_it():
    loc = np.random.default_rng(7).random((300, 2))
    z = simulate_matern(loc, np.array([[0.3, 1.0, 0.3]]), nu=1.5, seed=8)[0]
    prior = FieldPrior.of(dict(PRIOR, nugget=("uniform", 0.0, 0.6)))
    fit = field_ml(z, cdist(loc, loc), 1.5, prior)
    cov_true = matern_correlation(np.sqrt(12) / 0.3 * cdist(loc, loc), 1.5) + JITTER * np.eye(300)
    ll_true = stats.multivariate_normal(np.full(300, fit.mean), cov_true + 0.09 * np.eye(300)).logpdf(z)
    assert fit.loglik >= ll_true
    assert abs(fit.nugget - 0.3) < 0.12 and abs(fit.range - 0.3) < 0.12


def test_network_is_accurate_against_the_likelihood(trained):
    cmp = trained.compare(150, seed=11)
    r = cmp.ratios()
    # 12,800 training fields at 100 locations (the acceptance trains 256,000 at 500): the network's
    # RMSE within 1.15x of the likelihood's (measured 0.92 for the range, 0.93 for sd: a Bayes
    # estimator under the training prior may beat the ML) and far below the prior's spread (range
    # sd 0.144: measured RMSE 0.050)
    assert r["rmse_ratio.range"] < 1.15 and r["rmse_ratio.sd"] < 1.15
    assert cmp.table.loc[("gnn", "range"), "rmse"] < 0.5 * 0.5 / np.sqrt(12)
    # batched network vs Brent on the exact likelihood, measured 56x at 100 locations (the
    # likelihood's Cholesky grows as n^3, the network as n: 100x+ at 500, the benchmark)
    assert r["speedup"] > 20
    assert list(cmp.fields.columns[:3]) == ["true.range", "true.sd", "true.nugget"]


def test_estimates_are_equivariant_reproducible_and_survive_save_load(trained, tmp_path):
    _, z = trained.simulate(4, seed=12)
    base = trained.estimate(z)
    moved = trained.estimate(3.0 + 2.5 * z)
    # float32 network: relative agreement to 1e-4
    np.testing.assert_allclose(moved["range"], base["range"], rtol=1e-4)
    np.testing.assert_allclose(moved["sd"], 2.5 * base["sd"], rtol=1e-4)
    again = pymixnn.SpatialEstimator(kind="matern", locations=trained.locations, nu=1.5, prior=PRIOR)
    again.train(640, seed=0, progress=False)
    twin = pymixnn.SpatialEstimator(kind="matern", locations=trained.locations, nu=1.5, prior=PRIOR)
    twin.train(640, seed=0, progress=False)
    pd.testing.assert_frame_equal(again.estimate(z), twin.estimate(z))
    path = trained.save(tmp_path / "est.json")
    loaded = pymixnn.SpatialEstimator.load(path)
    pd.testing.assert_frame_equal(loaded.estimate(z), base)
    assert "trained on 12800 fields" in repr(loaded)


def test_bad_input_is_one_clear_error(trained):
    loc = pd.DataFrame({"x": np.linspace(0, 1, 12), "y": np.linspace(1, 0, 12)})
    bad = loc.astype(object)
    bad.loc[4, "y"] = "n/a"
    with pytest.raises(
        InputError, match=r"coordinate 'y' is missing or not a finite number at row 4 \(value 'n/a'"
    ):
        pymixnn.SpatialEstimator("matern", bad)
    dup = loc.copy()
    dup.loc[7] = dup.loc[2]
    with pytest.raises(InputError, match=r"rows 2 and 7 are the same location"):
        pymixnn.SpatialEstimator("matern", dup)
    with pytest.raises(InputError, match="no column"):
        pymixnn.SpatialEstimator("matern", loc, coords=["x", "z"])
    with pytest.raises(InputError, match="kind must be 'matern'"):
        pymixnn.SpatialEstimator("gp", loc)
    with pytest.raises(InputError, match="normal law reaches negative"):
        pymixnn.SpatialEstimator("matern", loc, prior={"range": ("normal", 0.3, 0.1), "sd": 1.0})
    with pytest.raises(InputError, match="not trained"):
        pymixnn.SpatialEstimator("matern", loc).estimate(np.arange(12.0))
    z = trained.simulate(1, seed=1)[1].astype(object)
    with pytest.raises(InputError, match="one value per location \\(100\\)"):
        trained.estimate(z[:, :99])
    z[0, 17] = None
    with pytest.raises(InputError, match="field 0 at location 17 is missing"):
        trained.estimate(z)
    with pytest.raises(InputError, match="field 0 is constant"):
        trained.estimate(np.ones(100))


def test_cli_trains_and_estimates(tmp_path):
    loc = np.random.default_rng(0).random((40, 2))
    pd.DataFrame(loc, columns=["x", "y"]).to_csv(tmp_path / "loc.csv", index=False)
    (tmp_path / "prior.json").write_text(
        json.dumps({"range": ["uniform", 0.1, 0.6], "sd": ["uniform", 0.5, 2]})
    )
    cmd = [sys.executable, "-m", "pymixnn"]
    out = subprocess.run(
        cmd
        + [
            "spatial-estimator",
            str(tmp_path / "loc.csv"),
            "--coords",
            "x,y",
            "--prior",
            str(tmp_path / "prior.json"),
            "--n-simulations",
            "640",
            "--no-progress",
            "--out",
            str(tmp_path / "est.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    est = pymixnn.SpatialEstimator.load(tmp_path / "est.json")
    truth, z = est.simulate(2, seed=3)
    fields = pd.DataFrame(loc, columns=["x", "y"]).assign(a=z[0], b=z[1])
    fields.to_csv(tmp_path / "fields.csv", index=False)
    res = subprocess.run(
        cmd + ["spatial-estimate", str(tmp_path / "est.json"), str(tmp_path / "fields.csv"), "--likelihood"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    table = pd.read_csv(__import__("io").StringIO(res.stdout))
    assert list(table["field"]) == ["a", "b"]
    np.testing.assert_allclose(table["gnn.range"], est.estimate(z)["range"], rtol=1e-6)
    np.testing.assert_allclose(table["likelihood.sd"], est.likelihood(z)["sd"], rtol=1e-6)
    fields.loc[5, "x"] += 0.5
    fields.to_csv(tmp_path / "moved.csv", index=False)
    res = subprocess.run(
        cmd + ["spatial-estimate", str(tmp_path / "est.json"), str(tmp_path / "moved.csv")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "row 5: x =" in res.stderr


@pytest.mark.slow
def test_acceptance_500_locations_against_the_likelihood():
    """The issue's point 4 at reduced training (128,000 fields, ~4 min; the benchmark trains
    256,000) on 300 of its fields: RMSE within 1.3x of the likelihood's, >= 100x faster."""
    torch.set_num_threads(1)
    loc = np.random.default_rng(20261204).random((500, 2))
    est = pymixnn.SpatialEstimator(
        kind="matern",
        locations=loc,
        nu=1.5,
        prior={"range": ("uniform", 0.05, 0.5), "sd": ("uniform", 0.5, 2.0)},
    )
    est.train(128_000, seed=0, progress=False)
    r = est.compare(300, seed=1).ratios()
    assert r["rmse_ratio.range"] <= 1.3 and r["rmse_ratio.sd"] <= 1.3
    assert r["speedup"] >= 100
