"""The R bridges (pymixnn.compare): nlme against nlme called directly, saemix against its committed
reference numbers, the R twins of the named models against the torch functions, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from r_helpers import REFERENCE_DIR, run_rscript

import pymixnn
from pymixnn import compare, datasets
from pymixnn.models import NAMED_MODELS

needs_r = pytest.mark.skipif(
    not compare.r_available(), reason="R or rpy2 is not installed (pip install 'rpy2==3.5.17')"
)
HAS_SAEMIX = compare.r_package_available("saemix")
needs_saemix = pytest.mark.skipif(
    not HAS_SAEMIX,
    reason="saemix (CRAN only) is not installed here: live saemix fits skip; pymixnn is "
    "compared with saemix's committed numbers in test_fit.py",
)


def test_import_pymixnn_does_not_load_r():
    code = "import sys, pymixnn; pymixnn.compare; assert 'rpy2' not in sys.modules, 'rpy2 loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)


@needs_r
@pytest.mark.parametrize("name", sorted(NAMED_MODELS))
def test_r_twins_equal_the_torch_functions(name):
    import rpy2.robjects as ro

    fn, params, _, _, x_names = NAMED_MODELS[name]
    rng = np.random.default_rng(1)
    n = 50
    psi = np.column_stack([rng.uniform(0.5, 3.0, n) for _ in params])
    if name == "onecpt_oral":
        psi[:, 0] += 1.0  # ka away from k = CL / V
    if name == "asymptotic":
        psi[:, 2] = rng.uniform(-2, 0.5, n)
    x = np.column_stack([rng.uniform(0.1, 10.0, n) for _ in x_names])
    expected = fn(torch.as_tensor(psi), torch.as_tensor(x)).numpy()
    ro.globalenv[".t_psi"] = ro.r.matrix(ro.FloatVector(psi.T.ravel()), nrow=n)
    ro.globalenv[".t_x"] = ro.r.matrix(ro.FloatVector(x.T.ravel()), nrow=n)
    got = np.array(ro.r(f"({compare.R_TWINS[name]})(.t_psi, .t_x)"))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.fixture(scope="module")
def nlme_direct():
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        run_rscript("nlme_direct.R", out)
        return json.loads(out.read_text())


@needs_r
def test_nlme_bridge_matches_nlme_on_orange(nlme_direct):
    ref = nlme_direct["orange"]
    res = compare.nlme(
        datasets.load("orange"),
        "logistic",
        id="Tree",
        x="age",
        y="circumference",
        transforms="identity",
        random=["A"],
        init={"A": 170, "B": 700, "C": 350},
    )
    # same algorithm, same start: the bridge's numerical derivatives of the R twin against
    # SSlogis' analytic ones move the optimum by ~1e-8 relative
    for ours, theirs in (("A", "Asym"), ("B", "xmid"), ("C", "scal")):
        assert res.params.loc[ours, "estimate"] == pytest.approx(ref["fixef"][theirs], rel=1e-6)
        assert res.params.loc[ours, "se"] == pytest.approx(ref["se"][theirs], rel=1e-5)
    assert res.omega.loc["A", "A"] == pytest.approx(ref["omega2"]["Asym"], rel=1e-5)
    assert res.sigma["a"] == pytest.approx(ref["sigma"], rel=1e-6)
    assert res.loglik == pytest.approx(ref["logLik"], abs=1e-6)
    np.testing.assert_allclose(res.random_effects()["A"], ref["ranef"]["Asym"], atol=1e-5)
    assert res.aic == pytest.approx(-2 * ref["logLik"] + 2 * 5, abs=1e-5)  # nlme's df = 5


@needs_r
def test_nlme_bridge_matches_nlme_on_soybean(nlme_direct):
    ref = nlme_direct["soybean"]
    res = compare.nlme(
        datasets.load("soybean"),
        "logistic",
        id="Plot",
        x="Time",
        y="weight",
        transforms="identity",
        covariates={"A": ["Variety"]},
        init={"A": 19, "B": 55, "C": 8},
    )
    pairs = (("A", "Asym.(Intercept)"), ("beta_Variety[P](A)", "Asym.VarietyP"), ("B", "xmid"), ("C", "scal"))
    for ours, theirs in pairs:
        assert res.params.loc[ours, "estimate"] == pytest.approx(ref["fixef"][theirs], rel=1e-6)
        assert res.params.loc[ours, "se"] == pytest.approx(ref["se"][theirs], rel=1e-4)
    assert res.omega.loc["A", "A"] == pytest.approx(ref["omega2"]["Asym.(Intercept)"], rel=1e-5)
    assert res.omega.loc["B", "B"] == pytest.approx(ref["omega2"]["xmid"], rel=1e-5)
    assert res.omega.loc["C", "C"] == pytest.approx(ref["omega2"]["scal"], abs=1e-5)  # ~1e-5: at 0
    assert res.loglik == pytest.approx(ref["logLik"], abs=1e-5)
    # the Results schema: individual estimates, predictions, compare_fits
    assert res.individual_params().shape == (48, 3)
    assert np.isfinite(res.predict(level="individual")).all()
    table = pymixnn.compare_fits(res)
    assert table.loc["engine"].iloc[0].startswith("nlme") and table.loc["ll.method"].iloc[0] == "nlme.ML"


@needs_r
def test_nlme_bridge_errors():
    with pytest.raises(ValueError, match="no combined error model"):
        compare.nlme(
            datasets.load("orange"), "logistic", id="Tree", x="age", y="circumference", error="combined"
        )
    with pytest.raises(ValueError, match="has no R twin: pass r_function="):
        model = pymixnn.Model(lambda psi, x: psi[..., 0] * x[..., 0], ["k"], init={"k": 0.1})
        compare.nlme(datasets.load("orange"), model, id="Tree", x="age", y="circumference")


def test_missing_saemix_says_what_to_install(monkeypatch):
    monkeypatch.setattr(compare, "r_package_available", lambda name: False)
    monkeypatch.setattr(compare, "_robjects", lambda: None)
    with pytest.raises(RuntimeError, match=r"saemix is not installed: it is on CRAN only .*R_LIBS"):
        compare.saemix(datasets.load("theo"), "onecpt_oral", id="Id", x=["Dose", "Time"], y="Concentration")


def test_missing_rpy2_says_what_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.startswith("rpy2"):
            raise ImportError("No module named 'rpy2'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(RuntimeError, match=r"pip install 'rpy2==3.5.17'"):
        compare.nlme(datasets.load("orange"), "logistic", id="Tree", x="age", y="circumference")


THEO = dict(
    id="Id",
    x=["Dose", "Time"],
    y="Concentration",
    covariates={"V": ["Weight"]},
    init={"ka": 1.0, "V": 20.0, "CL": 0.5},
)


@needs_saemix
def test_saemix_bridge_reproduces_saemix_on_theophylline():
    """saemix 3.4, seed 632545 (ENVIRONMENT.md): the bridge gives the numbers of saemix run from R
    (tests/reference/theo_saemix.R -> theo_saemix.json) to 1e-6."""
    ref = json.loads((REFERENCE_DIR / "theo_saemix.json").read_text())
    res = compare.saemix(datasets.load("theo"), "onecpt_oral", **THEO, seed=632545)
    for name, v in ref["fixed_effects"].items():
        assert res.params.loc[name, "estimate"] == pytest.approx(v["estimate"], rel=1e-6)
        assert res.params.loc[name, "se"] == pytest.approx(v["se"], rel=1e-5)
    for p, v in ref["omega2"].items():
        assert res.omega.loc[p, p] == pytest.approx(v, rel=1e-6)
    assert res.sigma["a"] == pytest.approx(ref["sigma"]["a"], rel=1e-6)
    assert res.loglik == pytest.approx(ref["ll_is"], abs=1e-4)
    assert res.aic == pytest.approx(ref["aic_is"], abs=1e-3)
    assert res.bic == pytest.approx(ref["bic_is"], abs=1e-3)
    np.testing.assert_allclose(res.individual_params()["V"], ref["map_psi"]["V"], rtol=1e-6)


@needs_saemix
def test_saemix_bridge_poisson_on_rapi():
    """saemix's documented Poisson model (modeltype = "likelihood") on rapi: the bridge gives the
    estimates of tests/reference/rapi_saemix.R to 1e-6 (same psi0, omega.init, seed); ll.is is a
    Monte Carlo estimate computed there by a separate llis.saemix() call: within 2 units."""
    ref = json.loads((REFERENCE_DIR / "rapi_saemix.json").read_text())["saemix"]
    res = compare.saemix(
        datasets.load("rapi"),
        pymixnn.Model.named("linear", omega="full"),
        id="id",
        x="time",
        y="rapi",
        covariates={"intercept": ["gender"], "slope": ["gender"]},
        observation="poisson",
        init={"intercept": np.log(5), "slope": 0.01},
        omega_init={"intercept": 0.5, "slope": 0.5},
        seed=632545,
    )
    names = {
        "intercept": "intercept",
        "beta_gender[Women](intercept)": "beta_gender(intercept)",
        "slope": "slope",
        "beta_gender[Women](slope)": "beta_gender(slope)",
    }
    for ours, theirs in names.items():
        assert res.params.loc[ours, "estimate"] == pytest.approx(ref["fixed_effects"][theirs], rel=1e-6)
    assert res.omega.loc["intercept", "intercept"] == pytest.approx(ref["omega"]["intercept"], rel=1e-6)
    assert res.omega.loc["intercept", "slope"] == pytest.approx(ref["omega"]["cov"], rel=1e-6)
    assert res.loglik == pytest.approx(ref["ll_is"], abs=2.0)
