"""Spatial fields on a grid (``spatial=pymixnn.Spatial(params, coords=[row, col], kind="ar1xar1")``):
a linear growth model whose intercept carries a separable AR1 x AR1 field over a 12 x 10 grid of
pots, against the exact maximum likelihood of the same model (the multivariate normal of all
observations, maximized by scipy here); the field in empty cells and for new plants; bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from numerics import hessian
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import minimize

import pymixnn
from pymixnn.inference.fields import ar1_precision
from pymixnn.validation import InputError

N_ROW, N_COL = 12, 10
EMPTY = {(3, 4), (7, 2), (10, 9), (1, 1), (12, 10)}  # pots without a plant (the last cell too)


def _corr(rc, rho_row, rho_col):
    d = np.abs(rc[:, None, :] - rc[None, :, :])
    return rho_row ** d[..., 0] * rho_col ** d[..., 1]


def _simulate(seed=11):
    """115 plants on a 12 x 10 grid (5 empty pots), 4 times each: y = 5 + f(cell) + e0 + (1 + e1) t
    + N(0, 0.5^2), f an AR1 x AR1 field (sd 1, rho_row 0.7, rho_col 0.4), sd(e0) 0.5, sd(e1) 0.2."""
    rng = np.random.default_rng(seed)
    cells = np.array([(r, c) for r in range(1, N_ROW + 1) for c in range(1, N_COL + 1)])
    f = np.linalg.cholesky(_corr(cells, 0.7, 0.4)) @ rng.standard_normal(len(cells))
    times, rows = np.arange(4.0), []
    for k, (r, c) in enumerate(cells):
        if (r, c) in EMPTY:
            continue
        e0, e1 = rng.normal(0, 0.5), rng.normal(0, 0.2)
        y = 5 + f[k] + e0 + (1 + e1) * times + rng.normal(0, 0.5, len(times))
        rows.append(pd.DataFrame({"plant": f"r{r:02d}c{c:02d}", "Row": r, "Col": c, "t": times, "y": y}))
    return pd.concat(rows, ignore_index=True), cells, f


def _exact(df):
    """Exact ML (natural parameters b0, b1, sd, rho_row, rho_col, omega0, omega1, sigma) and the
    SEs from the numerical Hessian of the exact log-likelihood."""
    rc = df[["Row", "Col"]].to_numpy(dtype=float)
    t, y = df["t"].to_numpy(), df["y"].to_numpy()
    X = np.column_stack([np.ones(len(df)), t])
    same = (df["plant"].to_numpy()[:, None] == df["plant"].to_numpy()[None, :]).astype(float)

    def nll(p):
        b0, b1, sd, rr, rcl, o0, o1, s = p
        C = sd**2 * _corr(rc, rr, rcl) + same * (o0 + o1 * np.outer(t, t)) + s**2 * np.eye(len(t))
        c = cho_factor(C)
        r = y - X @ [b0, b1]
        return 0.5 * (r @ cho_solve(c, r) + 2 * np.log(np.diag(c[0])).sum() + len(t) * np.log(2 * np.pi))

    bounds = [(None, None)] * 2 + [(1e-3, None), (-0.99, 0.99), (-0.99, 0.99)] + [(1e-3, None)] * 3
    opt = minimize(nll, [5, 1, 1, 0.5, 0.5, 0.25, 0.04, 0.5], method="L-BFGS-B", bounds=bounds)
    opt = minimize(nll, opt.x, method="Nelder-Mead", options=dict(xatol=1e-9, fatol=1e-11, maxiter=20000))
    return -opt.fun, opt.x, np.sqrt(np.diag(np.linalg.inv(hessian(nll, opt.x))))


@pytest.fixture(scope="module")
def grid_fit():
    df, cells, f = _simulate()
    res = pymixnn.fit(
        df,
        "linear",
        id="plant",
        x="t",
        y="y",
        spatial=pymixnn.Spatial(["intercept"], ["Row", "Col"], kind="ar1xar1"),
        seed=1,
        progress=False,
        threads=1,
    )
    return df, cells, f, res


def test_ar1_precision_is_the_inverse_of_the_ar1_correlation():
    """The tridiagonal AR1 precision (fields.py) against the inverse of rho^|i-j| (to rounding)."""
    import torch

    for n, rho in [(2, 0.3), (7, -0.6), (12, 0.95)]:
        R = rho ** np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
        Q = ar1_precision(n, torch.tensor(rho, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(Q @ R, np.eye(n), atol=1e-10)
        assert np.linalg.slogdet(R)[1] == pytest.approx((n - 1) * np.log(1 - rho**2), abs=1e-10)


def test_grid_fit_is_the_exact_maximum_likelihood(grid_fit):
    """A linear model: the levels' algebra is exact, so the fit is the ML of the full Gaussian
    likelihood. Measured: log-likelihood 9e-9 units apart, estimates within 4e-5 relative, SEs of
    the field's sd and correlations, the intercepts and omega2.intercept within 1.3%; omega2.slope's
    6.9% and the residual sd's 3.5% small (their SEs come from the refinement, which holds the
    field's parameters fixed: as with kind="gp", 3.2%). Asserted: 0.01 units, 1e-4 relative (the
    exact ML's optimizer tolerance), SEs 3% and, for those two, 10%."""
    df, _, _, res = grid_fit
    ll, x, se = _exact(df)
    rows = ["intercept", "slope", "spatial.intercept.sd", "spatial.intercept.rho_row"]
    rows += ["spatial.intercept.rho_col", "omega2.intercept", "omega2.slope", "a"]
    p = res.params
    assert res.loglik == pytest.approx(ll, abs=0.01)
    for row, value, s in zip(rows, x, se):
        assert p.loc[row, "estimate"] == pytest.approx(value, rel=1e-4, abs=1e-5), row
        assert p.loc[row, "se"] == pytest.approx(s, rel=0.10 if row in ("omega2.slope", "a") else 0.03), row
    assert res.df_modelwc == 8
    # the truth is inside the 95% intervals of the field's parameters (sd 1, rho 0.7 / 0.4)
    for row, truth in [("sd", 1.0), ("rho_row", 0.7), ("rho_col", 0.4)]:
        e, s = p.loc[f"spatial.intercept.{row}", ["estimate", "se"]]
        assert abs(e - truth) < 2.5 * s, row


def test_grid_field_outputs_and_new_plants(grid_fit, tmp_path):
    """Every cell of the grid has the field's posterior (empty pots too, with a larger sd), which
    tracks the simulated field; a new plant in an empty pot is predicted with the field's value
    there, one beyond the grid's edge with rho^steps times the edge cell's; map, summary, JSON."""
    df, cells, f, res = grid_fit
    field = res.spatial_field()
    assert list(field.columns) == ["Row", "Col", "intercept", "intercept.sd", "n_individuals"]
    assert len(field) == N_ROW * N_COL and int((field["n_individuals"] == 0).sum()) == len(EMPTY)
    empty = field["n_individuals"] == 0
    assert field.loc[empty, "intercept.sd"].min() > field.loc[~empty, "intercept.sd"].max() * 0.9
    # the posterior mean tracks the simulated field (centred: the intercept holds its mean);
    # measured correlation 0.9 at sd(f) = 1 against plant noise of sd 0.5 + 0.25 / 4 obs
    truth = pd.Series(f - f.mean(), index=pd.MultiIndex.from_arrays(cells.T))
    assert np.corrcoef(field.set_index(["Row", "Col"])["intercept"], truth)[0, 1] > 0.8
    new = pd.DataFrame({"plant": ["new1", "new2"], "Row": [3, N_ROW + 2], "Col": [4, 5], "t": [0.0, 0.0]})
    pred = res.predict(new)
    at = field.set_index(["Row", "Col"])["intercept"]
    mu = res.params.loc["intercept", "estimate"]
    rho = res.params.loc["spatial.intercept.rho_row", "estimate"]
    assert pred[0] == pytest.approx(mu + at[(3, 4)], abs=1e-9)
    assert pred[1] == pytest.approx(mu + rho**2 * at[(N_ROW, 5)], abs=1e-9)
    assert "AR1 x AR1 over the ['Row', 'Col'] grid (120 cells)" in str(res.summary())
    record = json.loads(res.to_json())
    assert set(record["spatial"]) == {f"spatial.intercept.{e}" for e in ("sd", "rho_row", "rho_col")}
    assert res.plot_spatial_field(tmp_path / "grid.png").stat().st_size > 10_000


def test_grid_field_at_new_points_is_the_exact_gaussian_conditional(grid_fit):
    """``spatial_field(points)``: the field's posterior mean and sd in an empty pot, beyond the
    grid's edge and beyond a corner, against the exact Gaussian conditional of the field given all
    observations at the fitted parameters (the levels' posterior is conditional on the fixed
    effects, as here). Measured agreement 2e-15; asserted 1e-6 (the fit's ML tolerance moves the
    parameters, not the algebra)."""
    df, _, _, res = grid_fit
    p = res.params["estimate"]
    sd, rr, rcl = (p[f"spatial.intercept.{k}"] for k in ("sd", "rho_row", "rho_col"))
    rc = df[["Row", "Col"]].to_numpy(dtype=float)
    t, y = df["t"].to_numpy(), df["y"].to_numpy()
    same = (df["plant"].to_numpy()[:, None] == df["plant"].to_numpy()[None, :]).astype(float)
    V = sd**2 * _corr(rc, rr, rcl) + same * (p["omega2.intercept"] + p["omega2.slope"] * np.outer(t, t))
    V += p["a"] ** 2 * np.eye(len(t))
    r = y - p["intercept"] - p["slope"] * t
    pts = np.array([[3.0, 4.0], [N_ROW + 2.0, 5.0], [N_ROW + 1.0, N_COL + 3.0], [5.0, 6.0]])
    d = np.abs(pts[:, None, :] - rc[None, :, :])
    c = sd**2 * rr ** d[..., 0] * rcl ** d[..., 1]  # (4, n_obs)
    mean = c @ np.linalg.solve(V, r)
    var = sd**2 - np.einsum("ij,ji->i", c, np.linalg.solve(V, c.T))
    out = res.spatial_field(pd.DataFrame(pts, columns=["Row", "Col"]))
    assert list(out.columns) == ["Row", "Col", "intercept", "intercept.sd"]
    # the mean: centred on the fitted intercept in both (the field has mean zero given mu)
    np.testing.assert_allclose(out["intercept"], mean, atol=1e-6)
    np.testing.assert_allclose(out["intercept.sd"], np.sqrt(var), rtol=1e-6)
    # an array works too, and a fitted cell gives the table's own values
    table = res.spatial_field().set_index(["Row", "Col"])
    again = res.spatial_field(pts[3:])
    assert again["intercept.sd"].iloc[0] == pytest.approx(table.loc[(5, 6), "intercept.sd"], rel=1e-12)


def test_spatial_variance_split(grid_fit):
    """``spatial_variance()``: the field's marginal variance sd^2, its expected variance across the
    115 plants (against the mean sample variance of 4,000 fields simulated at their pots from the
    fitted field: Monte Carlo sd of that mean ~0.3%, asserted 2%), the plants' own variance and
    the shares."""
    df, _, _, res = grid_fit
    p = res.params["estimate"]
    sd, rr, rcl = (p[f"spatial.intercept.{k}"] for k in ("sd", "rho_row", "rho_col"))
    v = res.spatial_variance()
    assert list(v.index) == ["intercept"]
    row = v.loc["intercept"]
    assert row["field"] == pytest.approx(sd**2, rel=1e-12)
    assert row["individual"] == pytest.approx(p["omega2.intercept"], rel=1e-12) and row["levels"] == 0
    pots = df.groupby("plant")[["Row", "Col"]].first().to_numpy(dtype=float)
    f = np.linalg.cholesky(sd**2 * _corr(pots, rr, rcl)) @ np.random.default_rng(3).standard_normal(
        (115, 4000)
    )
    assert row["field_over_locations"] == pytest.approx(f.var(axis=0).mean(), rel=0.02)
    assert row["field_over_locations"] < row["field"]
    total = row["field_over_locations"] + row["individual"]
    assert row["share"] == pytest.approx(row["field_over_locations"] / total, rel=1e-12)


def test_grid_bad_input():
    df, _, _ = _simulate()
    kw = dict(id="plant", x="t", y="y")
    grid = pymixnn.Spatial("intercept", ["Row", "Col"], kind="ar1xar1")
    half = df.assign(Row=df["Row"].astype(float))
    half.loc[half["plant"] == "r02c01", "Row"] = 2.5
    row = half.index[half["plant"] == "r02c01"][0]
    with pytest.raises(
        InputError, match=f"'Row' of Spatial\\(kind='ar1xar1'\\) holds grid positions .*row {row} has 2.5"
    ):
        pymixnn.NLME(half, "linear", spatial=grid, **kw)
    twice = df.copy()
    twice.loc[twice["plant"] == "r02c01", ["Row", "Col"]] = [2, 2]
    with pytest.raises(
        InputError, match=r"the grid cell \{'Row': 2, 'Col': 2\} holds individuals 'r02c01' and 'r02c02'"
    ):
        pymixnn.NLME(twice, "linear", spatial=grid, **kw)
    with pytest.raises(InputError, match="kind='ar1xar1'\\) is a row x column grid: coords names 2 columns"):
        pymixnn.Spatial("intercept", ["Row"], kind="ar1xar1")
    with pytest.raises(InputError, match="Spatial\\(kind='matern', nu=3\\): nu is one of"):
        pymixnn.Spatial("intercept", ["Row", "Col"], kind="matern", nu=3)


def test_cli_grid_flag(tmp_path, capsys):
    """``pymixnn fit ... --spatial intercept:Row,Col:ar1xar1``: the grid's rows in the summary and
    the JSON record; a grid with two plants in a cell is one error line naming them (status 2)."""
    from pymixnn.cli import main

    df, _, _ = _simulate()
    # rows 1-8 (80 cells): on rows 1-5 the field takes all of the intercept's individual variance
    # (omega2.intercept at ~0) and the alternation diverged with one BLAS thread (user guide)
    df = df[df["Row"] <= 8]
    df.to_csv(tmp_path / "grid.csv", index=False)
    out = tmp_path / "fit.json"
    args = ["fit", str(tmp_path / "grid.csv"), "--model", "linear", "--id", "plant", "--x", "t", "--y", "y"]
    flag = ["--spatial", "intercept:Row,Col:ar1xar1"]
    assert main([*args, *flag, "--json", str(out), "--no-progress"]) == 0
    assert "AR1 x AR1 over the ['Row', 'Col'] grid (80 cells)" in capsys.readouterr().out
    assert set(json.loads(out.read_text())["spatial"]) == {
        f"spatial.intercept.{e}" for e in ("sd", "rho_row", "rho_col")
    }
    df.assign(Col=df["Col"].where(df["plant"] != "r01c02", 3)).to_csv(tmp_path / "twice.csv", index=False)
    assert main([*args[:1], str(tmp_path / "twice.csv"), *args[2:], *flag]) == 2
    assert "holds individuals 'r01c02' and 'r01c03'" in capsys.readouterr().err
