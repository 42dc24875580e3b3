"""Every named model recovers known truth on a simulation (self-start values, default transforms).

N = 300 individuals with 10-12 observations each: the fixed effects' SEs are 0.5-2%, so 5% is
> 2.5 SEs; omega2 with N = 300 has an SD of ~8% (sqrt(2/N)) plus shrinkage bias, so 35%.
"""

from __future__ import annotations

import numpy as np
import pytest

import pymixnn
from pymixnn.simulate import simulate_nlme


def gompertz(psi, x):
    return psi[..., 0] * np.exp(-np.exp(-(x[..., 0] - psi[..., 1]) / psi[..., 2]))


def asymptotic(psi, x):
    return psi[..., 0] + (psi[..., 1] - psi[..., 0]) * np.exp(-np.exp(psi[..., 2]) * x[..., 0])


def exp_growth(psi, x):
    return psi[..., 0] * (1 - psi[..., 1] * np.exp(-psi[..., 2] * x[..., 0]))


def emax(psi, x):
    return psi[..., 0] + psi[..., 1] * x[..., 0] / (psi[..., 2] + x[..., 0])


def sigmoid_emax(psi, x):
    d = x[..., 0] ** psi[..., 3]
    return psi[..., 0] + psi[..., 1] * d / (psi[..., 2] ** psi[..., 3] + d)


CASES = {
    "gompertz": (
        gompertz,
        {"A": 50.0, "B": 4.0, "C": 1.5},
        {"A": 0.04, "B": 0.02, "C": 0.03},
        np.linspace(0, 12, 12),
        1.0,
    ),
    "asymptotic": (
        asymptotic,
        {"Asym": 60.0, "R0": 5.0, "lrc": -1.5},
        {"Asym": 25.0, "R0": 1.0, "lrc": 0.04},
        np.linspace(0, 15, 10),
        1.0,
    ),
    "exp_growth": (
        exp_growth,
        {"A": 80.0, "B": 0.8, "k": 0.3},
        {"A": 0.04, "B": 0.002, "k": 0.04},
        np.linspace(0, 15, 10),
        1.0,
    ),
    "emax": (
        emax,
        {"E0": 10.0, "Emax": 100.0, "ED50": 20.0},
        {"E0": 4.0, "Emax": 0.04, "ED50": 0.09},
        np.array([0, 5, 10, 20, 40, 80, 160, 320.0]),
        2.0,
    ),
    "sigmoid_emax": (
        sigmoid_emax,
        {"E0": 10.0, "Emax": 100.0, "ED50": 20.0, "gamma": 2.0},
        {"E0": 4.0, "Emax": 0.04, "ED50": 0.09, "gamma": 0.0},
        np.array([0, 5, 10, 15, 20, 30, 40, 80, 160, 320.0]),
        2.0,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_named_model_recovers_truth(name):
    f, mu, omega2, x, a = CASES[name]
    model = pymixnn.Model.named(name)
    random = [p for p in model.parameters if omega2[p] > 0]
    df = simulate_nlme(
        f,
        model.parameters,
        mu_natural=mu,
        omega2=omega2,
        transforms=model.transforms,
        x=x,
        n_individuals=300,
        a=a,
        seed=11,
    )
    res = pymixnn.fit(df, model.replace(random=random), id="id", x="t", y="y", seed=0, progress=False)
    for p, value in mu.items():
        assert abs(res.fixed_effects[p] - value) <= 0.05 * abs(value), (p, res.fixed_effects[p])
    for p in random:
        assert abs(res.omega.loc[p, p] / omega2[p] - 1) < 0.35, (p, res.omega.loc[p, p])
    assert abs(res.sigma["a"] / a - 1) < 0.1
