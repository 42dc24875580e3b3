"""The estimation's gears (issue 19): "newton" (the refinement's Newton steps on the marginal
likelihood straight from the Laplace-EM start), "svi" (minibatch SVI first), "auto" (chosen by the
problem), and the counted fallback from Newton to SVI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import pymixnn
from pymixnn.cli.spec import DEMO
from pymixnn.inference.options import EstimationOptions, choose_gear
from pymixnn.validation import InputError

# the README's theophylline fit, as `pymixnn demo` runs it
THEO = {k: v for k, v in DEMO.items() if k != "model"}


def _theo(**kw):
    return pymixnn.fit(pymixnn.datasets.load("theo"), "onecpt_oral", **THEO, seed=0, progress=False, **kw)


@pytest.fixture(scope="module")
def newton():
    return _theo()


@pytest.fixture(scope="module")
def svi():
    return _theo(gear="svi")


def test_auto_takes_newton_for_a_gaussian_closed_form_fit(newton):
    assert newton.info["gear"] == "newton"
    assert newton.run.gear == "newton"
    assert newton.info["steps"] == 0 and len(newton.estimation.elbo_trace) == 0
    assert "svi" not in newton.run.seconds and newton.run.seconds["refine"] > 0
    assert newton.run.fallbacks["newton_gear_to_svi"] == 0
    assert newton.converged
    text = newton.summary().text
    assert "gear 'newton'" in text and "no SVI" in text


def test_newton_and_svi_reach_the_same_maximum(newton, svi):
    assert svi.info["gear"] == "svi" and svi.info["steps"] > 0
    se = svi.params["se"]
    # both end on the Newton decrement criterion (within 0.01 SE of the maximum of the same
    # importance-sampling log-likelihood, common draws): 0.05 SE leaves room for both
    diff = (newton.params["estimate"] - svi.params["estimate"]).abs() / se
    assert float(diff.max()) < 0.05, diff
    # SEs: the information at the two end points, which lie < 0.05 SE apart (observed 0.002
    # SE): with 12 subjects the SE of an omega moves by ~0.5 x relative per SE of theta, so
    # 1e-3 apart (observed 1.1e-3 for omega2.CL, 5e-4 before the Newton gear's chord was kept
    # across rounds; the information's differences agree with autograd's to 4e-5)
    np.testing.assert_allclose(newton.params["se"], se, rtol=3e-3)
    assert abs(newton.loglik - svi.loglik) < 0.01  # ll.is at the two points, same draws


def test_trace_of_an_svi_fit(svi):
    """The SVI path every 50 steps from step 0, then each refinement round, then the estimate."""
    trace = svi.parameter_trace()
    assert trace["stage"].iloc[0] == "svi" and trace["step"].iloc[0] == 0
    assert trace["stage"].iloc[-1] == "final" and "refine" in set(trace["stage"])
    svi_steps = trace.loc[trace["stage"] == "svi", "step"].to_numpy()
    assert (np.diff(svi_steps) == 50).all()


def test_newton_gear_is_reproducible(newton):
    again = _theo()
    np.testing.assert_array_equal(again.params["estimate"], newton.params["estimate"])
    np.testing.assert_array_equal(again.params["se"], newton.params["se"])
    assert again.loglik == newton.loglik


def test_trace_of_a_newton_fit_starts_at_the_start(newton):
    trace = newton.parameter_trace()
    assert list(trace["stage"])[0] == "start"
    assert set(trace["stage"]) <= {"start", "refine", "final"}


def test_a_newton_gear_that_does_not_converge_falls_back_to_svi(monkeypatch):
    import pymixnn.inference.stages as stages

    monkeypatch.setattr(stages, "newton_gear", lambda *a, **k: None)
    with pytest.warns(pymixnn.FallbackWarning, match="Newton gear did not converge"):
        res = _theo(max_steps=300)
    assert res.run.fallbacks["newton_gear_to_svi"] == 1
    assert res.info["gear"] == "svi" and res.info["steps"] > 0
    assert "newton_gear" in res.run.seconds and "svi" in res.run.seconds


@pytest.mark.parametrize(
    "kw, gear",
    [
        (dict(n_individuals=12, gaussian=True, ode=False, genomic=False, levels=False), "newton"),
        (dict(n_individuals=10**6, gaussian=True, ode=False, genomic=False, levels=False), "newton"),
        (dict(n_individuals=10**6 + 1, gaussian=True, ode=False, genomic=False, levels=False), "svi"),
        (dict(n_individuals=12, gaussian=False, ode=False, genomic=False, levels=False), "svi"),
        (dict(n_individuals=12, gaussian=True, ode=True, genomic=False, levels=False), "svi"),
        (dict(n_individuals=12, gaussian=True, ode=False, genomic=True, levels=False), "newton"),
        (
            dict(n_individuals=12, gaussian=True, ode=False, genomic=True, levels=False, replicated=False),
            "svi",
        ),
        (dict(n_individuals=12, gaussian=True, ode=False, genomic=False, levels=True), "svi"),
    ],
)
def test_auto_gear_by_problem(kw, gear):
    cpu = torch.device("cpu")
    assert choose_gear(EstimationOptions(), cpu, **kw) == gear
    # an explicit gear is kept; the encoder and refine=False leave SVI
    assert choose_gear(EstimationOptions(gear="svi"), cpu, **kw) == "svi"
    assert choose_gear(EstimationOptions(gear="newton"), cpu, **kw) == "newton"
    assert choose_gear(dataclasses.replace(EstimationOptions(), local="amortized"), cpu, **kw) == "svi"
    assert choose_gear(dataclasses.replace(EstimationOptions(), refine=False), cpu, **kw) == "svi"
    assert choose_gear(EstimationOptions(), torch.device("meta"), **kw) == "svi"  # not the CPU


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(gear="fast"), r"gear must be one of \['auto', 'newton', 'svi'\].*got 'fast'"),
        (dict(gear="newton", refine=False), "gear='newton' .* needs refine=True"),
        (dict(gear="newton", local="amortized"), "local='amortized' trains an encoder"),
    ],
)
def test_bad_gear_settings(kw, match):
    with pytest.raises(InputError, match=match):
        pymixnn.Control(**kw)


def test_newton_gear_refuses_grouping_levels_before_fitting():
    from pymixnn.inference.pipeline import estimate

    with pytest.raises(ValueError, match="gear='newton' has no grouping levels"):
        estimate(None, None, None, {}, EstimationOptions(gear="newton"), levels=object())


def test_a_newton_fit_builds_no_torch_optimizer():
    """A Newton-gear fit in a fresh process does not import torch._dynamo (any torch optimizer
    imports it when first built: 1.3-1.5 s, most of a first theophylline fit's time before
    issue 19) nor scipy.stats (0.5 s; imported by what uses it) nor scipy.optimize (0.28 s: the
    start's blocks take Newton steps, start.maximize_block) nor Pyro (0.08 s: svi_options.py,
    rng.isolated_rng and the flow's transforms do without it)."""
    import subprocess
    import sys

    code = (
        "import sys, pymixnn\n"
        "pymixnn.fit(pymixnn.datasets.load('theo'), 'onecpt_oral', id='Id', x=['Dose', 'Time'],\n"
        "            y='Concentration', init={'ka': 1, 'V': 20, 'CL': 0.5}, progress=False)\n"
        "mods = ('torch._dynamo', 'scipy.stats', 'scipy.optimize', 'pyro')\n"
        "print([m for m in mods if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_information_by_louis_where_the_data_inform_the_individuals(newton, monkeypatch):
    """The observed information by Louis' identity (hessians.louis_hessian) on the draws where
    the posterior variances are small against Omega (logistic simulation, N = 100: fraction
    0.09); where they are not (theophylline: 0.32 for V; reporting.finish), on the 7^3
    quadrature rule of three random effects (no Monte Carlo error), else autograd's Hessian
    (here: the user gave is_samples, which keeps the draws)."""
    import pymixnn.inference.reporting as reporting
    from pymixnn.simulate import simulate_logistic

    assert "Louis" in newton.info["se_method"] and "quadrature (7 nodes" in newton.info["se_method"]
    df = simulate_logistic(n_individuals=100, n_obs=10, seed=0)
    kw = dict(id="id", x="t", y="y", seed=0, progress=False)
    louis = pymixnn.fit(df, "logistic", **kw)
    assert "Louis" in louis.info["se_method"] and "t4 draws" in louis.info["se_method"]
    monkeypatch.setattr(reporting, "LOUIS_MAX_MISSING", -1.0)
    # ll.is's own 5,000 draws at N = 100 (sample_sizes): the same refinement and Fisher draws
    auto = pymixnn.fit(df, "logistic", is_samples=5000, **kw)
    assert "Louis" not in auto.info["se_method"]
    np.testing.assert_array_equal(louis.params["estimate"], auto.params["estimate"])
    # two Monte Carlo estimates of the same information from 200 draws per individual (SDs of
    # an SE over seeds: 0.5% autograd, 0.2% Louis): measured at most 0.9% apart
    np.testing.assert_allclose(louis.params["se"], auto.params["se"], rtol=0.025)


def test_warmup_takes_a_constant_error_in_closed_form():
    """The Newton gear's warm-up M-step for a constant-error Gaussian model's log a is the root
    mean squared residual at the individuals' eta (start._constant_error): the maximum that the
    Newton iteration on that block reaches (measured 8e-9 apart: its last step, taken without
    a pass, lands quadratically close; 1e-6 is 0.003% of the SE of log a, 0.035); none for a
    proportional error model or with censored rows, which keep the iteration."""
    from pymixnn.data.table import Data
    from pymixnn.inference.program import Program
    from pymixnn.inference.start import _constant_error, maximize_block
    from pymixnn.model.covariates import CovariateDesign
    from pymixnn.model.named import named
    from pymixnn.simulate import simulate_logistic

    frame = simulate_logistic(n_individuals=40, n_obs=10, seed=5)
    data = Data.from_pandas(frame, id="id", x="t", y="y")

    def program(**options):
        model = named("logistic", **options)
        design = CovariateDesign.build({}, data.covariates, model.parameters)
        return Program(model, data, design, device=torch.device("cpu"), dtype=torch.float64)

    prog = program()
    lay = prog.layout
    theta = torch.tensor(
        [np.log(100), np.log(5), np.log(1.5), np.log(0.2), np.log(0.15), np.log(0.2), 0.0],
        dtype=torch.float64,
    )
    eta = 0.1 * torch.randn(40, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    idx = torch.arange(40)
    raw = _constant_error(prog, theta, eta, idx)
    block = list(range(lay.error.start, lay.error.stop))
    newton = maximize_block(prog, theta, block, eta, idx, prior=False, optimizer="newton")
    assert raw is not None and abs(float(raw[0] - newton[lay.error][0])) < 1e-6
    assert _constant_error(program(error="proportional"), theta, eta, idx) is None


def test_pooled_start_begins_at_the_closed_form_error(monkeypatch):
    """The Newton gear's pooled fit (start.pooled_start) starts the error of a constant-error
    Gaussian model at its closed-form maximum for the start's fixed effects: the same maximum
    as the Newton iteration from the generic error start, with fewer Hessians (Phenobarb, a = 13
    from a = 1: 7 and 6 Hessians for its two starts before, 2 each after). Both stop on a
    Newton decrement of 1e-4, a value within 5e-5 of the maximum: the values within 1e-4, the
    end points within 1e-4 on the log scale (measured 1.5e-5; the SEs of these log parameters
    are 0.01-0.05)."""
    from pymixnn.data.table import Data
    from pymixnn.inference import start
    from pymixnn.inference.program import Program
    from pymixnn.model.covariates import CovariateDesign
    from pymixnn.model.named import named
    from pymixnn.simulate import simulate_logistic

    frame = simulate_logistic(n_individuals=40, n_obs=10, seed=5)
    data = Data.from_pandas(frame, id="id", x="t", y="y")
    model = named("logistic")
    design = CovariateDesign.build({}, data.covariates, model.parameters)
    prog = Program(model, data, design, device=torch.device("cpu"), dtype=torch.float64)
    lay = prog.layout
    theta = start.initial_theta(prog, model, {"A": 80.0, "B": 4.0, "C": 1.0})
    theta[lay.error] = np.log(40.0)  # a = 40, twenty times the truth
    idx = torch.arange(40)
    hessians = []
    inner = start._Block._newton_hessian
    monkeypatch.setattr(start._Block, "_newton_hessian", lambda self, x: hessians.append(1) or inner(self, x))
    block = list(range(lay.mu.start, lay.mu.stop)) + list(range(lay.error.start, lay.error.stop))
    eta0 = torch.zeros(40, lay.n_random, dtype=torch.float64)
    plain = start.maximize_block(prog, theta, block, eta0, idx, prior=False, optimizer="newton")
    n_plain, hessians[:] = len(hessians), []
    pooled = start.pooled_start(prog, theta, idx, optimizer="newton")
    assert float((pooled - plain).abs().max()) < 1e-4
    value = lambda th: float(prog.log_likelihood(th, eta0, idx).sum())  # noqa: E731
    assert abs(value(pooled) - value(plain)) < 1e-4
    assert len(hessians) < n_plain
