"""Program: the layout of theta and the log-densities against closed forms."""

import numpy as np
import torch
from scipy import stats


def test_layout_blocks(linear):
    lay = linear.program().layout
    assert (lay.mu, lay.omega, lay.error, lay.law) == (slice(0, 1), slice(1, 2), slice(2, 3), slice(3, 3))
    assert lay.size == 3 and lay.core == slice(0, 3)


def test_log_likelihood_and_prior_match_normal_densities(linear):
    MU, W, S = float(linear.theta[0]), float(linear.theta[1].exp()), float(linear.theta[2].exp())
    program = linear.program()
    eta = torch.linspace(-0.5, 0.5, program.n_individuals, dtype=torch.float64).unsqueeze(-1)
    ll = program.log_likelihood(linear.theta, eta, None).numpy()
    expected = [stats.norm(MU + e, S).logpdf(y).sum() for e, y in zip(eta[:, 0].numpy(), linear.series())]
    # the same sums in another order: rounding only
    np.testing.assert_allclose(ll, expected, rtol=1e-12)
    prior = program.log_prior(linear.theta, eta).numpy()
    np.testing.assert_allclose(prior, stats.norm(0, W).logpdf(eta[:, 0].numpy()), rtol=1e-12)


def test_offsets_are_set_explicitly(linear):
    MU = float(linear.theta[0])
    program = linear.program()
    offset = torch.full((program.n_individuals, 1), 0.25, dtype=torch.float64)
    program.set_offsets(offset, None)
    eta = torch.zeros(program.n_individuals, 1, dtype=torch.float64)
    phi = program.individual_phi(linear.theta, eta, None)
    assert torch.allclose(phi, torch.full_like(phi, MU + 0.25))
    assert float(program.law_penalty(linear.theta)) == 0.0
