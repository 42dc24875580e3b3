"""The collectives of a data-parallel fit (inference/collective.py) on 2 gloo processes."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pymixnn.inference.collective import Collective, Serial, Shard, shard_bounds


def test_shard_bounds_cover_the_rows_once():
    for n, world in [(200, 2), (7, 3), (2, 4), (1_000_001, 2)]:
        bounds = [shard_bounds(n, world, r) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        sizes = [hi - lo for lo, hi in bounds]
        assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="rank 2 is not in a world of 2"):
        shard_bounds(10, 2, 2)


def test_shard_maps_global_rows_to_its_own():
    shard = Shard(5, 9, 12)
    local, positions = shard.local(torch.tensor([1, 5, 6, 8, 9, 11]))
    assert local.tolist() == [0, 1, 3] and positions.tolist() == [1, 2, 3]
    assert Serial().shard(12).whole and not shard.whole


def _worker(rank: int, world: int, path: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)
    try:
        comm = Collective()
        x = torch.tensor([0.1, 0.2], dtype=torch.float64) * (rank + 1)
        (s, m) = comm.sum(x, torch.eye(2, dtype=torch.float64) * rank)
        rows = comm.gather_rows(torch.full((rank + 1, 2), float(rank)))
        torch.save(
            dict(
                s=s,
                m=m,
                rows=rows,
                f=comm.sum_float(1.5 * rank),
                all_true=comm.all(True),
                one_false=comm.all(rank == 0),
                shard=comm.shard(5),
            ),
            f"{out}/{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_two_processes_sum_gather_and_agree(tmp_path):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt", weights_only=False) for r in (0, 1))
    # the sums in rank order, bitwise identical on both processes
    assert torch.equal(r0["s"], r1["s"]) and torch.equal(
        r0["s"],
        torch.tensor([0.1, 0.2], dtype=torch.float64) * 1 + torch.tensor([0.1, 0.2], dtype=torch.float64) * 2,
    )
    assert torch.equal(r0["m"], torch.eye(2, dtype=torch.float64))
    assert r0["f"] == r1["f"] == 1.5
    assert r0["all_true"] and r1["all_true"] and not r0["one_false"] and not r1["one_false"]
    # blocks of different sizes, concatenated in rank order
    assert torch.equal(r0["rows"], torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]))
    assert (r0["shard"].lo, r0["shard"].hi, r1["shard"].lo, r1["shard"].hi) == (0, 3, 3, 5)


def test_collective_needs_a_process_group():
    with pytest.raises(RuntimeError, match="initialized torch.distributed process group"):
        Collective()
