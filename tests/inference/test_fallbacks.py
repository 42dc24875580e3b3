"""Fallbacks are counted and warned: a structural model that overflows (infinite value, NaN
gradient) above a threshold of its parameter makes SVI zero gradient components at the draws of
eta that cross it."""

import numpy as np
import torch

import pymixnn
from pymixnn.inference import EstimationOptions, SVIOptions, estimate
from pymixnn.inference.fallbacks import FALLBACKS, THRESHOLDS, Fallbacks


def _wall(psi, x):
    m = psi[..., 0]
    # a wall at m = 1.6 that overflows to inf from m = 1.74 on (within two posterior SDs of some
    # individuals): negligible below 1.59, so the fit is the linear model's there
    return m + torch.exp(5000.0 * (m - 1.6)) + 0.0 * x[..., 0]


def test_nan_draws_are_counted_and_warned(linear):
    model = pymixnn.Model(_wall, ["m"], init={"m": 1.0})
    options = EstimationOptions(
        seed=0, svi=SVIOptions(max_steps=60, min_steps=20, progress=False), refine=False
    )
    est = estimate(model, linear.data, linear.design, {"m": 1.0}, options)
    counts = est.run.fallbacks
    assert set(counts) == set(FALLBACKS)
    assert counts["svi_zeroed_gradient_steps"] > 0.05 * est.steps
    assert counts["svi_zeroed_gradient_components"] >= counts["svi_zeroed_gradient_steps"]
    assert any(w.startswith("SVI zeroed non-finite gradient components") for w in est.warnings)
    assert np.isfinite(est.theta).all()


def test_thresholds():
    fb = Fallbacks()
    fb.svi_steps = 100
    fb.add("svi_zeroed_gradient_steps", 5)
    fb.add("svi_zeroed_gradient_components", 7)
    assert len(fb.warnings()) == 1 and "5 of 100 steps (7 components)" in fb.warnings()[0]
    fb2 = Fallbacks()
    fb2.svi_steps = 100
    fb2.add("svi_zeroed_gradient_steps", 4)  # 4% of the steps: under the threshold
    assert fb2.warnings() == []
    assert set(THRESHOLDS) <= set(FALLBACKS)
    try:
        fb.add("no_such_fallback")
    except KeyError as err:
        assert "unknown fallback" in str(err)
    else:
        raise AssertionError("an unknown name must be an error")
