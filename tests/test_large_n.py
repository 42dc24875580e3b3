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
from pymixnn.inference.laplace import LocalPosteriors
from pymixnn.inference.mode_derivatives import gradient_and_hessian
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
    _, grad, hess = gradient_and_hessian(program, theta, local.loc, None)
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
    """The refinement's Newton steps use the full-data gradient; a subsampled Hessian (Louis'
    identity on a small rule, see below) only shapes the steps. Both runs stop at
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
    # its metric: Louis' identity on the 3^3 rule (three random effects, every parameter random:
    # importance.METRIC_RULE_NODES), over the subsample's rows
    assert sub._metric is not None and sub._metric.quadrature == 3 and sub._metric.n_samples == 27


def test_subsample_of_all_individuals_is_the_exact_computation(fitted):
    """hessian_individuals >= N means no subsample: the exact path, bit for bit."""
    program, theta, local = fitted
    a = ImportanceSampler(program, local.loc, local.scale_tril, n_samples=10, seed=1)
    b = ImportanceSampler(
        program, local.loc, local.scale_tril, n_samples=10, seed=1, hessian_individuals=5000
    )
    assert b.hessian_rows is None
    ga, ha = a.gradient(theta), a._newton_hessian(theta)  # the metric (Louis' on the small rule)
    gb, hb = b.gradient(theta), b._newton_hessian(theta)
    assert torch.equal(ga, gb) and torch.equal(ha, hb)
    np.testing.assert_equal(a.total(theta), b.total(theta))


def test_derivative_chunks_give_the_same_numbers(fitted, monkeypatch):
    """From DERIVATIVE_CHUNK individuals the mode search's derivatives are taken in passes over
    chunks of them (cache-sized arrays): each individual's derivatives are its own, so the
    numbers are those of one pass over all individuals, a subset (idx) and a leading axis of
    points (the variational steps' cubature points), to rounding: an element's exp may take
    the vectorized or the scalar path by its place in the array (observed 1e-14 relative)."""
    import pymixnn.inference.mode_derivatives as derivatives

    program, theta, local = fitted
    eta = local.loc + 0.05
    idx = torch.arange(3, 900, 2)
    points = torch.stack([eta[idx], eta[idx] - 0.1, eta[idx] * 2])
    cases = [(eta, None), (eta[idx], idx), (points, idx)]
    whole = [gradient_and_hessian(program, theta, e, i) for e, i in cases]
    monkeypatch.setattr(derivatives, "DERIVATIVE_CHUNK", 97)
    for (e, i), want in zip(cases, whole):
        got = gradient_and_hessian(program, theta, e, i)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * float(b.abs().max()))


def test_identity_random_effect_map_skips_the_product(fitted):
    """Every parameter random and in order: phi = phi_population + eta exactly (eta @ A with A
    the identity, the product skipped); with a parameter without a random effect A selects."""
    program, theta, local = fitted
    assert program.a_identity
    eta = local.loc[:50] + 0.3
    idx = torch.arange(50)
    want = program.phi_population(theta, idx) + eta @ program.A
    assert torch.equal(program.individual_phi(theta, eta, idx), want)
    df = simulate_logistic(n_individuals=30, n_obs=10, seed=3)
    model = named("logistic", random=["A", "C"])
    data = Data.from_pandas(df, id="id", x="t", y="y")
    design = CovariateDesign.build({}, data.covariates, model.parameters)
    fixed_b = Program(model, data, design, device=torch.device("cpu"), dtype=torch.float64)
    assert not fixed_b.a_identity and fixed_b.A.shape == (2, 3)


def test_predicted_stop_saves_the_confirming_pass(fitted):
    """predict=True (the refinement from newton.PREDICTED_STOP_MIN individuals) stops when the
    next Newton decrement, predicted from the last two, is below its limit: here decrements
    116, 3.6, 0.30, 0.0075 (next predicted 1.9e-4, then 8.1e-5 measured), so with a limit of 3e-4
    one pass fewer. The end point is within sqrt(limit) = 0.017 SE of the maximum when the
    prediction holds (the decrement is the squared distance in SE units); 2 x that is allowed."""
    tol = 3e-4
    program, theta, local = fitted
    start = theta + torch.tensor([0.02, -0.02, 0.01, 0.1, -0.1, 0.1, 0.05], dtype=torch.float64)
    ends, passes = {}, {}
    for predict in (False, True):
        sampler = ImportanceSampler(program, local.loc, local.scale_tril, n_samples=20, seed=5)
        calls = []
        plain = sampler.value_and_gradient
        sampler.value_and_gradient = lambda th, rows=None, plain=plain, calls=calls: (
            calls.append(rows is None) or plain(th, rows)
        )
        out = sampler.maximize_report(start, predict=predict, decrement_tol=tol)
        assert out.converged
        ends[predict], passes[predict] = out.theta, sum(calls)
        info = -sampler.hessian(out.theta)
    assert passes[True] == passes[False] - 1, passes
    se = torch.linalg.inv(info).diagonal().sqrt()
    assert float(((ends[True] - ends[False]).abs() / se).max()) < 2 * tol**0.5


def test_refinement_keeps_its_draws_between_passes(fitted, monkeypatch):
    """The refinement's sampler keeps all its standardized draws (REFINE_DRAW_CACHE_CELLS; other
    samplers DRAW_CACHE_CELLS, set to 0 here): one generation per chunk and round instead of one
    per pass, and the same end point bit for bit (the kept draws are the generated ones)."""
    import pymixnn.inference.importance as importance
    from pymixnn.inference.fallbacks import Fallbacks
    from pymixnn.inference.options import EstimationOptions
    from pymixnn.inference.refine import refine_newton

    program, theta, local = fitted
    start = theta + 0.03
    monkeypatch.setattr(importance, "DRAW_CACHE_CELLS", 0)
    plain = importance.standard_t_draws
    state = {name: getattr(local, name) for name in ("loc", "scale_tril", "visited", "_centred_at")}
    ends, generated = {}, {}
    for kept in (0, importance.REFINE_DRAW_CACHE_CELLS):
        monkeypatch.setattr("pymixnn.inference.refine.REFINE_DRAW_CACHE_CELLS", kept)
        calls = []

        def counted(*a, calls=calls, **k):
            calls.append(1)
            return plain(*a, **k)

        monkeypatch.setattr(importance, "standard_t_draws", counted)
        for name in ("loc", "scale_tril", "visited", "_centred_at"):  # the fixture's, each time
            monkeypatch.setattr(local, name, state[name])
        options = EstimationOptions(seed=4, newton_individuals=None)
        ends[kept], rounds = refine_newton(
            program, start, local, options, 20, centred=False, warnings=[], fallbacks=Fallbacks()
        )
        generated[kept] = len(calls)
    assert torch.equal(ends[0], ends[importance.REFINE_DRAW_CACHE_CELLS])
    # 1,000 individuals x 20 draws x 10 cells: one chunk; each round generates once with the cache
    assert generated[importance.REFINE_DRAW_CACHE_CELLS] == rounds < generated[0], generated
