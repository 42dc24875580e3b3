"""Property tests of every flow configuration (as zuko tests its flows): invertibility, the
log-determinant against autograd, shapes, gradients reaching every parameter, and the identity start
being the Gaussian law; plus the mixture law's density against scipy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from pymixnn.inference.laws import FlowLaw, GaussianLaw, MixtureLaw, tril_from_raw
from pymixnn.random_effects import FLOW_KINDS, Flow, Mixture

CONFIGS = list(itertools.product(FLOW_KINDS, (1, 2, 3), (0, 2)))


def _law(kind, d, c, **options):
    spec = Flow(kind=kind, context=["z"] if c else None, **options)
    return FlowLaw(spec, d, c, dtype=torch.float64, device=torch.device("cpu"), seed=0)


def _perturbed(law, scale=0.3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    raw = law.initial_raw(torch.float64, "cpu")
    return raw + scale * torch.randn(raw.shape, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("kind,d,c", CONFIGS)
def test_flow_invertible_and_shapes(kind, d, c):
    law = _law(kind, d, c)
    raw = _perturbed(law)
    gen = torch.Generator().manual_seed(2)
    v = 1.5 * torch.randn(4, 5, d, generator=gen, dtype=torch.float64)
    ctx = torch.randn(5, c, generator=gen, dtype=torch.float64) if c else None
    u, log_det = law.inverse(raw, v, ctx)
    assert u.shape == (4, 5, d) and log_det.shape == (4, 5)
    back = law.transform(raw, u, ctx)
    # float64 round trip; the autoregressive spline inverse is a fixed point in d passes
    assert torch.allclose(back, v, atol=1e-9), float((back - v).abs().max())
    L = torch.linalg.cholesky(torch.eye(d, dtype=torch.float64) * 0.5 + 0.1)
    assert law.log_prob(L, raw, v, ctx).shape == (4, 5)


@pytest.mark.parametrize("kind,d,c", CONFIGS)
def test_flow_log_det_matches_autograd(kind, d, c):
    law = _law(kind, d, c)
    raw = _perturbed(law)
    gen = torch.Generator().manual_seed(3)
    ctx = torch.randn(1, c, generator=gen, dtype=torch.float64) if c else None
    for _ in range(3):
        u = 1.2 * torch.randn(d, generator=gen, dtype=torch.float64)
        J = torch.autograd.functional.jacobian(lambda z: law.transform(raw, z.unsqueeze(0), ctx)[0], u)
        v = law.transform(raw, u.unsqueeze(0), ctx)
        _, log_det = law.inverse(raw, v, ctx)
        # log|det dT/du| from the layers' own formulas against the autograd Jacobian (float64)
        assert abs(float(log_det[0]) - float(torch.linalg.slogdet(J)[1])) < 1e-8


@pytest.mark.parametrize("kind,d,c", CONFIGS)
def test_flow_gradients_reach_every_parameter(kind, d, c):
    law = _law(kind, d, c)
    raw = _perturbed(law).requires_grad_(True)
    gen = torch.Generator().manual_seed(4)
    eta = torch.randn(64, d, generator=gen, dtype=torch.float64)
    ctx = torch.randn(64, c, generator=gen, dtype=torch.float64) if c else None
    L = torch.eye(d, dtype=torch.float64)
    law.log_prob(L, raw, eta, ctx).sum().backward()
    start = 0
    for name, size in zip(law.names, law.sizes):
        block = raw.grad[start : start + size]
        start += size
        # a few entries can be exactly 0 (e.g. spline bins no draw falls into, masked
        # autoregressive weights) but every parameter tensor must receive gradient
        assert torch.isfinite(block).all() and block.abs().max() > 0, name


@pytest.mark.parametrize("kind,d,c", CONFIGS)
def test_identity_start_is_the_gaussian_law(kind, d, c):
    law = _law(kind, d, c)
    raw = law.initial_raw(torch.float64, "cpu")
    gen = torch.Generator().manual_seed(5)
    eta = 0.4 * torch.randn(100, d, generator=gen, dtype=torch.float64)
    ctx = torch.randn(100, c, generator=gen, dtype=torch.float64) if c else None
    A = torch.randn(d, d, generator=gen, dtype=torch.float64)
    L = torch.linalg.cholesky(A @ A.T / d + 0.05 * torch.eye(d, dtype=torch.float64))
    flow_lp = law.log_prob(L, raw, eta, ctx)
    gauss_lp = GaussianLaw(d).log_prob(L, None, eta)
    # pyro's spline keeps the derivative at the two outer knots at 0.999: identity to ~1e-6
    assert torch.allclose(flow_lp, gauss_lp, atol=1e-5)


@pytest.mark.parametrize("shared,full", [(False, False), (True, False), (False, True)])
def test_mixture_density_matches_scipy(shared, full):
    d, K = 2, 3
    law = MixtureLaw(Mixture(n_components=K, shared_omega=shared), d, full)
    gen = torch.Generator().manual_seed(6)
    raw = torch.randn(law.n_params, generator=gen, dtype=torch.float64) * 0.5
    L = tril_from_raw(torch.tensor([-0.5, 0.2, -0.8][: 3 if full else 2], dtype=torch.float64), d, full)
    w, means, trils = law.components(L, raw)
    # centred means: E[eta] = 0, so mu is the mean of phi
    assert torch.allclose((w.unsqueeze(-1) * means).sum(0), torch.zeros(d, dtype=torch.float64), atol=1e-12)
    x = torch.randn(50, d, generator=gen, dtype=torch.float64)
    ours = law.log_prob(L, raw, x).numpy()
    ref = np.log(
        sum(
            float(w[k])
            * stats.multivariate_normal(means[k].numpy(), (trils[k] @ trils[k].T).numpy()).pdf(x.numpy())
            for k in range(K)
        )
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    draws = law.sample(L, raw, 200_000, torch.Generator().manual_seed(7))
    # Monte Carlo mean of 200,000 draws: SE ~ sd / 450 < 0.01
    assert draws.mean(0).abs().max() < 0.02
