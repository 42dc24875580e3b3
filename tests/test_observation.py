"""Observation models: log-densities against scipy's closed forms, moments and simulation against
their definitions, and the per-family data checks (clear errors naming row and value)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import pymixnn
from pymixnn.models.observation import (
    Bernoulli,
    Binomial,
    LogLikelihood,
    NegativeBinomial,
    Normal,
    Ordinal,
    Poisson,
    ZeroInflatedPoisson,
    bind,
    from_dict,
    observation,
    to_dict,
)

T = lambda a: torch.as_tensor(np.asarray(a, float), dtype=torch.float64)  # noqa: E731
LINEAR = pymixnn.Model.named("linear")
Y = np.array([0, 1, 2, 5, 9, 0, 3])
F = np.array([-1.0, 0.0, 0.5, 1.6, 2.2, 0.3, 1.1])  # linear predictor


def test_poisson_log_link_matches_scipy():
    got = Poisson().log_prob(T(Y), T(F), {}, {}).numpy()
    np.testing.assert_allclose(got, stats.poisson.logpmf(Y, np.exp(F)), rtol=1e-12)


def test_poisson_identity_link_matches_scipy():
    lam = np.exp(F)
    got = Poisson(link="identity").log_prob(T(Y), T(lam), {}, {}).numpy()
    np.testing.assert_allclose(got, stats.poisson.logpmf(Y, lam), rtol=1e-12)


def test_negative_binomial_matches_scipy():
    alpha = 0.7
    mu = np.exp(F)
    got = NegativeBinomial().log_prob(T(Y), T(F), {"alpha": T(alpha)}, {}).numpy()
    # scipy's nbinom(n, p): n = 1/alpha, p = 1/(1 + alpha mu) gives mean mu, variance mu + alpha mu^2
    want = stats.nbinom.logpmf(Y, 1 / alpha, 1 / (1 + alpha * mu))
    np.testing.assert_allclose(got, want, rtol=1e-10)
    var = NegativeBinomial().variance(T(F), {"alpha": T(alpha)}, {}).numpy()
    np.testing.assert_allclose(var, stats.nbinom.var(1 / alpha, 1 / (1 + alpha * mu)), rtol=1e-10)


def test_zero_inflated_poisson_matches_its_definition():
    p0 = 0.3
    lam = np.exp(F)
    params = ZeroInflatedPoisson().natural(T([np.log(p0 / (1 - p0))]), LINEAR)
    got = ZeroInflatedPoisson().log_prob(T(Y), T(F), params, {}).numpy()
    want = np.where(
        Y == 0, np.log(p0 + (1 - p0) * np.exp(-lam)), np.log(1 - p0) + stats.poisson.logpmf(Y, lam)
    )
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_binomial_and_bernoulli_match_scipy():
    n = np.array([10, 10, 12, 12, 15, 1, 4])
    p = 1 / (1 + np.exp(-F))
    got = Binomial().log_prob(T(Y.clip(0, n)), T(F), {}, {"trials": T(n)}).numpy()
    np.testing.assert_allclose(got, stats.binom.logpmf(Y.clip(0, n), n, p), rtol=1e-10)
    probit = Binomial(link="probit").log_prob(T(Y.clip(0, n)), T(F), {}, {"trials": T(n)}).numpy()
    np.testing.assert_allclose(probit, stats.binom.logpmf(Y.clip(0, n), n, stats.norm.cdf(F)), rtol=1e-10)
    b = (Y > 1).astype(float)
    got = Bernoulli().log_prob(T(b), T(F), {}, {}).numpy()
    np.testing.assert_allclose(got, stats.bernoulli.logpmf(b, p), rtol=1e-12)


def test_ordinal_probabilities_and_log_density():
    obs = Ordinal(levels=(0, 1, 2, 3))
    raw = T(np.log([1.2, 0.8]))  # cuts 0, 1.2, 2.0
    cuts = np.array([0.0, 1.2, 2.0])
    params = obs.natural(raw, LINEAR)
    np.testing.assert_allclose(params["cuts"].numpy(), cuts, rtol=1e-12)
    f = np.array([-2.0, 0.3, 1.5, 4.0])
    cum = np.column_stack([1 / (1 + np.exp(-(c - f))) for c in cuts] + [np.ones_like(f)])
    probs = np.diff(np.column_stack([np.zeros_like(f), cum]), axis=1)
    got = obs.probabilities(T(f), params).numpy()
    np.testing.assert_allclose(got, probs, rtol=1e-10)
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-12)
    for k in range(4):
        lp = obs.log_prob(T(np.full(4, k)), T(f), params, {}).numpy()
        np.testing.assert_allclose(lp, np.log(probs[:, k]), rtol=1e-9)
    assert obs.parameter_names(LINEAR) == ("threshold.1|2", "threshold.2|3")


def test_normal_censored_m3_and_exponential_error():
    model = LINEAR.replace(error="combined")
    obs = bind(Normal(), model)
    a, b = 0.3, 0.1
    y = np.array([1.0, 2.0, 0.5, 0.5])
    f = np.array([1.2, 1.8, 0.9, 0.2])
    cens = np.array([0, 0, 1, 1])
    sd = np.sqrt(a**2 + b**2 * f**2)
    got = obs.log_prob(T(y), T(f), {"a": T(a), "b": T(b)}, {"censored": T(cens)}).numpy()
    want = np.where(cens == 1, stats.norm.logcdf((y - f) / sd), stats.norm.logpdf(y, f, sd))
    np.testing.assert_allclose(got, want, rtol=1e-10)
    expo = bind(Normal(), LINEAR.replace(error="exponential"))
    got = expo.log_prob(T(y), T(f), {"a": T(a)}, {}).numpy()
    np.testing.assert_allclose(got, stats.lognorm.logpdf(y, a, scale=f), rtol=1e-10)


@pytest.mark.parametrize(
    "obs, params, aux",
    [
        (Poisson(), {}, {}),
        (NegativeBinomial(), {"alpha": 0.5}, {}),
        (ZeroInflatedPoisson(), {"p0": 0.25, "logit_p0": np.log(0.25 / 0.75)}, {}),
        (Binomial(), {}, {"trials": 12.0}),
        (Bernoulli(), {}, {}),
        (Ordinal(levels=(0, 1, 2)), {"cuts": [0.0, 1.0]}, {}),
    ],
)
def test_simulated_draws_have_the_model_mean_and_variance(obs, params, aux):
    f = torch.full((200_000,), 0.7, dtype=torch.float64)
    params = {k: T(v) for k, v in params.items()}
    aux = {k: torch.full_like(f, v) for k, v in aux.items()}
    draws = obs.sample(f, params, aux, torch.Generator().manual_seed(3))
    mean, var = float(obs.mean(f, params, aux)[0]), float(obs.variance(f, params, aux)[0])
    # 200,000 draws: the sample mean's SE is sqrt(var / 2e5) < 0.01 sd; 5 SE of slack
    assert abs(float(draws.mean()) - mean) < 5 * np.sqrt(var / f.numel())
    assert abs(float(draws.var()) / var - 1) < 0.03


def test_family_names_links_and_round_trip():
    assert isinstance(observation("poisson"), Poisson)
    assert isinstance(observation("zero_inflated_poisson"), ZeroInflatedPoisson)
    with pytest.raises(ValueError, match="unknown observation 'gamma'"):
        observation("gamma")
    with pytest.raises(ValueError, match="link 'logit' is not available for observation='poisson'"):
        observation(Poisson(link="logit"))
    for obs in (
        Poisson(link="identity"),
        NegativeBinomial(),
        Binomial(link="probit"),
        Ordinal(levels=("none", "mild", "severe")),
    ):
        assert from_dict(to_dict(obs)) == obs
    fn = LogLikelihood(lambda y, f, p: -((y - f) ** 2), parameters={"k": 2.0})
    with pytest.raises(ValueError, match="user log-likelihood"):
        from_dict(to_dict(fn))
    with pytest.raises(ValueError, match="outside its 'logit' support"):
        LogLikelihood(lambda y, f, p: y, parameters={"q": 2.0}, transforms={"q": "logit"})


# ---- data checks before any fit --------------------------------------------------------------
def _counts(changes=None):
    df = pd.DataFrame(
        {
            "id": [1, 1, 1, 2, 2, 2],
            "t": [0, 1, 2] * 2,
            "y": [0.0, 2, 3, 1, 4, 6],
            "n": [5, 5, 5, 8, 8, 8],
            "cens": 0,
        }
    )
    for (row, col), v in (changes or {}).items():
        df.loc[row, col] = v
    return df


def _fit(df, **kw):
    kw.setdefault("observation", "poisson")
    return pymixnn.fit(df, "linear", id="id", x="t", y="y", progress=False, max_steps=1, **kw)


@pytest.mark.parametrize("family", ["poisson", "negative_binomial", "zero_inflated_poisson"])
def test_negative_and_fractional_counts_are_named(family):
    with pytest.raises(ValueError, match=r"column 'y' must hold non-negative counts .* row 4 has value -1"):
        _fit(_counts({(4, "y"): -1}), observation=family)
    with pytest.raises(ValueError, match=r"column 'y' must hold integer counts .* row 2 has value 2.5"):
        _fit(_counts({(2, "y"): 2.5}), observation=family)


def test_binomial_successes_above_trials_and_missing_trials():
    with pytest.raises(ValueError, match=r"more successes than trials \('n'\): row 5 has y=9.0 and n=8"):
        _fit(_counts({(5, "y"): 9}), observation="binomial", trials="n")
    with pytest.raises(ValueError, match="needs trials="):
        _fit(_counts(), observation="binomial")
    with pytest.raises(
        ValueError, match="column 'n' must hold positive integer numbers of trials: row 1 has value 0"
    ):
        _fit(_counts({(1, "n"): 0}), observation="binomial", trials="n")
    with pytest.raises(ValueError, match="trials='n' is used only by observation='binomial'"):
        _fit(_counts(), observation="poisson", trials="n")


def test_bernoulli_needs_zero_one():
    df = _counts()
    df["y"] = [0, 1, 1, 0, 2, 1]
    with pytest.raises(ValueError, match="column 'y' must be 0 or 1 .* row 4 has value 2"):
        _fit(df, observation="bernoulli")


def test_unknown_ordinal_level_is_named():
    df = _counts()
    df["y"] = ["none", "mild", "mild", "severe", "none", "extreme"]
    with pytest.raises(
        ValueError,
        match=r"column 'y' holds a level not among the ordinal levels "
        r"\['none', 'mild', 'severe'\]: row 5 has value 'extreme'",
    ):
        _fit(df, observation=pymixnn.Ordinal(levels=["none", "mild", "severe"]))
    with pytest.raises(ValueError, match="cannot order the ordinal levels"):
        _fit(df.assign(y=["a", 1, 2, "b", "a", 1]), observation="ordinal")


def test_censoring_flags_on_a_non_gaussian_family_are_named():
    with pytest.raises(
        ValueError,
        match=r"censoring column 'cens' flags censored observations: row 3 "
        r"has value 1; left-censoring \(M3\) needs observation='gaussian'",
    ):
        _fit(_counts({(3, "cens"): 1}), censoring="cens")
    with pytest.raises(ValueError, match=r"column 'cens' must be 0 \(observed\) or 1 .* row 2 has value 2"):
        _fit(_counts({(2, "cens"): 2}), observation="gaussian", censoring="cens")
    with pytest.raises(ValueError, match="error='proportional' sets the Gaussian error model"):
        _fit(_counts(), error="proportional")
