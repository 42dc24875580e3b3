"""The restructuring of issue 17 changed no number: theophylline, Oxboys, rapi (Poisson) and an
Orange mixture fit give the estimates, SEs and log-likelihoods that main gave before it (commit
b83a78e, tests/reference/refactor_baseline.py -> refactor_baseline.json), for the same seed."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

REFERENCE = Path(__file__).parent / "reference"
# same seed, same arithmetic in the same order: only floating-point reassociation could move a
# number, so 1e-10 relative is the bound (observed: 0, bit-identical)
RTOL = 1e-10


def _baseline_module():
    spec = importlib.util.spec_from_file_location("refactor_baseline", REFERENCE / "refactor_baseline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BASELINE = _baseline_module()
EXPECTED = json.loads((REFERENCE / "refactor_baseline.json").read_text())["fits"]


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= RTOL * max(abs(b), 1e-300)


@pytest.mark.filterwarnings("ignore::UserWarning")  # the mixture fit's convergence report
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_same_numbers_as_before_the_restructuring(name):
    got = BASELINE.numbers(BASELINE.run(name))
    want = EXPECTED[name]
    assert list(got["params"]) == list(want["params"])
    bad = {k: (got["params"][k], v) for k, v in want["params"].items() if not _close(got["params"][k], v)}
    bad |= {f"se {k}": (got["bse"][k], v) for k, v in want["bse"].items() if not _close(got["bse"][k], v)}
    assert not bad, bad
    assert _close(got["loglik"], want["loglik"])
    np.testing.assert_allclose(got["fitted_head"], want["fitted_head"], rtol=RTOL)
    np.testing.assert_allclose(got["individual_params"], want["individual_params"], rtol=RTOL)
