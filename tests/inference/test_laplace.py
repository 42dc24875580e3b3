"""Local posteriors: for a linear Gaussian model the Laplace approximation is the exact posterior."""

import numpy as np
import pytest
import torch

from pymixnn.inference import mode_derivatives
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


def _eigen_floor(neg_hess, floor=1e-8):
    """The Newton matrix by the eigenvalue floor applied to every matrix (the definition)."""
    vals, vecs = torch.linalg.eigh(neg_hess)
    top = vals.abs().amax(-1, keepdim=True).clamp_min(1.0)
    vals = torch.maximum(vals.abs(), floor * top)
    return (vecs * vals.unsqueeze(-2)) @ vecs.transpose(-1, -2)


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_positive_definite_floor_only_where_it_binds(d):
    """Matrices the floor leaves alone (found by Cholesky) come back as they are, the others by
    the eigenvalue floor: every one equals the definition to rounding."""
    g = torch.Generator().manual_seed(d)
    a = torch.randn(400, d, d, generator=g, dtype=torch.float64)
    a = a @ a.transpose(-1, -2) + 0.1 * torch.eye(d, dtype=torch.float64)  # positive definite
    a[:50] = -a[:50]  # negative definite: the floor flips them
    v = torch.randn(50, d, 1, generator=g, dtype=torch.float64)
    a[50:100] = v @ v.transpose(-1, -2)  # rank one: singular for d > 1
    a[100:150] *= 1e-12  # tiny: the floor is 1e-8 of max(1, the largest eigenvalue)
    a[150:160] = torch.diag_embed(torch.tensor([1.0] + [1e-9] * (d - 1), dtype=torch.float64))
    assert a.shape[0] < mode_derivatives.FAST_PD_MIN  # small batches: every matrix decomposed, bit for bit
    assert torch.equal(mode_derivatives.positive_definite(a), _eigen_floor(a))
    a = a.repeat(mode_derivatives.FAST_PD_MIN // a.shape[0] + 1, 1, 1)  # a batch that takes the fast path
    got, want = mode_derivatives.positive_definite(a), _eigen_floor(a)
    scale = want.abs().amax((-1, -2), keepdim=True)
    # rounding of an eigendecomposition of a matrix of up to 5 x 5: ~1e-15 of its largest entry
    assert float(((got - want).abs() / scale).max()) < 1e-13
    assert float(torch.linalg.eigvalsh(got).min()) > 0
    assert torch.equal(got[200:400], a[200:400])  # well conditioned: untouched
    np.testing.assert_allclose(
        mode_derivatives.positive_definite(a[0]), want[0], rtol=0, atol=1e-13 * float(scale[0])
    )


def test_closed_form_backtracking_takes_the_current_value_from_the_derivatives(linear, monkeypatch):
    """A closed-form model's mode search evaluates the trial points only (the current point's
    value is the derivatives' pass's), and reaches the same modes."""
    program = linear.program()
    calls = []
    real = program.log_joint

    def counting(theta, eta, idx=None):
        if not torch.is_grad_enabled():
            calls.append(tuple(eta.shape[:-1]))
        return real(theta, eta, idx)

    monkeypatch.setattr(program, "log_joint", counting)
    local = LocalPosteriors(program, program.omega_tril(linear.theta))
    local.refresh(linear.theta, None, max_iter=20, vi_iter=0)
    n = program.n_individuals
    assert calls and all(shape == (n,) or len(shape) == 1 for shape in calls)  # no (2, B) stacks
    mean, _ = linear.posterior()
    np.testing.assert_allclose(local.loc[:, 0].numpy(), mean, atol=1e-9)


def test_mode_search_stops_without_the_pass_that_would_confirm_the_mode(monkeypatch):
    """With ``confirm`` off (the Newton gear), a closed-form model's Newton step whose predicted
    gain is below CLOSED_FORM_GAIN_TOL (a step below 0.003 posterior SDs) is taken without a
    pass and the individual stops; an individual that stops keeps the derivatives of its last
    point (no pass for it); ``confirm`` on (SVI) keeps exact checks: the same modes as at the
    previous version (tests/test_large_n.py's converged modes). On a
    nonlinear model (the logistic simulation) against a search to tol = 1e-14 with exact checks
    throughout: modes within 1e-5 posterior SDs (measured 6e-7; Newton converges quadratically)
    and Laplace covariances within 3e-3 of their largest entry (measured 3e-4: the Hessian one
    such step back), in fewer derivative passes."""
    import pymixnn.inference.laplace as laplace
    from pymixnn.data.table import Data
    from pymixnn.inference.program import Program
    from pymixnn.model.covariates import CovariateDesign
    from pymixnn.model.named import resolve
    from pymixnn.simulate import simulate_logistic

    frame = simulate_logistic(n_individuals=50, n_obs=10, seed=2)
    model = resolve("logistic")
    data = Data.from_pandas(frame, id="id", x="t", y="y")
    design = CovariateDesign.build({}, data.covariates, model.parameters)
    program = Program(model, data, design, device=torch.device("cpu"), dtype=torch.float64)
    theta = torch.tensor(
        [np.log(100), np.log(5), np.log(1.5), np.log(0.2), np.log(0.15), np.log(0.2), np.log(2.0)],
        dtype=torch.float64,
    )
    passes = []
    real = laplace.gradient_and_hessian
    monkeypatch.setattr(
        laplace, "gradient_and_hessian", lambda *a, **k: passes.append(a[2].shape[0]) or real(*a, **k)
    )

    def search(tol, confirm):
        passes.clear()
        local = LocalPosteriors(program, program.omega_tril(theta))
        local.confirm = confirm
        local.refresh(theta, None, max_iter=50, vi_iter=0, tol=tol)
        return local.loc, local.scale_tril @ local.scale_tril.transpose(-1, -2), len(passes)

    loc, cov, n = search(1e-6, False)
    loc_ref, cov_ref, n_ref = search(1e-14, True)
    sd = cov_ref.diagonal(dim1=-2, dim2=-1).sqrt()
    assert float(((loc - loc_ref).abs() / sd).max()) < 1e-5
    assert float(((cov - cov_ref).abs() / cov_ref.abs().amax((-1, -2), keepdim=True)).max()) < 3e-3
    assert n < n_ref
