"""Prediction-corrected VPC on data with three dose groups (issue 24, point 3).

Data: :func:`pymixnn.simulate.simulate_dose_groups`: one-compartment oral PK, linear in the dose
(10, 30 and 300 mg, 60 individuals each, 8 samples, proportional error 15%). Two models are fitted
to each replicate:

- ``correct``: the named ``onecpt_oral`` model (concentration proportional to the dose);
- ``wrong``: the same curve with the wrong dose-response, the exposure rising with the square
  root of the dose (``sqrt(30 * Dose)`` in place of ``Dose``): its random effects on V and CL
  widen to absorb the misfit, so the fit itself converges without complaint.

For each fit the pcVPC (``res.vpc(prediction_corrected=True, n_sim=500)``: 8 time bins x the
10th, 50th and 90th percentiles = 24 statistics) counts the observed prediction-corrected
percentiles outside the simulated 90% band. Under the correct model each statistic falls outside
with probability 0.1 by construction, so about 2.4 of 24 are expected there by chance; the wrong
model should put many more outside. Replicate 0's two pcVPCs are drawn
(``results/pcvpc_correct.png``, ``results/pcvpc_wrong.png``).

``python -m benchmarks pcvpc [--replicates R]`` (default 5, one thread) writes
``results/pcvpc.csv`` (one row per replicate and model), ``results/pcvpc.json`` and
``results/pcvpc.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd
import torch

import pymixnn
from pymixnn.simulate import simulate_dose_groups

RESULTS = Path(__file__).resolve().parent / "results"
N_SIM = 500
DOSE_REFERENCE = 30.0


def sqrt_dose_oral(psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One-compartment oral curve whose exposure rises with sqrt(30 * dose): the wrong
    dose-response for linear pharmacokinetics (equal to it at 30 mg)."""
    ka, v, cl = psi[..., 0], psi[..., 1], psi[..., 2]
    dose, t = torch.sqrt(DOSE_REFERENCE * x[..., 0]), x[..., 1]
    k = cl / v
    return dose * ka / (v * (ka - k)) * (torch.exp(-k * t) - torch.exp(-ka * t))


def models() -> dict[str, pymixnn.Model]:
    correct = pymixnn.Model.named("onecpt_oral", error="proportional")
    wrong = correct.replace(
        function=sqrt_dose_oral,
        name="sqrt_dose_oral",
        self_start=None,
        init={"ka": 1.5, "V": 20.0, "CL": 2.0},
    )
    return {"correct": correct, "wrong": wrong}


def run_replicate(r: int, draw: bool = False) -> list[dict]:
    df = simulate_dose_groups(seed=1000 * r)
    rows = []
    for name, model in models().items():
        t0 = time.perf_counter()
        res = pymixnn.fit(df, model, id="id", x=["Dose", "Time"], y="y", seed=r, progress=False)
        seconds = time.perf_counter() - t0
        table = res.vpc(prediction_corrected=True, n_sim=N_SIM, seed=r)
        plain = res.vpc(n_sim=N_SIM, seed=r)
        if draw:
            res.plot_vpc(RESULTS / f"pcvpc_{name}.png", prediction_corrected=True, n_sim=N_SIM, seed=r)
        rows.append(
            dict(
                replicate=r,
                model=name,
                n_statistics=len(table),
                outside=int(table["outside"].sum()),
                outside_median=int(table.loc[table["statistic"] == "p50", "outside"].sum()),
                outside_plain_vpc=int(plain["outside"].sum()),
                pc_excluded=int(table.attrs["pc_excluded"]),
                omega2_V=float(res.params.loc["omega2.V", "estimate"]),
                omega2_CL=float(res.params.loc["omega2.CL", "estimate"]),
                ll=float(res.llf),
                seconds=round(seconds, 2),
            )
        )
    return rows


def report(folder: Path = RESULTS) -> str:
    t = pd.read_csv(folder / "pcvpc.csv")
    summary = {}
    for name, sub in t.groupby("model"):
        summary[name] = dict(
            replicates=int(len(sub)),
            outside_mean=float(sub["outside"].mean()),
            outside_max=int(sub["outside"].max()),
            outside_min=int(sub["outside"].min()),
            n_statistics=int(sub["n_statistics"].iloc[0]),
            ll_mean=float(sub["ll"].mean()),
        )
    (folder / "pcvpc.json").write_text(json.dumps({"summary": summary, "n_sim": N_SIM}, indent=2))
    lines = [
        "# Prediction-corrected VPC: three dose groups (10, 30, 300 mg)",
        "",
        f"`python -m benchmarks pcvpc`; {N_SIM} simulated data sets per pcVPC, 8 time bins x "
        "p10/p50/p90 = 24 statistics, 90% bands (about 2.4 outside by chance under the right model).",
        "",
        "| replicate | model | outside (of 24) | of which medians | plain VPC outside | omega2.V | "
        "omega2.CL | ll | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in t.iterrows():
        lines.append(
            f"| {row.replicate} | {row.model} | {row.outside} | {row.outside_median} | "
            f"{row.outside_plain_vpc} | {row.omega2_V:.3f} | {row.omega2_CL:.3f} | {row.ll:.1f} | "
            f"{row.seconds:.1f} |"
        )
    lines += ["", "| model | mean outside | min | max |", "|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['outside_mean']:.1f} | {s['outside_min']} | {s['outside_max']} |")
    lines += ["", "Replicate 0: `pcvpc_correct.png`, `pcvpc_wrong.png`."]
    text = "\n".join(lines) + "\n"
    (folder / "pcvpc.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks pcvpc")
    parser.add_argument("--replicates", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    RESULTS.mkdir(exist_ok=True)
    rows = []
    for r in range(args.replicates):
        rows += run_replicate(r, draw=r == 0)
        pd.DataFrame(rows).to_csv(RESULTS / "pcvpc.csv", index=False)
        print(rows[-2:], flush=True)
    print(report())


if __name__ == "__main__":
    main()
