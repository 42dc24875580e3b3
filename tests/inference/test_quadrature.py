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
