"""gloo process groups on this machine for the data-parallel tests: each process a fresh
interpreter started here (not torch.multiprocessing.spawn, whose children re-run the parent's main
module: under pytest-xdist the worker's, where the resource tracker's lock failed in CI:
"'_thread.RLock' object has no attribute '_recursion_count'")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HERE = str(Path(__file__).resolve().parent)


def fit_numbers(res) -> dict:
    """What the data-parallel tests compare: estimates, SEs, log-likelihood, theta, the individuals'
    modes."""
    return dict(
        estimate=np.array([r["estimate"] for r in res.estimation.table]),
        se=np.array([r["se"] for r in res.estimation.table]),
        loglik=np.array([res.loglik]),
        theta=np.asarray(res.estimation.theta),
        eta_map=np.asarray(res.estimation.eta_map),
    )


def run_workers(code: str, world: int, tmp_path: Path, *args: str) -> list[dict]:
    """``python -c code rank world init out HERE *args`` in ``world`` processes (torchrun's RANK
    and WORLD_SIZE set too); each saves its dict to out/<rank>.npy, returned in rank order."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    common = [str(tmp_path / "init"), str(tmp_path), HERE, *args]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(r), str(world), *common],
            env=dict(env, RANK=str(r), WORLD_SIZE=str(world)),
            stderr=subprocess.PIPE,
        )
        for r in range(world)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-3000:]
    return [np.load(tmp_path / f"{r}.npy", allow_pickle=True).item() for r in range(world)]
