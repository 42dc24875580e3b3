"""Several endpoints (DVID): each observation evaluated by its own endpoint's law, the parameters
of each endpoint apart, and the errors when an endpoint has no law."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import pymixnn
from pymixnn.model.observation.endpoints import Endpoints
from pymixnn.model.pd import turnover_model
from pymixnn.validation import InputError


def test_log_prob_is_each_endpoints_own_law():
    fam = Endpoints.build(("cp", "count"), {"count": "poisson"}, {"cp": "proportional"})
    assert fam.parameter_names(None) == ("b.cp",)
    y = torch.tensor([2.0, 3.0, 1.5], dtype=torch.float64)
    f = torch.tensor([2.5, math.log(4.0), 1.0], dtype=torch.float64)  # count: f is the log-rate
    code = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    params = fam.natural(torch.tensor([math.log(0.2)], dtype=torch.float64), None)
    lp = fam.log_prob(y, f, params, {"endpoint": code}).numpy()
    normal = lambda y, m, s: -0.5 * ((y - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)  # noqa: E731
    expected = [
        normal(2.0, 2.5, 0.2 * 2.5),
        3 * math.log(4.0) - 4.0 - math.lgamma(4.0),
        normal(1.5, 1.0, 0.2),
    ]
    np.testing.assert_allclose(lp, expected, rtol=1e-12)
    # gradients stay finite although the Gaussian law is never evaluated at a count's y
    raw = torch.tensor([math.log(0.2)], dtype=torch.float64, requires_grad=True)
    fam.log_prob(y, f.clone().requires_grad_(), fam.natural(raw, None), {"endpoint": code}).sum().backward()
    assert torch.isfinite(raw.grad).all()


def test_each_endpoint_has_its_own_error_parameters():
    fam = Endpoints.build(("cp", "pca"), {}, {"cp": "combined", "pca": "constant"})
    assert fam.parameter_names(None) == ("a.cp", "b.cp", "a.pca")
    raw = torch.log(torch.tensor([0.1, 0.2, 3.0], dtype=torch.float64))
    sd = fam.variance(
        torch.tensor([10.0, 10.0]), fam.natural(raw, None), {"endpoint": torch.tensor([0.0, 1.0])}
    )
    np.testing.assert_allclose(sd.sqrt().numpy(), [math.sqrt(0.01 + 0.04 * 100), 3.0], rtol=1e-6)


@pytest.mark.parametrize(
    ("observation", "error", "message"),
    [
        ({}, {"cp": "constant"}, r"endpoint 'pca' has no error model or observation family: give error="),
        ({"pca": "gaussian"}, {"cp": "constant"}, r"endpoint 'pca' is Gaussian but has no error model"),
        (
            {},
            {"cp": "constant", "pca": "constant", "ecg": "constant"},
            r"endpoints \['ecg'\] are not in the data",
        ),
        ({}, {"cp": "linear", "pca": "constant"}, r"error\['cp'\] must be one of"),
    ],
)
def test_an_endpoint_without_a_law_is_an_error(observation, error, message):
    with pytest.raises(InputError, match=message):
        Endpoints.build(("cp", "pca"), observation, error)


def test_fit_with_several_endpoints_needs_event_data():
    df = pymixnn.datasets.load("theo")
    with pytest.raises(InputError, match="per endpoint need event data with a DVID column"):
        pymixnn.NLME(
            df, "onecpt_oral", id="Id", x=["Dose", "Time"], y="Concentration", error={"cp": "constant"}
        )


def test_problem_with_two_endpoints_reports_each_endpoints_parameters():
    df = pymixnn.simulate.simulate_pkpd(6, design="turnover", seed=2)
    data = pymixnn.Data.from_nonmem(df)
    assert data.events.endpoints == ("cp", "pca")

    m = turnover_model(start=dict(df.attrs["truth"]["fixed"]))
    problem = pymixnn.NLME(data, m, error={"cp": "proportional", "pca": "constant"})
    assert problem.observation.parameter_names(problem.model) == ("b.cp", "a.pca")
    # the model at the truth reproduces the simulator's noiseless values closely: solve it
    truth = df.attrs["psi"]
    out = pymixnn.solve(m, data, params=truth)
    assert set(out["endpoint"]) == {"cp", "pca"}
    pca0 = out[(out.endpoint == "pca") & (out.time == 0)]["prediction"].to_numpy()
    np.testing.assert_allclose(pca0, truth["R0"].to_numpy(), rtol=1e-9)
    # pca at the truth differs from the noisy observations by the residual error only (sd 3)
    obs = data.frame[data.frame.DVID == 1]["DV"].to_numpy()
    pred = out[out.endpoint == "pca"]["prediction"].to_numpy()
    assert np.std(obs - pred) < 6.0
    assert isinstance(pd.DataFrame(out), pd.DataFrame)


def test_compartment_model_with_a_count_endpoint_fast_and_general_paths_agree():
    # the compact sum over boluses (what a fit uses) and the general superposition give the same
    # predictions for both endpoints (round-off only)
    df = pymixnn.simulate.simulate_pkpd(8, design="poisson", seed=4)
    data = pymixnn.Data.from_nonmem(df)

    def count(cp, psi):
        return torch.log(psi[..., 3]) + torch.log(psi[..., 4]) - torch.log(psi[..., 4] + cp)

    m = pymixnn.Model.named("pk1cpt_oral", parameters=["E0", "IC50"], outputs={"count": count})
    problem = pymixnn.NLME(
        data,
        m,
        error={"cp": "proportional"},
        observation={"count": "poisson"},
        init={"ka": 1.0, "CL": 0.135, "V": 8.0, "E0": 20.0, "IC50": 1.2},
    )
    f = problem.model.function
    assert f.bolus_only and problem.observation.parameter_names(problem.model) == ("b.cp",)
    x = torch.tensor(data.padded()[0])
    psi = torch.tensor([1.0, 0.135, 8.0, 20.0, 1.2], dtype=torch.float64).expand(8, 1, 5)
    fast = f(psi, x)
    f.bolus_only = False
    general = f(psi, x)
    np.testing.assert_allclose(fast.numpy(), general.numpy(), rtol=1e-12, atol=1e-12)
    # the count endpoint's log-rate at the simulator's formula
    truth = df.attrs["psi"].iloc[0]
    out = pymixnn.solve(m, data.events, params=df.attrs["psi"], times=[4.0])
    row = out[(out.ID == 1) & (out.endpoint == "count")]
    k = truth.CL / truth.V
    cp = 100 * truth.ka / (truth.V * (truth.ka - k)) * (np.exp(-k * 4) - np.exp(-truth.ka * 4))
    np.testing.assert_allclose(
        row["prediction"].to_numpy(), np.log(truth.E0 * truth.IC50 / (truth.IC50 + cp)), rtol=1e-10
    )
