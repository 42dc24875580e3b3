"""Matérn fields by nearest neighbours (``Spatial(kind="matern")``): the conditioning sets against
brute force, the Vecchia algebra against the dense Gaussian (exact when each individual is
conditioned on all its predecessors), the fit against the exact gp fit and the exact maximum
likelihood, the exact field simulator, outputs, CLI and bad input; recovery of a simulated field
at 10^4 locations (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_spatial import _exact, _simulate

import pymixnn
from pymixnn.inference.vecchia import VecchiaField
from pymixnn.model.matern import matern_correlation
from pymixnn.model.named import named
from pymixnn.model.vecchia import vecchia_order, vecchia_sets
from pymixnn.simulate.fields import simulate_field_growth, simulate_matern_sites
from pymixnn.validation import InputError


def test_vecchia_sets_are_the_nearest_predecessors():
    """3,000 random locations (beyond the brute-force head: the k-d tree bands) and 7 duplicated
    ones: each set is exactly the m nearest predecessors in the fixed order (brute force here)."""
    rng = np.random.default_rng(4)
    loc = rng.uniform(size=(3000, 2))
    loc[-7:] = loc[:7]  # individuals sharing a location
    m = 8
    sets = vecchia_sets(loc, m)
    order = vecchia_order(len(loc))
    pos = np.empty(len(loc), dtype=int)
    pos[order] = np.arange(len(loc))
    for i in rng.choice(len(loc), 400, replace=False).tolist() + list(range(len(loc) - 7, len(loc))):
        prev = order[: pos[i]]
        d = ((loc[prev] - loc[i]) ** 2).sum(1)
        want = set(prev[np.argsort(d, kind="stable")[:m]].tolist())
        got = set(sets[i][sets[i] >= 0].tolist())
        assert got == want, i
    assert (sets[order[0]] == -1).all() and (sets >= 0).sum() == len(loc) * m - m * (m + 1) // 2
    assert np.array_equal(sets, vecchia_sets(loc, m))  # the same locations: the same sets


def test_vecchia_algebra_is_exact_with_all_predecessors():
    """One slot per individual: z_i = x_i' mu + f(s_i) + e_i, e_i ~ N(0, 1/lambda_i). With every
    predecessor in the sets, the block's log-likelihood, GLS mu, X' Sigma^-1 X and the field's
    posterior mean and variance equal the dense Gaussian's (to 1e-8: float64 rounding)."""
    rng = np.random.default_rng(2)
    n, nu, sd, rng_ = 40, 1.5, 0.8, 0.4
    loc = rng.uniform(size=(n, 2))
    lam = rng.uniform(0.5, 4.0, n)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    z = rng.normal(size=n)
    D = np.sqrt(((loc[:, None] - loc[None]) ** 2).sum(-1))
    K = sd**2 * matern_correlation(np.sqrt(8 * nu) * D / rng_, nu)
    S = K + np.diag(1 / lam)
    Si = np.linalg.inv(S)
    info = X.T @ Si @ X
    mu = np.linalg.solve(info, X.T @ Si @ z)
    r = z - X @ mu
    ll = -0.5 * r @ Si @ r - 0.5 * np.linalg.slogdet(S)[1] - 0.5 * np.log(lam).sum()
    mean, var = K @ Si @ r, np.diag(K - K @ Si @ K)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    mom = dict(
        lam=t(lam),
        h=t(lam * z),
        xs=t(lam[:, None] * X),
        C=t(X.T @ (lam[:, None] * X)),
        g=t(X.T @ (lam * z)),
        q=t((lam * z * z).sum()),
    )
    vf = VecchiaField(t(loc), torch.as_tensor(vecchia_sets(loc, n - 1)), nu, torch.arange(n), n)
    with torch.no_grad():
        out = vf.solve(t([sd, rng_]), mom, None)
    assert float(out["ll"]) == pytest.approx(ll, abs=1e-8)
    np.testing.assert_allclose(out["mu"].numpy(), mu, atol=1e-8)
    np.testing.assert_allclose(out["info"].numpy(), info, atol=1e-8)
    np.testing.assert_allclose(out["b"].numpy(), mean, atol=1e-8)
    np.testing.assert_allclose(out["LQ"].numpy(), var, atol=1e-8)
    # 10 neighbours of 40: an approximation, close (measured 0.02 units)
    vf10 = VecchiaField(t(loc), torch.as_tensor(vecchia_sets(loc, 10)), nu, torch.arange(n), n)
    with torch.no_grad():
        assert float(vf10.solve(t([sd, rng_]), mom, None)["ll"]) == pytest.approx(ll, abs=0.2)


@pytest.fixture(scope="module")
def matern_fit():
    df, D = _simulate()
    res = pymixnn.fit(
        df,
        "linear",
        id="plant",
        x="t",
        y="y",
        spatial=pymixnn.Spatial(["intercept"], ["x", "y_coord"], kind="matern", nu=0.5, neighbours=99),
        seed=1,
        progress=False,
        threads=1,
    )
    return df, D, res


def test_matern_fit_is_the_exact_maximum_likelihood(matern_fit):
    """nu = 0.5 is the exponential kernel with range = 2 x the gp's (kappa = 2 / range), and 99
    neighbours of 100 individuals make the approximation exact: the fit is test_spatial's exact
    ML (scipy on the 400 x 400 Gaussian). Measured as the gp kind: ll 1e-10 apart, estimates
    within 1e-5. Asserted: 0.01 units, 1%; SEs 6% (test_spatial's)."""
    df, D, res = matern_fit
    ll, x, se = _exact(df, D)
    x[3], se[3] = 2 * x[3], 2 * se[3]  # the Matérn range of the exponential kernel
    rows = ["intercept", "slope", "spatial.intercept.sd", "spatial.intercept.range"]
    rows += ["omega2.intercept", "omega2.slope", "a"]
    p = res.params
    assert res.loglik == pytest.approx(ll, abs=0.01)
    for row, value, s in zip(rows, x, se):
        assert p.loc[row, "estimate"] == pytest.approx(value, rel=0.01), row
        assert p.loc[row, "se"] == pytest.approx(s, rel=0.06), row
    assert "Matérn nu = 0.5" in str(res.summary())


def test_matern_outputs(matern_fit):
    """The field at the locations and kriged at new points (at a fitted location: its posterior
    mean; the nearest-neighbour kriging of 30 neighbours against the exact k' K^-1 E[f]: 100
    locations, so 30 neighbours are an approximation, measured 0.02 of the field's sd 1), the
    variance split (sd^2 (1 - mean pair correlation), exact here: 100 locations)."""
    df, D, res = matern_fit
    field = res.spatial_field()
    assert len(field) == 100 and (field["intercept.sd"] > 0).all()
    at = res.spatial_field(field[["x", "y_coord"]].iloc[:5])
    np.testing.assert_allclose(at["intercept"], field["intercept"].iloc[:5], atol=1e-6)
    sd, rng_ = res.params.loc[["spatial.intercept.sd", "spatial.intercept.range"], "estimate"]
    loc = field[["x", "y_coord"]].to_numpy()
    new = np.array([[5.0, 5.0], [1.2, 8.7], [9.0, 0.5]])
    K = np.exp(-2 * np.sqrt(((loc[:, None] - loc[None]) ** 2).sum(-1)) / rng_)
    k = np.exp(-2 * np.sqrt(((new[:, None] - loc[None]) ** 2).sum(-1)) / rng_)
    exact = k @ np.linalg.solve(K + 1e-8 * np.eye(len(loc)), field["intercept"].to_numpy())
    got = res.spatial_field(new)
    np.testing.assert_allclose(got["intercept"], exact, atol=0.1 * sd)
    assert got["intercept.sd"].isna().all()  # not kept for new points
    split = res.spatial_variance().loc["intercept"]
    corr = np.exp(-2 * np.sqrt(((loc[:, None] - loc[None]) ** 2).sum(-1)) / rng_).mean()
    assert split["field_over_locations"] == pytest.approx(sd**2 * (1 - corr), rel=1e-9)


def test_matern_sites_simulator_is_exact():
    """Circulant embedding: over 3,000 draws on a 12 x 12 lattice, the empirical covariance of
    every pair is the Matérn covariance (sd 0.5, range 0.3, nu 1.5) within 5 Monte Carlo SEs
    (the SE of a covariance of two N(0, 0.25): at most 0.25 sqrt(2 / 3000) = 0.0065)."""
    R, draws = 12, []
    for k in range(3000):
        s, f = simulate_matern_sites(R * R, 0.3, 0.5, 1.5, seed=k, resolution=R)
        o = np.lexsort((s[:, 1], s[:, 0]))
        draws.append(f[o])
    s = s[o]
    emp = np.cov(np.array(draws).T)
    d = np.sqrt(((s[:, None] - s[None]) ** 2).sum(-1))
    true = 0.25 * matern_correlation(np.sqrt(12) * d / 0.3, 1.5)
    assert np.abs(emp - true).max() < 5 * 0.0065
    sites, field = simulate_matern_sites(5000, 0.05, 1.0, 1.5, seed=1)
    assert len(np.unique(sites, axis=0)) == 5000 and field.shape == (5000,)


def test_matern_bad_input_and_cli():
    """One parameter, nu of the closed forms, neighbours 1..1000, no levels beside; the CLI's KIND."""
    from pymixnn.cli.spec import _spatial

    with pytest.raises(InputError, match="one parameter's field"):
        pymixnn.Spatial(["A", "B"], ["x", "y"], kind="matern")
    with pytest.raises(InputError, match="nu is one of"):
        pymixnn.Spatial(["A"], ["x", "y"], kind="matern", nu=1.0)
    with pytest.raises(InputError, match="an integer from 1 to 1000"):
        pymixnn.Spatial(["A"], ["x", "y"], kind="matern", neighbours=0)
    df, _ = _simulate(n=30)
    df["block"] = df["plant"].str[-1].astype(int) % 3
    with pytest.raises(InputError, match="without levels="):
        pymixnn.NLME(
            df,
            "linear",
            id="plant",
            x="t",
            y="y",
            levels=[pymixnn.Level("block", ["slope"])],
            spatial=pymixnn.Spatial(["intercept"], ["x", "y_coord"], kind="matern"),
        )
    model = named("linear")
    sp = _spatial("intercept:x,y_coord:matern2.5", model)
    assert (sp.kind, sp.nu, sp.neighbours) == ("matern", 2.5, 15)
    assert _spatial("intercept:x,y_coord:matern", model).nu == 1.5
    with pytest.raises(InputError, match="matern<nu>"):
        _spatial("intercept:x,y_coord:maternX", model)
    assert pymixnn.Spatial(["A"], ["x", "y"], kind="matern").to_dict()["neighbours"] == 15


@pytest.mark.slow
def test_matern_field_recovered_at_10_000_locations():
    """Acceptance (issue 22, point 2, the 10^4 size; 10^5 in benchmarks/spatial_matern.py):
    range and sd within 10% of the truth. Measured (seed 1, 1 thread, 110 s): sd 0.2983 (-0.6%),
    range 0.0490 (-1.9%), omega2.A 0.0098 (truth 0.01)."""
    df, _ = simulate_field_growth(10_000)
    res = pymixnn.fit(
        df,
        "logistic",
        id="id",
        x="time",
        y="y",
        random=["A", "B"],
        spatial=pymixnn.Spatial(["A"], ["sx", "sy"], kind="matern"),
        seed=1,
        progress=False,
        threads=1,
    )
    est = res.params["estimate"]
    assert est["spatial.A.sd"] == pytest.approx(0.3, rel=0.10)
    assert est["spatial.A.range"] == pytest.approx(0.05, rel=0.10)
    assert est["omega2.A"] == pytest.approx(0.01, rel=0.25)
