"""Bundled genomic data sets: grav2 (phenotype, markers, map) and wheat (markers)."""

import numpy as np
import pytest

from pymixnn import datasets


def test_names_include_grav2():
    assert "grav2" in datasets.names()
    assert "wheat" not in datasets.names()  # markers only, not longitudinal
    assert datasets.marker_names() == ["grav2", "wheat"]


def test_grav2_phenotype():
    df = datasets.load("grav2")
    spec = datasets.info("grav2")
    assert df.shape == (39042, 3)
    assert df.columns.tolist() == ["id", "time_h", "angle_deg"]
    assert (spec["id"], spec["x"], spec["y"], spec["covariates"]) == ("id", ["time_h"], "angle_deg", [])
    assert spec["license"] == "GPL-3" and "rqtl/qtl2" in spec["source"]
    assert "10.1534/genetics.113.153346" in spec["citation"]
    assert df["id"].nunique() == 162
    assert df.notna().all().all()
    assert df["time_h"].min() == 0 and df["time_h"].max() == 8


def test_grav2_markers_and_map():
    markers = datasets.load_markers("grav2")
    assert markers.shape == (162, 234)
    assert markers.index.name == "genotype" and markers.index.is_unique
    assert all(dt == np.float64 for dt in markers.dtypes)
    assert int(markers.isna().sum().sum()) == 545
    assert set(np.unique(markers.to_numpy()[~np.isnan(markers.to_numpy())])) == {0.0, 1.0}

    gmap = datasets.load_map("grav2")
    assert gmap.shape == (234, 3)
    assert gmap.columns.tolist() == ["marker", "chr", "pos"]
    assert gmap["chr"].nunique() == 5
    assert gmap["marker"].tolist() == markers.columns.tolist()


def test_grav2_every_phenotype_id_has_markers():
    pheno_ids = {str(i) for i in datasets.load("grav2")["id"].unique()}
    marker_ids = {str(i) for i in datasets.load_markers("grav2").index}
    assert pheno_ids <= marker_ids
    assert len(pheno_ids) == 162


def test_wheat_markers():
    markers = datasets.load_markers("wheat")
    assert markers.shape == (599, 1279)
    assert markers.index.name == "genotype" and markers.index.is_unique
    assert not markers.isna().any().any()
    assert set(np.unique(markers.to_numpy())) == {0.0, 1.0}
    assert markers.columns.is_unique


def test_unknown_names():
    with pytest.raises(ValueError, match=r"unknown marker set 'nope'; available: \['grav2', 'wheat'\]"):
        datasets.load_markers("nope")
    with pytest.raises(ValueError, match=r"unknown marker set 'theo'"):
        datasets.load_map("theo")
    with pytest.raises(ValueError, match=r"'wheat' has no marker map"):
        datasets.load_map("wheat")
    with pytest.raises(ValueError, match=r"unknown data set 'wheat'"):
        datasets.load("wheat")
