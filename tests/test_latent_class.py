"""Latent classes (issue 23): the LatentClass law's density, moments and start, recovery of
simulated classes, membership covariates, senescence strategies and new individuals, the K table,
lcmm's hlme on its own data, the CLI, save/load. The 20-replicate acceptance runs are
``python -m benchmarks latent_class`` (benchmarks/results/latent_class.md); the slow test below
reruns one replicate of each."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import pymixnn
from pymixnn.inference.laws import build_law
from pymixnn.inference.laws.class_em import EMPTY_SHARE, fit_latent_classes
from pymixnn.model.random_effects import LatentClass, resolve
from pymixnn.results.classes import adjusted_rand_index, class_table
from pymixnn.simulate import simulate_latent_classes, simulate_senescence
from pymixnn.validation import InputError

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "reference" / "latent_class"


def _law(K=3, d=2, c=0, shared=True, on=("A",)):
    spec = LatentClass(n_classes=K, on=list(on), shared_omega=shared, random_names=("A", "B")[:d])
    return build_law(spec, d, False, context_dim=c)


# ---- the law, without a fit -------------------------------------------------------------------
def test_log_prob_is_the_sum_over_classes():
    torch.manual_seed(0)
    law = _law(K=3, d=2, c=1, shared=False)
    raw = torch.randn(law.n_params, dtype=torch.float64)
    L = torch.tensor([[0.5, 0.0], [0.0, 0.3]], dtype=torch.float64)
    eta, ctx = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
    gamma, delta, rest = law.split(raw)
    means, trils = law.means(delta), law.trils(L, rest)
    # the class means differ only in the "on" coordinate (A); B's is 0 in every class
    assert torch.all(means[:, 1] == 0) and torch.all(means[0] == 0)
    w = torch.softmax(torch.cat([torch.ones(5, 1, dtype=torch.float64), ctx], 1) @ gamma.T, -1)
    manual = torch.zeros(5, dtype=torch.float64)
    for k in range(3):
        cov = trils[k] @ trils[k].T
        dens = torch.distributions.MultivariateNormal(means[k], covariance_matrix=cov).log_prob(eta).exp()
        manual += w[:, k] * dens
    # exact to rounding: the same sum in log space
    assert torch.allclose(law.log_prob(L, raw, eta, ctx), manual.log(), atol=1e-12)
    resp = law.responsibilities(L, raw, eta, ctx)
    assert torch.allclose(resp.sum(-1), torch.ones(5, dtype=torch.float64), atol=1e-12)


def test_moments_match_draws():
    law = _law(K=2, d=2, c=0, shared=True)
    raw = torch.tensor([math.log(3.0), 1.2], dtype=torch.float64)  # w = (0.25, 0.75), delta_2 = 1.2
    L = torch.diag(torch.tensor([0.2, 0.4], dtype=torch.float64))
    mean, cov = law.moments(L, raw)
    assert torch.allclose(mean, torch.tensor([0.9, 0.0], dtype=torch.float64), atol=1e-12)
    # Var A = 0.04 + w1 w2 delta^2 = 0.04 + 0.1875 * 1.44
    assert abs(float(cov[0, 0]) - (0.04 + 0.1875 * 1.44)) < 1e-12
    draws = law.sample(L, raw, 200_000, torch.Generator().manual_seed(1))
    # Monte Carlo: 200,000 draws give the mean to ~0.0015 (4 SE below 0.006)
    assert torch.allclose(draws.mean(0), mean, atol=0.006)
    assert abs(float(draws[:, 0].var()) - float(cov[0, 0])) < 0.006


def test_em_start_recovers_classes_and_membership():
    gen = torch.Generator().manual_seed(3)
    n = 3000
    z = (torch.rand(n, generator=gen) < 0.5).double()
    p2 = torch.where(z > 0, torch.tensor(0.7), torch.tensor(0.2)).double()
    k = (torch.rand(n, generator=gen) < p2).long()
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64) * 0.3
    x[:, 0] += torch.tensor([-1.0, 1.0], dtype=torch.float64)[k]
    X = torch.stack([torch.ones(n, dtype=torch.float64), z], 1)
    em = fit_latent_classes(x, 2, [0], X, gen, shared=True, full=False, n_starts=3)
    order = torch.argsort(em["means"][:, 0])
    means, gamma = em["means"][order], em["gamma"][order]
    gamma = gamma - gamma[0]
    # 3,000 points, class means 6.7 within-class sds apart: means to ~0.01, logits to ~0.1
    assert torch.allclose(means[:, 0], torch.tensor([-1.0, 1.0], dtype=torch.float64), atol=0.03)
    truth = torch.tensor(
        [math.log(0.2 / 0.8), math.log(0.7 / 0.3) - math.log(0.2 / 0.8)], dtype=torch.float64
    )
    assert torch.allclose(gamma[1], truth, atol=0.25), gamma


def test_em_reseeds_an_empty_class():
    # one far outlier among 1,000 points: k-means++ seeds a class on it, whose weight (1/1001) is
    # below EMPTY_SHARE; it is re-seeded (counted) and the start kept has no empty class
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(1000, 2, generator=gen, dtype=torch.float64), torch.tensor([[40.0, 0.0]])])
    em = fit_latent_classes(x.double(), 3, [0], torch.ones(1001, 1, dtype=torch.float64), gen,
                            shared=True, full=False, n_starts=3)  # fmt: skip
    assert em["restarts"] >= 1 and not em["degenerate"]
    assert torch.softmax(em["gamma"][:, 0], 0).min() > EMPTY_SHARE


def test_spec_errors():
    with pytest.raises(ValueError, match="n_classes"):
        LatentClass(n_classes=1)
    with pytest.raises(ValueError, match="within"):
        LatentClass(within="student")
    with pytest.raises(ValueError, match="criterion"):
        LatentClass(criterion="entropy")
    assert resolve("latent_class", n_components=3).n_classes == 3
    df = simulate_latent_classes(20, seed=1)
    fit = lambda law, **kw: pymixnn.fit(df, "logistic", id="id", x="t", y="y", random_effects=law, **kw)  # noqa: E731
    with pytest.raises(InputError, match=r"\['D'\]"):
        fit(LatentClass(on=["D"]))
    with pytest.raises(InputError, match="no random effect"):
        fit(LatentClass(on=["C"]), random=["A", "B"])
    with pytest.raises(InputError, match="single value"):
        pymixnn.fit(
            df.assign(w=1.0), "logistic", id="id", x="t", y="y", random_effects=LatentClass(membership=["w"])
        )
    with pytest.raises(ValueError, match="'zz' not found"):
        fit(LatentClass(membership=["zz"]))


def test_adjusted_rand_index():
    assert adjusted_rand_index([1, 1, 2, 2], [2, 2, 1, 1]) == 1.0
    # Hubert & Arabie's example value for these partitions: 0.2424...
    assert abs(adjusted_rand_index([1, 1, 1, 2, 2, 2], [1, 1, 2, 2, 3, 3]) - 0.24242424) < 1e-6
    P = pd.DataFrame({"prob.1": [0.95, 0.6, 0.1], "prob.2": [0.05, 0.4, 0.9]})
    t = class_table(P)
    assert list(t["n"]) == [2, 1] and abs(t.loc[1, "mean_prob"] - 0.775) < 1e-12
    assert t.loc[1, "above_0.7"] == 0.5 and t.loc[2, "above_0.9"] == 0.0


# ---- fits ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_classes():
    df = simulate_latent_classes(300, seed=11)
    res = pymixnn.fit(
        df, "logistic", id="id", x="t", y="y", random_effects=LatentClass(3, on=["A", "B"]), seed=1,
        progress=False, threads=1,
    )  # fmt: skip
    return df, res


def test_three_classes_recovered(three_classes, tmp_path):
    df, res = three_classes
    truth = df.attrs["truth"]
    # acceptance 1 on one replicate of half the size: ARI >= 0.9 (measured 0.97), every class
    # non-empty, class-specific fixed effects within 5% (measured <= 1.3%)
    classes = res.classes()
    assert adjusted_rand_index(df.attrs["classes"], classes["class"]) >= 0.9
    assert res.n_classes == 3 and np.allclose(classes.filter(like="prob.").sum(1), 1.0)
    for name in [f"{p}.class{k}" for p in "AB" for k in (1, 2, 3)]:
        assert abs(res.params.loc[name, "estimate"] / truth[name] - 1) < 0.05, name
        assert np.isfinite(res.params.loc[name, "se"]) and res.params.loc[name, "se"] > 0
    table = res.class_table()
    assert table["n"].sum() == 300 and (table["n"] > 0).all() and (table["mean_prob"] > 0.9).all()
    # class probabilities: the truth 0.3 / 0.4 / 0.3 within 3 SE
    for k, p in enumerate((0.3, 0.4, 0.3), start=1):
        row = res.params.loc[f"prob.{k}"]
        assert abs(row["estimate"] - p) < 3 * row["se"], (k, row["estimate"])
    sel = res.class_selection()
    assert list(sel.index) == [3] and sel.loc[3, "icl"] >= sel.loc[3, "bic"] and bool(sel.loc[3, "chosen"])
    text = str(res.summary())
    assert "Posterior classification" in text and "Class-specific fixed effects" in text
    # new individuals from their data alone (acceptance 4's classify, on growth curves): measured 99%
    new = simulate_latent_classes(100, seed=99)
    pred = res.classify(new)
    assert (pred["class"].to_numpy() == new.attrs["classes"]).mean() >= 0.9
    assert res.plot_classes(tmp_path / "classes.png").stat().st_size > 10_000
    # save / load keeps the classes
    back = pymixnn.Results.load(res.save(tmp_path / "fit"))
    pd.testing.assert_frame_equal(back.classes(), classes)


def test_membership_covariate():
    df = simulate_latent_classes(400, seed=21, probs=((0.8, 0.2), (0.3, 0.7)), A=(80.0, 120.0), B=(4.0, 6.0))
    res = pymixnn.fit(
        df, "logistic", id="id", x="t", y="y", random_effects=LatentClass(2, on=["A", "B"], membership=["z"]),
        seed=1, progress=False, threads=1,
    )  # fmt: skip
    truth = df.attrs["truth"]
    # acceptance 3 on one replicate: each membership coefficient within 2.5 SE of the truth (the
    # 20-replicate benchmark checks the 2-SE coverage)
    for name in ("membership.class2.intercept", "membership.class2.z"):
        est, se = res.params.loc[name, ["estimate", "se"]]
        assert abs(est - truth[name]) < 2.5 * se, (name, est, se, truth[name])
        assert res.params.loc[name, "kind"] == "membership"
    # the classes' A within 5% of the truth
    assert abs(res.params.loc["A.class2", "estimate"] / 120 - 1) < 0.05
    # the fitted law of A: its closed-form marginal (class weights averaged over the individuals'
    # covariates) against a histogram of law draws (50,000: bins of ~1,250 draws, a few % noise)
    dens = res.re_density(n_samples=50_000, seed=1)
    grid = dens.grid[dens.grid["parameter"] == "A"]
    hist, edges = np.histogram(dens.samples["A"], bins=40, density=True)
    centres = 0.5 * (edges[1:] + edges[:-1])
    assert np.abs(np.interp(centres, grid["phi"], grid["density"]) - hist).max() < 0.1 * hist.max()
    assert res.re_summary(n_samples=20_000).loc["A", "n_modes"] == 2
    # new individuals need the membership covariate
    with pytest.raises(ValueError, match="'z' not found"):
        res.classify(df.drop(columns="z"))


def test_senescence_strategies_and_new_plants():
    from benchmarks.latent_class import fit_senescence

    df = simulate_senescence(200, seed=5)
    res = fit_senescence(df, LatentClass(2, on=["T50"]))
    # acceptance 4 (binomial counts, two onset strategies 15 days apart): >= 95% of the plants'
    # strategy recovered (measured 98.7% on 300 plants), >= 90% of 200 new plants (measured 98%)
    assert (res.classes()["class"].to_numpy() == df.attrs["strategy"]).mean() >= 0.95
    new = simulate_senescence(200, seed=6)
    assert (res.classify(new)["class"].to_numpy() == new.attrs["strategy"]).mean() >= 0.9
    # the strategies' onsets (truth 25 and 40 days)
    assert abs(res.params.loc["T50.class1", "estimate"] - 25) < 1.5
    assert abs(res.params.loc["T50.class2", "estimate"] - 40) < 1.5


def test_flow_within_classes():
    from benchmarks.latent_class import fit_senescence

    df = simulate_senescence(120, seed=8)
    # short SVI and importance sampling (not quadrature over 15 x 15 nodes): 111 s -> ~45 s
    kw = dict(max_steps=100, likelihood="is")
    flow = fit_senescence(df, LatentClass(2, on=["T50"], within="flow"), **kw)
    gauss = fit_senescence(df, LatentClass(2, on=["T50"]), **kw)
    # the flow starts at the identity (the Gaussian-within model) and its penalized fit can only
    # raise the log-likelihood (200 plants: measured +2.2 units); 1 unit of Monte Carlo slack
    assert flow.loglik > gauss.loglik - 1.0, (flow.loglik, gauss.loglik)
    assert (flow.classes()["class"].to_numpy() == df.attrs["strategy"]).mean() >= 0.95
    assert abs(flow.params.loc["T50.class1", "estimate"] - 25) < 2 and np.isfinite(flow.params["se"]).all()
    assert "flow" in flow.info["se_method"] and "cov.T50.s" in flow.params.index
    new = simulate_senescence(60, seed=9)
    assert (flow.classify(new)["class"].to_numpy() == new.attrs["strategy"]).mean() >= 0.9
    with pytest.raises(ValueError, match="shared_omega"):
        LatentClass(within="flow", shared_omega=False)


def test_event_data_and_amortized_fits():
    # event data (phenobarbital's repeated doses, pk1cpt_iv): two classes of clearance. The
    # 2-class model contains the Gaussian one, so its maximum is at least as high (measured
    # -501.92 against -504.13; 0.5 units of importance-sampling error allowed)
    data = pymixnn.Data.from_nonmem(pymixnn.datasets.load_nonmem("phenobarb"))
    kw = dict(seed=1, progress=False, threads=1)
    lc = pymixnn.fit(data, "pk1cpt_iv", random_effects=LatentClass(2, on=["CL"]), **kw)
    g = pymixnn.fit(data, "pk1cpt_iv", **kw)
    assert lc.loglik > g.loglik - 0.5 and lc.class_table()["n"].sum() == 59
    assert np.isfinite(lc.params["se"]).all()
    # local="amortized": the encoder reads the membership covariate, and classify() takes the
    # encoder's forward pass (measured: every new individual right)
    df = simulate_latent_classes(150, seed=4, probs=((0.8, 0.2), (0.3, 0.7)), A=(80.0, 120.0), B=(4.0, 6.0))
    am = pymixnn.fit(
        df, "logistic", id="id", x="t", y="y", random_effects=LatentClass(2, on=["A", "B"], membership=["z"]),
        local="amortized", max_steps=800, **kw,
    )  # fmt: skip
    assert adjusted_rand_index(df.attrs["classes"], am.classes()["class"]) >= 0.9
    new = simulate_latent_classes(60, seed=5, probs=((0.8, 0.2), (0.3, 0.7)), A=(80.0, 120.0), B=(4.0, 6.0))
    assert (am.classify(new)["class"].to_numpy() == new.attrs["classes"]).mean() >= 0.95


def _hlme_fit():
    data = pd.read_csv(REF / "data_hlme.csv")
    return pymixnn.fit(
        data,
        "linear",
        id="ID",
        x="Time",
        y="Y",
        covariates={"intercept": ["X1"], "slope": ["X1"]},
        omega="full",
        random_effects=LatentClass(2, on=["intercept", "slope"], membership=["X2", "X3"]),
        seed=1,
        progress=False,
        threads=1,
    )


def test_hlme_against_lcmm():
    """Acceptance 2: lcmm's documented 2-class hlme on its data_hlme (script and numbers:
    tests/reference/latent_class/hlme_data.R / .json). Measured: log-likelihoods 5e-6 apart,
    every estimate within 1e-5 relative, SEs within 0.1%, class sizes 46 / 54 as lcmm's."""
    ref = json.loads((REF / "hlme_data.json").read_text())["fits"]["m2"]
    res = _hlme_fit()
    # a linear model: the likelihood's integral is computed to rounding (the bar is 1 unit)
    assert abs(res.loglik - ref["loglik"]) < 1e-3, (res.loglik, ref["loglik"])
    best, se = ref["best"], ref["se"]
    # lcmm's class labels are arbitrary: match them by the intercepts
    ours = [res.params.loc[f"intercept.class{k}", "estimate"] for k in (1, 2)]
    swap = abs(ours[0] - best["intercept class1"]) > abs(ours[0] - best["intercept class2"])
    pairs = {"intercept.class{}": "intercept class{}", "slope.class{}": "Time class{}"}
    for k in (1, 2):
        j = 3 - k if swap else k
        for mine, theirs in pairs.items():
            row = res.params.loc[mine.format(k)]
            # class-specific fixed effects within 2% (acceptance 2; measured 1e-6), and their SEs
            # within 1% (lcmm's come from a finite-difference Hessian: 1e-4 relative noise)
            assert abs(row["estimate"] / best[theirs.format(j)] - 1) < 0.02
            assert abs(row["se"] / se[theirs.format(j)] - 1) < 0.01
    for mine, theirs in {"beta_X1(intercept)": "X1", "beta_X1(slope)": "Time:X1", "a": "stderr"}.items():
        assert abs(res.params.loc[mine, "estimate"] / best[theirs] - 1) < 1e-3
    # membership: lcmm's reference is the last class, ours the first (signs flip with 2 classes)
    sign = 1.0 if swap else -1.0
    for term in ("intercept", "X2", "X3"):
        row = res.params.loc[f"membership.class2.{term}"]
        assert abs(row["estimate"] - sign * best[f"classmb {term} class1"]) < 1e-3
        assert abs(row["se"] / se[f"classmb {term} class1"] - 1) < 0.01
    # the within-class covariance (res.omega is Var[eta] over the classes as well)
    for mine, theirs in {
        "omega2.intercept": "varcov 1",
        "cov.intercept.slope": "varcov 2",
        "omega2.slope": "varcov 3",
    }.items():
        assert abs(res.params.loc[mine, "estimate"] / best[theirs] - 1) < 1e-3
    # posterior class sizes equal (acceptance 2), and each individual's probabilities to 1e-4
    table = res.class_table()
    assert sorted(table["n"]) == sorted(ref["postprob"]["n"].values())
    pp = pd.DataFrame(ref["pprob"]).set_index("ID")
    col = "prob2" if not swap else "prob1"
    mine = res.classes()["prob.2"].reindex(pp.index)
    assert np.abs(mine.to_numpy() - pp[col].to_numpy()).max() < 1e-4


def test_cli_latent_classes(tmp_path):
    df = simulate_latent_classes(60, seed=2, probs=(0.5, 0.5), A=(70.0, 130.0), B=(3.0, 6.0))
    data = tmp_path / "d.csv"
    df.to_csv(data, index=False)
    out = tmp_path / "classes.csv"
    cmd = [sys.executable, "-m", "pymixnn", "fit", str(data), "--model", "logistic", "--id", "id", "--x", "t",
           "--y", "y", "--random-effects", "latent_class", "--n-classes", "2", "--class-on", "A,B",
           "--classes", str(out), "--no-progress", "--max-steps", "200"]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == ["id", "prob.1", "prob.2", "class"] and len(table) == 60
    # two classes 7 within-class sds apart: all but at most 2 of 60 right
    assert (table["class"].to_numpy() == df.attrs["classes"]).sum() >= 58
    bad = subprocess.run([*cmd[:13], "--membership", "z"], capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "--membership" in bad.stderr


@pytest.mark.slow
def test_one_replicate_of_each_acceptance_run(tmp_path):
    from benchmarks import latent_class

    rows = latent_class.part_classes(1)
    # acceptance 1, replicate 0: K = 3 by ICL, ARI >= 0.9, no empty class, effects within 5%
    assert rows[0]["chosen_k"] == 3 and rows[0]["ari"] >= 0.9 and rows[0]["min_smallest_class"] > 0
    assert max(abs(v) for k, v in rows[0].items() if k.startswith("relerr.")) < 0.05
