"""The ODE path's solves: one real-time solve per run of observations (the common grid), the
pseudo-time solve where inputs change, the step budget, and failed solves (an error naming the
individual at the initial values, a counted NaN during a fit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import pymixnn
from pymixnn.model.dynamics.models import bind_data, check_solvable, solver_counts, with_solver
from pymixnn.model.dynamics.ode import ODESolveFailure
from pymixnn.validation import InputError


def _rhs(t, x, psi, cov):  # depot -> central with Michaelis-Menten elimination; psi: ka, V, Vmax, Km
    ka, v, vmax, km = psi.unbind(-1)
    c = x[..., 1] / v
    return torch.stack([-ka * x[..., 0], ka * x[..., 0] - vmax * c / (km + c)], -1)


def _model(**kw) -> pymixnn.Model:
    return pymixnn.ODEModel(
        _rhs,
        states=["depot", "central"],
        parameters=["ka", "V", "Vmax", "Km"],
        outputs={"cp": lambda x, psi: x[..., 1] / psi[..., 1]},
        start={"ka": 1.0, "V": 20.0, "Vmax": 10.0, "Km": 2.0},
        **kw,
    )


def _records(times_by_id: dict[int, list[float]], infusion: bool = False) -> pd.DataFrame:
    rows = []
    for i, times in times_by_id.items():
        rows.append(dict(ID=i, TIME=0.0, AMT=100.0, EVID=1, DV=0.0, RATE=50.0 if infusion else 0.0))
        rows += [dict(ID=i, TIME=t, AMT=0.0, EVID=0, DV=1.0 + 0.1 * k, RATE=0.0) for k, t in enumerate(times)]
    return pd.DataFrame(rows)


def _predict(model, df, psi_rows):
    data = pymixnn.Data.from_nonmem(df)
    bound = bind_data(with_solver(model, 1e-10, 1e-12), data)
    x_pad, _, mask = data.padded()
    x = torch.as_tensor(x_pad, dtype=torch.float64)
    psi = torch.as_tensor(psi_rows, dtype=torch.float64).unsqueeze(-2)
    return bound, bound.function(psi, x)[torch.as_tensor(mask)]


def test_common_grid_and_pseudo_time_solves_agree():
    # different sampling times per individual (the common grid is their union); the same records
    # solved with an infusion stop inside the run take the pseudo-time path. Both against scipy's
    # solve_ivp at rtol 1e-11; tolerance 1e-7 relative (solver tolerances 1e-10 / 1e-12)
    from scipy.integrate import solve_ivp

    times = {1: [0.5, 1.0, 4.0, 12.0], 2: [0.25, 2.0, 3.0, 24.0], 3: [1.0, 6.0, 7.5]}
    psi = np.array([[1.0, 20.0, 10.0, 2.0], [0.6, 15.0, 5.0, 1.0], [1.5, 30.0, 20.0, 4.0]])
    for infusion in (False, True):
        bound, pred = _predict(_model(), _records(times, infusion), psi)
        expected = []
        for (i, ts), (ka, v, vmax, km) in zip(times.items(), psi):

            def f(t, x, ka=ka, v=v, vmax=vmax, km=km, infusion=infusion):
                inp = 50.0 if (infusion and t < 2.0) else 0.0
                return [-ka * x[0] + inp, ka * x[0] - vmax * (x[1] / v) / (km + x[1] / v)]

            # in two pieces around the infusion's end at 2 h (a kink in the right-hand side)
            opts = dict(rtol=1e-11, atol=1e-12, method="DOP853", dense_output=True)
            first = solve_ivp(f, (0, 2.0), [0.0 if infusion else 100.0, 0.0], **opts)
            second = solve_ivp(f, (2.0, max(ts)), first.y[:, -1], **opts)
            expected += [(first if t <= 2.0 else second).sol(t)[1] / v for t in ts]
        np.testing.assert_allclose(pred.numpy(), expected, rtol=1e-7)
        counts = solver_counts(bound)
        # the infusion's end inside the run forces the pseudo-time solve; boluses never do
        assert (counts["ode_pseudo_time_solves"] > 0) == infusion


def test_common_grid_gradient_in_the_lagged_elapsed_time():
    # a lag time moves every elapsed time of the run: its derivative enters through dx/dt at the
    # read points. Central differences, relative 1e-5 (solver tolerances 1e-10 / 1e-12)
    model = pymixnn.ODEModel(
        lambda t, x, psi, cov: _rhs(t, x, psi[..., :4], cov),
        states=["depot", "central"],
        parameters=["ka", "V", "Vmax", "Km", "tlag"],
        outputs={"cp": lambda x, psi: x[..., 1] / psi[..., 1]},
        tlag={1: "tlag"},
    )
    data = pymixnn.Data.from_nonmem(_records({1: [1.0, 2.0, 5.0], 2: [0.8, 3.0]}))
    bound = bind_data(with_solver(model, 1e-10, 1e-12), data)
    x = torch.as_tensor(data.padded()[0], dtype=torch.float64)
    psi = torch.tensor([[[1.0, 20.0, 10.0, 2.0, 0.3]], [[0.7, 10.0, 4.0, 1.0, 0.5]]], dtype=torch.float64)
    lag = psi[..., 4].clone().requires_grad_(True)

    def value(lag_values):
        p = torch.cat([psi[..., :4], lag_values.unsqueeze(-1)], -1)
        return (bound.function(p, x) * torch.as_tensor(data.padded()[2])).sum()

    (auto,) = torch.autograd.grad(value(lag), lag)
    h = 1e-5
    fd = torch.stack(
        [
            (value(lag.detach() + h * e) - value(lag.detach() - h * e)) / (2 * h)
            for e in torch.eye(2, dtype=torch.float64).unsqueeze(-1)
        ]
    ).reshape(auto.shape)
    np.testing.assert_allclose(auto.numpy(), fd.numpy(), rtol=1e-5)
    assert solver_counts(bound)["ode_pseudo_time_solves"] == 0


def test_max_steps_is_checked():
    with pytest.raises(InputError, match="max_steps must be an integer >= 10, got 3"):
        _model(max_steps=3)


def _forced(max_steps: int) -> pymixnn.Model:
    """dx/dt = -k x + sin(2 t): the solver's steps follow the forcing, ~100 per 10 h at rtol 1e-8."""
    return pymixnn.ODEModel(
        lambda t, x, psi, cov: -psi[..., :1] * x + torch.sin(2 * t).unsqueeze(-1),
        states=["x"],
        parameters=["k"],
        outputs={"y": lambda x, psi: x[..., 0]},
        start={"k": 0.5},
        max_steps=max_steps,
        random=["k"],
        error="constant",
    )


def test_a_solve_over_budget_names_the_individual_at_the_initial_values():
    # individual 3 samples at 500 h: 300 steps cannot get there; 1 and 2 (to 2 h) are solvable
    df = _records({1: [1.0, 2.0], 2: [0.5, 1.5], 3: [1.0, 500.0]})
    model = _forced(300)
    data = pymixnn.Data.from_nonmem(df)
    bound = bind_data(model, data)
    with pytest.raises(InputError, match=r"cannot be solved at the initial values .* for individual 3 "):
        check_solvable(bound, model.init, data)
    with pytest.raises(InputError, match=r"individual 3 \(more than 300 solver steps \(max_steps\)\)"):
        pymixnn.fit(data, model, progress=False, max_steps=10)
    # without individual 3 the same model is solvable
    check_solvable(bound, model.init, pymixnn.Data.from_nonmem(df[df.ID < 3]))


def test_a_failed_solve_during_a_fit_is_a_counted_nan():
    df = _records({1: [1.0, 500.0]})
    data = pymixnn.Data.from_nonmem(df)
    strict = with_solver(bind_data(_forced(300), data), 1e-8, 1e-10)
    tolerant = with_solver(bind_data(_forced(300), data), 1e-8, 1e-10, tolerate_failures=True)
    x = torch.as_tensor(data.padded()[0], dtype=torch.float64)
    psi = torch.tensor([[[0.5]]], dtype=torch.float64, requires_grad=True)
    with pytest.raises(ODESolveFailure, match="more than 300 solver steps"):
        strict.function(psi, x)
    out = tolerant.function(psi, x)
    assert out.shape == (1, x.shape[1]) and bool(torch.isnan(out).all())
    out.sum().backward()  # still in the graph: SVI zeroes the NaN gradient and counts it
    assert bool(torch.isnan(psi.grad).all())
    assert solver_counts(tolerant)["ode_failures"] == 1


def test_a_failed_batch_is_solved_again_in_halves_so_that_only_its_failing_cells_are_nan():
    """One individual (or one draw) that the solver cannot finish no longer makes its whole batch
    NaN: the batch is solved again in halves, individuals first, then the leading draws."""
    df = _records({1: [1.0, 2.0], 2: [0.5, 1.5], 3: [1.0, 500.0], 4: [1.0, 2.0]})
    data = pymixnn.Data.from_nonmem(df)
    tolerant = with_solver(bind_data(_forced(300), data), 1e-8, 1e-10, tolerate_failures=True)
    x = torch.as_tensor(data.padded()[0], dtype=torch.float64)
    psi = torch.full((3, 4, 1, 1), 0.5, dtype=torch.float64, requires_grad=True)  # 3 draws
    out = tolerant.function(psi, x)
    assert out.shape == (3, 4, x.shape[1])
    nan = torch.isnan(out).any(-1)
    assert bool(nan[:, 2].all()) and not bool(nan[:, [0, 1, 3]].any())  # individual 3 only
    reference = with_solver(bind_data(_forced(300), data), 1e-8, 1e-10)
    keep = [0, 1, 3]
    expected = reference.function(psi[:, keep].detach(), x[keep])
    # the solver's steps depend on the batch: the same values to its tolerance (rtol 1e-8)
    np.testing.assert_allclose(out[:, keep].detach().numpy(), expected.numpy(), rtol=1e-6)
    out[:, keep].sum().backward()
    assert bool(torch.isfinite(psi.grad[:, keep]).all())
    # every failed solve counted: the batch, individuals 3-4, individual 3 with its 3 draws, then
    # its draws split 1 + 2 and 1 + 1 (each draw fails alone)
    assert solver_counts(tolerant)["ode_failures"] == 7


def _program_at_modes():
    """The Michaelis-Menten model's Program on 12 individuals (random V and Vmax, proportional
    error), theta at the truth and the local posteriors at their Laplace modes."""
    times = {i: [0.1 * i, 2, 4, 8 + i // 2, 24] for i in range(1, 13)}
    return _program_of(pymixnn.Data.from_nonmem(_records(times)))


def _program_of(data: pymixnn.Data, random=("V", "Vmax"), **solver):
    """The Michaelis-Menten Program on ``data`` (random V and Vmax unless ``random`` says, log
    transforms, proportional error), theta at the truth, the local posteriors at their modes."""
    from pymixnn.inference.laplace import LocalPosteriors
    from pymixnn.inference.program import Program
    from pymixnn.inference.start import initial_theta
    from pymixnn.model.covariates import CovariateDesign

    spec = _model(random=list(random), transforms="log", error="proportional")
    model = with_solver(bind_data(spec, data), 1e-6, 1e-8, **solver)
    design = CovariateDesign.build({}, data.covariates, model.parameters)
    program = Program(model, data, design, device=torch.device("cpu"), dtype=torch.float64)
    theta = initial_theta(program, model, {"ka": 1.0, "V": 20.0, "Vmax": 10.0, "Km": 2.0})
    local = LocalPosteriors(program, program.omega_tril(theta))
    local.refresh(theta, None, max_iter=30, vi_iter=0)
    return program, theta, local


def test_mode_of_an_ode_model_needs_no_backtracking_once_reached():
    """An adaptive ODE solver's values are exact to its tolerance only and depend on the batch it
    solves: a Newton step at the mode must not be checked against a value from another batch
    (that check rejected every halving, 30 passes per iteration). Once at the mode, a refresh
    takes its steps without a single value pass and leaves the mode where it was."""
    program, theta, local = _program_at_modes()
    mode = local.loc.clone()
    passes = []
    original = program.log_joint

    def counted(theta, eta, idx=None):
        # a backtracking check evaluates (current, trial) stacked: a leading dimension of 2 (the
        # derivatives come from the 1 + 2 d^2 = 9 points of the difference stencil)
        if (not torch.is_grad_enabled() or not eta.requires_grad) and eta.shape[0] == 2:
            passes.append(eta.shape)
        return original(theta, eta, idx)

    program.log_joint = counted
    subset = torch.arange(5)  # another batch than the one the mode was found with
    local.refresh(theta, subset, max_iter=3, vi_iter=0)
    assert passes == []
    # the steps taken unchecked have a predicted gain below 1e-9: distance ~ sqrt(2e-9 / curvature)
    np.testing.assert_allclose(local.loc[:5].numpy(), mode[:5].numpy(), atol=1e-4)


def test_refinement_of_an_ode_model_in_chunks_with_a_coarse_newton_metric(monkeypatch):
    """The refinement of an ODE model splits the individuals into chunks of at most
    ODE_CHUNK_CELLS cells (a solve's autograd graph holds every solver step: 1,000 individuals
    in one chunk needed 9.7 GB) and takes its Newton metric from a 3 x 3 rule instead of 7 x 7.
    Chunks change neither the value nor the gradient (beyond the solver's tolerance, the batch
    being part of an adaptive solve), and the coarse metric stays close to the exact Hessian."""
    import pymixnn.inference.importance as importance
    import pymixnn.inference.newton as newton
    from pymixnn.inference.marginal import marginal_likelihood

    program, theta, local = _program_at_modes()

    whole = marginal_likelihood(program, local, 100, 0, "auto")
    assert whole.quadrature == 7 and whole.chunk == 12  # 12 x 49 x 6 cells: under the bound
    cells = whole.n_samples * program.x.shape[1]
    monkeypatch.setattr(importance, "ODE_CHUNK_CELLS", 4 * cells)
    chunked = marginal_likelihood(program, local, 100, 0, "auto")
    assert chunked.chunk == 4 and len(list(chunked.chunks())) == 3
    v1, g1 = whole.value_and_gradient(theta)
    v2, g2 = chunked.value_and_gradient(theta)
    # solver tolerance rtol 1e-6 on each prediction: the sums agree far below 1e-4
    assert abs(v1 - v2) < 1e-4 * abs(v1)
    np.testing.assert_allclose(g2.numpy(), g1.numpy(), rtol=1e-4, atol=1e-4)

    exact = whole.gradient_and_hessian(theta)[1]
    metric = whole._newton_hessian(theta)
    assert whole._metric is not None and whole._metric.quadrature == importance.ODE_METRIC_NODES
    rel = float(torch.linalg.norm(metric - exact) / torch.linalg.norm(exact))
    # measured 0.9%: a 3-node rule per dimension differs from 7 at the third moment of the
    # posterior, a few percent at most for 5 observations per individual
    assert rel < 0.03

    # far along the Vmax-Km ridge (Km x 12), no Newton step moves an entry of theta by more than
    # ODE_MAX_STEP (a full step put the solver in a stiff region: one pass 25x slower)
    far = theta.clone()
    far[3] += 2.5
    points = []
    evaluate = whole.value_and_gradient

    def spy(th):
        points.append(th.clone())
        return evaluate(th)

    whole.value_and_gradient = spy
    out = whole.maximize_report(far, max_iter=3)
    moves = [float((b - a).abs().max()) for a, b in zip(points, points[1:])]
    assert out.shortened_steps >= 1 and max(moves) <= newton.ODE_MAX_STEP + 1e-12


def test_ode_mode_derivatives_by_central_differences_match_autograd(monkeypatch):
    """For an ODE model with up to FD_MAX_DIM random effects the local posteriors' gradient and
    Hessian in eta come from a central-difference stencil solved in one batch (no double backward
    through the solver). They match autograd's: the stencil's points share the solver's steps."""
    import pymixnn.inference.mode_derivatives as derivatives

    program, theta, local = _program_at_modes()
    eta = torch.stack([local.loc + 0.3, local.loc - 0.2])  # off the mode; a leading draw dimension
    v1, g1, h1 = derivatives.gradient_and_hessian(program, theta, eta, None)
    monkeypatch.setattr(derivatives, "integrates", lambda model: False)  # the autograd path
    v2, g2, h2 = derivatives.gradient_and_hessian(program, theta, eta, None)
    # measured 2e-10 (values), 4e-7 (gradient) and 2e-7 (Hessian) relative: truncation h^2 = 1e-8
    # times the third and fourth derivatives, rounding 1e-14 / h^2
    np.testing.assert_allclose(v1.numpy(), v2.numpy(), rtol=1e-9)
    np.testing.assert_allclose(g1.numpy(), g2.numpy(), rtol=1e-5, atol=1e-6 * float(g2.abs().max()))
    np.testing.assert_allclose(h1.numpy(), h2.numpy(), rtol=1e-5, atol=1e-5 * float(h2.abs().max()))


def test_ode_mode_search_from_far_takes_shortened_steps_to_the_same_mode():
    """From eta far from the mode, each Newton step of an ODE model's mode search moves no random
    effect by more than ODE_MODE_MAX_SD prior SDs (a full step reached a stiff region where the
    batch's solve ran to max_steps), counted in ``shortened_steps``; the mode is the same."""
    import pymixnn.inference.laplace as laplace

    program, theta, local = _program_at_modes()
    mode = local.loc.clone()
    sd = float(program.omega_tril(theta).diagonal().max())  # diagonal Omega: the prior SDs
    before = local.shortened_steps
    local.loc = mode + 2 * laplace.ODE_MODE_MAX_SD * sd  # two capped steps away at least
    local.refresh(theta, None, max_iter=30, vi_iter=0)
    assert local.shortened_steps - before >= 1
    # the mode search stops each individual below a step of 1e-6
    np.testing.assert_allclose(local.loc.numpy(), mode.numpy(), atol=1e-5)


def _simulated_program(n: int = 20, seed: int = 3):
    """The Michaelis-Menten model's Program on data simulated from it (truth ka 1, V 20, Vmax 10,
    Km 2; omega2 0.04 on V and 0.09 on Vmax; 10% proportional error; dose 100 at 0), theta at
    the truth, the local posteriors at their modes."""
    rng = np.random.default_rng(seed)
    records = _records({i: [0.5, 1, 2, 4, 8, 12, 24] for i in range(1, n + 1)})
    params = {
        "ka": 1.0,
        "V": 20 * np.exp(0.2 * rng.standard_normal(n)),
        "Vmax": 10 * np.exp(0.3 * rng.standard_normal(n)),
        "Km": 2.0,
    }
    pred = pymixnn.solve(_model(), records, params)["prediction"].to_numpy()
    obs = records["EVID"] == 0
    records.loc[obs, "DV"] = pred * (1 + 0.1 * rng.standard_normal(pred.size))
    return _program_of(pymixnn.Data.from_nonmem(records), tolerate_failures=True)


def test_ode_prerefinement_reaches_the_maximum_from_far_along_the_ridge():
    """The pre-refinement (rounds on the start subsample with the 5 x 5 rule) takes theta from far
    along the Vmax-Km ridge (Vmax and Km x 4) to the maximum it reaches from the truth."""
    from pymixnn.inference.fallbacks import Fallbacks
    from pymixnn.inference.options import EstimationOptions
    from pymixnn.inference.refine import prerefine_ode

    program, theta, local = _simulated_program()
    rows = torch.arange(program.n_individuals)
    options = EstimationOptions()
    near, _ = prerefine_ode(program, theta, local, options, rows, warnings=[], fallbacks=Fallbacks())
    far = theta.clone()
    far[2:4] += np.log(4.0)  # Vmax, Km
    fallbacks = Fallbacks()
    reached, rounds = prerefine_ode(program, far, local, options, rows, warnings=[], fallbacks=fallbacks)
    # the start is 1.39 from it in Vmax and in Km: at least one step cut to ODE_MAX_STEP (1)
    assert rounds >= 1 and fallbacks.counts["newton_shortened_steps"] >= 1
    # rounds stop when theta moves less than refine_tol (0.01): both ends within a few of that
    np.testing.assert_allclose(reached.numpy(), near.numpy(), atol=0.03)
    # and near the truth (20 individuals: Vmax and Km within a factor 1.5)
    assert abs(float(near[2]) - np.log(10.0)) < np.log(1.5) and abs(float(near[3]) - np.log(2.0)) < np.log(
        1.5
    )


def test_ode_derivatives_with_many_random_effects_stencil_and_gauss_newton(monkeypatch):
    """With 4 random effects an ODE model's mode search still takes the exact stencil (1 + 2d^2
    points in one solve), while the variational steps' cubature points take a Gauss-Newton
    Hessian (the predictions' Jacobian from 1 + 2d points, the observation terms by autograd):
    its gradient is autograd's, and at the mode its Laplace scales are close to the exact ones
    (the residual-weighted curvature of the predictions is left out)."""
    import pymixnn.inference.mode_derivatives as derivatives

    times = {i: [0.05 * i, 1, 2, 4, 6 + i // 3, 12, 24] for i in range(1, 13)}
    data = pymixnn.Data.from_nonmem(_records(times))
    program, theta, local = _program_of(data, random=("ka", "V", "Vmax", "Km"))
    assert derivatives.GAUSS_NEWTON_MIN_DIM <= program.layout.n_random <= derivatives.FD_MAX_DIM
    mode = local.loc.clone()  # by the stencil's exact Newton steps
    eta = torch.stack([mode + 0.2, mode - 0.1])  # off the mode, a leading draw dimension
    v1, g1, h1 = derivatives.gradient_and_hessian(program, theta, eta, None, gauss_newton=True)
    _, _, gn_mode = derivatives.gradient_and_hessian(program, theta, mode, None, gauss_newton=True)
    monkeypatch.setattr(derivatives, "integrates", lambda model: False)  # the autograd path
    v2, g2, h2 = derivatives.gradient_and_hessian(program, theta, eta, None)
    _, g_mode, h_mode = derivatives.gradient_and_hessian(program, theta, mode, None)
    # one solve for the value; central differences for the gradient (measured 3e-9 relative on
    # the turnover model: truncation h^2 = 1e-8 times the third derivatives)
    np.testing.assert_allclose(v1.numpy(), v2.numpy(), rtol=1e-9)
    np.testing.assert_allclose(g1.numpy(), g2.numpy(), rtol=1e-5, atol=1e-6 * float(g2.abs().max()))
    # the stencil's mode is autograd's: its gradient there vanishes (stopped below a step of 1e-6)
    assert float(g_mode.abs().max()) < 1e-4
    # Laplace SDs of the two Hessians at the mode: measured 0.97-1.38 times the exact ones here
    # (Km and ka weakly identified, the predictions curving along that ridge), -3% / +12% on the
    # turnover model; wider, not narrower, is what the variational step's acceptance tolerates
    sd_gn = torch.linalg.inv(-gn_mode).diagonal(dim1=-2, dim2=-1).sqrt()
    sd_exact = torch.linalg.inv(-h_mode).diagonal(dim1=-2, dim2=-1).sqrt()
    ratio = (sd_gn / sd_exact).numpy()
    assert ratio.min() > 0.9 and ratio.max() < 1.5, ratio


def test_ode_newton_metric_by_differences_of_the_gradient():
    """An ODE model's Newton metric is the Hessian by forward differences of the gradient (the
    double backward pass through the solver costs ~30 gradient passes), also on a subsample of
    the individuals scaled up (large N): it matches the exact Hessian of the same individuals."""
    from pymixnn.inference.marginal import marginal_likelihood

    program, theta, local = _program_at_modes()
    sampler = marginal_likelihood(program, local, 20, 0, "is")
    assert sampler.quadrature == 0
    exact = sampler.gradient_and_hessian(theta)[1]
    by_differences = sampler.difference_hessian(theta, None)[1]
    # central differences: measured 6e-7 relative
    grad, central = sampler.difference_hessian(theta, None, central=True)
    np.testing.assert_allclose(grad.numpy(), sampler.gradient(theta).numpy(), rtol=1e-12)
    rel = float(torch.linalg.norm(central - exact) / torch.linalg.norm(exact))
    assert rel < 1e-5, rel
    block = sampler.difference_hessian(theta, None, index=[0, 2, 4], central=True)[1]
    np.testing.assert_allclose(block.numpy(), central[[0, 2, 4]][:, [0, 2, 4]].numpy(), rtol=1e-12)
    # forward differences of step 1e-4 in theta (the metric and an ODE model's Fisher
    # information): truncation ~1e-4 relative, measured 9e-5; bound 1e-3
    rel = float(torch.linalg.norm(by_differences - exact) / torch.linalg.norm(exact))
    assert rel < 1e-3, rel
    rows = torch.arange(0, 12, 2)
    sub_exact = sampler.gradient_and_hessian(theta, rows=rows)[1]  # scaled by 12 / 6
    sub = sampler.difference_hessian(theta, rows)[1]
    rel = float(torch.linalg.norm(sub - sub_exact) / torch.linalg.norm(sub_exact))
    assert rel < 1e-3, rel


def test_ode_proposal_with_clipped_t_scale_has_an_exact_density(monkeypatch):
    """For an ODE model the t proposal's scale factor w is clipped at ODE_MAX_T_SCALE (a draw far
    out makes the whole batch's solve stiff); its density is that of the clipped law (incomplete
    gamma tail plus the atom at the clip), so importance sampling of a known density integrates
    it to 1, where the plain t density would not."""
    import pymixnn.inference.importance as importance
    from pymixnn.inference.marginal import marginal_likelihood

    program, theta, local = _program_at_modes()
    sampler = marginal_likelihood(program, local, 20_000, 0, "is")
    assert sampler.max_scale == importance.ODE_MAX_T_SCALE
    idx = torch.arange(program.n_individuals)

    def integral(factor):
        offset, log_q = sampler.draws(0, idx)  # (K, B, d) offsets from the centre
        cov = factor * sampler.covariance[idx]
        target = torch.distributions.MultivariateNormal(torch.zeros_like(offset[0]), cov)
        return torch.exp(target.log_prob(offset) - log_q).mean(0)  # per individual, ~1

    for factor in (1.0, 2.0):  # the Laplace covariance, and twice it (beyond the clip's 1.5^2)
        values = integral(factor)
        # 20,000 draws per individual: measured within 0.007 of 1 each, 0.001 on average (Monte
        # Carlo SD of each mean weight < 0.005, of their mean over 12 individuals < 0.0015)
        np.testing.assert_allclose(values.numpy(), 1.0, atol=0.02)
        assert abs(float(values.mean()) - 1.0) < 0.006
    # the plain t density on the same clipped draws: 1.048 (it misses the mass moved inwards);
    # the sampler keeps a chunk's standardized draws and their density: generated again here
    sampler._draw_cache.clear()
    monkeypatch.setattr(torch.special, "gammaincc", lambda a, x: torch.ones_like(x))
    monkeypatch.setattr(torch.special, "gammainc", lambda a, x: torch.zeros_like(x))
    assert float(integral(1.0).mean()) > 1.03
