"""Issue 16, section 7: what fitting real held-out data (plant, mouse and PK sets) found, one test
per finding: an explicit time column for VPCs, explicit prediction bands of new genotypes, every
named model's transforms documented, comment lines in marker files, genotype= naming the id
column, genomic information criteria flagged as not comparable, the genotype column apart from
the covariates, and dates as x.

Fits are tiny (a few hundred SVI steps, no refinement): the tests check messages, tables and
the equality of two fits, not estimates.
"""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pymixnn
from pymixnn.markers import read_map, read_markers
from pymixnn.models import NAMED_MODELS, named
from pymixnn.vpc import time_column

TINY = dict(max_steps=150, refine=False, progress=False, seed=0)


def _two_x_frame(n_ind: int = 8, seed: int = 0) -> pd.DataFrame:
    """y = a_i + b t + noise, with a year indicator as a second x column (unused by the curve)."""
    rng = np.random.default_rng(seed)
    t = np.array([0.0, 1.0, 2.0, 4.0, 6.0])
    rows = []
    for i in range(n_ind):
        a = 5.0 + rng.normal(0.0, 0.5)
        rows.append(
            pd.DataFrame(
                {"id": i, "t": t, "year": float(i % 2), "y": a + 0.8 * t + rng.normal(0.0, 0.3, t.size)}
            )
        )
    return pd.concat(rows, ignore_index=True)


def _line(psi, x):
    return psi[..., 0] + psi[..., 1] * x[..., 0]


LINE = pymixnn.Model(_line, ["a", "b"], init={"a": 5.0, "b": 0.8}, random=["a"])


def _quiet_fit(*args, **kwargs):
    """A tiny fit without its convergence warnings (refine=False, 150 steps: not the point here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pymixnn.fit(*args, **kwargs)


@pytest.fixture(scope="module")
def two_x_fit():
    return _quiet_fit(_two_x_frame(), LINE, id="id", x=["t", "year"], y="y", **TINY)


# ---- 1. the time column of a VPC is explicit ------------------------------------------------------
def test_vpc_with_two_x_columns_needs_time(two_x_fit, tmp_path):
    # before: the last x column ('year', two values) was taken as time without a word
    with pytest.raises(
        ValueError,
        match=r"^x has several columns \['t', 'year'\]: pass "
        r"time='<column>' to vpc\(\)$",
    ):
        two_x_fit.vpc(n_sim=20)
    with pytest.raises(ValueError, match=r"pass time='<column>' to plot_individuals\(\)"):
        two_x_fit.plot_individuals(tmp_path / "fits.png")
    with pytest.raises(
        ValueError,
        match=r"time='day' is not a column of the fit: choose one of the "
        r"x columns \['t', 'year'\]",
    ):
        two_x_fit.vpc(n_sim=20, time="day")
    table = two_x_fit.vpc(n_sim=20, time="t")
    assert table.attrs["time"] == "t"
    # 5 distinct times (<= 12): one bin per time, 8 observations each
    assert sorted(table["time"].unique()) == [0.0, 1.0, 2.0, 4.0, 6.0]
    assert set(table["n_obs"]) == {8}
    by_year = two_x_fit.vpc(n_sim=20, time="year")
    assert sorted(by_year["time"].unique()) == [0.0, 1.0] and set(by_year["n_obs"]) == {20}
    assert two_x_fit.plot_individuals(tmp_path / "fits.png", time="t").stat().st_size > 5_000


def test_time_declared_by_the_model():
    df = pd.DataFrame(
        {"Id": [1, 1, 2, 2], "Dose": [4.0] * 4, "Time": [1.0, 2.0, 1.0, 2.0], "y": [1.0, 2.0, 1.5, 2.5]}
    )
    data = pymixnn.Data.from_pandas(df, id="Id", x=["Dose", "Time"], y="y")
    pk = named("onecpt_oral")
    assert pk.time == 1 and time_column(data, pk) == "Time"  # x_names ("dose", "time")
    assert time_column(data, LINE.replace(time="Dose")) == "Dose"
    assert named("logistic").time == 0 and named("emax").time is None
    with pytest.raises(ValueError, match=r"Model.time=2 is not the position of an x column"):
        named("onecpt_oral", time=2)
    with pytest.raises(ValueError, match=r"x has several columns \['Dose', 'Time'\]"):
        time_column(data, LINE)


# ---- 2. predict_genotypes: the band kind is chosen and printed ---------------------------------
def _genomic_frame(seed: int = 0):
    rng = np.random.default_rng(seed)
    genotypes = [f"g{k}" for k in range(8)]
    markers = pd.DataFrame(
        rng.integers(0, 3, size=(10, 6)).astype(float),
        index=genotypes + ["new1", "new2"],
        columns=[f"m{j}" for j in range(6)],
    )
    t = np.arange(0.0, 10.0, 1.5)
    rows = []
    for k, g in enumerate(genotypes):
        a = 100 * np.exp(0.05 * (markers.loc[g, "m0"] - 1))
        for rep in range(2):
            a_i = a * np.exp(rng.normal(0.0, 0.05))
            y = a_i / (1 + np.exp(-(t - 4.0) / 1.2)) + rng.normal(0.0, 1.0, t.size)
            rows.append(pd.DataFrame({"id": f"{g}_{rep}", "genotype": g, "t": t, "y": y}))
    return pd.concat(rows, ignore_index=True), markers


@pytest.fixture(scope="module")
def genomic_fit():
    df, markers = _genomic_frame()
    res = _quiet_fit(
        df,
        "logistic",
        id="id",
        x="t",
        y="y",
        genotype="genotype",
        random=["A"],
        genomic=pymixnn.Genomic(markers.iloc[:8], params=["A"], prior="ridge"),
        **TINY,
    )
    return res, markers


def test_predict_genotypes_band_is_explicit(genomic_fit):
    res, markers = genomic_fit
    new = markers.iloc[8:]
    # before: the genotype-mean band, silently (it covered 40% of held-out single mice)
    with pytest.warns(
        UserWarning,
        match=r"band is for the genotype's typical \(mean\) curve, not "
        r"for a single new individual.*band='individual'",
    ):
        default = res.predict_genotypes(new, x_grid=[0.0, 4.0, 8.0], n_draws=200, seed=1)
    assert list(default.columns) == ["genotype", "t", "pred", "lower", "upper", "band"]
    assert set(default["band"]) == {"mean"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit band does not warn
        mean = res.predict_genotypes(new, x_grid=[0.0, 4.0, 8.0], n_draws=200, seed=1, band="mean")
        one = res.predict_genotypes(new, x_grid=[0.0, 4.0, 8.0], n_draws=200, seed=1, band="individual")
        old = res.predict_genotypes(new, x_grid=[0.0, 4.0, 8.0], n_draws=200, seed=1, individual=True)
    pd.testing.assert_frame_equal(mean, default)
    pd.testing.assert_frame_equal(one, old)
    assert set(one["band"]) == {"individual"}
    np.testing.assert_allclose(one["pred"], mean["pred"])
    # a new individual adds its random effect (omega2.A > 0) to the genetic value's uncertainty
    assert res.omega.loc["A", "A"] > 0
    assert ((one["upper"] - one["lower"]) > (mean["upper"] - mean["lower"])).all()
    with pytest.raises(ValueError, match=r"band must be 'mean' .* or 'individual' .*, got 'new'"):
        res.predict_genotypes(new, x_grid=[0.0], band="new")
    with pytest.raises(ValueError, match=r"band='mean' contradicts individual=True"):
        res.predict_genotypes(new, x_grid=[0.0], band="mean", individual=True)


# ---- 3. every named model's transforms in its docstring and in the user guide's table ----------
# (the table was the README's; it is now in the user guide's "Data, models and the fit" page)
def _readme_table() -> dict[str, list[str]]:
    text = (Path(__file__).resolve().parents[1] / "vignettes/docs/guide/models.md").read_text()
    rows = re.findall(r"^\s*\| `(\w+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \|", text, flags=re.M)
    return {name: [cell.strip() for cell in cells] for name, *cells in rows}


@pytest.mark.parametrize("name", sorted(NAMED_MODELS))
def test_named_model_transforms_documented(name):
    model = named(name)
    stated = ", ".join(f"{p} {t}" for p, t in model.transforms.items())
    doc = " ".join(inspect.getdoc(model.function).split())
    assert f'Named model ``"{name}"``: transforms {stated}' in doc
    table = _readme_table()
    assert table[name] == [
        ", ".join(model.parameters),
        ", ".join(model.transforms.values()),
        ", ".join(model.x_names),
    ]
    if name == "exp_growth":  # the finding: B on the identity scale, now said
        assert model.transforms["B"] == "identity" and "B is on the identity scale" in doc


# ---- 4. comment lines in marker and map files ---------------------------------------------------
def test_marker_files_with_comment_lines(tmp_path):
    # before: pandas.errors.ParserError ("Expected 1 fields in line 3, saw 3")
    (tmp_path / "map.csv").write_text(
        "# grav2 map, positions in cM\n# exported 2021\n"
        "marker,chr,pos\nm1,1,0.5\n# a dropped marker\nm#2,2,10\n"
    )
    m = read_map(tmp_path / "map.csv")
    assert list(m.index) == ["m1", "m#2"] and list(m["pos"]) == [0.5, 10.0]  # '#' in a name kept
    (tmp_path / "markers.csv").write_text("# genotypes x markers\nid,m1,m#2\ng1,0,2\n#g0,1,1\nline#3,2,0\n")
    raw = read_markers(tmp_path / "markers.csv")
    assert list(raw.index) == ["g1", "line#3"] and list(raw.columns) == ["m1", "m#2"]
    assert raw.loc["line#3"].tolist() == [2, 0]
    (tmp_path / "bad.csv").write_text("marker,chr,pos\nm1,1,10\nm2,1,10,4\n")
    with pytest.raises(ValueError) as err:
        read_map(tmp_path / "bad.csv")
    assert re.fullmatch(
        r"cannot read the marker map '.*bad\.csv': Error tokenizing data\. C error: "
        r"Expected 3 fields in line 3, saw 4",
        str(err.value),
    )


# ---- 5. genotype= naming the id column -----------------------------------------------------------
def test_genotype_naming_the_id_column():
    df, markers = _genomic_frame()
    genomic = pymixnn.Genomic(markers, params=["A"])
    # before: "column(s) ['id'] used more than once among id, x, y, covariates, trials and censoring"
    with pytest.raises(
        ValueError,
        match=r"^genotype='id' is the id column: genotype= names the column "
        r"holding each individual's genotype.*df\['genotype'\] = "
        r"df\['id'\]$",
    ):
        pymixnn.fit(df, "logistic", id="id", x="t", y="y", genotype="id", genomic=genomic, **TINY)
    with pytest.raises(ValueError, match=r"^genotype='t' is the x column"):
        pymixnn.fit(df, "logistic", id="id", x="t", y="y", genotype="t", genomic=genomic, **TINY)


# ---- 6. and 7. the summary and JSON of a genomic fit ---------------------------------------------
def test_genomic_information_criteria_and_genotype_column(genomic_fit, two_x_fit):
    res, _ = genomic_fit
    text = res.summary().text
    # before: AIC/BIC printed with nothing saying they leave the markers' prior out
    assert "AIC and BIC are not comparable with a fit without markers: ll excludes the markers' prior" in text
    assert res.to_dict()["genomic"]["ic_comparable_with_non_genomic"] is False
    assert "not comparable" not in two_x_fit.summary().text
    # before: "..., x=['t'], covariates=['genotype']"
    data_line = next(line for line in text.splitlines() if line.startswith("data:"))
    assert data_line.endswith("y='y', x=['t'], genotype column 'genotype'")


# ---- 8. dates as x -------------------------------------------------------------------------------
def test_datetime_x_converted_with_a_stated_unit(tmp_path):
    df = _two_x_frame().drop(columns="year")
    origin = pd.Timestamp("2021-03-04 00:00")
    dated = df.assign(date=origin + pd.to_timedelta(df["t"], unit="h")).drop(columns="t")
    # before: "column 'date' must be numeric"
    with pytest.raises(
        ValueError,
        # the resolution is pandas' choice: ns before pandas 3, us from pandas 3 on
        match=r"^x column 'date' holds dates \(datetime64\[[mun]?s\]\): pass "
        r"time_unit='h', 'd', 'min', 's' or 'w'",
    ):
        pymixnn.fit(dated, LINE, id="id", x="date", y="y", **TINY)
    with pytest.raises(ValueError, match=r"time_unit='h' converts dates, but no x column of \['t'\]"):
        pymixnn.fit(df, LINE, id="id", x="t", y="y", time_unit="h", **TINY)
    with pytest.raises(ValueError, match=r"time_unit must be one of \['s', 'min', 'h', 'd', 'w'\]"):
        pymixnn.fit(dated, LINE, id="id", x="date", y="y", time_unit="hours", **TINY)
    hours = _quiet_fit(df, LINE, id="id", x="t", y="y", **TINY)
    dates = _quiet_fit(dated, LINE, id="id", x="date", y="y", time_unit="h", **TINY)
    np.testing.assert_allclose(dates.params["estimate"], hours.params["estimate"], rtol=0, atol=1e-8)
    assert dates.data.time_origins == {"date": origin}
    assert "x 'date' converted to hours since 2021-03-04 00:00" in dates.summary().text
    assert repr(dates.data).endswith("; x 'date' converted to hours since 2021-03-04 00:00")
    table = dates.vpc(n_sim=20)  # one x column: binned by it, labelled with its unit and origin
    assert table.attrs["time_label"] == "date (hours since 2021-03-04 00:00)"
    assert sorted(table["time"].unique()) == [0.0, 1.0, 2.0, 4.0, 6.0]
    # new data: dates converted with the fit's origin, so predictions agree with the numeric fit
    new = pd.DataFrame({"id": [0, 0], "date": pd.to_datetime(["2021-03-04 03:00", "2021-03-05 00:00"])})
    np.testing.assert_allclose(
        np.asarray(dates.predict(new, level="individual"), float),
        np.asarray(hours.predict(pd.DataFrame({"id": [0, 0], "t": [3.0, 24.0]}), level="individual"), float),
        rtol=0,
        atol=1e-8,
    )
    # saved and reloaded, the fit converts new dates with the same origin and unit
    back = pymixnn.Results.load(dates.save(tmp_path / "dates.json"), model=LINE)
    assert back.data.time_origins == {"date": origin} and back.data.time_unit == "h"
    pd.testing.assert_series_equal(
        back.predict(new, level="individual"), dates.predict(new, level="individual")
    )
    same_days = pymixnn.Data.from_pandas(dated, id="id", x="date", y="y", time_unit="d")
    np.testing.assert_allclose(same_days.x[:, 0], df["t"].to_numpy() / 24)
