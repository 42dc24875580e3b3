"""The neural estimator of a whole data set (pymixnn.amortize): priors, padding, errors before any
torch work, the trained network against a closed-form posterior, SBC, save/load, compare_fits.

The closed-form case: y_ij = A + eta_i + a e_ij (identity transform, omega2 and a fixed), prior
A ~ N(10, 2^2). The individual means are sufficient: ybar_i ~ N(A, omega2 + a^2 / T), so the
posterior of A is normal with precision 1/4 + N / (omega2 + a^2 / T) and mean
(10/4 + sum_i ybar_i / (omega2 + a^2/T)) / precision. A Gaussian NPE can be exact here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pymixnn
from pymixnn.data.padded import pad_records
from pymixnn.model.prior import Prior
from pymixnn.validation import InputError

N, T, OMEGA2, A_ERR = 30, 4, 0.25, 1.0
PRIOR = {"A": ("normal", 10.0, 2.0), "omega2.A": OMEGA2, "a": A_ERR}


def _level(psi, x):
    return psi[..., 0] + 0.0 * x[..., 0]


MODEL = pymixnn.Model(_level, ["A"], transforms="identity", error="constant", x_names=["t"])


def _design(n=N, t=T):
    return pd.DataFrame({"id": np.repeat(np.arange(1, n + 1), t), "t": np.tile(np.arange(t, dtype=float), n)})


def _data(A, seed, n=N, t=T):
    rng = np.random.default_rng(seed)
    df = _design(n, t)
    eta = rng.normal(0, np.sqrt(OMEGA2), n)
    df["y"] = A + np.repeat(eta, t) + A_ERR * rng.standard_normal(n * t)
    return df


def _exact(df):
    ybar = df.groupby("id")["y"].mean().to_numpy()
    v = OMEGA2 + A_ERR**2 / T
    prec = 1 / 4 + len(ybar) / v
    return (10 / 4 + ybar.sum() / v) / prec, prec**-0.5


@pytest.fixture(scope="module")
def estimator():
    # 4,000 Adam steps of 32 data sets (~20 s): enough for a one-parameter Gaussian posterior
    return pymixnn.amortize(MODEL, _design(), PRIOR, n_simulations=128_000, x="t", seed=0, progress=False)


def test_prior_checks_names_laws_and_support():
    model = pymixnn.named("logistic")
    full = {
        "A": ("uniform", 80, 120),
        "B": ("uniform", 4, 6),
        "C": 1.5,
        "omega2.A": ("loguniform", 0.02, 0.08),
        "omega2.B": 0.03,
        "omega2.C": 0.03,
        "a": ("lognormal", 0.0, 0.3),
    }
    prior = Prior.of(model, full)
    assert prior.free == ["A", "B", "omega2.A", "a"]
    draws = prior.sample(np.random.default_rng(0), 1000)
    assert draws[:, 0].min() >= 80 and draws[:, 0].max() <= 120 and np.all(draws[:, 2] == 1.5)
    # the first rows do not depend on how many are drawn (one uniform array mapped by quantiles)
    np.testing.assert_array_equal(prior.sample(np.random.default_rng(0), 3), draws[:3])
    with pytest.raises(ValueError, match=r"no law for \['a'\]"):
        Prior.of(model, {k: v for k, v in full.items() if k != "a"})
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['D'\]"):
        Prior.of(model, {**full, "D": 1.0})
    with pytest.raises(ValueError, match="'B'.*low < high"):
        Prior.of(model, {**full, "B": ("uniform", 6, 4)})
    with pytest.raises(ValueError, match="'A'.*reaches -1.0, outside the support of its 'log' scale"):
        Prior.of(model, {**full, "A": ("uniform", -1, 120)})
    with pytest.raises(ValueError, match="'A'.*kind one of"):
        Prior.of(model, {**full, "A": ("gamma", 1, 2)})


def test_padding_keeps_order_and_names_bad_rows():
    df = pd.DataFrame({"id": ["b", "b", "a", "b"], "t": [0.0, 1.0, 0.0, 2.0], "y": [1.0, 2.0, 3.0, 4.0]})
    rec = pad_records(df, id="id", x=["t"], y="y")
    assert list(rec.ids) == ["b", "a"]
    np.testing.assert_array_equal(rec.y, [[1.0, 2.0, 4.0], [3.0, 0.0, 0.0]])
    np.testing.assert_array_equal(rec.x[1, :, 0], [0.0, 0.0, 0.0])  # padding repeats the last record
    bad = df.assign(t=[0.0, np.nan, 0.0, 2.0])
    with pytest.raises(InputError, match=r"x column 't' has 1 missing .* at row 1"):
        pad_records(bad, id="id", x=["t"], y="y")


def test_amortize_rejects_bad_input_before_training(monkeypatch):
    import pymixnn.inference.neural as neural

    monkeypatch.setattr(neural, "train_estimator", lambda *a, **k: pytest.fail("trained on bad input"))
    with pytest.raises(InputError, match=r"no law for \['a'\]"):
        pymixnn.amortize(MODEL, _design(), {"A": ("normal", 10, 2), "omega2.A": 0.25})
    with pytest.raises(InputError, match="x column 'time' is not in the data"):
        pymixnn.amortize(MODEL, _design(), PRIOR, x="time")
    with pytest.raises(InputError, match="n_simulations=10 is below batch_size=32"):
        pymixnn.amortize(MODEL, _design(), PRIOR, n_simulations=10, x="t")
    with pytest.raises(InputError, match="every parameter of the prior is fixed"):
        pymixnn.amortize(MODEL, _design(), {"A": 10.0, "omega2.A": 0.25, "a": 1.0}, x="t")


def test_estimate_matches_the_closed_form_posterior(estimator):
    # 20 data sets from the prior: the network's posterior mean within 0.3 posterior sd of the exact
    # one (0.1 on average) and its sd within 6% (a Gaussian family contains the exact posterior;
    # what is left is training error, measured at |z| <= 0.23, mean 0.06, sd ratios 0.95-1.01)
    rng = np.random.default_rng(5)
    z = []
    for r in range(20):
        df = _data(rng.normal(10, 2), seed=100 + r)
        mean, sd = _exact(df)
        est = estimator.estimate(df, n_draws=20_000, seed=r)
        row = est.params.loc["A"]
        z.append((row["estimate"] - mean) / sd)
        assert abs(z[-1]) < 0.3, (r, row["estimate"], mean, sd)
        assert abs(row["se"] / sd - 1) < 0.06, (r, row["se"], sd)
    assert np.mean(np.abs(z)) < 0.1
    assert est.params.loc["omega2.A", "estimate"] == OMEGA2 and est.params.loc["a", "se"] == 0
    assert est.warnings == []
    assert est.seconds < 0.5


def test_sbc_is_uniform_for_the_exact_case(estimator, tmp_path):
    sbc = estimator.sbc(n_replicates=200, n_draws=100, seed=3)
    assert list(sbc.table.index) == ["A"] and sbc.ranks.shape == (200, 1)
    assert sbc.ranks["A"].between(0, 100).all()
    # a calibrated posterior gives uniform ranks: KS p above 0.01 (fixed seed: deterministic)
    assert sbc.table.loc["A", "p_value"] > 0.01
    sbc.plot(tmp_path / "sbc.png")
    assert (tmp_path / "sbc.png").stat().st_size > 1000


def test_save_load_compare_and_design_warnings(estimator, tmp_path):
    df = _data(11.0, seed=7)
    est = estimator.estimate(df, seed=1)
    path = estimator.save(tmp_path / "neural.json")
    with pytest.raises(ValueError, match="pass model="):
        pymixnn.NeuralEstimator.load(path)
    again = pymixnn.NeuralEstimator.load(path, model=MODEL)
    pd.testing.assert_frame_equal(again.estimate(df, seed=1).params, est.params)
    table = pymixnn.compare_fits(est)
    assert (
        table.loc["engine", "neural"] == "neural"
        and table.loc["A", "neural"] == est.params.loc["A", "estimate"]
    )
    fewer = df[df["id"] <= 20]
    assert (
        "20 individuals; the estimator was trained on data sets of 30" in estimator.estimate(fewer).warnings
    )
    with pytest.raises(InputError, match="an individual has 5 records"):
        estimator.estimate(_data(10.0, seed=1, t=5))


def test_same_seed_same_estimator_and_global_state_untouched():
    import torch

    before = torch.random.get_rng_state()
    a = pymixnn.amortize(MODEL, _design(), PRIOR, n_simulations=320, x="t", seed=4, progress=False)
    b = pymixnn.amortize(MODEL, _design(), PRIOR, n_simulations=320, x="t", seed=4, progress=False)
    c = pymixnn.amortize(MODEL, _design(), PRIOR, n_simulations=320, x="t", seed=5, progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)
    for k, v in a.state["weights"].items():
        np.testing.assert_array_equal(v, b.state["weights"][k])
    assert not np.array_equal(a.state["weights"]["head.4.weight"], c.state["weights"]["head.4.weight"])


def test_command_line_amortize_then_estimate(tmp_path, capsys):
    import json

    from pymixnn.cli import main

    design = tmp_path / "design.csv"
    _design().to_csv(design, index=False)
    prior = tmp_path / "prior.json"
    prior.write_text(
        json.dumps(
            {
                "A": ["uniform", 80, 120],
                "B": ["uniform", 4, 6],
                "C": 1.5,
                "omega2.A": 0.04,
                "omega2.B": 0.04,
                "omega2.C": 0.04,
                "a": ["uniform", 1, 3],
            }
        )
    )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"A": ["uniform", 80, 120]}))
    est = tmp_path / "est.json"
    base = ["amortize", str(design), "--model", "logistic", "--x", "t", "--out", str(est)]
    assert main(base + ["--prior", str(bad)]) == 2
    assert "pymixnn: error: prior has no law for ['B', 'C'," in capsys.readouterr().err
    assert not est.exists()  # nothing trained, nothing written
    assert main(base + ["--prior", str(prior), "--n-simulations", "320", "--no-progress"]) == 0
    assert "estimator written to" in capsys.readouterr().out
    df = _design()
    df["y"] = 100 / (1 + np.exp(-(df["t"] - 5) / 1.5)) + np.random.default_rng(0).normal(0, 2, len(df))
    data = tmp_path / "data.csv"
    df.to_csv(data, index=False)
    out = tmp_path / "estimates.csv"
    assert main(["estimate", str(est), str(data), "--out", str(out)]) == 0
    table = pd.read_csv(out).set_index("parameter")
    assert list(table.columns) == ["kind", "estimate", "se", "ci_lower", "ci_upper", "median"]
    # the fixed parameters exactly at their values; the same numbers as the Python API
    assert table.loc["C", "estimate"] == 1.5 and table.loc["omega2.A", "se"] == 0
    again = pymixnn.NeuralEstimator.load(est).estimate(df, seed=0).params
    np.testing.assert_allclose(table["estimate"], again["estimate"], rtol=1e-12)
    df.loc[3, "y"] = np.nan
    df.to_csv(data, index=False)
    assert main(["estimate", str(est), str(data)]) == 2
    assert (
        "y column 'y' has 1 missing or non-numeric value(s), the first at line 5" in capsys.readouterr().err
    )
