"""The problem object (pymixnn.NLME) and the algorithm settings (pymixnn.Control): the problem is
resolved and checked before any fitting, NLME(...).fit(control) is pymixnn.fit(...) with the same
settings, and Control's checks and its combination with fit()'s flat keywords."""

from __future__ import annotations

import dataclasses
import re
import warnings

import numpy as np
import pytest

import pymixnn
from pymixnn import datasets
from pymixnn.validation import InputError

ORANGE = dict(id="Tree", x="age", y="circumference")
QUICK = dict(max_steps=60, refine=False, seed=0, progress=False)


@pytest.fixture(scope="module")
def orange():
    return datasets.load("orange")


def test_problem_is_resolved_without_fitting(orange, monkeypatch):
    import pymixnn.fitting

    def no_fit(*args, **kwargs):
        raise AssertionError("the problem must not be fitted")

    monkeypatch.setattr(pymixnn.fitting, "fit_problem", no_fit)
    problem = pymixnn.NLME(orange, "logistic", **ORANGE, random=["A"])
    assert problem.model.random == ("A",) and problem.data.n_individuals == 5
    assert problem.law.name == "gaussian" and problem.observation.name == "gaussian"
    assert problem.design.n_effects == 0 and problem.markers is None
    assert set(problem.initial_values()) == {"A", "B", "C"}
    assert problem.fallbacks == {"start_values_replaced": 0}
    with pytest.raises(ValueError, match="column 'agex' not found"):
        pymixnn.NLME(orange, "logistic", id="Tree", x="agex", y="circumference")
    with pytest.raises(InputError, match="init names 'a', not a parameter"):
        pymixnn.NLME(orange, "logistic", **ORANGE, init={"a": 1.0})
    with pytest.raises(TypeError, match="data must be a pandas DataFrame"):
        pymixnn.NLME([1, 2], "logistic", **ORANGE)


def test_nlme_fit_with_control_equals_flat_fit(orange):
    flat = pymixnn.fit(orange, "logistic", **ORANGE, **QUICK)
    problem = pymixnn.NLME(orange, "logistic", **ORANGE)
    with_control = problem.fit(pymixnn.Control(**QUICK))
    np.testing.assert_array_equal(
        with_control.params["estimate"].to_numpy(), flat.params["estimate"].to_numpy()
    )
    # the same problem fitted again, the settings as keywords; and fit(control=...)
    again = problem.fit(**QUICK)
    np.testing.assert_array_equal(again.params["estimate"].to_numpy(), flat.params["estimate"].to_numpy())
    both = pymixnn.fit(orange, "logistic", **ORANGE, control=pymixnn.Control(**QUICK), seed=0)
    np.testing.assert_array_equal(both.params["estimate"].to_numpy(), flat.params["estimate"].to_numpy())
    assert "fallbacks" not in flat.settings


def test_control_fields_and_checks():
    fields = [f.name for f in dataclasses.fields(pymixnn.Control)]
    assert fields == [
        "batch_size",
        "max_steps",
        "lr",
        "num_particles",
        "refine",
        "is_samples",
        "likelihood",
        "device",
        "dtype",
        "threads",
        "seed",
        "progress",
        "ode_rtol",
        "ode_atol",
        "local",
        "refine_steps",
        "gear",
        "distributed",
        "neural_steps",
        "neural_starts",
        "shards",
    ]
    c = pymixnn.Control()
    assert (c.batch_size, c.max_steps, c.lr, c.seed, c.likelihood) == (512, 4000, 0.02, 0, "auto")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.seed = 1
    for kwargs, message in [
        (dict(lr=0), "lr must be a finite number > 0"),
        (dict(max_steps=0), "max_steps must be a positive integer"),
        (dict(seed=-1), "seed must be a non-negative integer"),
        (dict(likelihood="laplace"), "likelihood must be 'auto', 'is' or 'gq'"),
        (dict(dtype="float16"), "dtype must be one of"),
        (dict(refine="yes"), "refine must be True or False"),
        (dict(local="encoder"), "local must be one of ['individual', 'amortized']"),
        (dict(local="amortized", refine_steps=-1), "refine_steps must be a non-negative integer"),
        (dict(refine_steps=2), "refine_steps=2 refines the encoder's output: it needs local='amortized'"),
    ]:
        with pytest.raises(InputError, match=re.escape(message)):
            pymixnn.Control(**kwargs)
    assert c.replace(seed=3).seed == 3


def test_control_and_conflicting_flat_keywords(orange):
    control = pymixnn.Control(max_steps=50, progress=False)
    with pytest.raises(
        ValueError,
        match=r"give each algorithm setting once.*max_steps=60 \(control "
        r"has 50\)",
    ):
        pymixnn.fit(orange, "logistic", **ORANGE, control=control, max_steps=60)
    with pytest.raises(TypeError, match="control must be a pymixnn.Control"):
        pymixnn.fit(orange, "logistic", **ORANGE, control={"max_steps": 50})
    with pytest.raises(TypeError, match="unknown algorithm setting"):
        pymixnn.NLME(orange, "logistic", **ORANGE).fit(steps=5)
    # a flat setting is checked before the data
    with pytest.raises(ValueError, match="lr must be a finite number"):
        pymixnn.fit(orange, "logistic", id="Tree", x="nope", y="circumference", lr=-1.0)


def test_replaced_start_values_are_counted_and_warned(orange):
    def bad_start(x, y):
        return {"k": -1.0}  # outside the support of the log transform

    model = pymixnn.Model(
        lambda psi, x: psi[..., 0] * x[..., 0], ["k"], transforms="log", self_start=bad_start
    )
    with pytest.warns(UserWarning, match=r"self-start gave values outside .*k = -1\.0 replaced by 1\.0"):
        problem = pymixnn.NLME(orange, model, **ORANGE)
    assert problem.start == {"k": 1.0}
    assert problem.fallbacks == {"start_values_replaced": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = problem.fit(max_steps=5, refine=False, progress=False)
    assert res.settings["fallbacks"] == {"start_values_replaced": 1}


def test_observation_families_are_plug_ins():
    ordinal = pymixnn.Ordinal(levels=("low", "mid", "high"))
    assert list(ordinal.decode_simulated(np.array([2.0, 0.0]))) == ["high", "low"]
    codes = np.array([1.0, 3.0])
    assert pymixnn.Poisson().decode_simulated(codes) is codes
    assert pymixnn.Normal().has_error_model and not pymixnn.Poisson().has_error_model


def test_named_models_are_records():
    record = pymixnn.NAMED_MODELS["logistic"]
    fn, params, transforms, start, x_names = record  # the former 5-tuple still unpacks
    assert record.parameters == params == ("A", "B", "C") and record[3] is start
    assert record.r_function.startswith("function(psi, x)")
    assert pymixnn.compare.R_TWINS["logistic"] == record.r_function
