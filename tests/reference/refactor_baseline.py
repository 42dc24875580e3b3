"""Numbers of three fits and saved-fit fixtures written by main at b83a78e (before the issue-17
restructuring), so that tests/test_refactor_baseline.py can check that the restructured package
gives the same estimates (1e-10 relative, same seed) and still loads files written by that version.

Run from the repository root:  .venv/bin/python tests/reference/refactor_baseline.py
It writes tests/reference/refactor_baseline.json and tests/fixtures/saved_v1_*.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import pymixnn
from pymixnn import datasets

HERE = Path(__file__).parent
FIXTURES = HERE.parent / "fixtures"

FITS = {
    "theo": dict(
        data="theo",
        model="onecpt_oral",
        kwargs=dict(
            id="Id",
            x=["Dose", "Time"],
            y="Concentration",
            covariates={"V": ["Weight"]},
            init={"ka": 1.0, "V": 20.0, "CL": 0.5},
            seed=0,
        ),
    ),
    "oxboys": dict(
        data="oxboys", model="linear", kwargs=dict(id="Subject", x="age", y="height", omega="full", seed=0)
    ),
    "rapi": dict(
        data="rapi",
        model=("linear", {"omega": "full"}),
        kwargs=dict(
            id="id",
            x="time",
            y="rapi",
            covariates={"intercept": ["gender"], "slope": ["gender"]},
            observation="poisson",
            likelihood="is",
            seed=1,
        ),
    ),
    # a mixture law and a flow law: their law records are part of the saved format
    "orange_mixture": dict(
        data="orange",
        model="logistic",
        kwargs=dict(
            id="Tree",
            x="age",
            y="circumference",
            random_effects="mixture",
            n_components=2,
            seed=0,
            max_steps=600,
        ),
    ),
}


def _model(spec):
    if isinstance(spec, tuple):
        return pymixnn.Model.named(spec[0], **spec[1])
    return spec


def run(name: str) -> pymixnn.Results:
    spec = FITS[name]
    return pymixnn.fit(datasets.load(spec["data"]), _model(spec["model"]), progress=False, **spec["kwargs"])


def numbers(res) -> dict:
    ip = res.individual_params()
    return {
        "params": {k: float(v) for k, v in res.params["estimate"].items()},
        "bse": {k: float(v) for k, v in res.params["se"].items()},
        "loglik": float(res.loglik),
        "fitted_head": [float(v) for v in np.asarray(res.fittedvalues)[:20]],
        "individual_params": ip.to_numpy(dtype=float).ravel()[:40].tolist(),
    }


def main() -> None:
    out = {"commit": "b83a78e", "fits": {}}
    FIXTURES.mkdir(exist_ok=True)
    for name in FITS:
        res = run(name)
        out["fits"][name] = numbers(res)
        if name in ("theo", "rapi", "orange_mixture"):
            res.save(FIXTURES / f"saved_v1_{name}.json")
            out["fits"][name]["predict_saved"] = [float(v) for v in np.asarray(res.predict())[:20]]
        print(name, out["fits"][name]["loglik"])
    (HERE / "refactor_baseline.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
