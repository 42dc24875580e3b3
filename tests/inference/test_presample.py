"""The Newton gear's rounds on nested random subsamples before the rounds on all individuals
(issue 19, newton_gear.presamples): at large N a full pass costs seconds, and from the
subsample's maximum the full rounds need fewer of them. The end point is still the full data's
maximum: the full rounds stop on the same criteria as without the subsamples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pymixnn
import pymixnn.inference.newton_gear as gear
from pymixnn.simulate import simulate_logistic


def test_subsample_sizes_are_nested_and_reproducible():
    assert gear.presamples(gear.NEWTON_GEAR_PRESAMPLE_MIN - 1, 0) == []
    assert [len(r) for r in gear.presamples(gear.NEWTON_GEAR_PRESAMPLE_MIN, 0)] == [10_000]
    assert [len(r) for r in gear.presamples(100_000, 0)] == [10_000]
    rows = gear.presamples(10**6, 3)
    assert [len(r) for r in rows] == [10_000, 100_000]
    # nested: the second subsample's rounds start from the first's modes on its rows
    assert bool(torch.isin(rows[0], rows[1]).all())
    assert all(bool((r.diff() > 0).all()) and int(r.max()) < 10**6 for r in rows)  # sorted rows
    again = gear.presamples(10**6, 3)
    assert all(torch.equal(a, b) for a, b in zip(rows, again))
    assert not torch.equal(gear.presamples(10**6, 4)[0], rows[0])  # the fit's seed draws them


@pytest.fixture(scope="module")
def fits():
    """The same fit with the subsample rounds (thresholds lowered: 600 individuals, one
    subsample of 100) and without them."""
    df = simulate_logistic(n_individuals=600, n_obs=10, seed=5)
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        for label, low in (("with", 500), ("without", 10**9)):
            mp.setattr(gear, "NEWTON_GEAR_PRESAMPLE_MIN", low)
            mp.setattr(gear, "NEWTON_GEAR_PRESAMPLE", 100)
            out[label] = pymixnn.fit(df, "logistic", id="id", x="t", y="y", seed=2, progress=False)
    return out


def test_the_subsample_rounds_reach_the_full_maximum(fits):
    a, b = fits["with"], fits["without"]
    assert a.info["gear"] == b.info["gear"] == "newton"
    se = b.params["se"]
    # both end on the full data's Newton decrement (within 0.01 SE of the maximum of the
    # importance-sampling log-likelihood with its proposals centred at the last round's modes);
    # the rounds' centres differ, which moves the maximum within its Monte Carlo error (over
    # seeds at N = 100-1,000: <= 0.06 SE, options.K_OPT_MAX): 0.05 SE (observed 0.002 SE; the
    # subsample's own maximum lies ~1 SE away)
    diff = ((a.params["estimate"] - b.params["estimate"]).abs() / se).max()
    assert float(diff) < 0.05, diff
    # the information at points < 0.05 SE apart (observed 1e-5 relative), and ll.is with the
    # same draws there (observed 0.0014)
    np.testing.assert_allclose(a.params["se"], se, rtol=1e-3)
    assert abs(a.loglik - b.loglik) < 0.02


def test_the_run_records_the_subsample_rounds(fits):
    a, b = fits["with"], fits["without"]
    assert a.run.seconds["presample"] > 0 and "presample" not in b.run.seconds
    stages = list(a.parameter_trace()["stage"])
    assert stages[0] == "start" and stages[-1] == "final"
    # the subsample's rounds come between the start and the rounds on all individuals
    first_refine = stages.index("refine")
    assert "presample" in stages[1:first_refine] and "presample" not in stages[first_refine:]
    # one round on the subsample (NEWTON_GEAR_PRESAMPLE_ROUNDS): its maximum need only be
    # near the full one, which the full rounds then reach
    assert stages.count("presample") == gear.NEWTON_GEAR_PRESAMPLE_ROUNDS == 1
    assert "presample" not in set(b.parameter_trace()["stage"])
