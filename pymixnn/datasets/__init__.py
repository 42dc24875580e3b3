"""Bundled example data sets (long tables as CSV), each with its source and license.

See ``README.md`` in this folder for shapes, sources and suggested models.

Example
-------
>>> from pymixnn import datasets
>>> datasets.names()
['epil', 'knee', 'orange', 'oxboys', 'rapi', 'soybean', 'theo', 'toenail']
>>> df = datasets.load("theo")
>>> df.shape
(120, 6)
>>> spec = datasets.info("theo")
>>> spec["id"], spec["x"], spec["y"]
('Id', ['Dose', 'Time'], 'Concentration')
"""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import pandas as pd

__all__ = ["load", "names", "info"]

_PINHEIRO_BATES = (
    "Pinheiro JC, Bates DM (2000). Mixed-Effects Models in S and S-PLUS. Springer, New York."
)
_SAEMIX = (
    "Comets E, Lavenu A, Lavielle M (2017). Parameter estimation in nonlinear mixed effect "
    "models using saemix, an R implementation of the SAEM algorithm. J Stat Softw 80(3):1-41. "
    "doi:10.18637/jss.v080.i03"
)
_SAEMIX_SOURCE = "GitHub cran/saemix (commit 2d504770b1af), data/{}.saemix.tab.gz, saemix 3.4"

_INFO: dict[str, dict[str, Any]] = {
    "theo": {
        "description": "Theophylline pharmacokinetics: 12 subjects, single oral dose (mg), "
                       "concentration (mg/L) from 0.25 to 24.65 h; 1-compartment oral model "
                       "(ka, V, CL).",
        "source": _SAEMIX_SOURCE.format("theo"),
        "license": "GPL (>= 2)",
        "id": "Id", "x": ["Dose", "Time"], "y": "Concentration", "covariates": ["Weight", "Sex"],
        "citation": "Boeckmann AJ, Sheiner LB, Beal SL (1994). NONMEM Users Guide, Part V. "
                    f"University of California, San Francisco. {_SAEMIX}",
    },
    "oxboys": {
        "description": "Heights (cm) of 26 boys from Oxford measured on 9 occasions; age centred "
                       "(years); linear or nonlinear growth.",
        "source": _SAEMIX_SOURCE.format("oxboys"),
        "license": "GPL (>= 2)",
        "id": "Subject", "x": ["age"], "y": "height", "covariates": [],
        "citation": "Goldstein H (1987). Multilevel Models in Educational and Social Research. "
                    f"Griffin, London. {_PINHEIRO_BATES} {_SAEMIX}",
    },
    "orange": {
        "description": "Trunk circumference (mm) of 5 orange trees against age (days since "
                       "1968-12-31); logistic growth.",
        "source": "R package datasets (base R, Orange), exported with R 4.2",
        "license": "GPL-2 | GPL-3",
        "id": "Tree", "x": ["age"], "y": "circumference", "covariates": [],
        "citation": "Draper NR, Smith H (1998). Applied Regression Analysis, 3rd ed. Wiley "
                    f"(exercise 24.N). {_PINHEIRO_BATES}",
    },
    "soybean": {
        "description": "Average leaf weight per plant (g) of 48 soybean plots (varieties F and P, "
                       "years 1988-1990) against days after planting; logistic growth.",
        "source": "GitHub cran/nlme (commit f07b8c5375f5), data/Soybean.rda, nlme 3.1-169",
        "license": "GPL (>= 2)",
        "id": "Plot", "x": ["Time"], "y": "weight", "covariates": ["Variety", "Year"],
        "citation": "Davidian M, Giltinan DM (1995). Nonlinear Models for Repeated Measurement "
                    f"Data. Chapman & Hall, London. {_PINHEIRO_BATES}",
    },
    "rapi": {
        "description": "Rutgers Alcohol Problem Index (count 0-45) of 818 college students "
                       "(gender) measured every 6 months over 2 years; saemix's Poisson, "
                       "zero-inflated and generalized Poisson examples (log-linear in time).",
        "source": _SAEMIX_SOURCE.format("rapi"),
        "license": "GPL (>= 2)",
        "id": "id", "x": ["time"], "y": "rapi", "covariates": ["gender"],
        "citation": "Atkins DC, Baldwin SA, Zheng C, Gallop RJ, Neighbors C (2013). A tutorial on "
                    "count regression and zero-altered count models for longitudinal substance "
                    f"use data. Psychol Addict Behav 27(1):166-177. {_SAEMIX}",
    },
    "epil": {
        "description": "Seizure counts of 59 epileptics in four 2-week periods (Thall & Vail): "
                       "treatment (placebo/progabide), log baseline count (lbase) and log age "
                       "(lage, centred), V4 = indicator of the 4th period; Poisson GLMM.",
        "source": "R package MASS 7.3 (recommended package), data epil, exported with R 4.2",
        "license": "GPL-2 | GPL-3",
        "id": "subject", "x": ["V4"], "y": "y", "covariates": ["trt", "lbase", "lage", "base", "age"],
        "citation": "Thall PF, Vail SC (1990). Some covariance models for longitudinal count data "
                    "with overdispersion. Biometrics 46:657-671. Venables WN, Ripley BD (2002). "
                    "Modern Applied Statistics with S, 4th ed. Springer.",
    },
    "toenail": {
        "description": "Onychomycosis: binary moderate-or-severe separation of the nail plate in "
                       "294 patients at 7 visits (time in months), two oral treatments; logistic "
                       "GLMM (De Backer et al.).",
        "source": _SAEMIX_SOURCE.format("toenail"),
        "license": "GPL (>= 2)",
        "id": "id", "x": ["time"], "y": "y", "covariates": ["treatment"],
        "citation": "De Backer M, De Vroey C, Lesaffre E, Scheys I, De Keyser P (1998). Twelve "
                    "weeks of continuous oral therapy for toenail onychomycosis caused by "
                    "dermatophytes. J Am Acad Dermatol 38:S57-S63. " + _SAEMIX,
    },
    "knee": {
        "description": "Knee pain (ordinal 0-4) of 127 patients with sports injuries at days 0, "
                       "3, 7 and 10 of two therapies; Age centred, Age2 its square, Sex 0/1, "
                       "treatment 0/1; proportional-odds GLMM.",
        "source": _SAEMIX_SOURCE.format("knee") + " (from catdata's knee)",
        "license": "GPL (>= 2)",
        "id": "id", "x": ["time"], "y": "y", "covariates": ["Age", "Sex", "treatment", "Age2"],
        "citation": "Tutz G (2012). Regression for Categorical Data. Cambridge University Press. "
                    + _SAEMIX,
    },
}

# Column types pandas cannot infer from the CSV: factors in the R source.
_DTYPES: dict[str, dict[str, str]] = {
    "soybean": {"Plot": "str", "Variety": "category", "Year": "category"},
}


def names() -> list[str]:
    """Names of the bundled data sets."""
    return sorted(_INFO)


def _check(name: str) -> None:
    if name not in _INFO:
        raise ValueError(f"unknown data set {name!r}; available: {names()}")


def info(name: str) -> dict[str, Any]:
    """Description, source, license, citation and column roles (id, x, y, covariates)."""
    _check(name)
    return copy.deepcopy(_INFO[name])


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set as a long DataFrame (one row per observation)."""
    _check(name)
    with resources.files(__name__).joinpath(f"{name}.csv").open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle, dtype=_DTYPES.get(name))
