"""Grouping levels (``levels=[pymixnn.Level(...)]``): nested and crossed random effects above the
individual, against nlme and lme4's ML fits (reference data and numbers committed with the R scripts
that produced them, tests/reference/levels/), the log-likelihood against a brute-force nested
quadrature, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numerics import hessian

import pymixnn
from pymixnn.validation import InputError, InputTypeError

REF = Path(__file__).parent / "reference" / "levels"


@pytest.fixture(scope="module")
def nested_logistic():
    """Trees within plots (40 x 6 x 7 ages): random Asym at the plot level, Asym and xmid at the
    tree level, on the natural scale as nlme's SSlogis."""
    df = pd.read_csv(REF / "nested_logistic.csv")
    problem = pymixnn.NLME(
        df,
        "logistic",
        id="tree",
        x="age",
        y="y",
        random=["A", "B"],
        transforms={"A": "identity", "B": "identity"},
        levels=[pymixnn.Level("plot", params=["A"])],
    )
    return problem, problem.fit(seed=1, progress=False, threads=1)


def test_nested_logistic_matches_nlme(nested_logistic):
    """Point 0 of issue 22: estimates within 2% and variances within 15% of nlme's ML fit (the
    bars); measured 0.3% (fixed effects, SEs 0.4%) and 0.3% (variances), so the asserts are
    tighter: 0.5% for fixed effects, 2% for the variances and sigma, 5% for the SEs (both are
    observed-information SEs of nearly the same maximum), 0.1 for each plot effect (measured
    0.023; posterior sd ~3). pymixnn's log-likelihood is the exact
    marginal (test below) and 0.46 above nlme's, which linearizes at the random effects' modes:
    within 1 unit, and not below."""
    _, res = nested_logistic
    ref = json.loads((REF / "nested_nlme.json").read_text())
    p = res.params
    for ours, theirs in (("A", "Asym"), ("B", "xmid"), ("C", "scal")):
        assert p.loc[ours, "estimate"] == pytest.approx(ref["fixed"][theirs], rel=5e-3)
        assert p.loc[ours, "se"] == pytest.approx(ref["fixed_se"][theirs], rel=0.05)
    assert p.loc["omega2.plot.A", "estimate"] == pytest.approx(ref["omega2_plot_Asym"], rel=0.02)
    assert p.loc["omega2.plot.A", "kind"] == "level"
    assert p.loc["omega2.A", "estimate"] == pytest.approx(ref["omega2_tree"]["Asym"], rel=0.02)
    assert p.loc["omega2.B", "estimate"] == pytest.approx(ref["omega2_tree"]["xmid"], rel=0.02)
    assert res.sigma["a"] == pytest.approx(ref["sigma"], rel=0.02)
    assert ref["logLik"] - 0.05 < res.loglik < ref["logLik"] + 1.0
    eff = res.level_effects("plot")
    assert list(eff.columns) == ["A", "A.sd", "n_individuals"]
    assert (eff["n_individuals"] == 6).all() and len(eff) == 40
    theirs = pd.Series(ref["plot_effects"])
    assert np.abs(eff["A"] - theirs.loc[eff.index]).max() < 0.1
    assert res.df_modelwc == 7  # mu (3), omega (2), a, omega2.plot.A
    assert res.aic == pytest.approx(-2 * res.loglik + 14)
    assert res.run.fallbacks["levels_rounds_exhausted"] == 0
    assert "Variance of random effects at grouping levels" in str(res.summary())


def test_nested_loglik_is_the_two_level_marginal(nested_logistic):
    """The reported log-likelihood integrates the plot effects out through each tree's Gaussian
    pseudo-likelihood (levels.py). Against brute force at the same estimates: per plot, 20-node
    Gauss-Hermite quadrature over its effect (centred at its posterior), each tree's likelihood at
    each node by 15 x 15-node adaptive quadrature over its own effects. Measured 0.0006 apart (the
    pseudo-likelihood's curvature is nearly exact with 7 observations per tree); 0.02 allows for
    the quadratures' own error."""
    import torch
    from scipy.special import logsumexp

    from pymixnn.inference.laplace import LocalPosteriors
    from pymixnn.inference.marginal import marginal_likelihood
    from pymixnn.inference.program import Program

    problem, res = nested_logistic
    program = Program(
        problem.model, problem.data, problem.design, device=torch.device("cpu"), dtype=torch.float64
    )
    theta = torch.as_tensor(res.estimation.theta)
    lv = res.estimation.levels
    omega_b = float(lv["omega"][0][0, 0])
    eff, sd, groups = lv["effects"][0][:, 0], lv["effects_sd"][0][:, 0], lv["groups"][0]
    nodes, weights = np.polynomial.hermite_e.hermegauss(20)
    n_groups = len(eff)
    terms = np.zeros((len(nodes), n_groups))
    for k, z in enumerate(nodes):
        b = eff + sd * z
        offset = torch.zeros(problem.data.n_individuals, 3, dtype=torch.float64)
        offset[:, 0] = torch.as_tensor(b[groups])
        program.set_offsets(offset, None)
        local = LocalPosteriors(program, program.omega_tril(theta))
        local.refresh(theta, None, max_iter=50)
        ll = marginal_likelihood(program, local, 1000, 7, "gq").evaluate(theta).loglik.numpy()
        log_prior = -0.5 * b**2 / omega_b - 0.5 * np.log(2 * np.pi * omega_b)
        log_q = -0.5 * z**2 - 0.5 * np.log(2 * np.pi) - np.log(sd)
        terms[k] = np.bincount(groups, weights=ll, minlength=n_groups) + log_prior - log_q
    exact = logsumexp(terms + np.log(weights / weights.sum())[:, None], axis=0).sum()
    assert res.loglik == pytest.approx(exact, abs=0.02)


@pytest.fixture(scope="module")
def linear_reference():
    return json.loads((REF / "linear_levels.json").read_text())


def _check_linear(res, ref, omega_rows):
    """In a linear model the levels' likelihood is exact: the fit is ML itself. Measured against
    lme/lmer: log-likelihood within 1e-5, estimates within 1e-4 relative; asserted to 0.005
    (adaptive quadrature and the refinement's tolerance) and 1% (variances: the alternation stops
    when no effect moves by more than 1e-3), SEs 1%."""
    p = res.params
    assert res.loglik == pytest.approx(ref["logLik"], abs=5e-3)
    assert p.loc["intercept", "estimate"] == pytest.approx(ref["fixed"]["(Intercept)"], rel=1e-4)
    assert p.loc["slope", "estimate"] == pytest.approx(ref["fixed"]["t"], rel=1e-4)
    assert p.loc["intercept", "se"] == pytest.approx(ref["fixed_se"]["(Intercept)"], rel=0.01)
    assert p.loc["slope", "se"] == pytest.approx(ref["fixed_se"]["t"], rel=0.01)
    assert res.sigma["a"] == pytest.approx(ref["sigma"], rel=0.01)
    for row, value in omega_rows.items():
        assert p.loc[row, "estimate"] == pytest.approx(value, rel=0.01), row


def test_crossed_levels_match_lmer(linear_reference, tmp_path):
    """Plants in genotypes and in blocks (crossed), random intercept at both levels and intercept
    and slope per plant: lme4::lmer's ML fit."""
    ref = linear_reference["crossed"]
    df = pd.read_csv(REF / "crossed_linear.csv")
    res = pymixnn.fit(
        df,
        "linear",
        id="plant",
        x="t",
        y="y",
        levels=[pymixnn.Level("genotype", params="intercept"), pymixnn.Level("block", params=["intercept"])],
        seed=1,
        progress=False,
        threads=1,
    )
    _check_linear(
        res,
        ref,
        {
            "omega2.genotype.intercept": ref["omega2_genotype"],
            "omega2.block.intercept": ref["omega2_block"],
            "omega2.intercept": ref["omega2_plant"]["intercept"],
            "omega2.slope": ref["omega2_plant"]["t"],
        },
    )
    eff = res.level_effects("genotype")
    theirs = pd.Series(ref["genotype_effects"])
    assert np.abs(eff["intercept"] - theirs.loc[eff.index]).max() < 0.01
    assert res.level_names == ["genotype", "block"]
    path = res.save(tmp_path / "crossed.json")  # saved and loaded: the levels' record travels
    again = pymixnn.Results.load(path)
    pd.testing.assert_frame_equal(again.level_effects("block"), res.level_effects("block"))
    assert again.loglik == res.loglik and again.df_modelwc == res.df_modelwc


def test_level_parameter_covariate_se_includes_the_level(linear_reference):
    """A genotype-level covariate on the intercept: its SE is that of a comparison between groups
    of genotypes (0.67 in lmer), not the within-genotype one that holding the offsets fixed would
    give (~0.1): the level parameters' fixed effects (mu and covariate effects) take the GLS
    covariance. Measured 1e-4 relative to lmer; asserted 1%."""
    ref = linear_reference["crossed_covariate"]
    df = _df()
    df["half"] = np.where(df["genotype"] <= "G15", "a", "b")
    res = pymixnn.fit(
        df,
        "linear",
        id="plant",
        x="t",
        y="y",
        covariates={"intercept": ["half"]},
        levels=[pymixnn.Level("genotype", "intercept"), pymixnn.Level("block", "intercept")],
        seed=1,
        progress=False,
        threads=1,
    )
    p = res.params
    assert res.loglik == pytest.approx(ref["logLik"], abs=5e-3)
    assert p.loc["beta_half[b](intercept)", "estimate"] == pytest.approx(ref["fixed"]["halfb"], rel=1e-3)
    assert p.loc["beta_half[b](intercept)", "se"] == pytest.approx(ref["fixed_se"]["halfb"], rel=0.01)
    assert p.loc["intercept", "se"] == pytest.approx(ref["fixed_se"]["(Intercept)"], rel=0.01)
    assert p.loc["slope", "se"] == pytest.approx(ref["fixed_se"]["t"], rel=0.01)


def test_full_level_covariance_matches_lmer(linear_reference):
    """A genotype level on intercept and slope with a full covariance (lmer's (1 + t | genotype)),
    plants with their own diagonal one; reproducible with the seed."""
    ref = linear_reference["full"]
    df = pd.read_csv(REF / "full_linear.csv")
    kw = dict(
        id="plant",
        x="t",
        y="y",
        levels=[pymixnn.Level("genotype", params=["intercept", "slope"], omega="full")],
        seed=3,
        progress=False,
        threads=1,
        max_steps=300,
    )
    res = pymixnn.fit(df, "linear", **kw)
    og = ref["omega_genotype"]
    _check_linear(
        res,
        ref,
        {
            "omega2.genotype.intercept": og["intercept"],
            "omega2.genotype.slope": og["slope"],
            "cov.genotype.intercept.slope": og["cov"],
            "omega2.intercept": ref["omega2_plant"]["intercept"],
            "omega2.slope": ref["omega2_plant"]["t"],
        },
    )
    cov = res.cov_params()
    assert cov.loc["omega2.genotype.slope", "omega2.genotype.slope"] == pytest.approx(
        res.params.loc["omega2.genotype.slope", "se"] ** 2
    )
    again = pymixnn.fit(df, "linear", **kw)
    pd.testing.assert_frame_equal(res.params, again.params)
    assert res.loglik == again.loglik


# ---- bad input: one clear error before any torch work -------------------------------------------
def _df():
    return pd.read_csv(REF / "crossed_linear.csv")


def _problem(df, levels, **kw):
    return pymixnn.NLME(df, "linear", id="plant", x="t", y="y", levels=levels, **kw)


@pytest.mark.parametrize(
    "levels, error, match",
    [
        ("genotype", InputTypeError, "list of pymixnn.Level"),
        ([pymixnn.Level("genotype", ["nope"])], InputError, "names \\['nope'\\]"),
        ([pymixnn.Level("nope", ["intercept"])], ValueError, "column .nope. not found"),
        ([pymixnn.Level("plant", ["intercept"])], InputError, "id column"),
        (
            [pymixnn.Level("genotype", ["intercept"]), pymixnn.Level("genotype", ["slope"])],
            InputError,
            "twice",
        ),
    ],
)
def test_bad_levels(levels, error, match):
    with pytest.raises(error, match=match):
        _problem(_df(), levels)


def test_level_checks_name_the_level_and_the_row():
    df = _df()
    with pytest.raises(InputError, match="no random effect at the individual level"):
        _problem(df, [pymixnn.Level("block", "intercept")], random=["slope"])
    with pytest.raises(InputError, match="single group"):
        _problem(df.assign(site="S1"), [pymixnn.Level("site", "intercept")])
    with pytest.raises(InputError, match="one individual per group"):
        _problem(df.assign(copy=df["plant"]), [pymixnn.Level("copy", "intercept")])
    varying = df.copy()
    varying.loc[3, "block"] = "B9"  # the block changes within plant G01.B1.R1
    with pytest.raises(
        InputError, match="level column .block. varies within individual .G01.B1.R1. \\(row 3"
    ):
        _problem(varying, [pymixnn.Level("block", "intercept")])
    missing = df.copy()
    missing.loc[missing["plant"] == "G02.B1.R1", "genotype"] = np.nan
    with pytest.raises(ValueError, match="column 'genotype' must be finite and not missing: row 40"):
        _problem(missing, [pymixnn.Level("genotype", "intercept")])
    with pytest.raises(InputError, match="Gaussian random effects"):
        _problem(df, [pymixnn.Level("genotype", "intercept")], random_effects="mixture", n_components=2)
    with pytest.raises(InputError, match="omega="):
        pymixnn.Level("genotype", ["intercept"], omega="block")
    with pytest.raises(InputError, match="does not support levels"):
        pymixnn.fit(
            df,
            "linear",
            id="plant",
            x="t",
            y="y",
            levels=[pymixnn.Level("genotype", "intercept")],
            local="amortized",
        )


def test_level_effects_without_levels_is_an_error(nested_logistic):
    _, res = nested_logistic
    with pytest.raises(ValueError, match="no level 'genotype'.*\\['plot'\\]"):
        res.level_effects("genotype")


def test_cli_level_flag(tmp_path, capsys):
    """``pymixnn fit ... --level genotype:intercept --level block:intercept``: the same fit as the
    Python API (seed 0), its level rows in the summary and under "levels" in the JSON record; a
    malformed flag is one error line (status 2) before any fitting."""
    from pymixnn.cli import main

    out = tmp_path / "fit.json"
    args = ["fit", str(REF / "crossed_linear.csv"), "--model", "linear", "--id", "plant", "--x", "t"]
    args += ["--y", "y", "--level", "genotype:intercept", "--level", "block:intercept", "--no-progress"]
    assert main([*args, "--json", str(out), "--max-steps", "200"]) == 0
    assert "omega2.genotype.intercept" in capsys.readouterr().out
    record = json.loads(out.read_text())
    ref = json.loads((REF / "linear_levels.json").read_text())["crossed"]
    # as in test_crossed_levels_match_lmer (1%): the CLI runs the same fit
    assert record["levels"]["omega2.genotype.intercept"]["estimate"] == pytest.approx(
        ref["omega2_genotype"], rel=0.01
    )
    assert set(record["omega_se"]) == {"intercept", "slope"}
    assert main([*args[:-1], "--level", "block:intercept:diag"]) == 2
    assert "--level 'block:intercept:diag'" in capsys.readouterr().err


def test_predictions_include_the_groups_effects(nested_logistic):
    """Predictions of the fitted trees include their plot's effect; a new tree of a plot in the fit
    gets that plot's effect (its population curve), a tree of a new plot none: computed here from
    the estimates, to 1e-10."""
    _, res = nested_logistic
    trees = pd.read_csv(REF / "nested_logistic.csv")
    new = trees[trees["tree"] == "P05.T1"].assign(tree="new")
    other = new.assign(tree="elsewhere", plot="P99")
    pred = res.predict(pd.concat([new, other]), level="population")
    b = res.level_effects("plot").loc["P05", "A"]
    A, B, C = (res.params.loc[q, "estimate"] for q in "ABC")
    ages = new["age"].to_numpy()
    curve = lambda a: a / (1 + np.exp(-(ages - B) / C))  # noqa: E731
    assert np.allclose(pred.to_numpy()[: len(ages)], curve(A + b), rtol=1e-10)
    assert np.allclose(pred.to_numpy()[len(ages) :], curve(A), rtol=1e-10)
    fitted = res.predict(level="population")[trees["tree"] == "P05.T1"]
    assert np.allclose(fitted.to_numpy(), curve(A + b), rtol=1e-10)


def test_variance_ses_are_the_exact_information():
    """Five plants per genotype, a genotype level on the intercept: every SE against the inverse
    numerical Hessian of the exact Gaussian log-likelihood at the same estimates (per genotype, a
    multivariate normal). The individual variances trade off with the level's: from the joint
    information of the two (conditional on the level, omega2.intercept's SE was 10% small).
    Measured within 1%; asserted 3%."""
    from scipy.linalg import cho_factor, cho_solve

    df = pd.read_csv(REF / "full_linear.csv")
    kw = dict(id="plant", x="t", y="y", seed=1, progress=False, threads=1)
    res = pymixnn.fit(df, "linear", levels=[pymixnn.Level("genotype", params=["intercept"])], **kw)
    groups = [
        (g["t"].to_numpy(), g["y"].to_numpy(), g["plant"].to_numpy()) for _, g in df.groupby("genotype")
    ]

    def nll(p):
        b0, b1, og, o0, o1, s = p
        total = 0.0
        for t, y, ids in groups:
            C = og + (ids[:, None] == ids[None, :]) * (o0 + o1 * np.outer(t, t)) + s**2 * np.eye(len(t))
            c = cho_factor(C)
            r = y - b0 - b1 * t
            total += 0.5 * (
                r @ cho_solve(c, r) + 2 * np.log(np.diag(c[0])).sum() + len(t) * np.log(2 * np.pi)
            )
        return total

    rows = ["intercept", "slope", "omega2.genotype.intercept", "omega2.intercept", "omega2.slope", "a"]
    x = res.params.loc[rows, "estimate"].to_numpy()
    assert res.loglik == pytest.approx(-nll(x), abs=1e-3)
    H = hessian(nll, x)
    exact = np.sqrt(np.diag(np.linalg.inv(H)))
    np.testing.assert_allclose(res.params.loc[rows, "se"].to_numpy(), exact, rtol=0.03)


def test_poisson_counts_with_a_level_match_glmer():
    """A level with a non-Gaussian family: Poisson counts of plants in 40 genotypes against
    lme4::glmer's Laplace fit (tests/reference/levels/poisson_glmer.R). Measured: fixed effects
    within 0.01%, both variances within 0.3%, slope SE within 0.6% and intercept SE 4.3% below
    glmer's, log-likelihood 0.21 above (importance sampling integrates the plants exactly where
    glmer's Laplace approximation does not; pymixnn's level step is Laplace-type too). Asserted:
    0.5% on fixed effects, 3% on variances, 6% on SEs, ll within [-0.1, 1] of glmer's."""
    ref = json.loads((REF / "poisson_glmer.json").read_text())
    df = pd.read_csv(REF / "poisson_level.csv")
    res = pymixnn.fit(
        df,
        "linear",
        id="plant",
        x="t",
        y="y",
        observation="poisson",
        random=["intercept"],
        levels=[pymixnn.Level("genotype", params=["intercept"])],
        seed=1,
        progress=False,
        threads=1,
    )
    p = res.params
    for row, name in [("intercept", "(Intercept)"), ("slope", "t")]:
        assert p.loc[row, "estimate"] == pytest.approx(ref["fixed"][name], rel=0.005), row
        assert p.loc[row, "se"] == pytest.approx(ref["se"][name], rel=0.06), row
    assert p.loc["omega2.genotype.intercept", "estimate"] == pytest.approx(ref["omega2_genotype"], rel=0.03)
    assert p.loc["omega2.intercept", "estimate"] == pytest.approx(ref["omega2_plant"], rel=0.03)
    assert -0.1 < res.loglik - ref["loglik"] < 1.0


def _two_occasion_pk(n_subjects: int, seed: int) -> pd.DataFrame:
    """A two-occasion oral PK design: each of n subjects takes 320 mg on two occasions, sampled at
    8 times; log ka, V, CL = log(1.5, 30, 2.7) + between-subject effects (sd 0.3, 0.2, 0.3) +
    inter-occasion effects (sd 0.2, 0.1, 0.2); additive error sd 0.3."""
    rng = np.random.default_rng(seed)
    times = np.array([0.5, 1, 2, 3, 5, 8, 12, 24.0])
    mu = np.log([1.5, 30.0, 2.7])
    rows = []
    for s in range(n_subjects):
        b = rng.normal(0, [0.3, 0.2, 0.3])
        for o in (1, 2):
            ka, V, CL = np.exp(mu + b + rng.normal(0, [0.2, 0.1, 0.2]))
            k = CL / V
            conc = 320 * ka / (V * (ka - k)) * (np.exp(-k * times) - np.exp(-ka * times))
            rows.append(
                pd.DataFrame(
                    {
                        "subject": f"S{s:03d}",
                        "occasion": f"S{s:03d}.O{o}",
                        "dose": 320.0,
                        "time": times,
                        "conc": conc + rng.normal(0, 0.3, len(times)),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


@pytest.mark.slow
def test_inter_occasion_variability_is_recovered():
    """Inter-occasion variability (IOV) as a level: the occasion is the individual and the subject a
    level above it, phi = mu + b_subject (between-subject) + eta_occasion (inter-occasion), as
    NONMEM's eta + kappa. 200 subjects x 2 occasions (400 x 8 concentrations): every variance
    within the issue's 20% of the truth; measured with seed 1 at most 17.7% (CL's IOV; sampling
    alone moves these variances by ~10%: 0.03450 realized against 0.04), with seed 2 16.9%; 40 s."""
    df = _two_occasion_pk(200, seed=1)
    res = pymixnn.fit(
        df,
        "onecpt_oral",
        id="occasion",
        x=["dose", "time"],
        y="conc",
        levels=[pymixnn.Level("subject", params=["ka", "V", "CL"])],
        seed=1,
        progress=False,
        threads=1,
    )
    p = res.params["estimate"]
    for q, bsv, iov in [("ka", 0.09, 0.04), ("V", 0.04, 0.01), ("CL", 0.09, 0.04)]:
        assert p[f"omega2.subject.{q}"] == pytest.approx(bsv, rel=0.2), q
        assert p[f"omega2.{q}"] == pytest.approx(iov, rel=0.2), q
    assert p["CL"] == pytest.approx(2.7, rel=0.05) and p["V"] == pytest.approx(30, rel=0.05)
