"""Spatial fields (``spatial=pymixnn.Spatial(params, coords, kind="gp")``): a linear growth model
whose intercept carries a Gaussian random field, against the exact maximum likelihood of the same
model (the multivariate normal of all 400 observations, maximized by scipy here), outputs, bad
input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from numerics import hessian
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import minimize

import pymixnn
from pymixnn.validation import InputError


def _simulate(seed=5, n=100):
    """100 plants at uniform locations in [0, 10]^2, 4 times each: y = 5 + f(s) + e0 + (1 + e1) t
    + N(0, 0.5^2), f an exponential-kernel field (sd 1, range 3), sd(e0) 0.7, sd(e1) 0.2."""
    rng = np.random.default_rng(seed)
    times = np.arange(4.0)
    loc = rng.uniform(0, 10, size=(n, 2))
    D = np.sqrt(((loc[:, None] - loc[None]) ** 2).sum(-1))
    f = np.linalg.cholesky(np.exp(-D / 3.0) + 1e-10 * np.eye(n)) @ rng.standard_normal(n)
    rows = []
    for i in range(n):
        e0, e1 = rng.normal(0, 0.7), rng.normal(0, 0.2)
        y = 5 + f[i] + e0 + (1 + e1) * times + rng.normal(0, 0.5, len(times))
        rows.append(
            pd.DataFrame({"plant": f"p{i:03d}", "x": loc[i, 0], "y_coord": loc[i, 1], "t": times, "y": y})
        )
    return pd.concat(rows, ignore_index=True), D


def _exact(df, D):
    """Exact ML of the same model (natural parameters b0, b1, sd, range, omega0, omega1, sigma)
    and the SEs from the numerical Hessian of the exact log-likelihood."""
    ids = df["plant"].str[1:].astype(int).to_numpy()
    t, y = df["t"].to_numpy(), df["y"].to_numpy()
    X = np.column_stack([np.ones(len(df)), t])
    same, Dobs = ids[:, None] == ids[None, :], D[ids][:, ids]

    def nll(p):
        b0, b1, sd, rng_, o0, o1, s = p
        C = sd**2 * np.exp(-Dobs / rng_) + same * (o0 + o1 * np.outer(t, t)) + s**2 * np.eye(len(t))
        c = cho_factor(C)
        r = y - X @ [b0, b1]
        return 0.5 * (r @ cho_solve(c, r) + 2 * np.log(np.diag(c[0])).sum() + len(t) * np.log(2 * np.pi))

    opt = minimize(
        nll, [5, 1, 1, 3, 0.5, 0.04, 0.5], method="L-BFGS-B", bounds=[(None, None)] * 2 + [(1e-3, None)] * 5
    )
    opt = minimize(nll, opt.x, method="Nelder-Mead", options=dict(xatol=1e-9, fatol=1e-11, maxiter=20000))
    x = opt.x
    H = hessian(nll, x)
    return -opt.fun, x, np.sqrt(np.diag(np.linalg.inv(H)))


@pytest.fixture(scope="module")
def field_fit():
    df, D = _simulate()
    res = pymixnn.fit(
        df,
        "linear",
        id="plant",
        x="t",
        y="y",
        spatial=pymixnn.Spatial(["intercept"], ["x", "y_coord"]),
        seed=1,
        progress=False,
        threads=1,
    )
    return df, D, res


def test_field_fit_is_the_exact_maximum_likelihood(field_fit):
    """A linear model: the levels' algebra is exact, so the fit is the ML of the full Gaussian
    likelihood. Measured: log-likelihood 1e-10 apart, estimates within 1e-5, SEs within 3.2%
    (omega2.slope; the field's sd and range and the intercept's individual variance, which trade
    off, within 0.3% from their joint information, where conditional SEs were half as large).
    Asserted: 0.01 units, 1%, 6%."""
    df, D, res = field_fit
    ll, x, se = _exact(df, D)
    rows = ["intercept", "slope", "spatial.intercept.sd", "spatial.intercept.range"]
    rows += ["omega2.intercept", "omega2.slope", "a"]
    p = res.params
    assert res.loglik == pytest.approx(ll, abs=0.01)
    for row, value, s in zip(rows, x, se):
        assert p.loc[row, "estimate"] == pytest.approx(value, rel=0.01), row
        assert p.loc[row, "se"] == pytest.approx(s, rel=0.06), row
    assert p.loc["spatial.intercept.sd", "kind"] == "spatial"
    assert res.df_modelwc == 7


def test_field_outputs(field_fit, tmp_path):
    """The field at the locations (one per plant here) with posterior sds, its map, the summary,
    the JSON record, save and load."""
    df, _, res = field_fit
    field = res.spatial_field()
    assert list(field.columns) == ["x", "y_coord", "intercept", "intercept.sd", "n_individuals"]
    assert len(field) == 100 and (field["n_individuals"] == 1).all()
    assert (field["intercept.sd"] > 0).all() and (
        field["intercept.sd"] < res.params.loc["spatial.intercept.sd", "estimate"]
    ).all()
    # the field explains the intercepts of neighbouring plants: it correlates with each plant's
    # own mean at t = 0 (its estimate), measured 0.8
    first = df[df["t"] == 0].set_index(["x", "y_coord"])["y"]
    assert (
        np.corrcoef(
            field.set_index(["x", "y_coord"])["intercept"], first.loc[field.set_index(["x", "y_coord"]).index]
        )[0, 1]
        > 0.6
    )
    # a new plant at a fitted location has the field's value there; far from every location the
    # kriged field is 0 (exp(-d / range) ~ 1e-100); in between, k(s, S) K^-1 E[f(S)]
    loc = field.iloc[7]
    new = pd.DataFrame(
        {"plant": ["n1", "n2"], "x": [loc["x"], 1000.0], "y_coord": [loc["y_coord"], 1000.0], "t": [0.0, 0.0]}
    )
    mu = res.params.loc["intercept", "estimate"]
    np.testing.assert_allclose(res.predict(new), [mu + loc["intercept"], mu], atol=1e-6)
    # spatial_field(points): the same kriged mean; the sd at a fitted location, NaN elsewhere (a
    # gp's sd at new points needs the field's posterior covariance, which the fit does not keep)
    at = res.spatial_field(new[["x", "y_coord"]])
    np.testing.assert_allclose(at["intercept"], [loc["intercept"], 0.0], atol=1e-6)
    assert at["intercept.sd"].iloc[0] == loc["intercept.sd"] and np.isnan(at["intercept.sd"].iloc[1])
    png = res.plot_spatial_field(tmp_path / "field.png")
    assert png.stat().st_size > 10_000
    assert "spatial field on ['intercept']: exact Gaussian process, exponential kernel" in str(res.summary())
    record = json.loads(res.to_json())
    assert set(record["spatial"]) == {"spatial.intercept.sd", "spatial.intercept.range"}
    again = pymixnn.Results.load(res.save(tmp_path / "fit.json"))
    pd.testing.assert_frame_equal(again.spatial_field(), field)
    assert res.level_names == []


def test_spatial_bad_input():
    df, _ = _simulate(n=20)
    kw = dict(id="plant", x="t", y="y")
    with pytest.raises(InputError, match="coordinate column 'x' must be numeric: row 5 has 'near'"):
        pymixnn.NLME(
            df.assign(x=df["x"].astype(object).where(df.index != 5, "near")),
            "linear",
            spatial=pymixnn.Spatial("intercept", ["x", "y_coord"]),
            **kw,
        )
    moved = df.copy()
    moved.loc[2, "x"] = 99.0
    with pytest.raises(InputError, match="coordinate column 'x' varies within individual 'p000' \\(row 2"):
        pymixnn.NLME(moved, "linear", spatial=pymixnn.Spatial("intercept", ["x", "y_coord"]), **kw)
    missing = df.copy()
    missing.loc[6, "y_coord"] = np.nan
    with pytest.raises(ValueError, match="column 'y_coord' must be finite and not missing: row 6"):
        pymixnn.NLME(missing, "linear", spatial=pymixnn.Spatial("intercept", ["x", "y_coord"]), **kw)
    with pytest.raises(InputError, match=r"kind='spde'\): available kinds are \['gp', 'ar1xar1', 'matern'\]"):
        pymixnn.Spatial("intercept", ["x", "y_coord"], kind="spde")
    with pytest.raises(InputError, match="no random effect at the individual level"):
        pymixnn.NLME(
            df, "linear", random=["slope"], spatial=pymixnn.Spatial("intercept", ["x", "y_coord"]), **kw
        )
    with pytest.raises(InputError, match="1 distinct location"):
        pymixnn.NLME(
            df.assign(x=1.0, y_coord=2.0),
            "linear",
            spatial=pymixnn.Spatial("intercept", ["x", "y_coord"]),
            **kw,
        )
    with pytest.raises(InputError, match="does not support spatial="):
        pymixnn.fit(
            df, "linear", spatial=pymixnn.Spatial("intercept", ["x", "y_coord"]), local="amortized", **kw
        )


def test_cli_spatial_flag(tmp_path, capsys):
    """``pymixnn fit ... --spatial intercept:x,y_coord``: the field's rows in the summary and under
    "spatial" in the JSON record; a malformed flag is one error line (status 2)."""
    from pymixnn.cli import main

    df, _ = _simulate(n=30)
    df.to_csv(tmp_path / "field.csv", index=False)
    out = tmp_path / "fit.json"
    args = ["fit", str(tmp_path / "field.csv"), "--model", "linear", "--id", "plant", "--x", "t", "--y", "y"]
    assert (
        main([*args, "--spatial", "intercept:x,y_coord:gaussian", "--json", str(out), "--no-progress"]) == 0
    )
    assert "gaussian kernel" in capsys.readouterr().out
    assert set(json.loads(out.read_text())["spatial"]) == {"spatial.intercept.sd", "spatial.intercept.range"}
    assert main([*args, "--spatial", "intercept"]) == 2
    assert "--spatial 'intercept'" in capsys.readouterr().err
