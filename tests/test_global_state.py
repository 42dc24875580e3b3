"""A fit changes no global state (issue 17): the random streams of `random`, `numpy.random` and
torch continue as if no fit had run, torch's default dtype and matplotlib's backend are unchanged
after fits and plots, and no pyplot figure is left open."""

from __future__ import annotations

import random

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

import pymixnn

ORANGE = dict(
    id="Tree",
    x="age",
    y="circumference",
    init={"A": 190.0, "B": 700.0, "C": 350.0},
    random=["A"],
    max_steps=300,
    progress=False,
)


def _draws():
    return random.random(), np.random.rand(), float(torch.rand(1))


def _seed(k: int) -> None:
    random.seed(k), np.random.seed(k), torch.manual_seed(k)


def test_fits_leave_random_streams_dtype_and_backend_unchanged(tmp_path):
    df = pymixnn.datasets.load("orange")
    _seed(2024)
    expected = [_draws() for _ in range(3)]
    dtype, backend, figures = torch.get_default_dtype(), matplotlib.get_backend(), plt.get_fignums()

    _seed(2024)
    first = _draws()
    gauss = pymixnn.fit(df, "logistic", seed=5, **ORANGE)
    flow = pymixnn.fit(df, "logistic", seed=5, random_effects="flow", **ORANGE)
    # the streams resume exactly where they were, as if the two fits had not run
    assert [first, *[_draws() for _ in range(2)]] == expected
    assert torch.get_default_dtype() == dtype  # a flow once switched it to float64 for good
    assert gauss.params["estimate"].notna().all() and flow.params["estimate"].notna().all()

    _seed(7)
    before = _draws()
    gauss.plot_vpc(tmp_path / "vpc.png", n_sim=20)
    gauss.plot_individuals(tmp_path / "ind.png")
    flow.plot_random_effects(tmp_path / "re.png")
    _seed(7)
    assert _draws() == before
    assert matplotlib.get_backend() == backend and plt.get_fignums() == figures
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("vpc.png", "ind.png", "re.png"))


def test_same_seed_same_numbers_whatever_the_global_state():
    df = pymixnn.datasets.load("orange")
    _seed(1)
    a = pymixnn.fit(df, "logistic", seed=5, **ORANGE)
    _seed(99)
    np.random.rand(10), random.random(), torch.rand(5)
    b = pymixnn.fit(df, "logistic", seed=5, **ORANGE)
    assert a.params["estimate"].equals(b.params["estimate"]) and a.loglik == b.loglik


def test_a_fallback_is_counted_warned_and_shown():
    # individual means 1.1 + N(0, 0.4^2), noise sd 0.5 (tests/inference/conftest.py): draws of m
    # beyond 1.74, where the wall's exp overflows to inf, make SVI zero non-finite gradients
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        m = 1.1 + rng.normal(0, 0.4)
        rows += [(f"s{i:03d}", float(t), y) for t, y in enumerate(m + rng.normal(0, 0.5, 3 + i % 4))]
    df = pd.DataFrame(rows, columns=["id", "t", "y"])

    def wall(psi, x):
        m = psi[..., 0]
        return m + torch.exp(5000.0 * (m - 1.6)) + 0.0 * x[..., 0]

    model = pymixnn.Model(wall, ["m"], init={"m": 1.0})
    with pytest.warns(pymixnn.FallbackWarning, match="SVI zeroed non-finite gradient components"):
        res = pymixnn.fit(
            df, model, id="id", x="t", y="y", max_steps=60, refine=False, seed=0, progress=False
        )
    counts = res.run.fallbacks
    assert counts["svi_zeroed_gradient_steps"] > 0.05 * res.run.steps
    assert counts["svi_zeroed_gradient_components"] >= counts["svi_zeroed_gradient_steps"]
    assert counts["start_values_replaced"] == 0 and counts["fisher_pseudo_inverse"] >= 0
    assert "Fallbacks:" in str(res.summary()) and "svi_zeroed_gradient_steps" in str(res.summary())
    assert (
        res.to_dict()["run"]["fallbacks"]["svi_zeroed_gradient_steps"] == counts["svi_zeroed_gradient_steps"]
    )
