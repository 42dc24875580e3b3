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
