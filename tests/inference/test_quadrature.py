"""Adaptive Gauss-Hermite quadrature: exact for a linear Gaussian model; the strategy choice."""

import numpy as np

from pymixnn.inference.laplace import LocalPosteriors
from pymixnn.inference.marginal import QUADRATURE_NODES, marginal_likelihood, quadrature_nodes


def test_quadrature_is_exact_for_a_gaussian_integrand(linear):
    program = linear.program()
    local = LocalPosteriors(program, program.omega_tril(linear.theta))
    local.refresh(linear.theta, None, max_iter=20, vi_iter=0)
    sampler = marginal_likelihood(program, local, 100, seed=0, likelihood="gq")
    assert sampler.quadrature == QUADRATURE_NODES[1] and sampler.n_samples == 25
    result = sampler.evaluate(linear.theta)
    # the nodes follow the exact posterior, where p(y, eta) / q(eta) is constant: exact to rounding
    np.testing.assert_allclose(result.loglik.numpy(), linear.marginal_loglik(), rtol=1e-10)
    assert float(result.mc_variance.abs().max()) == 0.0


def test_strategy_choice():
    assert quadrature_nodes(1, 1000, "is") == 0
    assert quadrature_nodes(1, 1000, "auto") == 25
    assert quadrature_nodes(2, 1000, "gq") == 15
    assert quadrature_nodes(3, 1000, "auto") == 0  # auto: one or two random effects only
    assert quadrature_nodes(3, 1000, "gq") == 7
    assert quadrature_nodes(2, 10**6, "auto") == 0  # too many nodes x observations
    assert quadrature_nodes(4, 10, "gq") == 0
    # an ODE model (each node a whole solve): fewer nodes under "auto", the full rule when asked
    assert quadrature_nodes(2, 1000, "auto", integrates=True) == 7
    assert quadrature_nodes(1, 1000, "auto", integrates=True) == 11
    assert quadrature_nodes(2, 1000, "gq", integrates=True) == 15
    assert quadrature_nodes(3, 1000, "auto", integrates=True) == 0


def test_ode_models_refine_with_fewer_draws():
    from types import SimpleNamespace

    from pymixnn.inference.options import ODE_K_OPT, EstimationOptions, sample_sizes

    data = SimpleNamespace(n_obs=1000)
    options = EstimationOptions()
    assert sample_sizes(data, options) == (5000, 200)  # K_OPT_MAX draws at most
    assert sample_sizes(SimpleNamespace(n_obs=10_000), options) == (500, 50)  # K_OPT_CELLS / n_obs
    assert sample_sizes(data, options, integrates=True) == (5000, ODE_K_OPT)
    # is_samples given by the user: taken as it is
    given = EstimationOptions(is_samples=400)
    assert sample_sizes(data, given, integrates=True) == sample_sizes(data, given)


def test_reported_strategy_of_three_random_effects():
    from pymixnn.inference.marginal import reported_quadrature_nodes

    # "auto": the 7^3 rule where its 343 nodes are no more than ll.is's draws
    assert reported_quadrature_nodes(3, 1000, "auto", False, 5000) == 7
    assert reported_quadrature_nodes(3, 20_000, "auto", False, 250) == 0  # more nodes than draws
    assert reported_quadrature_nodes(3, 1000, "auto", True, 5000) == 5  # an ODE model's rule
    assert reported_quadrature_nodes(3, 1000, "is", False, 5000) == 0  # asked for draws
    assert reported_quadrature_nodes(3, 1000, "gq", False, 5000) == 7
    assert reported_quadrature_nodes(2, 1000, "auto", False, 5000) == quadrature_nodes(2, 1000, "auto")
    assert reported_quadrature_nodes(4, 1000, "auto", False, 5000) == 0


def test_reported_loglik_of_three_random_effects_is_the_rule():
    """A logistic fit (three random effects) reports the 7^3 rule's log-likelihood: within 0.005
    of a 15^3 rule's at its estimate (the rules converge: at N = 100, 7^3 is 2e-4 from 15^3),
    and within 3 Monte Carlo SEs of ll.is with 20,000 draws at the same estimate (the same
    refinement: is_samples leaves its draws as they are); the SEs where Louis' identity on draws
    applies, as before: equal to the fit with ll.is."""
    import torch

    import pymixnn
    from pymixnn.data.table import Data
    from pymixnn.inference.importance import ImportanceSampler
    from pymixnn.inference.program import Program
    from pymixnn.model.covariates import CovariateDesign
    from pymixnn.model.named import resolve
    from pymixnn.simulate import simulate_logistic

    frame = simulate_logistic(n_individuals=60, n_obs=10, seed=3)
    kw = dict(id="id", x="t", y="y", seed=1, progress=False)
    res = pymixnn.fit(frame, "logistic", **kw)
    assert res.loglik_method == "gq" and res.estimation.quadrature_nodes == 7 and res.loglik_se == 0
    draws = pymixnn.fit(frame, "logistic", is_samples=20_000, **kw)
    assert draws.loglik_method == "is"
    np.testing.assert_array_equal(draws.estimation.theta, res.estimation.theta)
    assert abs(res.loglik - draws.loglik) < 3 * draws.loglik_se
    np.testing.assert_allclose(draws.params["se"], res.params["se"], rtol=1e-12)

    model = resolve("logistic")
    data = Data.from_pandas(frame, id="id", x="t", y="y")
    program = Program(
        model,
        data,
        CovariateDesign.build({}, data.covariates, model.parameters),
        device=torch.device("cpu"),
        dtype=torch.float64,
    )
    theta = torch.as_tensor(res.estimation.theta)
    local = LocalPosteriors(program, program.omega_tril(theta))
    local.refresh(theta, None, max_iter=50, vi_iter=0)
    fine = ImportanceSampler(program, local.loc, local.scale_tril, n_samples=1, seed=0, quadrature=15)
    assert abs(float(fine.evaluate(theta).loglik.sum()) - res.loglik) < 0.005


def test_quadrature_draws_are_the_scaled_nodes_and_their_normal_density():
    """The rule's points for scale L (proposals.quadrature_draws: the standardized nodes, kept
    by the sampler, scaled at each pass) are L z_k, and their log_q is the N(0, L L') density
    less log(K w_k), so that exp(log p - log_q) / K sums to sum_k w_k p / q: to rounding."""
    import math

    import torch

    from pymixnn.inference.proposals import quadrature_draws, quadrature_rule

    nodes, log_w = quadrature_rule(5, 2, torch.float64, torch.device("cpu"))
    L = torch.tensor([[[0.5, 0.0], [0.2, 0.3]], [[1.5, 0.0], [-0.4, 0.7]]], dtype=torch.float64)
    offset, log_q = quadrature_draws(nodes, log_w, L)
    assert offset.shape == (25, 2, 2) and log_q.shape == (25, 2)
    np.testing.assert_allclose(offset.numpy(), torch.einsum("bij,kj->kbi", L, nodes).numpy(), rtol=1e-14)
    normal = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), scale_tril=L)
    expected = normal.log_prob(offset) - log_w.unsqueeze(-1) - math.log(25)
    np.testing.assert_allclose(log_q.numpy(), expected.numpy(), rtol=1e-12)
