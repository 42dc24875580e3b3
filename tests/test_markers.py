"""Genomic marker input: reading, checks, imputation, standardization, maps, real marker files."""

import os
import warnings

import numpy as np
import pandas as pd
import pytest

from pymixnn.markers import MarkerMatrix, prepare_markers, read_map, read_markers

GRAV2 = "/work/shared/data/arabidopsis_gravitropism_grav2"
WHEAT = "/work/shared/data/bglr_wheat_markers"


def _raw():
    """5 genotypes x 4 markers: m2 monomorphic (with one NA), m3 has one NA, m4 all missing."""
    return pd.DataFrame(
        {
            "m1": [0.0, 1.0, 2.0, 2.0, 0.0],
            "m2": [1.0, 1.0, np.nan, 1.0, 1.0],
            "m3": [0.0, np.nan, 2.0, 1.0, 1.0],
            "m4": [np.nan] * 5,
        },
        index=["g1", "g2", "g3", "g4", "g5"],
    )


def _quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return prepare_markers(*args, **kwargs)


def _clean():
    return pd.DataFrame(
        [[0, 1, 2], [2, 1, 0], [1, 0, 0], [2, 2, 1]], index=["a", "b", "c", "d"], columns=["x", "y", "z"]
    )


# -- read_markers ---------------------------------------------------------------------------------


def test_read_dataframe_index_and_id_column():
    df = read_markers(_clean())
    assert df.index.name == "genotype"
    assert list(df.index) == ["a", "b", "c", "d"] and list(df.columns) == ["x", "y", "z"]

    with_id = _clean().reset_index().rename(columns={"index": "line"})
    df2 = read_markers(with_id, id="line")
    assert list(df2.index) == ["a", "b", "c", "d"] and list(df2.columns) == ["x", "y", "z"]
    assert df2.to_numpy().tolist() == _clean().to_numpy().tolist()
    with pytest.raises(ValueError, match="id column 'ID' not found"):
        read_markers(with_id, id="ID")


def test_read_integer_ids_become_str():
    df = read_markers(pd.DataFrame({"m": [0, 1]}, index=[10, 20]))
    assert list(df.index) == ["10", "20"]
    df = read_markers(pd.DataFrame({"id": [1.0, 2.0], "m": [0, 1]}), id="id")
    assert list(df.index) == ["1", "2"]


def test_read_tuple():
    arr = np.array([[0, 1], [2, 0], [1, 1]])
    df = read_markers((arr, ["a", "b", "c"]))
    assert list(df.columns) == ["m0", "m1"] and list(df.index) == ["a", "b", "c"]
    df = read_markers((arr, ["a", "b", "c"], ["s1", "s2"]))
    assert list(df.columns) == ["s1", "s2"]
    assert df.loc["b", "s1"] == 2
    with pytest.raises(ValueError, match="2 genotype ids for a marker array with 3 rows"):
        read_markers((arr, ["a", "b"]))
    with pytest.raises(ValueError, match="3 marker names for a marker array with 2 columns"):
        read_markers((arr, ["a", "b", "c"], ["s1", "s2", "s3"]))
    with pytest.raises(ValueError, match=r"must be 2-D.*\(3,\)"):
        read_markers((np.zeros(3), ["a", "b", "c"]))


def test_bare_array_and_wrong_type_raise_typeerror():
    with pytest.raises(TypeError, match=r"pd.DataFrame\(array, index=ids, columns=names\)"):
        read_markers(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="cannot read markers from a list"):
        read_markers([[0, 1], [1, 0]])


def test_read_csv(tmp_path):
    path = tmp_path / "geno.csv"
    path.write_text("line,m1,m2,m3\n007,0,1,2\n008,2,,0\nx9,1,1,1\n")
    df = read_markers(path)
    assert list(df.index) == ["007", "008", "x9"]  # ids kept as text
    assert list(df.columns) == ["m1", "m2", "m3"]
    assert np.isnan(df.loc["008", "m2"]) and df.loc["x9", "m3"] == 1
    df = read_markers(str(path))
    assert df.shape == (3, 3)

    path2 = tmp_path / "geno_idlast.csv"
    path2.write_text("m1,m2,geno\n0,1,A\n2,0,B\n")
    df2 = read_markers(path2, id="geno")
    assert list(df2.index) == ["A", "B"] and list(df2.columns) == ["m1", "m2"]
    with pytest.raises(ValueError, match="id column 'nope' not found"):
        read_markers(path2, id="nope")


def test_duplicates_raise(tmp_path):
    df = pd.DataFrame(np.zeros((4, 2)), index=["a", "b", "a", "b"], columns=["m1", "m2"])
    with pytest.raises(ValueError, match=r"2 duplicate genotype id\(s\).*'a', 'b'"):
        read_markers(df)
    df = pd.DataFrame(np.zeros((2, 3)), index=["a", "b"], columns=["m1", "m2", "m1"])
    with pytest.raises(ValueError, match=r"1 duplicate marker name\(s\).*'m1'"):
        read_markers(df)
    path = tmp_path / "dup.csv"  # pandas would rename the second m1 to m1.1: the header is read raw
    path.write_text("id,m1,m1\na,0,1\n")
    with pytest.raises(ValueError, match=r"1 duplicate marker name\(s\).*'m1'"):
        read_markers(path)
    with pytest.raises(ValueError, match=r"1 row\(s\) of the marker matrix.*no genotype id"):
        read_markers(pd.DataFrame({"m": [0, 1]}, index=["a", None]))


def test_read_plink_bed_round_trip(tmp_path):
    bed_reader = pytest.importorskip("bed_reader")
    val = np.array([[0, 1, 2, 1], [2, np.nan, 0, 1], [1, 0, 1, 1]], dtype=np.float32)
    path = tmp_path / "toy.bed"
    bed_reader.to_bed(
        path,
        val,
        properties={
            "iid": ["i1", "i2", "i3"],
            "sid": ["rs1", "rs2", "rs3", "rs4"],
            "chromosome": ["1", "1", "2", "X"],
            "bp_position": [100, 250, 50, 7],
        },
    )
    df = read_markers(path)
    assert list(df.index) == ["i1", "i2", "i3"] and df.index.name == "genotype"
    assert list(df.columns) == ["rs1", "rs2", "rs3", "rs4"]
    np.testing.assert_array_equal(df.to_numpy(), val)
    assert df.dtypes.iloc[0].kind == "f"
    m = df.attrs["map"]
    assert list(m.index) == ["rs1", "rs2", "rs3", "rs4"]
    assert m["chr"].tolist() == ["1", "1", "2", "X"] and m["pos"].tolist() == [100.0, 250.0, 50.0, 7.0]

    with pytest.warns(UserWarning) as record:
        mm = prepare_markers(str(path), ["i1", "i2"])
    messages = [str(w.message) for w in record]
    assert any("1 monomorphic marker(s) (a single observed value) dropped: 'rs4'" in m for m in messages)
    assert any("1 missing marker value(s) (11.1% of the kept markers' cells)" in m for m in messages)
    assert mm.names == ["rs1", "rs2", "rs3"]
    assert list(mm.map.index) == ["rs1", "rs2", "rs3"] and mm.map["chr"].tolist() == ["1", "1", "2"]
    assert mm.report["n_missing_imputed"] == 1 and mm.report["n_genotypes_unused"] == 1
    with pytest.raises(ValueError, match="pass the PLINK .bed file"):
        read_markers(tmp_path / "toy.bim")


# -- prepare_markers: standardization, imputation, drops -----------------------------------------------


def test_standardization_matches_numpy():
    raw = _clean()
    mm = prepare_markers(raw, ["a", "b"])
    x = raw.to_numpy(dtype=float)
    expected = (x - x.mean(0)) / x.std(0)
    assert isinstance(mm, MarkerMatrix)
    assert mm.values.dtype == np.float32 and mm.values.shape == (4, 3)
    np.testing.assert_allclose(mm.values, expected, rtol=1e-6)
    np.testing.assert_allclose(mm.values.mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(mm.values.std(0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(mm.center, [1.25, 1.0, 0.75])
    np.testing.assert_allclose(mm.scale, x.std(0))
    assert mm.genotypes == ["a", "b", "c", "d"] and mm.n_genotypes == 4 and mm.n_markers == 3
    assert mm.map is None
    assert mm.report == {
        "n_genotypes": 4,
        "n_markers_input": 3,
        "n_markers": 3,
        "n_missing_imputed": 0,
        "n_monomorphic": 0,
        "n_all_missing": 0,
        "n_genotypes_unused": 2,
    }
    assert mm.describe().startswith("3 markers on 4 genotypes; no missing values; 2 genotypes not used")


def test_booleans_accepted_and_input_not_modified():
    ids = ["a", "b", "c"]
    raw = pd.DataFrame(
        {
            "b": [True, False, True],
            "o": pd.Series([1, 0, None], index=ids, dtype=object),
            "f": [0.0, 2.0, 1.0],
        },
        index=ids,
    )
    assert raw.dtypes.tolist() == [np.dtype(bool), np.dtype(object), np.dtype(float)]
    raw["n"] = pd.array([2, None, 0], dtype="Int64")  # nullable integers, pd.NA missing
    before = raw.copy()
    with pytest.warns(UserWarning, match=r"2 missing marker value\(s\) \(16\.7%"):
        mm = prepare_markers(raw, ["a"])
    np.testing.assert_allclose(mm.center, [2 / 3, 0.5, 1.0, 1.0])
    assert mm.values[2, 1] == 0.0 and mm.values[1, 3] == 0.0
    pd.testing.assert_frame_equal(raw, before)


def test_imputation_and_drops_counts_and_warnings():
    raw = _raw()
    with pytest.warns(UserWarning) as record:
        mm = prepare_markers(raw, ["g1", "g2", "g3"])
    messages = [str(w.message) for w in record]
    assert any("1 marker(s) missing for every genotype dropped: 'm4'" in m for m in messages)
    assert any("1 missing marker value(s) (10.0% of the kept markers' cells) imputed" in m for m in messages)
    assert any("1 monomorphic marker(s) (a single observed value) dropped: 'm2'" in m for m in messages)
    assert mm.names == ["m1", "m3"]
    assert mm.report == {
        "n_genotypes": 5,
        "n_markers_input": 4,
        "n_markers": 2,
        "n_missing_imputed": 1,
        "n_monomorphic": 1,
        "n_all_missing": 1,
        "n_genotypes_unused": 2,
    }
    # m3: observed 0, 2, 1, 1 -> mean 1; imputed cell (g2) is exactly 0 once standardized
    assert mm.center[1] == 1.0
    assert mm.values[1, 1] == 0.0
    imputed = np.array([0.0, 1.0, 2.0, 1.0, 1.0])
    np.testing.assert_allclose(mm.scale[1], imputed.std())
    np.testing.assert_allclose(mm.values[:, 1], (imputed - 1.0) / imputed.std(), rtol=1e-6)
    assert mm.describe() == (
        "2 markers on 5 genotypes (of 4 markers in the input); 1 monomorphic dropped; "
        "1 missing for every genotype dropped; 1 missing values (10.0%) mean-imputed; "
        "2 genotypes not used by the phenotype data (kept for prediction)."
    )


def test_monomorphic_warning_alone():
    raw = pd.DataFrame({"a": [0, 1, 2], "b": [2, 2, 2], "c": [1, 1, 1], "d": [0, 0, 1]}, index=list("xyz"))
    with pytest.warns(UserWarning, match=r"2 monomorphic marker\(s\).*'b', 'c'"):
        mm = prepare_markers(raw, ["x", "y", "z"])
    assert mm.names == ["a", "d"] and mm.report["n_monomorphic"] == 2 and mm.report["n_genotypes_unused"] == 0


# -- prepare_markers: errors ------------------------------------------------------------------------


def test_missing_genotypes_error():
    needed = ["g1", "g2", "zz1", "zz2", "zz3", "zz4", "zz5", "zz6", "g1"]
    with pytest.raises(
        ValueError,
        match=r"6 of 8 genotypes in column 'line' have no row in the marker "
        r"matrix: 'zz1', 'zz2', 'zz3', 'zz4', 'zz5', \.\.\.$",
    ):
        prepare_markers(_raw(), needed, genotype_column="line")
    with pytest.raises(TypeError, match="not a single string"):
        prepare_markers(_raw(), "g1")


def test_missing_genotypes_checked_before_values():
    raw = _clean().astype(object)
    raw.loc["a", "x"] = "AB"
    with pytest.raises(ValueError, match="1 of 1 genotypes in column 'genotype'"):
        prepare_markers(raw, ["nope"])


def test_non_numeric_error_names_column_genotype_value():
    raw = _clean().astype(object)
    raw.loc["c", "y"] = "AB"
    raw.loc["d", "z"] = "--"
    with pytest.raises(
        ValueError,
        match=r"column 'y', genotype 'c' has value 'AB' \(2 non-numeric cell\(s\) in "
        r"2 marker column\(s\)\)",
    ):
        prepare_markers(raw, ["a"])


def test_non_numeric_in_csv(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,m11,m12\nRIL1,0,1\nRIL7,1,AB\n")
    with pytest.raises(ValueError, match="column 'm12', genotype 'RIL7' has value 'AB'"):
        prepare_markers(path, ["RIL1"])


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinite_error(bad):
    raw = _clean().astype(float)
    raw.loc["b", "z"] = bad
    with pytest.raises(
        ValueError, match=rf"infinite marker value: column 'z', genotype 'b' has value {bad!r}"
    ):
        prepare_markers(raw, ["a"])


def test_genotype_missing_for_every_marker():
    raw = _raw()
    raw.loc["g4", :] = np.nan
    with pytest.raises(ValueError, match=r"genotype 'g4' is missing for every marker \(1 such genotype"):
        _quiet(raw, ["g1"])


def test_no_marker_left():
    raw = pd.DataFrame({"a": [1, 1], "b": [np.nan, 2]}, index=["x", "y"])
    with pytest.raises(
        ValueError,
        match="no marker remains: of 2 markers, 0 are missing for every genotype and 2 are monomorphic",
    ):
        _quiet(raw, ["x"])
    with pytest.raises(ValueError, match="all 1 markers are missing for every genotype"):
        prepare_markers(pd.DataFrame({"a": [np.nan, np.nan]}, index=["x", "y"]), ["x"])


# -- maps --------------------------------------------------------------------------------------------


def test_read_map_aliases(tmp_path):
    m = read_map(pd.DataFrame({"SNP": ["a", "b"], "Chromosome": [1, 2], "bp": [10, 20]}))
    assert list(m.index) == ["a", "b"] and m.index.name == "marker"
    assert m["chr"].tolist() == ["1", "2"] and m["pos"].tolist() == [10.0, 20.0]
    assert m["pos"].dtype == np.float64
    m = read_map(pd.DataFrame({"Marker": ["a"], "CHR": ["X"], "cM": [1.5]}))
    assert m.loc["a", "chr"] == "X" and m.loc["a", "pos"] == 1.5
    m = read_map(pd.DataFrame({"marker": ["a"], "chrom": ["01"], "position": ["3.25"]}))
    assert m.loc["a", "chr"] == "01" and m.loc["a", "pos"] == 3.25
    assert read_map(m).equals(m)  # idempotent: an index named 'marker' is accepted
    path = tmp_path / "map.csv"
    path.write_text("marker,chr,pos\nm1,01,0.5\nm2,2,\n")
    m = read_map(path)
    assert m["chr"].tolist() == ["01", "2"] and m.loc["m1", "pos"] == 0.5 and np.isnan(m.loc["m2", "pos"])


def test_read_map_errors():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['pos'\]: expected columns marker, chr, pos"):
        read_map(pd.DataFrame({"marker": ["a"], "chr": [1], "where": [3]}))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['marker', 'chr'\]"):
        read_map(pd.DataFrame({"x": ["a"], "pos": [1]}))
    with pytest.raises(ValueError, match="ambiguous position columns.*'cM', 'bp'"):
        read_map(pd.DataFrame({"marker": ["a"], "chr": [1], "cM": [1.0], "bp": [100]}))
    with pytest.raises(ValueError, match=r"1 marker\(s\) listed more than once.*'a'"):
        read_map(pd.DataFrame({"marker": ["a", "a"], "chr": [1, 1], "pos": [1, 2]}))
    with pytest.raises(ValueError, match="marker 'b' has non-numeric position 'far'"):
        read_map(pd.DataFrame({"marker": ["a", "b"], "chr": [1, 1], "pos": [1, "far"]}))
    with pytest.raises(TypeError):
        read_map(3)


def test_prepare_with_map_reorders_and_checks():
    gmap = pd.DataFrame(
        {"marker": ["z", "y", "x", "extra"], "chr": [3, 2, 1, 1], "pos": [3.0, 2.0, 1.0, 9.0]}
    )
    mm = prepare_markers(_clean(), ["a"], map=gmap)
    assert list(mm.map.index) == ["x", "y", "z"] and mm.map["chr"].tolist() == ["1", "2", "3"]
    assert mm.describe().endswith("Map: 3 chromosomes.")
    with pytest.raises(ValueError, match=r"2 of the 3 kept markers are not in the marker map: 'x', 'y'"):
        prepare_markers(_clean(), ["a"], map=gmap.iloc[[0]])


# -- rows and standardize --------------------------------------------------------------------------------


def test_rows():
    mm = prepare_markers(_clean(), ["a"])
    rows = mm.rows(["d", "a", "a", "c"])
    assert rows.dtype == np.int64 and rows.tolist() == [3, 0, 0, 2]
    with pytest.raises(ValueError, match=r"2 genotype\(s\) have no row in the marker matrix: 'q', 'r'"):
        mm.rows(["a", "q", "r", "q"])
    mm2 = prepare_markers(pd.DataFrame({"m": [0, 1, 2]}, index=[1, 2, 3]), [1.0, 3])
    assert mm2.rows([3, "1", 2.0]).tolist() == [2, 0, 1]


def test_standardize_new_genotypes_equals_fitted_rows():
    raw = _raw()
    mm = _quiet(raw, ["g1"])
    new = raw.loc[["g3", "g2", "g5"], ["m4", "m3", "m1", "m2"]].copy()  # other order, extra columns
    new["unrelated"] = 5.0
    out = mm.standardize(new)
    assert out.dtype == np.float32 and out.shape == (3, 2)
    np.testing.assert_array_equal(out, mm.values[mm.rows(["g3", "g2", "g5"])])
    assert out[1, 1] == 0.0  # g2's missing m3 -> training mean -> 0

    new2 = pd.DataFrame({"m1": [1.25], "m3": [np.nan]}, index=["fresh"])
    np.testing.assert_allclose(mm.standardize(new2), [[(1.25 - mm.center[0]) / mm.scale[0], 0.0]], rtol=1e-6)
    with pytest.raises(
        ValueError, match=r"1 of the 2 fitted markers are missing from the new marker matrix: 'm3'"
    ):
        mm.standardize(new2[["m1"]])
    bad = new2.astype(object)
    bad.loc["fresh", "m3"] = "AB"
    with pytest.raises(ValueError, match="column 'm3', genotype 'fresh' has value 'AB'"):
        mm.standardize(bad)
    with pytest.raises(ValueError, match="column 'm1', genotype 'fresh' has value inf"):
        mm.standardize(pd.DataFrame({"m1": [np.inf], "m3": [1.0]}, index=["fresh"]))


def test_large_matrix_chunks_match_direct(monkeypatch):
    import pymixnn.markers as markers

    monkeypatch.setattr(markers, "_CHUNK_CELLS", 16)  # force many column blocks
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, (8, 50)).astype(float)
    x[rng.random(x.shape) < 0.1] = np.nan
    x[:, 7] = 1.0
    raw = pd.DataFrame(x, index=[f"g{i}" for i in range(8)], columns=[f"s{j}" for j in range(50)])
    mm = _quiet(raw, ["g0"])
    keep = [j for j in range(50) if j != 7]
    xk = x[:, keep]
    mean = np.nanmean(xk, 0)
    imputed = np.where(np.isnan(xk), mean, xk)
    np.testing.assert_allclose(mm.values, (imputed - mean) / imputed.std(0), rtol=1e-5, atol=1e-6)
    assert mm.report["n_missing_imputed"] == int(np.isnan(xk).sum())
    np.testing.assert_array_equal(mm.standardize(raw), mm.values)


# -- real marker files --------------------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists(f"{GRAV2}/grav2_geno_numeric.csv"), reason="grav2 data not available")
def test_real_grav2_with_map():
    path = f"{GRAV2}/grav2_geno_numeric.csv"
    indep = pd.read_csv(path, index_col="id")
    n_na = int(indep.isna().sum().sum())
    assert n_na == 545
    pheno = pd.read_csv(f"{GRAV2}/grav2_pheno_long.csv")
    with pytest.warns(UserWarning, match=r"545 missing marker value\(s\) \(1\.4%"):
        mm = prepare_markers(path, pheno["id"], id="id", map=f"{GRAV2}/grav2_gmap.csv", genotype_column="id")
    assert mm.report == {
        "n_genotypes": 162,
        "n_markers_input": 234,
        "n_markers": 234,
        "n_missing_imputed": n_na,
        "n_monomorphic": 0,
        "n_all_missing": 0,
        "n_genotypes_unused": 0,
    }
    assert mm.values.shape == (162, 234) and mm.names == list(indep.columns)
    assert mm.genotypes[:3] == ["1", "2", "3"]
    assert list(mm.map.index) == mm.names and sorted(mm.map["chr"].unique()) == ["1", "2", "3", "4", "5"]
    np.testing.assert_allclose(mm.center, indep.mean().to_numpy())
    np.testing.assert_allclose(mm.values.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(mm.values.std(0), 1.0, rtol=1e-5)
    assert mm.describe() == (
        "234 markers on 162 genotypes; 545 missing values (1.4%) mean-imputed. Map: 5 chromosomes."
    )


@pytest.mark.skipif(not os.path.exists(f"{WHEAT}/wheat.X.csv"), reason="wheat data not available")
def test_real_wheat():
    df = read_markers(f"{WHEAT}/wheat.X.csv")
    assert df.shape == (599, 1279) and df.index[:2].tolist() == ["775", "2166"]
    y = pd.read_csv(f"{WHEAT}/wheat.Y.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no missing, no monomorphic: no warning at all
        mm = prepare_markers(df, y.iloc[:, 0].iloc[:500])
    assert mm.report == {
        "n_genotypes": 599,
        "n_markers_input": 1279,
        "n_markers": 1279,
        "n_missing_imputed": 0,
        "n_monomorphic": 0,
        "n_all_missing": 0,
        "n_genotypes_unused": 99,
    }
    assert mm.values.shape == (599, 1279) and mm.values.dtype == np.float32
    np.testing.assert_allclose(mm.values.std(0), 1.0, rtol=1e-5)
