"""The pipeline benchmark in quick mode (N = 200), so that the script never rots."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def test_pipeline_quick(tmp_path):
    subprocess.run([sys.executable, "-m", "benchmarks.pipeline", "--quick", "--out", str(tmp_path)],
                   cwd=ROOT, check=True)
    table = pd.read_csv(tmp_path / "pipeline.csv")
    assert table["N"].tolist() == [200]
    row = table.iloc[0]
    assert row["status"] == "ok"
    assert np.isfinite(row["seconds"]) and row["seconds"] > 0
    md = (tmp_path / "pipeline.md").read_text()
    assert "| N | obs | seconds | SVI steps | peak MB |" in md
    # N = 200 individuals x 10 obs: the SE of A is about 0.6% of A at N = 1,000 (so about
    # 0.6% * sqrt(1000 / 200) = 1.4% at N = 200, and less for B and C). 10% is more than six SEs:
    # a generous guard that a correct fit passes and a broken one (diverged, stuck at the start) fails.
    for p in ["A", "B", "C"]:
        assert abs(row[f"params.{p}.rel_error_pct"]) < 10, p


def test_random_effects_quick(tmp_path):
    subprocess.run([sys.executable, "-m", "benchmarks", "random_effects", "--quick", "--out",
                    str(tmp_path)], cwd=ROOT, check=True)
    table = pd.read_csv(tmp_path / "random_effects.csv")
    assert table["law"].tolist() == ["gaussian", "flow"]
    assert (tmp_path / "random_effects.png").stat().st_size > 10_000
    assert "| truth | law | seconds | ll.is |" in (tmp_path / "random_effects.md").read_text()
    g, f = table.iloc[0], table.iloc[1]
    # 150 curves with a bimodal log A: the flow's gain over the Gaussian law is about 25 units
    # (80 at N = 500); more than 5 guards against a flow stuck at the identity
    assert f["loglik"] - g["loglik"] > 5
    assert f["wasserstein_logA"] < g["wasserstein_logA"]


def test_discrete_quick(tmp_path):
    subprocess.run([sys.executable, "-m", "benchmarks", "discrete", "--quick", "--out", str(tmp_path)],
                   cwd=ROOT, check=True)
    table = pd.read_csv(tmp_path / "discrete.csv")
    assert set(table["case"]) == {"epil", "toenail"}
    # the GLMM acceptance tolerances (tests/test_discrete.py): 3% on fixed effects, 15% on the
    # variance, and the log-likelihood within 1 unit (its row compares values, not percents)
    fixed = table[~table["parameter"].isin(["omega2.intercept", "loglik"])]
    assert (fixed["rel_diff_pct"].abs() < 3).all()
    omega = table[table["parameter"] == "omega2.intercept"]
    assert (omega["rel_diff_pct"].abs() < 15).all()
    ll = table[table["parameter"] == "loglik"]
    assert (ll["abs_diff"].abs() < 1).all()
    assert (tmp_path / "discrete_vpc_toenail.png").stat().st_size > 10_000
    assert "| parameter | reference | pymixnn |" in (tmp_path / "discrete.md").read_text()
