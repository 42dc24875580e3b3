"""`pymixnn fit --distributed` under torchrun on this machine: one node with 2 processes, two
nodes simulated on localhost, and a process killed mid-fit (issue 25, points 1, 4 and 5)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pymixnn.simulate import simulate_logistic

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
FIT = ["fit", "--model", "logistic", "--id", "id", "--x", "t", "--y", "y", "--no-progress"]


def _env() -> dict:
    """The children's environment, taken when a test runs (conftest.py restores LD_LIBRARY_PATH,
    which rpy2 changes while the test files are collected)."""
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to python")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _estimates(path: Path) -> np.ndarray:
    out = json.loads(path.read_text())
    return np.array([out["fixed_effects"][p]["estimate"] for p in ("A", "B", "C")] + [out["loglik"]])


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("dist") / "logistic.csv"
    simulate_logistic(200, seed=3).to_csv(path, index=False)
    plain = path.with_name("plain.json")
    subprocess.run([sys.executable, "-m", "pymixnn", *FIT[:1], str(path), *FIT[1:], "--json", str(plain)],
                   env=_env(), check=True, capture_output=True)  # fmt: skip
    return path, _estimates(plain)


def test_one_node_two_processes(csv, tmp_path):
    path, plain = csv
    out = tmp_path / "dist.json"
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node=2", "-m", "pymixnn", FIT[0], str(path), *FIT[1:]]
    done = subprocess.run(
        [*cmd, "--distributed", "--json", str(out)], env=_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(_estimates(out), plain, rtol=1e-8)
    assert done.stdout.count("Fixed effects") == 1  # process 0 prints the summary, the other one not


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_one_node_two_processes_reading_shards(csv, tmp_path, fmt):
    # each process reads only its block of individuals (pymixnn.read_shard): the same fit
    path, plain = csv
    if fmt == "parquet":
        path = tmp_path / "logistic.parquet"
        pd.read_csv(csv[0]).to_parquet(path, index=False)
    out = tmp_path / "shards.json"
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node=2", "-m", "pymixnn", FIT[0], str(path), *FIT[1:]]
    done = subprocess.run(
        [*cmd, "--distributed", "--shards", "--json", str(out)], env=_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(_estimates(out), plain, rtol=1e-8)  # as the whole table's (1e-8: sums' order)
    record = json.loads(out.read_text())
    assert record["n_individuals"] == 200 and record["shard"]["n_individuals_here"] == 100
    assert "read as 2 shards, this process (rank 0) holds 100 individuals" in done.stdout


def test_shards_errors_name_the_flag(csv, tmp_path):
    base = [sys.executable, "-m", "pymixnn", FIT[0], str(csv[0]), *FIT[1:]]
    done = subprocess.run([*base, "--shards"], env=_env(), capture_output=True, text=True)
    assert done.returncode == 2 and "add --distributed" in done.stderr
    done = subprocess.run([*base, "--distributed", "--shards", "--plot", str(tmp_path / "p.png")],
                          env=_env(), capture_output=True, text=True)  # fmt: skip
    assert (
        done.returncode == 2 and "--plot with --shards: each process holds its own individuals" in done.stderr
    )


def test_two_nodes_on_localhost(csv, tmp_path):
    path, plain = csv
    port = _free_port()
    procs = [
        subprocess.Popen(
            [
                str(TORCHRUN),
                "--nnodes=2",
                "--nproc-per-node=1",
                f"--node-rank={r}",
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint=127.0.0.1:{port}",
                "-m",
                "pymixnn",
                FIT[0],
                str(path),
                *FIT[1:],
                "--distributed",
                "--json",
                str(tmp_path / "dist.json"),
            ],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for r in range(2)
    ]
    for p in procs:
        p.communicate(timeout=240)
        assert p.returncode == 0
    np.testing.assert_allclose(_estimates(tmp_path / "dist.json"), plain, rtol=1e-8)


def test_a_killed_process_stops_the_other_and_is_named(tmp_path):
    path = tmp_path / "big.csv"
    simulate_logistic(300_000, seed=3).to_csv(path, index=False)
    out = tmp_path / "dist.json"
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node=2", "-m", "pymixnn", FIT[0], str(path), *FIT[1:]]
    proc = subprocess.Popen([*cmd, "--distributed", "--json", str(out)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    workers: list[int] = []
    for _ in range(100):  # the two workers (children of torchrun)
        time.sleep(0.2)
        listing = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
        workers = [int(line.split()[0]) for line in listing.splitlines()[1:]
                   if line.split()[1] == str(proc.pid) and "pymixnn" in line]  # fmt: skip
        if len(workers) == 2:
            break
    assert len(workers) == 2
    time.sleep(4)  # inside the fit (the data read, the start's collectives running)
    killed = max(workers)
    os.kill(killed, signal.SIGKILL)
    t0 = time.perf_counter()
    _, err = proc.communicate(timeout=120)
    waited = time.perf_counter() - t0
    assert proc.returncode != 0 and waited < 60  # measured: under 1 s
    assert f"pid: {killed})  (SIGKILL)" in err  # torchrun names the lost process and its rank
    assert not out.exists()  # no result file from a failed fit
