"""The large-N machinery of the estimation pipeline, checked at small N where the exact
computations are cheap: the per-individual (active-set) Newton modes, the Hessian from a subsample
of individuals (refinement metric, observed Fisher information) and the Newton-decrement stop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pymixnn.covariates import CovariateDesign
from pymixnn.data import Data
from pymixnn.inference.importance import ImportanceSampler
from pymixnn.inference.laplace import LocalPosteriors, _gradient_and_hessian
from pymixnn.inference.program import Program
from pymixnn.models import named
from pymixnn.simulate import simulate_logistic

# the truth of simulate_logistic on theta's scale: log A, log B, log C, log omega_sd x3, log a
TRUTH = [
    math.log(100),
    math.log(5),
    math.log(1.5),
    math.log(0.2),
    math.log(0.15),
    math.log(0.2),
    math.log(2.0),
]


def _program(n):
    df = simulate_logistic(n_individuals=n, n_obs=10, seed=3)
    model = named("logistic")
    data = Data.from_pandas(df, id="id", x="t", y="y")
    design = CovariateDesign.build({}, data.covariates, model.parameters)
    program = Program(model, data, design, device=torch.device("cpu"), dtype=torch.float64)
    assert program.layout.size == len(TRUTH)
    return program, torch.tensor(TRUTH, dtype=torch.float64)


@pytest.fixture(scope="module")
def fitted():
    program, theta = _program(1000)
    local = LocalPosteriors(program, program.omega_tril(theta))
    local.refresh(theta, None, max_iter=50, vi_iter=0)
    return program, theta, local


def test_modes_are_converged_for_every_individual(fitted):
    """Each individual leaves the Newton loop once its own step is below 1e-6, cold start from
    eta = 0 (some need 3 steps, a few over 10): at the returned modes one more Newton step must
    be tiny for every individual (quadratic convergence: below 1e-8, far under the 1e-6 at
    which it stopped), and the covariance is the inverse negative Hessian there."""
    program, theta, local = fitted
    _, grad, hess = _gradient_and_hessian(program, theta, local.loc, None)
    step = torch.linalg.solve(-hess, grad.unsqueeze(-1)).squeeze(-1)
    assert float(step.abs().max()) < 1e-8
    cov = local.scale_tril @ local.scale_tril.transpose(-1, -2)
    torch.testing.assert_close(cov, torch.linalg.inv(-hess), rtol=1e-6, atol=1e-12)


def test_subsampled_hessian_estimates_the_full_one(fitted):
    """The observed information is a sum over individuals: from 500 of 1,000 individuals scaled
    by 2, each diagonal entry's relative error is about CV(H_i) sqrt((1 - 1/2) / 500) ~ 3% (CV
    about 1 here). 12% is four such errors; the SEs (square roots of the inverse) must agree
    within 6% (half the relative error, plus the off-diagonal terms)."""
    program, theta, local = fitted
    full = ImportanceSampler(program, local.loc, local.scale_tril, n_samples=20, seed=5)
    sub = ImportanceSampler(
        program, local.loc, local.scale_tril, n_samples=20, seed=5, hessian_individuals=500
    )
    assert sub.hessian_rows.shape == (500,)
    assert bool((sub.hessian_rows.diff() > 0).all())  # sorted, no repeats
    _, h_full = full.gradient_and_hessian(theta)
    g_sub, h_sub = sub.gradient_and_hessian(theta, rows=sub.hessian_rows)
    rel = (torch.diagonal(h_sub) / torch.diagonal(h_full) - 1).abs()
    assert float(rel.max()) < 0.12, rel
    se_full = torch.diagonal(torch.linalg.inv(-h_full)).sqrt()
    se_sub = torch.diagonal(torch.linalg.inv(-h_sub)).sqrt()
    assert float((se_sub / se_full - 1).abs().max()) < 0.06
    # the same draws seed gives the same subsample (reproducible)
    again = ImportanceSampler(
        program, local.loc, local.scale_tril, n_samples=20, seed=5, hessian_individuals=500
    )
    assert torch.equal(again.hessian_rows, sub.hessian_rows)


def test_subsampled_newton_metric_reaches_the_same_maximum(fitted):
    """The refinement's Newton steps use the full-data gradient; a subsampled Hessian (with 20
    draws per individual where the sampler has more) only shapes the steps. Both runs stop at
    a Newton decrement below 1e-4 (0.01 SE from the maximum), so they must agree within
    0.03 SE on every entry of theta, and their values within 1e-3."""
    program, theta, local = fitted
    start = theta.clone()
    start[:3] += torch.tensor([0.02, -0.01, 0.02], dtype=torch.float64)
    start[3:6] += 0.1
    exact = ImportanceSampler(program, local.loc, local.scale_tril, n_samples=40, seed=9)
    sub = ImportanceSampler(
        program, local.loc, local.scale_tril, n_samples=40, seed=9, hessian_individuals=300
    )
    th_exact, v_exact = exact.maximize(start)
    th_sub, v_sub = sub.maximize(start)
    se = torch.diagonal(torch.linalg.inv(-exact.hessian(th_exact))).sqrt()
    assert float(((th_sub - th_exact).abs() / se).max()) < 0.03
    assert abs(v_sub - v_exact) < 1e-3
    # and the maximum is a maximum: the full gradient's Newton decrement there is tiny
    g = exact.gradient(th_exact)
    assert float(g @ torch.linalg.solve(-exact.hessian(th_exact), g)) < 1e-4
    assert sub._metric is not None and sub._metric.n_samples == 20


def test_subsample_of_all_individuals_is_the_exact_computation(fitted):
    """hessian_individuals >= N means no subsample: the exact path, bit for bit."""
    program, theta, local = fitted
    a = ImportanceSampler(program, local.loc, local.scale_tril, n_samples=10, seed=1)
    b = ImportanceSampler(
        program, local.loc, local.scale_tril, n_samples=10, seed=1, hessian_individuals=5000
    )
    assert b.hessian_rows is None
    ga, ha = a.difference_hessian(theta, None)  # the metric: differences of the gradient
    gb, hb = b.gradient(theta), b._newton_hessian(theta)
    assert torch.equal(ga, gb) and torch.equal(ha, hb)
    np.testing.assert_equal(a.total(theta), b.total(theta))
