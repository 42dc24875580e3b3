"""Models without individual random effects (``random=[]``): nonlinear regression by maximum
likelihood (nlme's gnls), and with a spatial field or grouping levels carrying all of the random
variation (nlme's gls with a spatial correlation and a nugget; lme through a level). Issue 22,
point 1: nlme's Wheat2 (reference numbers committed with the R script that produced them,
tests/reference/levels/wheat2_gls.R)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import pymixnn
from benchmarks.spatial_regression import constant_model, fit_wheat2  # the benchmark's model and fit
from pymixnn.validation import InputError

REF = json.loads((Path(__file__).parent / "reference" / "levels" / "wheat2_gls.json").read_text())


def gls_terms(res) -> dict:
    """nlme's parametrization of the same model: yield = mean + field + e with one plot per
    location, so the sill is sd^2 + a^2 and the nugget a^2 / sill."""
    sd, a = res.params.loc["spatial.Y.sd", "estimate"], res.sigma["a"]
    sill = sd**2 + a**2
    return dict(range=res.params.loc["spatial.Y.range", "estimate"], sill=sill, nugget=a**2 / sill)


@pytest.fixture(scope="module", params=["exponential", "gaussian"])
def wheat2(request):
    return request.param, fit_wheat2(request.param)


def test_wheat2_matches_nlme_gls(wheat2):
    """Issue 22 point 1: range, sill and nugget within 5% and the log-likelihood within 1 unit of
    nlme's ML gls fit (the bars). The two models have the same likelihood (a linear model with
    Gaussian errors: the level block's pseudo data are exact), so what is left is optimizer
    tolerance: measured 0.002% / 0.005% / 0.04% (exponential), 0.0002% / 0.01% / 0.02% (Gaussian)
    and 1e-6 in ll; asserted within 1% (nugget 2%: it is a ratio of two estimates) and 0.01 in
    ll."""
    kernel, res = wheat2
    ref, ours = REF[kernel], gls_terms(wheat2[1])
    assert ours["range"] == pytest.approx(ref["range"], rel=0.01)
    assert ours["sill"] == pytest.approx(ref["sill"], rel=0.01)
    assert ours["nugget"] == pytest.approx(ref["nugget"], rel=0.02)
    assert res.loglik == pytest.approx(ref["logLik"], abs=0.01)
    assert res.aic == pytest.approx(ref["AIC"], abs=0.02)  # 59 parameters in both
    assert res.loglik_method == "exact"
    # far above the model with independent errors (nlme: -743.19)
    assert res.loglik > REF["independent"]["logLik"] + 100


def test_wheat2_variety_means_and_ses_match_gls(wheat2):
    """The variety means (Y + beta_variety) within 0.05 bushels (their SEs are 2.5-7, so this is
    optimizer tolerance), and their GLS SEs: nlme's vcov of an ML gls fit scales sigma^2 by
    N / (N - p) (224 / 168, as REML would), so its SEs are sqrt(4/3) = 1.155 x the ML information's;
    pymixnn's equal nlme's / 1.155 within 1%."""
    kernel, res = wheat2
    ref = REF[kernel]
    p = res.params
    base = p.loc["Y", "estimate"]
    first = sorted(ref["coef"])[0]
    assert base == pytest.approx(ref["coef"][first], abs=0.05)
    assert p.loc["Y", "se"] == pytest.approx(ref["coef_se"][first] * np.sqrt(168 / 224), rel=0.01)
    for name, value in ref["coef"].items():
        if name == first:
            continue
        row = f"beta_variety[{name[len('variety') :]}](Y)"
        assert base + p.loc[row, "estimate"] == pytest.approx(value, abs=0.05), name


def test_wheat2_spherical_matches_gls_from_the_books_start():
    """The spherical correlation's likelihood has several maxima in the range (nlme: 27.2 from a
    start at 13 or 28, ll -623.67; 48.96 from a start at 48, -624.08). From the book's start
    (range_init=28) pymixnn reaches nlme's best: range, sill, nugget within 1% (nugget 2%) and ll
    within 0.01 (measured 27.2094 / 48.354 / 0.1553 / -623.6662); from its default start (the best
    of START_RANGES x the median distance) another maximum, range 34.1, ll -623.79: within the
    acceptance's 1 unit of nlme's best, not above it."""
    ref = REF["spherical"]
    res = fit_wheat2("spherical", range_init=28.0)
    ours = gls_terms(res)
    assert ours["range"] == pytest.approx(ref["range"], rel=0.01)
    assert ours["sill"] == pytest.approx(ref["sill"], rel=0.01)
    assert ours["nugget"] == pytest.approx(ref["nugget"], rel=0.02)
    assert res.loglik == pytest.approx(ref["logLik"], abs=0.01)
    default = fit_wheat2("spherical")
    assert ref["logLik"] - 1 < default.loglik < ref["logLik"] + 0.01


def test_nonlinear_regression_matches_least_squares():
    """random=[] without levels: nonlinear least squares (maximum likelihood with a constant
    error: sigma^2 = RSS / n) of the one-compartment model on theophylline, against scipy's
    least_squares from the same start: estimates within 1e-4 (both converge to the same
    minimum), and ll = -n/2 (log(2 pi RSS / n) + 1) within 1e-6."""
    from scipy.optimize import least_squares

    df = pymixnn.datasets.load("theo")
    res = pymixnn.fit(
        df, "onecpt_oral", id="Id", x=["Dose", "Time"], y="Concentration", random=[],
        init={"ka": 1, "V": 20, "CL": 0.5}, seed=0, progress=False, threads=1,
    )  # fmt: skip
    dose, t, y = (df[c].to_numpy(float) for c in ("Dose", "Time", "Concentration"))

    def resid(lp):
        ka, V, CL = np.exp(lp)
        ke = CL / V
        return dose * ka / (V * (ka - ke)) * (np.exp(-ke * t) - np.exp(-ka * t)) - y

    ls = least_squares(resid, np.log([1.0, 20.0, 0.5]), xtol=1e-14, ftol=1e-14, gtol=1e-14)
    rss, n = float((ls.fun**2).sum()), len(y)
    for name, value in zip(("ka", "V", "CL"), np.exp(ls.x)):
        assert res.fixed_effects[name] == pytest.approx(value, rel=1e-4)
    assert res.sigma["a"] == pytest.approx(np.sqrt(rss / n), rel=1e-4)
    assert res.loglik == pytest.approx(-n / 2 * (np.log(2 * np.pi * rss / n) + 1), abs=1e-6)
    assert "no individual random effects" in str(res.summary())
    assert res.omega.shape == (0, 0)


def test_level_without_individual_effects_is_lme():
    """random=[] with a level: one row per individual and a random intercept per Subject is the
    linear mixed model height ~ age + (1 | Subject) (Oxboys), exact in the level block: the ML
    fit of statsmodels' MixedLM (reml=False): ll within 0.01, the level variance within 1% and
    the intercept within 1e-3 (optimizer tolerances)."""
    import statsmodels.formula.api as smf

    df = pymixnn.datasets.load("oxboys").reset_index(drop=True)
    df["row"] = np.arange(len(df))
    model = pymixnn.Model(
        function=lambda psi, x: psi[..., 0] + psi[..., 1] * x[..., 0],
        parameters=["b0", "b1"],
        transforms={"b0": "identity", "b1": "identity"},
        init={"b0": 150.0, "b1": 6.0},
        random=[],
    )
    res = pymixnn.fit(
        df, model, id="row", x="age", y="height", levels=[pymixnn.Level("Subject", params=["b0"])],
        seed=0, progress=False, threads=1,
    )  # fmt: skip
    ref = smf.mixedlm("height ~ age", df, groups=df["Subject"]).fit(reml=False)
    assert res.loglik == pytest.approx(ref.llf, abs=0.01)
    assert res.params.loc["omega2.Subject.b0", "estimate"] == pytest.approx(
        float(ref.cov_re.iloc[0, 0]), rel=0.01
    )
    assert res.fixed_effects["b0"] == pytest.approx(ref.fe_params["Intercept"], abs=1e-3)
    assert res.fixed_effects["b1"] == pytest.approx(ref.fe_params["age"], abs=1e-3)
    assert res.sigma["a"] ** 2 == pytest.approx(ref.scale, rel=0.01)


def test_random_empty_bad_input():
    """random=[] with what needs individual random effects: one error each, naming it."""
    df = pymixnn.datasets.load("theo")
    args = dict(id="Id", x=["Dose", "Time"], y="Concentration", random=[], init={"ka": 1, "V": 20, "CL": 0.5})
    with pytest.raises(InputError, match="random=\\[\\] with random_effects='mixture'"):
        pymixnn.NLME(df, "onecpt_oral", random_effects="mixture", n_components=2, **args)
    with pytest.raises(InputError, match="needs individual random effects"):
        pymixnn.fit(df, "onecpt_oral", local="amortized", progress=False, **args)
    # a level on a parameter without a random effect while others have one
    with pytest.raises(InputError, match="or fit without individual random effects"):
        pymixnn.NLME(
            df, "onecpt_oral", id="Id", x=["Dose", "Time"], y="Concentration", random=["ka"],
            spatial=pymixnn.Spatial(params=["V"], coords=["Weight", "Dose"]),
        )  # fmt: skip
    with pytest.raises(InputError, match="range_init"):
        pymixnn.Spatial(params=["Y"], coords=["a", "b"], range_init=-1.0)
    with pytest.raises(InputError, match="range_init"):
        pymixnn.Spatial(params=["Y"], coords=["a", "b"], kind="ar1xar1", range_init=2.0)
    with pytest.raises(InputError, match="up to 3 dimensions"):
        pymixnn.Spatial(params=["Y"], coords=["a", "b", "c", "d"], kernel="spherical")


def test_spherical_kernel_closed_form():
    """The spherical correlation 1 - 1.5 d + 0.5 d^3 (d = distance / range < 1), 0 beyond: nlme's
    corSpher; numpy and torch agree."""
    from pymixnn.model.spatial import kernel_correlation

    s = np.array([0.0, 0.5, 1.0, 2.0])
    expect = np.array([1.0, 1 - 0.75 + 0.0625, 0.0, 0.0])
    assert np.allclose(kernel_correlation("spherical", s), expect, atol=1e-15)
    assert np.allclose(kernel_correlation("spherical", torch.tensor(s)).numpy(), expect, atol=1e-15)
    assert np.allclose(kernel_correlation("gaussian", s), np.exp(-(s**2)))


def test_cli_random_none(tmp_path, capsys):
    """``pymixnn fit ... --random none``: the nonlinear regression, the same estimates as the
    Python call (deterministic: no draws), "no individual random effects" in the summary."""
    from pymixnn.cli import main

    df = pymixnn.datasets.load("theo")
    df.to_csv(tmp_path / "theo.csv", index=False)
    out = tmp_path / "fit.json"
    args = ["fit", str(tmp_path / "theo.csv"), "--model", "onecpt_oral", "--id", "Id", "--x", "Dose,Time"]
    args += ["--y", "Concentration", "--random", "none", "--init", "ka=1", "V=20", "CL=0.5"]
    assert main([*args, "--json", str(out), "--no-progress"]) == 0
    assert "no individual random effects" in capsys.readouterr().out
    record = json.loads(out.read_text())
    res = pymixnn.fit(
        df, "onecpt_oral", id="Id", x=["Dose", "Time"], y="Concentration", random=[],
        init={"ka": 1, "V": 20, "CL": 0.5}, seed=0, progress=False, threads=1,
    )  # fmt: skip
    assert record["loglik"] == pytest.approx(res.loglik, abs=1e-8)


def test_poisson_without_random_effects_is_statsmodels_glm():
    """random=[] with a Poisson observation model is a GLM (log link: the structural function is
    the log rate): statsmodels' Poisson GLM on epil, estimates and SEs within 1e-5 and ll within
    1e-6 (the same exact likelihood, both maximized to convergence; measured 1e-9)."""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    df = pymixnn.datasets.load("epil")
    with pytest.warns(UserWarning, match="repeat an earlier row"):
        res = pymixnn.fit(
            df, "linear", id="subject", x="V4", y="y", observation="poisson", random=[],
            covariates={"intercept": ["lbase", "trt"]}, seed=0, progress=False, threads=1,
        )  # fmt: skip
    ref = smf.glm("y ~ V4 + lbase + trt", df, family=sm.families.Poisson()).fit()
    names = {
        "intercept": "Intercept",
        "slope": "V4",
        "beta_lbase(intercept)": "lbase",
        "beta_trt[progabide](intercept)": "trt[T.progabide]",
    }
    for ours, theirs in names.items():
        assert res.params.loc[ours, "estimate"] == pytest.approx(ref.params[theirs], abs=1e-5)
        assert res.params.loc[ours, "se"] == pytest.approx(ref.bse[theirs], rel=1e-5)
    assert res.loglik == pytest.approx(ref.llf, abs=1e-6)


@pytest.mark.slow
def test_wheat2_matern_with_all_predecessors_is_gls():
    """random=[] with a Matérn field (the nearest-neighbour algebra): nu = 1/2 with every
    predecessor as a neighbour is exact, so Wheat2 gives nlme's exponential gls fit: ll within
    0.01 (measured 1e-11), range 2 x nlme's (the Matérn 1/2's range is twice the exponential's)
    and sill within 1% (measured 2e-6); 60 s with 223 neighbours."""
    df = pymixnn.datasets.load("wheat2")
    res = pymixnn.fit(
        df, constant_model(), id="plot", x="Block", y="yield", covariates={"Y": ["variety"]},
        spatial=pymixnn.Spatial(params=["Y"], coords=["latitude", "longitude"], kind="matern", nu=0.5,
                                neighbours=223),
        seed=0, progress=False, threads=1,
    )  # fmt: skip
    ref = REF["exponential"]
    assert res.loglik == pytest.approx(ref["logLik"], abs=0.01)
    assert res.params.loc["spatial.Y.range", "estimate"] == pytest.approx(2 * ref["range"], rel=0.01)
    sill = res.params.loc["spatial.Y.sd", "estimate"] ** 2 + res.sigma["a"] ** 2
    assert sill == pytest.approx(ref["sill"], rel=0.01)


def test_event_data_without_random_effects_is_pooled_least_squares():
    """random=[] on event data: the one-compartment IV model over phenobarbital's 589 doses (pooled,
    as NONMEM's naive pooled fit) against least squares of the closed-form superposition
    C(t) = sum_doses AMT / V exp(-CL / V (t - t_dose)): CL, V and sigma within 1e-5, ll within 1e-6
    (measured 1e-10: the solver's and the closed form's predictions agree)."""
    from scipy.optimize import least_squares

    records = pymixnn.datasets.load_nonmem("phenobarb")
    res = pymixnn.fit(
        pymixnn.Data.from_nonmem(records), "pk1cpt_iv", init={"CL": 0.005, "V": 1.0}, random=[],
        seed=0, progress=False, threads=1,
    )  # fmt: skip
    obs, doses = records[records.EVID == 0], records[records.EVID == 1]

    def resid(lp):
        cl, v = np.exp(lp)
        out = []
        for i, o in obs.groupby("ID"):
            d = doses[doses["ID"].to_numpy() == i]
            dt = o.TIME.to_numpy()[:, None] - d.TIME.to_numpy()[None, :]
            out.append(
                (d.AMT.to_numpy()[None, :] / v * np.exp(-cl / v * dt) * (dt >= 0)).sum(1) - o.DV.to_numpy()
            )
        return np.concatenate(out)

    ls = least_squares(resid, np.log([0.005, 1.0]), xtol=1e-14, ftol=1e-14, gtol=1e-14)
    rss, n = float((ls.fun**2).sum()), int(len(obs))
    assert res.fixed_effects["CL"] == pytest.approx(np.exp(ls.x[0]), rel=1e-5)
    assert res.fixed_effects["V"] == pytest.approx(np.exp(ls.x[1]), rel=1e-5)
    assert res.sigma["a"] == pytest.approx(np.sqrt(rss / n), rel=1e-5)
    assert res.loglik == pytest.approx(-n / 2 * (np.log(2 * np.pi * rss / n) + 1), abs=1e-6)
