"""The public evaluator of a fitted model (``res.evaluator``) and the feature groups of Results
(``res.law``, ``res.genomic``, ``res.run``, the fallback line of the summary), on saved fits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import pymixnn
from pymixnn.results.evaluator import FittedModel

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def theo():
    return pymixnn.Results.load(FIXTURES / "saved_v1_theo.json")


def test_evaluator_gives_the_predictions(theo):
    fm = theo.evaluator
    assert isinstance(fm, FittedModel)
    d = theo.data
    ipred = fm.predict_rows(None, "individual")
    np.testing.assert_array_equal(theo.predict(level="individual").to_numpy(), ipred[d.user_order])
    # the same numbers from the building blocks
    rows = fm.design_rows(None)
    phi = (fm.phi_population(rows["Z"]) + fm.known_offset(rows))[rows["row_ind"]]
    phi = phi + fm.eta_full(theo.estimation.eta_map)[rows["row_ind"]]
    np.testing.assert_array_equal(fm.evaluate(fm.psi(phi), rows["x"]), ipred)
    np.testing.assert_array_equal(fm.psi(fm.phi_map()), theo.individual_params().to_numpy())
    # curves: one row per phi row over an x grid
    x = rows["x"][:5]
    curves = fm.curves(fm.phi_map()[:3], x)
    assert curves.shape == (3, 5)
    np.testing.assert_array_equal(curves[1], fm.evaluate(np.repeat(fm.psi(fm.phi_map()[1:2]), 5, 0), x))
    for name in theo.model.parameters:
        k = theo.model.parameters.index(name)
        np.testing.assert_array_equal(fm.psi_column(name, fm.phi_map()[:, k]), fm.psi(fm.phi_map())[:, k])


def test_evaluator_draws_and_simulations(theo):
    fm = theo.evaluator
    eta = fm.law_draws(1000, seed=1)
    assert eta.shape == (1000, len(theo.model.random))
    np.testing.assert_array_equal(eta, fm.law_draws(1000, seed=1))
    sims = fm.simulated(3, seed=2)
    assert sims.shape == (3, theo.data.n_obs)
    sim = theo.simulate(3, seed=2)
    np.testing.assert_array_equal(sim["y_sim"].to_numpy(), sims[:, theo.data.user_order].ravel())
    assert fm.typical_phi().shape == (len(theo.model.parameters),)
    assert set(fm.family_params()) == {"a", "b"} or set(fm.family_params()) == set(theo.sigma.index)


def test_feature_groups(theo):
    assert theo.law is theo.estimation.law
    assert theo.law.penalty is None and theo.law.selection is None
    assert theo.genomic is None and not theo.is_genomic and theo.marker_matrix is None
    assert theo.run.seed == theo.info["seed"] and theo.run.fallbacks == {}
    assert "Fallbacks" not in str(theo.summary())


def test_summary_shows_fallback_counts(theo):
    from pymixnn.inference.records import RunInfo

    if "run" not in {f.name for f in dataclasses.fields(theo.estimation)}:
        pytest.skip("Estimation has no run record yet")
    run = RunInfo(
        seed=0,
        device="cpu",
        dtype="float64",
        threads=1,
        fallbacks={"zeroed_gradients": 3, "rejected_steps": 0, "replaced_starts": 1},
    )
    res = pymixnn.Results(
        model=theo.model,
        data=theo.data,
        design=theo.design,
        estimation=dataclasses.replace(theo.estimation, run=run),
        settings=theo.settings,
        info=theo.info,
        observation=theo.observation,
    )
    assert "Fallbacks: zeroed_gradients 3, replaced_starts 1" in str(res.summary())
    assert res.to_dict()["run"]["fallbacks"] == {
        "zeroed_gradients": 3,
        "rejected_steps": 0,
        "replaced_starts": 1,
    }
