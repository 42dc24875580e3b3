"""The minibatch SVI loop on the linear model: it moves theta towards the maximum, and counts the
non-finite gradient components it zeroes."""

import math

import torch

from pymixnn.inference.fallbacks import Fallbacks
from pymixnn.inference.laplace import LocalPosteriors
from pymixnn.inference.svi import SVIOptions, _epoch_order, _zero_nonfinite, run_svi


def test_svi_improves_the_elbo_and_counts_steps(linear):
    import pyro

    program = linear.program()
    start = torch.tensor([0.5, math.log(0.8), math.log(0.8)], dtype=torch.float64)
    local = LocalPosteriors(program, program.omega_tril(start))
    fallbacks = Fallbacks()
    pyro.set_rng_seed(0)
    theta, trace = run_svi(
        program,
        start,
        local,
        SVIOptions(batch_size=10, max_steps=200, min_steps=50, lr=0.05, progress=False),
        torch.Generator().manual_seed(0),
        fallbacks=fallbacks,
    )
    assert trace.steps == fallbacks.svi_steps and trace.steps <= 200
    assert fallbacks.counts["svi_zeroed_gradient_steps"] == 0
    # the mean moved most of the way from 0.5 to the data's ~1.1 (SGD noise: a loose bound)
    assert abs(float(theta[0]) - 1.1) < 0.25
    assert sum(trace.elbo[-20:]) > sum(trace.elbo[:20])


def test_zeroed_gradient_components_are_counted():
    fallbacks = Fallbacks()
    g = torch.tensor([1.0, float("nan"), float("inf"), 2.0])
    out = _zero_nonfinite(g, fallbacks)
    assert out.tolist() == [1.0, 0.0, 0.0, 2.0]
    assert fallbacks.counts["svi_zeroed_gradient_steps"] == 1
    assert fallbacks.counts["svi_zeroed_gradient_components"] == 2
    _zero_nonfinite(torch.ones(3), fallbacks)
    assert fallbacks.counts["svi_zeroed_gradient_steps"] == 1


def test_epoch_order_keeps_groups_together():
    groups = torch.tensor([0, 1, 0, 2, 1, 2])
    order = _epoch_order(6, groups, torch.Generator().manual_seed(0))
    seen = groups[order].tolist()
    assert sorted(order.tolist()) == list(range(6))
    assert all(seen[2 * k] == seen[2 * k + 1] for k in range(3))  # pairs of one group
