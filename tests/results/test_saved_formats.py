"""Saved results: files written by pymixnn before the typed records (format 1, committed
fixtures written at b83a78e) load and predict exactly as the fit did; format 2 round-trips."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import pymixnn
from pymixnn.results.io import FORMAT_VERSION

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "fixtures"
BASELINE = json.loads((TESTS / "reference" / "refactor_baseline.json").read_text())["fits"]
NAMES = ["theo", "rapi", "orange_mixture"]


def _load(name: str) -> pymixnn.Results:
    return pymixnn.Results.load(FIXTURES / f"saved_v1_{name}.json")


def _same(a, b) -> bool:
    """Equal values, NaN equal to NaN, through dicts, lists and arrays."""
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_same(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)) and not isinstance(a, str):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a):
        return np.isnan(b)
    return a == b


@pytest.mark.parametrize("name", NAMES)
def test_format_1_file_loads_and_predicts_as_the_fit_did(name):
    assert json.loads((FIXTURES / f"saved_v1_{name}.json").read_text())["format"] == 1
    res = _load(name)
    want = BASELINE[name]
    np.testing.assert_allclose(np.asarray(res.predict())[:20], want["predict_saved"], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(res.fittedvalues)[:20], want["fitted_head"], rtol=1e-12)
    assert list(res.params.index) == list(want["params"])
    np.testing.assert_allclose(res.params["estimate"].to_numpy(), list(want["params"].values()), rtol=1e-12)
    np.testing.assert_allclose(res.params["se"].to_numpy(), list(want["bse"].values()), rtol=1e-12)
    assert res.loglik == pytest.approx(want["loglik"], rel=1e-12)
    np.testing.assert_allclose(
        res.individual_params().to_numpy().ravel()[:40], want["individual_params"], rtol=1e-12
    )
    # the old dict records become the typed ones
    from pymixnn.inference.records import LawFit, RunInfo

    assert isinstance(res.law, LawFit) and res.law.spec == res.estimation.law["spec"]
    assert isinstance(res.run, RunInfo) and res.run.seed == res.info["seed"]
    assert res.genomic is None and res.is_genomic is False


@pytest.mark.parametrize("name", NAMES)
def test_format_2_round_trip_is_identical(name, tmp_path):
    res = _load(name)
    path = res.save(tmp_path / "fit.json")
    assert json.loads(path.read_text())["format"] == FORMAT_VERSION == 2
    back = pymixnn.Results.load(path)
    for f in dataclasses.fields(res.estimation):
        a, b = getattr(res.estimation, f.name), getattr(back.estimation, f.name)
        if dataclasses.is_dataclass(a):
            assert type(a) is type(b), f.name
            a, b = dataclasses.asdict(a), dataclasses.asdict(b)
        assert _same(a, b), f.name
    assert back.params.equals(res.params)
    assert np.array_equal(back.predict(), res.predict())
    assert np.array_equal(back.predict(level="population"), res.predict(level="population"))
    assert back.info == res.info and back.settings == res.settings
    assert back.to_json() == res.to_json()
    assert str(back.summary()) == str(res.summary())
    # and once more: a format-2 file saves to the same bytes
    assert back.save(tmp_path / "again.json").read_text() == path.read_text()


def test_unknown_format_is_a_one_line_error(tmp_path):
    record = json.loads((FIXTURES / "saved_v1_theo.json").read_text())
    record["format"] = 99
    path = tmp_path / "future.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="unknown results format 99"):
        pymixnn.Results.load(path)


def test_to_dict_has_run_information():
    d = _load("theo").to_dict()
    assert {"seed", "device", "dtype", "threads", "seconds", "fallbacks"} <= set(d["run"])
    assert d["run"]["seed"] == d["seed"] and d["run"]["fallbacks"] == {}
    for key in (
        "fixed_effects",
        "omega",
        "sigma",
        "loglik",
        "aic",
        "bic",
        "seconds",
        "device",
        "seed",
        "steps",
        "se_method",
        "versions",
        "converged",
        "diagnostics",
        "random_effects",
    ):
        assert key in d
