"""Law plug-ins: densities against closed forms, moments against sampling, reported rows, registry."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.integrate import trapezoid

from pymixnn.inference.laws import (
    REGISTRY,
    FlowLaw,
    GaussianLaw,
    MixtureLaw,
    build_law,
    plugin,
    raw_from_tril,
    tril_from_raw,
)
from pymixnn.model.random_effects import Flow, Gaussian, Mixture

D64 = torch.float64


def _L():
    return torch.tensor([[0.5, 0.0], [0.2, 0.3]], dtype=D64)


def test_registry_and_build():
    assert REGISTRY[Gaussian] is GaussianLaw and plugin(Mixture()) is MixtureLaw
    assert isinstance(build_law(Flow(), 2, True, seed=1), FlowLaw)
    with pytest.raises(TypeError, match="unknown random-effects law"):
        build_law("gaussian", 2, True)
    assert Gaussian().context_columns == () and Mixture().context_columns == ()
    assert Flow(context=["sex"]).context_columns == ("sex",) and Flow().context_columns == ()


def test_log_cholesky_round_trip():
    L = _L()
    for full in (True, False):
        M = L if full else torch.diag(torch.diagonal(L))
        assert torch.allclose(tril_from_raw(raw_from_tril(M, full), 2, full), M, atol=1e-15)


def test_gaussian_density_and_moments():
    law, L = GaussianLaw(2), _L()
    eta = torch.randn(7, 2, generator=torch.Generator().manual_seed(0), dtype=D64)
    expected = stats.multivariate_normal(np.zeros(2), (L @ L.T).numpy()).logpdf(eta.numpy())
    np.testing.assert_allclose(law.log_prob(L, torch.zeros(0), eta).numpy(), expected, rtol=1e-12)
    mean, cov = law.moments(L, torch.zeros(0))
    assert torch.equal(mean, torch.zeros(2, dtype=D64)) and torch.allclose(cov, L @ L.T)


def test_mixture_density_moments_and_sampling():
    spec = Mixture(n_components=2)
    law, L = MixtureLaw(spec, 2, True), _L()
    raw = torch.tensor([0.4, 1.0, -0.5, -0.3, 0.1, -0.2], dtype=D64)  # logit | offset | log-Cholesky
    assert raw.numel() == law.n_params
    w, means, trils = law.components(L, raw)
    eta = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=D64)
    expected = sum(
        float(w[k])
        * stats.multivariate_normal(means[k].numpy(), (trils[k] @ trils[k].T).numpy()).pdf(eta.numpy())
        for k in range(2)
    )
    np.testing.assert_allclose(law.log_prob(L, raw, eta).numpy(), np.log(expected), rtol=1e-12)
    mean, cov = law.moments(L, raw)
    assert float(mean.abs().max()) < 1e-14  # centred by construction
    draws = law.sample(L, raw, 200_000, torch.Generator().manual_seed(2))
    # Monte Carlo: 200,000 draws, SE of a covariance entry ~ 0.003 here; 5 SE
    np.testing.assert_allclose(torch.cov(draws.T).numpy(), cov.numpy(), atol=0.015)
    np.testing.assert_allclose(draws.mean(0).numpy(), mean.numpy(), atol=0.01)


def test_flow_at_identity_is_the_gaussian_law_and_integrates_to_one():
    L = _L()
    flow = FlowLaw(Flow(), 2, 0, dtype=D64, device=torch.device("cpu"), seed=0)
    eta = torch.randn(6, 2, generator=torch.Generator().manual_seed(3), dtype=D64)
    raw = flow.initial_raw(D64, "cpu")
    # the identity holds only approximately (pyro fixes the boundary knots' derivatives at 0.999,
    # not 1): a few 1e-3 in the log-density
    np.testing.assert_allclose(
        flow.log_prob(L, raw, eta).numpy(), GaussianLaw(2).log_prob(L, raw, eta).numpy(), atol=5e-3
    )
    # a 1-d flow away from the identity: its density integrates to 1 (trapezoid on a fine grid)
    flow1 = FlowLaw(Flow(), 1, 0, dtype=D64, device=torch.device("cpu"), seed=0)
    raw1 = flow1.initial_raw(D64, "cpu") + 0.3 * torch.randn(
        flow1.n_params, dtype=D64, generator=torch.Generator().manual_seed(4)
    )
    grid = torch.linspace(-8, 8, 20001, dtype=D64).unsqueeze(-1)
    with torch.no_grad():
        dens = flow1.log_prob(torch.ones(1, 1, dtype=D64), raw1, grid).exp().numpy()
    assert abs(trapezoid(dens, grid[:, 0].numpy()) - 1) < 1e-4  # np.trapz: gone in NumPy 2.4


def test_flow_moments_match_sampling_and_dtype_is_untouched():
    before = torch.get_default_dtype()
    L = _L()
    flow = FlowLaw(Flow(kind="affine_autoregressive"), 2, 0, dtype=D64, device=torch.device("cpu"), seed=0)
    raw = flow.initial_raw(D64, "cpu") + 0.2 * torch.randn(
        flow.n_params, dtype=D64, generator=torch.Generator().manual_seed(5)
    )
    with torch.no_grad():
        mean, cov = flow.moments(L, raw, n=100_000, seed=0)
        draws = flow.sample(L, raw, 100_000, torch.Generator().manual_seed(6))
        u, log_det = flow.inverse(raw, draws[:10] @ torch.linalg.inv(L).T)
    # two Monte Carlo estimates of 100,000 draws each: agree to a few of their SEs (~0.002)
    np.testing.assert_allclose(draws.mean(0).numpy(), mean.numpy(), atol=0.01)
    np.testing.assert_allclose(torch.cov(draws.T).numpy(), cov.numpy(), atol=0.01)
    assert u.dtype == D64 and torch.get_default_dtype() == before


def test_reported_rows(linear):
    from pymixnn.inference.program import Program

    program = linear.program(law=Mixture(n_components=2), seed=0)
    names, kinds, _, scales, values = program.law.reported(program, linear.design, 0)
    assert names == ["m", "prob.1", "prob.2", "mean.1.m", "mean.2.m", "omega2.1.m", "omega2.2.m", "a"]
    assert kinds[1:3] == ["law", "law"] and scales[1] == "logit"
    theta = torch.zeros(program.layout.size, dtype=D64)
    theta[:3] = linear.theta
    out = values(theta)
    assert out.shape == (8,) and math.isclose(float(out[1] + out[2]), 1.0)
    gauss = linear.program()
    names, *_ = gauss.law.reported(gauss, linear.design)
    assert names == ["m", "omega2.m", "a"]
    flow = linear.program(law=Flow(), seed=0)
    assert flow.law.fisher_index(flow.layout) == [0, 1, 2] and gauss.law.fisher_index(gauss.layout) is None
    assert isinstance(program, Program)


def test_gaussian_log_prob_paths_agree():
    """The three ways of gaussian_log_prob give log N(eta; 0, L L') (scipy): the broadcast
    solve (few rows), the product with L^-1 (``fast_rows`` reached) and, for a diagonal L, the
    elementwise product, which gives the very numbers of the product with L^-1 (its zeros add
    nothing), gradient in eta included."""
    from pymixnn.inference.laws.base import gaussian_log_prob

    gen = torch.Generator().manual_seed(3)
    eta = torch.randn(7, 40, 3, generator=gen, dtype=D64)
    full = torch.tensor([[0.5, 0.0, 0.0], [0.2, 0.3, 0.0], [-0.1, 0.4, 0.7]], dtype=D64)
    diag = torch.diag(torch.tensor([0.5, 0.3, 0.7], dtype=D64))
    for L in (full, diag):
        exact = stats.multivariate_normal(np.zeros(3), (L @ L.T).numpy()).logpdf(eta.numpy())
        slow = gaussian_log_prob(L, eta)  # 280 rows: below FAST_SOLVE_ROWS
        fast = gaussian_log_prob(L, eta, 0)
        # 1e-12: three roundings of the same closed form (|log p| < 30)
        np.testing.assert_allclose(slow.numpy(), exact, rtol=0, atol=1e-12)
        np.testing.assert_allclose(fast.numpy(), exact, rtol=0, atol=1e-12)
    e1, e2 = eta.clone().requires_grad_(True), eta.clone().requires_grad_(True)
    by_product = gaussian_log_prob(diag, e1, 0)
    elementwise = gaussian_log_prob(diag, e2, 0, diagonal=True)
    assert torch.equal(by_product, elementwise)
    (g1,) = torch.autograd.grad(by_product.sum(), e1)
    (g2,) = torch.autograd.grad(elementwise.sum(), e2)
    np.testing.assert_allclose(g1.numpy(), g2.numpy(), rtol=1e-15, atol=0)
    # the plug-ins pass their own: the Gaussian law's diagonal flag follows Omega's structure
    assert build_law(Gaussian(), 3, False).diagonal and not build_law(Gaussian(), 3, True).diagonal


def test_short_em_ends_where_the_winning_start_converges():
    """fit_gaussian_mixture's short EM (every start SHORT_EM_ITERS iterations, then the best
    on) ends at the point of the original scheme (each start to convergence, the best kept) on
    two separated clusters, and its continuation is the same run as one uninterrupted _em."""
    from pymixnn.inference.laws import mixture

    gen = torch.Generator().manual_seed(5)
    x = torch.cat(
        [
            torch.randn(600, 2, generator=gen, dtype=D64) * 0.3,
            torch.randn(400, 2, generator=gen, dtype=D64) * 0.2 + torch.tensor([2.0, 1.0], dtype=D64),
        ]
    )
    w, means, cov = mixture.fit_gaussian_mixture(x, 2, torch.Generator().manual_seed(1))
    order = torch.argsort(-w)
    # truth 0.6 / 0.4 and the cluster centres: 0.05 covers the sampling error of 1,000 points
    np.testing.assert_allclose(w[order].numpy(), [0.6, 0.4], atol=0.05)
    np.testing.assert_allclose(means[order].numpy(), [[0, 0], [2, 1]], atol=0.05)
    old = mixture.SHORT_EM_ITERS
    try:
        mixture.SHORT_EM_ITERS = 200  # every start to convergence: the scheme before
        w2, means2, cov2 = mixture.fit_gaussian_mixture(x, 2, torch.Generator().manual_seed(1))
    finally:
        mixture.SHORT_EM_ITERS = old
    assert torch.equal(w, w2) and torch.equal(means, means2) and torch.equal(cov, cov2)
    ridge = torch.zeros(2, 2, dtype=D64)
    start = (
        torch.tensor([0.5, 0.5], dtype=D64),
        x[[0, 999]].clone(),
        torch.eye(2, dtype=D64).expand(2, 2, 2),
    )
    whole = mixture._em(x, start, 50, 1e-9, False, ridge)
    part = mixture._em(x, start, 3, 1e-9, False, ridge)
    rest = mixture._em(x, part[1], 47, 1e-9, False, ridge, part[0])
    assert not part[2] and part[3] == 3 and whole[3] > 3
    assert whole[2] == rest[2] and whole[3] == part[3] + rest[3]
    assert all(torch.equal(a, b) for a, b in zip(whole[1], rest[1]))


def test_em_starts_side_by_side_are_each_run_alone():
    """_em with a leading axis of S starts (fit_gaussian_mixture's short EM) is S separate runs:
    each start's log-likelihood, state, stop and iteration count as when run alone (to rounding:
    the side-by-side products sum in another order), one of them stopped before the others."""
    from pymixnn.inference.laws import mixture

    gen = torch.Generator().manual_seed(11)
    x = torch.cat(
        [
            torch.randn(300, 3, generator=gen, dtype=D64) * 0.2 + 5.0,  # far from 0: the centring
            torch.randn(200, 3, generator=gen, dtype=D64) * 0.1 + torch.tensor([5.6, 5.0, 5.0], dtype=D64),
        ]
    )
    ridge = 1e-6 * torch.eye(3, dtype=D64)
    starts = [x[[0, 499]], x[[1, 2]], x[[300, 10]]]
    cov = (x.T.cov() + ridge).expand(2, 3, 3)
    w = torch.full((2,), 0.5, dtype=D64)
    batched = mixture._em(
        x, (w.expand(3, 2), torch.stack(starts), cov.expand(3, 2, 3, 3)), 40, 1e-6, False, ridge
    )
    used = []
    for s, m in enumerate(starts):
        ll, state, done, it = mixture._em(x, (w, m, cov), 40, 1e-6, False, ridge)
        assert math.isclose(ll, float(batched[0][s]), rel_tol=1e-12)
        for alone, side in zip(state, batched[1]):
            np.testing.assert_allclose(alone.numpy(), side[s].numpy(), rtol=1e-9, atol=1e-12)
        assert done == bool(batched[2][s]) and it == int(batched[3][s])
        used.append(it)
    assert len(set(used)) > 1  # the runs stopped at different iterations


def test_gaussian_stage_only_starts_a_mixture():
    """With a fixed number of components the Gaussian stage only starts the mixture
    (MixtureLaw.gaussian_is_start): its Newton gear ends after its first converged round, and
    the mixture reaches the maximum it reaches after a confirmed Gaussian fit. n_components="auto"
    reports the Gaussian fit (its K = 1 candidate) and keeps the confirming round."""
    import pymixnn
    from pymixnn.simulate import NormalMixture1D, simulate_logistic

    assert MixtureLaw.gaussian_is_start(Mixture(n_components=2))
    assert not MixtureLaw.gaussian_is_start(Mixture(n_components="auto"))
    assert not GaussianLaw.gaussian_is_start(Gaussian()) and not FlowLaw.gaussian_is_start(Flow())
    df = simulate_logistic(150, 10, laws={"A": NormalMixture1D.separated(0.4, 4.0, 0.1)}, seed=3)

    kw = dict(id="id", x="t", y="y", seed=1, progress=False)

    def fit():
        return pymixnn.fit(df, "logistic", random_effects=Mixture(n_components=2), **kw)

    def gaussian_rounds(res):
        return sum(stage == "refine" for stage in res.estimation.trace["stage"])

    short = fit()
    old = MixtureLaw.gaussian_is_start
    try:
        MixtureLaw.gaussian_is_start = classmethod(lambda cls, spec: False)
        confirmed = fit()
    finally:
        MixtureLaw.gaussian_is_start = old
    assert short.info["gear"] == "newton" and gaussian_rounds(short) == 1 < gaussian_rounds(confirmed)
    # the same maximum: each refinement stops within 0.01 SE of it (the Newton decrement 1e-4),
    # so the estimates agree to a few hundredths of an SE and ll to ~1e-4 (the draws are common)
    assert abs(short.loglik - confirmed.loglik) < 1e-3
    gap = (short.params["estimate"] - confirmed.params["estimate"]).abs() / confirmed.params["se"]
    assert gap.max() < 0.03
