"""Data-parallel fits from shards (Control(distributed=True, shards=True)): each gloo process reads
only its individuals from a CSV or Parquet file (pymixnn.read_shard) and fits them; against the
plain fit of the whole table (issue 25, "data sharding from files")."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gloo import fit_numbers, run_workers  # tests/inference is on sys.path (rootdir-relative imports)

import pymixnn
from pymixnn.simulate import simulate_logistic
from pymixnn.validation import InputError

FIT = dict(id="id", x="t", y="y", seed=0, progress=False)
COVARIATES = {"A": ["group", "w"]}
ROOT = Path(__file__).resolve().parents[2]


def _numbers(res) -> dict:
    return dict(
        fit_numbers(res),
        bic=np.array([res.bic]),
        ids=np.asarray(res.data.ids),
        n_individuals=res.n_individuals,
        nobs=res.nobs,
        rows_held=res.data.n_obs,
        summary=str(res.summary()),
        # the individual tables of the individuals held (covariates from the design's own rows)
        individual=res.individual_params().to_numpy(),
        ipred=np.asarray(res.predict(level="individual")),
    )


# each process a fresh interpreter (gloo.py)
WORKER = """
import sys
import numpy as np
import torch.distributed as dist
import pymixnn
sys.path.insert(0, sys.argv[5])
from test_shards import COVARIATES, FIT, _numbers
rank, world, init, out, file, by = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[6], sys.argv[7]
kw = dict(covariates=COVARIATES) if sys.argv[8] == "covariates" else {}
dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
try:
    shard = pymixnn.read_shard(file, "id", by=by)
    try:
        numbers = _numbers(pymixnn.fit(shard, "logistic", distributed=True, shards=True, **FIT, **kw))
    except ValueError as exc:
        numbers = dict(error=f"{type(exc).__name__}: {exc}")
    numbers["rows_read"] = len(shard)
    np.save(f"{out}/{rank}.npy", numbers, allow_pickle=True)
finally:
    dist.destroy_process_group()
"""


def _run(tmp_path: Path, file: Path, world: int = 2, by: str = "range", case: str = "plain") -> list[dict]:
    return run_workers(WORKER, world, tmp_path, str(file), by, case)


@pytest.fixture(scope="module")
def table():
    # rows shuffled: a shard keeps the file's order, the fit sorts the individuals
    df = simulate_logistic(200, seed=3).sample(frac=1.0, random_state=1).reset_index(drop=True)
    df.attrs = {}  # (the simulation's truth: pandas writes attrs into Parquet's metadata as JSON)
    return df


@pytest.fixture(scope="module")
def plain(table):
    return _numbers(pymixnn.fit(table, "logistic", **FIT))


def _same_as_plain(ranks: list[dict], plain: dict, total_rows: int) -> None:
    for r in ranks:
        # the 1e-8 relative (as the data-parallel fit of a whole table: sums over the
        # processes differ from one sum in the order of additions only)
        for key in ("estimate", "se", "loglik", "theta", "bic"):
            np.testing.assert_allclose(r[key], plain[key], rtol=1e-8, atol=0, err_msg=key)
        assert r["n_individuals"] == 200 and r["nobs"] == total_rows
        assert r["rows_read"] == r["rows_held"] < total_rows  # its own rows only
        rows = pd.Index(plain["ids"]).get_indexer(r["ids"])
        np.testing.assert_allclose(r["eta_map"], plain["eta_map"][rows], rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(r["individual"], plain["individual"][rows], rtol=1e-7)
        assert len(r["ipred"]) == r["rows_held"]
        assert "read as 2 shards" in r["summary"]
    assert sum(r["rows_read"] for r in ranks) == total_rows
    assert not set(ranks[0]["ids"]) & set(ranks[1]["ids"])


def test_two_processes_reading_csv_ranges_equal_the_plain_fit(table, plain, tmp_path):
    file = tmp_path / "logistic.csv"
    table.to_csv(file, index=False)
    ranks = _run(tmp_path, file)
    _same_as_plain(ranks, plain, len(table))
    # by range: the sorted ids in two blocks of 100
    assert list(ranks[0]["ids"]) == list(plain["ids"][:100]) and list(ranks[1]["ids"]) == list(
        plain["ids"][100:]
    )


def test_two_processes_reading_parquet_by_hash(table, tmp_path):
    file = tmp_path / "logistic.parquet"
    table.to_parquet(file, index=False)
    ranks = _run(tmp_path, file, by="hash")
    # the fit's individuals are process 0's then process 1's: the plain fit of the same table with
    # ids renamed to sort in that order is the same fit
    owner = {i: zlib.crc32(str(i).encode()) % 2 for i in table["id"].unique()}
    order = sorted(owner, key=lambda i: (owner[i], i))
    renamed = table.assign(id=table["id"].map({i: k for k, i in enumerate(order)}))
    plain = _numbers(pymixnn.fit(renamed, "logistic", **FIT))
    plain["ids"] = np.asarray(order)
    _same_as_plain(ranks, plain, len(table))


def test_the_covariate_design_is_every_individuals(table, tmp_path):
    # a level seen in process 1's block only, and a covariate constant within process 0's block:
    # the whole table's design (levels, centring, the constancy check), not each shard's
    ids = np.sort(table["id"].unique())
    first = table["id"].isin(ids[:100])
    group = np.where(
        first, np.where(table["id"] % 2 == 0, "a", "b"), np.where(table["id"] % 3 == 0, "c", "a")
    )
    w = np.where(first, 1.0, (table["id"] % 7).astype(float))
    data = table.assign(group=group, w=w)
    plain = _numbers(pymixnn.fit(data, "logistic", covariates=COVARIATES, **FIT))
    file = tmp_path / "covariates.csv"
    data.to_csv(file, index=False)
    ranks = _run(tmp_path, file, case="covariates")
    _same_as_plain(ranks, plain, len(table))
    assert "beta_group[c](A)" in ranks[0]["summary"]  # process 0 has no "c" of its own


def test_a_bad_row_in_one_shard_is_every_process_error(table, tmp_path):
    bad = table.copy()
    row = bad.index[bad["id"] == table["id"].max()][0]  # in process 1's block
    bad.loc[row, "y"] = np.nan
    file = tmp_path / "bad.csv"
    bad.to_csv(file, index=False)
    ranks = _run(tmp_path, file)
    # the row is named by its number in the file (read_shard keeps it as the index)
    assert f"column 'y' has 1 missing values (first at row {row})" in ranks[1]["error"]
    assert ranks[0]["error"].startswith("InputError: process 1 (of 2), on its shard: ValueError: column 'y'")


def test_read_shard_splits_the_individuals(table, tmp_path):
    csv, parquet = tmp_path / "t.csv", tmp_path / "t.parquet"
    table.to_csv(csv, index=False)
    table.to_parquet(parquet, index=False)
    for by in ("range", "hash"):
        parts = [pymixnn.read_shard(csv, "id", rank=r, world=3, by=by) for r in range(3)]
        for r, part in enumerate(parts):
            # the file's rows, indexed by their row number there, and the same from Parquet
            pd.testing.assert_frame_equal(part, table.loc[part.index])
            same = pymixnn.read_shard(parquet, "id", rank=r, world=3, by=by)
            pd.testing.assert_frame_equal(same, part, check_dtype=False)
            assert part.attrs["shard"]["rows"] == len(part) and part.attrs["shard"]["by"] == by
        ids = [set(p["id"]) for p in parts]
        assert set.union(*ids) == set(table["id"]) and sum(map(len, ids)) == table["id"].nunique()
        assert sum(map(len, parts)) == len(table)
    sizes = [p["id"].nunique() for p in (pymixnn.read_shard(csv, "id", rank=r, world=3) for r in range(3))]
    assert sizes == [67, 67, 66]  # contiguous blocks of the sorted ids


def test_read_shard_and_shards_errors(table, tmp_path):
    csv = tmp_path / "t.csv"
    table.to_csv(csv, index=False)
    with pytest.raises(InputError, match="has no column 'ID'; its columns are"):
        pymixnn.read_shard(csv, "ID", rank=0, world=2)
    with pytest.raises(InputError, match="no file"):
        pymixnn.read_shard(tmp_path / "none.csv", "id", rank=0, world=2)
    with pytest.raises(InputError, match="by must be 'range' or 'hash'"):
        pymixnn.read_shard(csv, "id", rank=0, world=2, by="modulo")
    with pytest.raises(InputError, match="rank=2 is not in a world of 2"):
        pymixnn.read_shard(csv, "id", rank=2, world=2)
    with pytest.raises(InputError, match="give distributed=True too"):
        pymixnn.fit(table, "logistic", shards=True, **FIT)
