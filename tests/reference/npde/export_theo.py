"""Export the theophylline data and 1000 replicates simulated under a pymixnn fit, in npde's long
format, for the npde reference (theo_npde.R reads them, tests/test_npde.py compares).

The fit is README's demo call (seed 0); the replicates are ``res.evaluator.simulated(1000,
seed=0)``, the path of :func:`pymixnn.results.npde.npde_results`, in the data's internal row
order (observations of each individual contiguous, as npde requires). Simulated values are
rounded to 8 significant digits and the rounded values are what both R and Python read.

Files written (into the folder given, default this script's):

- ``theo_obs.csv``: columns id, time, y (the 120 observations);
- ``theo_sims.csv.gz``: column ysim, the replicates stacked (replicate 1's 120 rows, then
  replicate 2's, ...); id and time of each row repeat those of theo_obs.csv.

Run from the repository root (about 15 s):

    .venv/bin/python tests/reference/npde/export_theo.py [outdir]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

import pymixnn

N_SIM, SEED, DIGITS = 1000, 0, 8


def export(outdir: Path) -> None:
    """Fit theo, simulate ``N_SIM`` replicates and write theo_obs.csv and theo_sims.csv.gz.

    Parameters
    ----------
    outdir : pathlib.Path
        Folder the two files are written into.

    Returns
    -------
    None
    """
    df = pymixnn.datasets.load("theo")
    res = pymixnn.fit(
        df,
        "onecpt_oral",
        id="Id",
        x=["Dose", "Time"],
        y="Concentration",
        covariates={"V": ["Weight"]},
        init={"ka": 1, "V": 20, "CL": 0.5},
        seed=SEED,
        progress=False,
    )
    d = res.data
    ids = d.frame[d.id_col].to_numpy()
    if (np.diff(pd.factorize(ids)[0]) < 0).any():
        raise ValueError("the internal row order does not keep each individual's rows together")
    obs = pd.DataFrame({"id": ids, "time": d.frame["Time"].to_numpy(), "y": d.y})
    sims = res.evaluator.simulated(N_SIM, seed=SEED)
    obs.to_csv(outdir / "theo_obs.csv", index=False)
    pd.DataFrame({"ysim": sims.ravel()}).to_csv(
        outdir / "theo_sims.csv.gz",
        index=False,
        float_format=f"%.{DIGITS}g",
        compression={"method": "gzip", "mtime": 0},  # no time stamp: reruns give the same bytes
    )


if __name__ == "__main__":
    export(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
