"""Local posteriors: for a linear Gaussian model the Laplace approximation is the exact posterior."""

import numpy as np

from pymixnn.inference.laplace import LocalPosteriors


def test_mode_and_covariance_are_the_exact_posterior(linear):
    program = linear.program()
    local = LocalPosteriors(program, program.omega_tril(linear.theta))
    local.refresh(linear.theta, None, max_iter=20, vi_iter=0)
    mean, var = linear.posterior()
    # Newton on a quadratic converges in one step; 1e-9 leaves room for the solve's rounding
    np.testing.assert_allclose(local.loc[:, 0].numpy(), mean, atol=1e-9)
    np.testing.assert_allclose((local.scale_tril[:, 0, 0] ** 2).numpy(), var, rtol=1e-9)


def test_variational_steps_keep_the_exact_posterior(linear):
    """For a Gaussian log-density the ELBO optimum is the posterior itself: natural-gradient steps
    from it do not move it (cubature of a quadratic is exact)."""
    program = linear.program()
    local = LocalPosteriors(program, program.omega_tril(linear.theta))
    local.refresh(linear.theta, None, max_iter=20, vi_iter=2)
    mean, var = linear.posterior()
    np.testing.assert_allclose(local.loc[:, 0].numpy(), mean, atol=1e-9)
    np.testing.assert_allclose((local.scale_tril[:, 0, 0] ** 2).numpy(), var, rtol=1e-9)
