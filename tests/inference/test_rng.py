"""A fit leaves the caller's global random state and torch's default dtype unchanged."""

import random

import numpy as np
import torch

from pymixnn.inference import EstimationOptions, SVIOptions, estimate
from pymixnn.inference.rng import STREAMS, isolated_rng, stream
from pymixnn.model.random_effects import Flow


def _state():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def _options(**kw):
    return EstimationOptions(seed=3, svi=SVIOptions(max_steps=60, min_steps=20, progress=False), **kw)


def test_isolated_rng_restores_and_seeds():
    random.seed(11), np.random.seed(11), torch.manual_seed(11)
    expected = _state()
    random.seed(11), np.random.seed(11), torch.manual_seed(11)
    with isolated_rng(5, torch.device("cpu")):
        inside = _state()
    assert _state() == expected
    with isolated_rng(5, torch.device("cpu")):
        assert _state() == inside  # seeded the same way each time
    assert stream(10, "fisher") == 10 + STREAMS["fisher"] == 1010


def test_fit_leaves_global_state_and_dtype_unchanged(linear):
    init = {"m": 1.0}
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = _state()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    first = estimate(linear.model, linear.data, linear.design, init, _options(refine=False))
    assert _state() == expected
    second = estimate(linear.model, linear.data, linear.design, init, _options(refine=False))
    assert np.array_equal(first.theta, second.theta)  # the same seed, the same numbers
    assert first.run.seed == 3 and set(first.run.fallbacks) >= {"fisher_pseudo_inverse"}


def test_flow_fit_leaves_default_dtype_unchanged(linear):
    before = torch.get_default_dtype()
    est = estimate(
        linear.model, linear.data, linear.design, {"m": 1.0}, _options(refine=False), law=Flow(penalty=10.0)
    )
    assert torch.get_default_dtype() == before
    assert est.law.penalty == 10.0 and est.law["spec"]["name"] == "flow"
