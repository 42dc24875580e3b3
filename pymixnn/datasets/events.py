"""Bundled multiple-dose PK data sets as NONMEM event records (doses and observations in one table).

The files keep their sources' layout (``phenobarb.csv``, ``quinidine.csv``: nlme's, one row per
dose or concentration; ``theo.csv``: saemix's, the dose on every sample row); :func:`load_nonmem`
turns them into NONMEM columns for :meth:`pymixnn.Data.from_nonmem`.

>>> from pymixnn.datasets import load_nonmem
>>> pheno = load_nonmem("phenobarb")
>>> pheno.columns.tolist()[:6], int(pheno["ID"].nunique())
(['ID', 'TIME', 'AMT', 'EVID', 'DV', 'MDV'], 59)
"""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["load_nonmem", "nonmem_info", "nonmem_names"]

_PINHEIRO_BATES = "Pinheiro JC, Bates DM (2000). Mixed-Effects Models in S and S-PLUS. Springer, New York."
_SOURCE = "GitHub cran/nlme (commit f07b8c5375f5), data/{}.rda (nlme 3.1-169), exported with R 4.2"

_INFO: dict[str, dict[str, Any]] = {
    "theo": {
        "description": "Theophylline (the bundled 'theo' set) as dosing records: one oral dose "
        "record at time 0 before each subject's 10 or 11 samples; covariates Weight, Sex.",
        "file": "theo.csv",
        "source": "GitHub cran/saemix (commit 2d504770b1af), data/theo.saemix.tab.gz, saemix 3.4",
        "license": "GPL (>= 2)",
        "model": "pk1cpt_oral",
        "covariates": ["Weight", "Sex"],
        "citation": "Boeckmann AJ, Sheiner LB, Beal SL (1994). NONMEM Users Guide, Part V. "
        + _PINHEIRO_BATES,
    },
    "phenobarb": {
        "description": "Phenobarbital in 59 preterm neonates: repeated IV bolus doses (dose units "
        "per kg, 589 doses), 155 serum concentrations; time in hours. Columns WT (birth weight, kg), "
        "APGAR (5-minute Apgar score), APGAR_LOW (1 if below 5). One-compartment IV model "
        "(nlme's phenoModel; NONMEM ADVAN1).",
        "file": "phenobarb.csv",
        "source": _SOURCE.format("Phenobarb"),
        "license": "GPL (>= 2)",
        "model": "pk1cpt_iv",
        "covariates": ["WT", "APGAR", "APGAR_LOW"],
        "citation": "Grasela TH, Donn SM (1985). Neonatal population pharmacokinetics of "
        "phenobarbital derived from routine clinical data. Dev Pharmacol Ther 8:374-383. " + _PINHEIRO_BATES,
    },
    "quinidine": {
        "description": "Quinidine in 136 hospitalized patients: oral doses (mg of quinidine base; "
        "1,028 doses, 249 of them steady-state doses with their interval: SS = 1, II), 361 serum "
        "concentrations (mg/L), time in hours, covariates recorded over time (glyco, Creatinine, "
        "Weight, ...: time-varying). One-compartment first-order absorption (nlme's quinModel; "
        "NONMEM ADVAN2, doses into the depot CMT 1).",
        "file": "quinidine.csv",
        "source": _SOURCE.format("Quinidine"),
        "license": "GPL (>= 2)",
        "model": "pk1cpt_oral",
        "covariates": ["AGE", "HEIGHT", "WEIGHT", "RACE", "SMOKE", "ETHANOL", "HEART", "CREATININE", "GLYCO"],
        "citation": "Verme CN, Ludden TM, Clementi WA, Harris SC (1992). Pharmacokinetics of "
        "quinidine in male patients: a population analysis. Clin Pharmacokinet 22:468-480. "
        + _PINHEIRO_BATES,
    },
}


def nonmem_names() -> list[str]:
    return sorted(_INFO)


def nonmem_info(name: str) -> dict[str, Any]:
    """Description, source, license, citation, suggested model and covariates."""
    if name not in _INFO:
        raise ValueError(f"unknown event data set {name!r}; available: {nonmem_names()}")
    return copy.deepcopy(_INFO[name])


def _raw(name: str) -> pd.DataFrame:
    with resources.files("pymixnn.datasets").joinpath(_INFO[name]["file"]).open("r", encoding="utf-8") as h:
        return pd.read_csv(h)


def load_nonmem(name: str) -> pd.DataFrame:
    """The data set as NONMEM records: ID, TIME, AMT, EVID, DV, MDV (plus CMT, SS, II for
    quinidine) and the covariates in upper case; a dose row is EVID 1, a concentration row EVID 0
    (MDV 0), a row with neither EVID 2 (a covariate record)."""
    info = nonmem_info(name)
    raw = _raw(name)
    if name == "theo":
        dose = raw.groupby("Id", as_index=False).first()[["Id", "Dose", "Weight", "Sex"]]
        dose = dose.rename(columns={"Id": "ID", "Dose": "AMT"}).assign(TIME=0.0, EVID=1, DV=0.0, MDV=1)
        obs = raw.rename(columns={"Id": "ID", "Time": "TIME", "Concentration": "DV"})
        obs = obs[["ID", "TIME", "DV", "Weight", "Sex"]].assign(AMT=0.0, EVID=0, MDV=0)
        out = pd.concat([dose, obs], ignore_index=True)
        out = out.sort_values(["ID", "TIME", "EVID"], ascending=[True, True, False], kind="stable")
        return out[["ID", "TIME", "AMT", "EVID", "DV", "MDV", "Weight", "Sex"]].reset_index(drop=True)
    dose = raw["dose"].notna()
    conc = raw["conc"].notna()
    out = pd.DataFrame(
        {
            "ID": raw["Subject"],
            "TIME": raw["time"].astype(float),
            "AMT": raw["dose"].fillna(0.0),
            "EVID": np.where(dose, 1, np.where(conc, 0, 2)),
            "DV": raw["conc"].fillna(0.0),
            "MDV": np.where(conc, 0, 1),
        }
    )
    if name == "phenobarb":
        out["WT"] = raw["Wt"]
        out["APGAR"] = raw["Apgar"].astype(float)
        out["APGAR_LOW"] = (raw["ApgarInd"] == "< 5").astype(float)
    else:
        out["CMT"] = np.where(dose, 1, 2)
        out["SS"] = raw["interval"].notna().astype(int)
        out["II"] = raw["interval"].fillna(0.0)
        for col in ("Age", "Height", "Weight", "glyco"):
            out[col.upper()] = raw[col].astype(float)
        for col in ("Race", "Smoke", "Ethanol", "Heart", "Creatinine"):
            out[col.upper()] = raw[col].astype(str)
    assert set(info["covariates"]) <= set(out.columns)
    return out
