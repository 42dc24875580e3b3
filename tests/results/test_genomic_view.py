"""``res.genomic``: the outputs of a genomic fit as one object (None without markers); the
Results methods give the same tables; a format-2 save keeps the typed genomic posterior."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

import pymixnn
from pymixnn.results.genomic_view import GenomicOutputs
from pymixnn.simulate import simulate_genomic, simulate_markers


@pytest.fixture(scope="module")
def small():
    markers = simulate_markers(60, 80, seed=3)
    full = simulate_genomic(markers, n_scenarios=2, n_causal=3, seed=4)
    df = full[full["genotype"].isin(markers.index[:50])].reset_index(drop=True)
    res = pymixnn.fit(
        df,
        "logistic",
        id="id",
        x="t",
        y="y",
        genotype="genotype",
        genomic=pymixnn.Genomic(markers, params=["A"], prior="ridge"),
        seed=2,
        progress=False,
        max_steps=300,
    )
    return res, markers


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_genomic_outputs_object(small, tmp_path):
    from pymixnn.inference.records import GenomicPosterior

    res, markers = small
    assert res.is_genomic and isinstance(res.genomic, GenomicOutputs)
    gen = res.genomic
    assert isinstance(gen.posterior, GenomicPosterior) and gen.params == ["A"]
    assert gen.marker_matrix is res.marker_matrix is not None
    pd.testing.assert_frame_equal(gen.marker_effects, res.marker_effects)
    pd.testing.assert_frame_equal(gen.top_markers(5), res.top_markers(5))
    pd.testing.assert_frame_equal(gen.variance_explained, res.variance_explained)
    pd.testing.assert_frame_equal(gen.genetic_values, res.genetic_values)
    new = markers.iloc[50:]
    kw = dict(x_grid=np.arange(0.0, 21.0, 5.0), band="mean", n_draws=50, seed=1)
    pd.testing.assert_frame_equal(gen.predict_genotypes(new, **kw), res.predict_genotypes(new, **kw))
    pd.testing.assert_frame_equal(gen.genotype_parameters(new), res.genotype_parameters(new))
    backend = matplotlib.get_backend()
    pngs = gen.plot_manhattan(tmp_path)
    assert [p.name for p in pngs] == ["manhattan_A.png"] and matplotlib.get_backend() == backend
    # to_dict and a format-2 save keep the genomic block
    assert json.loads(res.to_json())["genomic"]["params"] == ["A"]
    back = pymixnn.Results.load(res.save(tmp_path / "fit.json"))
    assert isinstance(back.estimation.genomic, GenomicPosterior) and back.is_genomic
    assert back.genomic.marker_matrix is None
    pd.testing.assert_frame_equal(back.genomic.marker_effects, res.marker_effects)
    np.testing.assert_array_equal(back.predict(level="individual"), res.predict(level="individual"))
