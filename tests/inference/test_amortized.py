"""Amortized local posteriors (``local="amortized"``): the set encoder, its joint training by SVI,
the amortization gap, new individuals in one forward pass, save/load, and the errors.

Design: the logistic simulation (A=100, B=5, C=1.5, omega2 0.04/0.0225/0.04, sigma=2), 200
individuals x 10 observations; benchmarks/amortized.py runs the issue's N = 10,000."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import pymixnn
from pymixnn.inference.encoder import Encoder, cell_features
from pymixnn.results.amortized import encode_individuals
from pymixnn.simulate import simulate_logistic

N = 200
FIT = dict(id="id", x="t", y="y", seed=0, progress=False, max_steps=600)


@pytest.fixture(scope="module")
def logistic():
    return simulate_logistic(n_individuals=N, n_obs=10, seed=3)


@pytest.fixture(scope="module")
def individual(logistic):
    return pymixnn.fit(logistic, "logistic", **FIT)


@pytest.fixture(scope="module")
def amortized(logistic):
    # 1,000 SVI steps: the network's training (the per-individual fit stops at its plateau)
    return pymixnn.fit(logistic, "logistic", local="amortized", refine_steps=2, **dict(FIT, max_steps=1000))


@pytest.fixture(scope="module")
def newcomers():
    new = simulate_logistic(n_individuals=100, n_obs=10, seed=4)
    new["id"] = new["id"] + 1000
    return new


def test_encoder_is_invariant_to_the_order_and_the_padding_of_records():
    torch.manual_seed(0)
    B, T, d = 5, 7, 3
    x, y = torch.rand(B, T, 1, dtype=torch.float64) * 10, torch.randn(B, T, dtype=torch.float64) * 20 + 50
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 5:] = False
    enc = Encoder(
        cell_features(x, y, {}), mask, torch.zeros(B, 0, dtype=torch.float64), d, np.full(d, 0.2), seed=1
    )
    for p in enc.net.rho[-1].parameters():  # a trained last layer, not the zero start
        torch.nn.init.normal_(p, std=0.3)
    loc, tril = enc.all()
    # the same records in another order, and two more padding cells holding junk
    perm = torch.randperm(T)
    x2 = torch.cat([x[:, perm], torch.full((B, 2, 1), 99.0, dtype=torch.float64)], 1)
    y2 = torch.cat([y[:, perm], torch.full((B, 2), -7.0, dtype=torch.float64)], 1)
    m2 = torch.cat([mask[:, perm], torch.zeros(B, 2, dtype=torch.bool)], 1)
    enc2 = Encoder.from_state(
        enc.state(), cell_features(x2, y2, {}), m2, torch.zeros(B, 0, dtype=torch.float64), d
    )
    loc2, tril2 = enc2.all()
    # float64 sums in another order: equal to rounding
    assert torch.allclose(loc, loc2, atol=1e-12) and torch.allclose(tril, tril2, atol=1e-12)
    # the factor is lower triangular with a positive diagonal
    assert torch.all(torch.triu(tril, 1) == 0) and torch.all(torch.diagonal(tril, dim1=-2, dim2=-1) > 0)


def test_the_encoder_starts_at_the_prior():
    B, T, d = 4, 3, 2
    cells = cell_features(torch.rand(B, T, 1, dtype=torch.float64), torch.rand(B, T, dtype=torch.float64), {})
    enc = Encoder(
        cells,
        torch.ones(B, T, dtype=torch.bool),
        torch.zeros(B, 0, dtype=torch.float64),
        d,
        np.array([0.2, 0.5]),
    )
    loc, tril = enc.all()
    assert torch.all(loc == 0)
    # softplus(log(expm1(sd))) = sd, plus the 1e-5 floor
    assert np.allclose(
        torch.diagonal(tril, dim1=-2, dim2=-1).numpy(), [[0.2 + 1e-5, 0.5 + 1e-5]] * B, atol=1e-12
    )


def test_amortized_fit_reaches_the_per_individual_fit(individual, amortized):
    # the refinement maximizes the same likelihood, started from the encoder's posteriors: the
    # issue's bar is 0.25 SE (measured 1e-4 SE); ll.is within 0.05 (same seeds)
    diff = (amortized.params["estimate"] - individual.params["estimate"]).abs() / individual.params["se"]
    assert diff.max() < 0.25, diff
    assert amortized.loglik == pytest.approx(individual.loglik, abs=0.05)
    # and the truth within 3 SE (A 100, B 5, C 1.5, sigma 2)
    for name, truth in dict(A=100.0, B=5.0, C=1.5, a=2.0).items():
        est, se = amortized.params.loc[name, ["estimate", "se"]]
        assert abs(est - truth) < 3 * se, name
    # SVI trained the network for all max_steps (no stop at the ELBO's plateau)
    assert amortized.estimation.steps == 1000


def test_amortization_gap(amortized, individual):
    table = amortized.amortization
    assert list(table.columns) == [
        "elbo_encoder",
        "elbo_individual",
        "gap",
        "elbo_refined",
        "gap_refined",
        "ess",
        "flagged",
    ]
    # the effective sample size of the encoder's q as a proposal, of 64 draws; flagged below 6.4
    assert table["ess"].between(1.0, 64.0 + 1e-9).all()
    assert (table["flagged"] == (table["ess"] < 6.4)).all()
    assert amortized.estimation.amortized["n_flagged"] == int(table["flagged"].sum())
    # a poor proposal goes with a large gap (measured: median gap of the flagged 10x the others')
    if table["flagged"].any():
        assert table.loc[table.flagged, "gap"].median() > table.loc[~table.flagged, "gap"].median()
    assert table.index.equals(pd.Index(amortized.data.ids, name="id"))
    # the bars are mean gap <= 1 nat per individual, <= 0.1 with refine_steps, at its
    # N = 10,000 (benchmarks/results/amortized.md: 0.571 and 3.9e-5). At this test's N = 200 and
    # 1,000 steps the encoder's training is not converged, and its gap depends on the CPU's
    # rounding over the 1,000 SGD steps: measured 0.92 on the CI machine of stop 42, 1.31 on a
    # Xeon with AVX-512 FP16 / AMX (1.12 at 1,500 steps, 1.06 at 2,000). Asserted: < 1.5 here,
    # and the refinement's gap < 0.1 (measured 1e-5 on both). The per-individual optimum is
    # never much worse than the encoder (a few 0.01 nat of Monte Carlo noise in the common-draw
    # difference of two 64-draw ELBOs: its lowest individual measured above -0.05 on the Intel
    # machines above, -0.071 on an AMD EPYC (2026-12-06); a broken mode search gives whole nats)
    assert table["gap"].mean() < 1.5
    assert table["gap_refined"].mean() < 0.1
    assert table["gap"].min() > -0.15
    assert amortized.is_amortized and not individual.is_amortized
    with pytest.raises(ValueError, match="needs the encoder of a fit with local='amortized'"):
        individual.amortization


def test_new_individuals_in_one_forward_pass(amortized, individual, newcomers):
    from pymixnn.results.amortized import encode_individuals, posterior_modes

    psi = amortized.individual_params(newcomers)
    assert list(psi.columns) == ["A", "B", "C"] and psi.index.equals(
        pd.Index(newcomers.id.unique(), name="id")
    )
    eta = np.log(psi.to_numpy()) - amortized.estimation.mu
    _, mode, sd = posterior_modes(amortized, newcomers)
    # the encoder plus the fit's refine_steps=2 Newton steps: the bar, 95% within 0.1
    # posterior SD of the mode in every random effect (measured: 99%; the 95% quantile of the largest |z| 0.011)
    z = np.abs(eta - mode) / sd
    assert np.mean(np.all(z < 0.1, axis=1)) >= 0.95
    # the encoder alone, trained on 200 individuals, is rough (measured median 0.79 SD, 95% of
    # the individuals within 3.2 SD in every random effect; at N = 10,000 0.72,
    # benchmarks/amortized.md); one Newton step brings the median to 0.04 SD
    _, eta0, cov0 = encode_individuals(amortized, newcomers, steps=0)
    z0 = np.abs(eta0 - mode) / sd
    assert np.median(z0) < 1.2 and np.quantile(z0.max(axis=1), 0.9) < 4.0
    # its posterior SDs are of the right size (measured ratio to the Laplace SDs: median 1.13)
    ratio = np.sqrt(np.diagonal(cov0, axis1=-2, axis2=-1)) / sd
    assert 0.5 < np.median(ratio) < 2.0
    # individual predictions of new individuals from their own records, far better than eta = 0
    ipred = amortized.predict(newcomers, level="individual")
    pred = amortized.predict(newcomers, level="population")
    rmse = lambda p: float(np.sqrt(np.mean((p - newcomers.y) ** 2)))  # noqa: E731
    assert rmse(ipred) < 0.4 * rmse(pred)
    # a fit without encoder: predict keeps eta = 0 for new individuals; individual_params(newdata)
    # gives their conditional modes at that fit's parameters (the same Newton path, to 1e-10)
    assert np.allclose(individual.predict(newcomers, level="individual"), individual.predict(newcomers))
    _, own_mode, _ = posterior_modes(individual, newcomers)
    own = np.log(individual.individual_params(newcomers).to_numpy()) - individual.estimation.mu
    assert np.allclose(own, own_mode, atol=1e-10)
    # the old positional use of kind still works
    assert individual.individual_params("map").shape == (N, 3)


def test_saved_amortized_fit_keeps_its_encoder(amortized, newcomers, tmp_path):
    path = amortized.save(tmp_path / "fit.json")
    back = pymixnn.Results.load(path)
    assert np.array_equal(
        back.individual_params(newcomers).to_numpy(), amortized.individual_params(newcomers).to_numpy()
    )
    pd.testing.assert_frame_equal(back.amortization, amortized.amortization)


def test_amortized_fit_is_reproducible(logistic):
    small = logistic[logistic.id <= 40]
    kw = dict(FIT, max_steps=60, refine=False, local="amortized")
    a, b = pymixnn.fit(small, "logistic", **kw), pymixnn.fit(small, "logistic", **kw)
    assert np.array_equal(a.estimation.theta, b.estimation.theta)
    assert np.array_equal(a.amortization.to_numpy(), b.amortization.to_numpy())
    c = pymixnn.fit(small, "logistic", **dict(kw, seed=1))
    assert not np.array_equal(a.estimation.theta, c.estimation.theta)


def test_new_individuals_need_their_columns(amortized, newcomers):
    with pytest.raises(ValueError, match="'y'"):
        amortized.individual_params(newcomers.drop(columns="y"))
    with pytest.raises(ValueError, match="kind='map'"):
        amortized.individual_params(newcomers, kind="mean")


def test_amortized_refuses_what_it_does_not_support_yet(logistic):
    from pymixnn.validation import InputError

    markers = pd.DataFrame(
        {"m1": [0, 1, 2, 1], "m2": [1, 0, 1, 2], "m3": [2, 2, 0, 1]},
        index=["g1", "g2", "g3", "g4"],
        dtype=float,
    )
    small = logistic[logistic.id <= 20].assign(genotype=lambda d: "g" + (d.id % 4 + 1).astype(str))
    with pytest.raises(InputError, match=r"local='amortized' does not support genomic= yet"):
        pymixnn.fit(
            small,
            "logistic",
            local="amortized",
            genotype="genotype",
            genomic=pymixnn.Genomic(markers, params=["A"]),
            **FIT,
        )


def _grouped(n: int, seed: int) -> pd.DataFrame:
    """The logistic simulation with log A shifted by -0.15 in group 0 and +0.15 in group 1 (sd
    0.08 around each): a law of the random effects that depends on the group, for a flow
    conditioned on it (test_random_effects.test_conditional_flow's design)."""
    rng = np.random.default_rng(seed)
    df = simulate_logistic(n, 10, seed=seed)
    psi = df.attrs["psi"]
    group = (psi.index.to_numpy() > n // 2).astype(int)
    A = 100 * np.exp(np.where(group == 1, 0.15, -0.15) + 0.08 * rng.standard_normal(n))
    i = df["id"].to_numpy() - 1
    curve = 1 / (1 + np.exp(-(df["t"] - psi["B"].to_numpy()[i]) / psi["C"].to_numpy()[i]))
    df["y"] = A[i] * curve + 2.0 * rng.standard_normal(len(df))
    df["group"] = group[i]
    return df


def test_encoder_reads_the_context_of_a_conditional_flow():
    """With a flow conditioned on a covariate the encoder takes the context among its individual
    features, from the Gaussian stage on, and new individuals get theirs coded as the fitted
    ones. A short fit (60 individuals, 120 steps, no refinement): the accuracy is the slow test's."""
    df = _grouped(60, 5)
    w = np.random.default_rng(1).normal(size=60)
    df["w"] = w[df["id"].to_numpy() - 1]
    kw = dict(FIT, max_steps=120, refine=False, random_effects="flow", context=["group"])
    res = pymixnn.fit(df, "logistic", local="amortized", covariates={"B": ["w"]}, **kw)
    state = res.estimation.amortized["encoder"]
    # individual features: the covariate w, then the context's one column, standardized as the
    # flow's context (centred, unit sd over the fitted individuals)
    assert len(state["stats"]["i_mean"]) == 2
    assert state["stats"]["i_mean"][1] == pytest.approx(0.0, abs=1e-12)
    assert state["stats"]["i_sd"][1] == pytest.approx(1.0, abs=0.02)
    new = df[df.id.isin([1, 2, 3])].assign(id=lambda d: d.id + 1000)
    moved = new.assign(group=1 - new["group"])
    _, a, _ = encode_individuals(res, new, steps=0)
    _, b, _ = encode_individuals(res, moved, steps=0)
    # the same records read under the other group give another posterior: the context is read
    assert (np.abs(a[:, 0] - b[:, 0]) > 1e-4).all()
    # Newton steps under the conditional law take the design rows alone (not the context)
    _, stepped, _ = encode_individuals(res, new, steps=5)
    assert np.isfinite(stepped).all() and np.abs(stepped - a).max() > 1e-6
    with pytest.raises(ValueError, match=r"column 'group' not found in data"):
        res.individual_params(new.drop(columns="group"))


@pytest.mark.slow
def test_amortized_conditional_flow_reaches_the_per_individual_fit():
    """The conditional flow of test_random_effects.test_conditional_flow with the encoder: the IS
    log-likelihood within the issue's 2 units of the per-individual fit's (measured -0.21; largest
    estimate difference 0.46 SE, mean gap 0.44 nats), and new individuals' encoder estimates near
    their posterior modes under the fitted conditional law."""
    df = _grouped(200, 5)
    kw = dict(id="id", x="t", y="y", random_effects="flow", context=["group"], seed=1, progress=False)
    ind = pymixnn.fit(df, "logistic", **kw)
    amo = pymixnn.fit(df, "logistic", local="amortized", **kw)
    assert abs(amo.loglik - ind.loglik) < 2.0
    assert 0 <= amo.amortization.gap.mean() < 1.0
    new = df[df.id.isin(range(1, 201, 10))].assign(id=lambda d: d.id + 1000)
    _, enc, _ = encode_individuals(amo, new, steps=0)
    _, mode, _ = encode_individuals(amo, new, steps=100)
    # the encoder's mean against the mode after 100 Newton steps: within 0.25 on the log scale
    # (the posterior sd of log A is ~0.03, of log B and log C ~0.1; measured: see the closing note)
    assert np.abs(enc - mode).max() < 0.25


@pytest.fixture(scope="module")
def bimodal():
    from pymixnn.simulate import NormalMixture1D

    # log A a 40/60 mixture 4 sd apart (the random-effects benchmark's bimodal truth), N = 150
    return simulate_logistic(150, 10, laws={"A": NormalMixture1D.separated(0.4, 4.0, 0.1)}, seed=0)


@pytest.mark.parametrize("law", [pytest.param("flow", marks=pytest.mark.slow), "mixture"])
def test_amortized_fit_with_a_flexible_law(bimodal, law):
    """The encoder with a flow or a 2-component mixture: the law stage trains a copy of the Gaussian
    stage's encoder under the new law, and the IS log-likelihood matches the per-individual
    fit's. Tolerance 2 units: the issue's bar (measured at N = 150: flow -0.16, mixture 0.00; at
    N = 500, benchmarks/results/amortized_laws.md: flow -0.50, mixture 0.00). The flow case is
    in make test-all: vignette 07 runs the same flow comparison in quick mode."""
    kw = dict(FIT, random_effects=law, **({"n_components": 2} if law == "mixture" else {}))
    ind = pymixnn.fit(bimodal, "logistic", **kw)
    amo = pymixnn.fit(bimodal, "logistic", local="amortized", **dict(kw, max_steps=1000))
    assert abs(amo.loglik - ind.loglik) < 2.0
    # the law is really fitted: its law of log A has the truth's two modes
    assert amo.re_summary().loc["A", "n_modes"] == 2
    # the gap is measured under the fitted law (the law stage's record): at most 1.5 nats at
    # N = 150 after 1,000 steps (measured: flow 0.78 here and 1.09 in vignette 07's run of the
    # same fit, mixture 0.80; 0.53-0.54 at N = 500)
    gap = amo.amortization.gap
    assert len(gap) == 150 and 0 <= gap.mean() < 1.5
    # new individuals through the law's encoder, and their Newton steps under the fitted law
    new = simulate_logistic(20, 10, seed=5).assign(id=lambda d: d.id + 1000)
    enc = amo.individual_params(new)
    assert enc.shape == (20, 3) and np.isfinite(enc.to_numpy()).all()


def test_summary_and_settings_of_an_amortized_fit(amortized, individual):
    text = amortized.summary().text
    assert "Local posteriors: amortized (a set encoder, " in text
    assert f"mean amortization gap {amortized.amortization.gap.mean():.3f} nats per individual" in text
    assert "Local posteriors" not in individual.summary().text
    assert amortized.settings["local"] == "amortized" and amortized.settings["refine_steps"] == 2
    assert "local" not in individual.settings


def test_gap_on_a_subsample_of_a_large_data_set(logistic, monkeypatch):
    """Beyond ``gap_individuals`` individuals the gap and the effective sample sizes are measured
    on that many random ones (NaN elsewhere): the SVI end point is the same, and the record says
    how many. Here 60 of 200 stand in for 10,000 of 10^5."""
    import functools

    import pymixnn.inference as inference

    kw = dict(FIT, max_steps=150, refine=False, local="amortized")
    full = pymixnn.fit(logistic, "logistic", **kw)
    monkeypatch.setattr(
        inference, "EstimationOptions", functools.partial(inference.EstimationOptions, gap_individuals=60)
    )
    sub = pymixnn.fit(logistic, "logistic", **kw)
    gap = sub.amortization
    assert gap["gap"].notna().sum() == 60 and gap["ess"].notna().sum() == 60
    assert not gap.loc[gap["gap"].isna(), "flagged"].any()
    assert sub.estimation.amortized["gap_individuals"] == 60
    assert "(gap and effective sample sizes on 60 random individuals)" in sub.summary().text
    assert full.estimation.amortized["gap_individuals"] is None
    # the gap pass changes no estimate: the same SVI end point, the same ll.is after re-centring
    # (the modes converge to 1e-8; measured difference below 1e-6 units)
    assert np.array_equal(sub.estimation.theta, full.estimation.theta)
    assert abs(sub.loglik - full.loglik) < 1e-3
    # the same individuals' gaps as in the full pass, but for the Monte Carlo draws (64 per
    # individual, other ones here): their means within 0.08 nat, about 4 MC SDs of the
    # difference of two 60-individual means (measured -0.027)
    rows = gap["gap"].notna()
    assert abs(gap.loc[rows, "gap"].mean() - full.amortization.loc[rows, "gap"].mean()) < 0.08


@pytest.fixture(scope="module")
def theo_events_amortized():
    raw = pymixnn.datasets.load_nonmem("theo")
    data = pymixnn.Data.from_nonmem(raw, covariates=["Weight"])
    res = pymixnn.fit(
        data,
        "pk1cpt_oral",
        covariates={"V": ["Weight"]},
        seed=0,
        progress=False,
        local="amortized",
        max_steps=600,
    )
    return raw, res


def test_encoder_reads_the_doses_of_event_data(theo_events_amortized):
    """On NONMEM records the encoder's records are the observations (time, endpoint, y; not the
    positions that locate a record) plus the doses as records of their own (DOSE_FEATURES), and
    new individuals are read from their NONMEM records: a doubled dose moves the posterior, and
    Newton steps from the encoder reach the fitted individuals' modes (covariate model on V: the
    new individuals' design rows, centred as the fitted ones')."""
    from pymixnn.inference.encoder import DOSE_FEATURES

    raw, res = theo_events_amortized
    stats = res.estimation.amortized["encoder"]["stats"]
    # time, DVID; log|y|; the endpoint code; y; then the dose features
    assert len(stats["c_mean"]) == 5 + len(DOSE_FEATURES)
    new = raw[raw.ID.isin([1, 5])].assign(ID=lambda d: d.ID + 100)
    ids, eta0, _ = encode_individuals(res, new, steps=0)
    assert ids.tolist() == [101, 105]
    _, doubled, _ = encode_individuals(res, new.assign(AMT=2 * new.AMT), steps=0)
    assert np.abs(doubled - eta0).max() > 0.02  # measured 0.09 on ka
    # copies of fitted individuals: 100 Newton steps from the encoder land on their modes at the
    # fitted parameters (measured 0.005 from eta_map, itself a converged Newton solve)
    _, mode, _ = encode_individuals(res, new, steps=100)
    np.testing.assert_allclose(mode, res.random_effects().loc[[1, 5]].to_numpy(), atol=0.02)
    psi = res.individual_params(new)
    assert psi.index.tolist() == [101, 105] and (psi.to_numpy() > 0).all()
    # individual predictions at new records of new individuals: the encoder's posterior from their
    # observations; the fitted individuals' at the same records within 10% (the encoder alone,
    # without Newton steps: measured in the closing note)
    pred = res.predict(new, level="individual")
    fitted = res.predict(raw[raw.ID.isin([1, 5])], level="individual")
    rel = np.abs(pred["prediction"].to_numpy() / fitted["prediction"].to_numpy() - 1)
    assert rel[fitted["prediction"].to_numpy() > 1].max() < 0.1
    with pytest.raises(ValueError, match=r"ids \[101, 105\], not in the fit, need their observations"):
        res.predict(new.drop(columns="DV"), level="individual")


def test_new_individuals_with_a_covariate_model():
    """Newton steps for new individuals of a fit with covariates use their own design rows,
    centred at the fitted individuals' mean (theta's mu is the typical value there): copies of two
    theophylline subjects (V on Weight) under new ids reach the fitted subjects' posterior modes.
    (Before, the new individuals were given the fitted design matrix: a RuntimeError.) Tolerance
    0.02 on eta: the copies' 100 Newton steps against eta_map (measured 0.006)."""
    df = pymixnn.datasets.load("theo")
    kw = dict(id="Id", x=["Dose", "Time"], y="Concentration", covariates={"V": ["Weight"]})
    res = pymixnn.fit(df, "onecpt_oral", local="amortized", seed=0, progress=False, max_steps=300, **kw)
    new = df[df.Id.isin([1, 5])].assign(Id=lambda d: d.Id + 100)
    ids, mode, _ = encode_individuals(res, new, steps=100)
    assert ids.tolist() == [101, 105]
    np.testing.assert_allclose(mode, res.random_effects().loc[[1, 5]].to_numpy(), atol=0.02)
