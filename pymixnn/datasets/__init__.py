"""Bundled example data sets (long tables as CSV), each with its source and license.

See ``README.md`` in this folder for shapes, sources and suggested models. Some sets also ship
genomic markers (genotypes x markers, 0/1 with NaN for missing) and a marker map:
:func:`load_markers`, :func:`load_map`, :func:`marker_names`.

Example
-------
>>> from pymixnn import datasets
>>> datasets.names()
['epil', 'grav2', 'knee', 'orange', 'oxboys', 'phenoarch', 'rapi', 'soybean', 'theo', 'toenail', 'wheat2']
>>> df = datasets.load("theo")
>>> df.shape
(120, 6)
>>> spec = datasets.info("theo")
>>> spec["id"], spec["x"], spec["y"]
('Id', ['Dose', 'Time'], 'Concentration')
>>> datasets.marker_names()
['grav2', 'wheat']
>>> datasets.load_markers("grav2").shape
(162, 234)
>>> datasets.load_map("grav2").columns.tolist()
['marker', 'chr', 'pos']
"""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

import pandas as pd

from pymixnn.datasets.events import load_nonmem, nonmem_info, nonmem_names

__all__ = [
    "load",
    "names",
    "info",
    "load_markers",
    "load_map",
    "marker_names",
    "load_nonmem",
    "nonmem_info",
    "nonmem_names",
]

_PINHEIRO_BATES = "Pinheiro JC, Bates DM (2000). Mixed-Effects Models in S and S-PLUS. Springer, New York."
_SAEMIX = (
    "Comets E, Lavenu A, Lavielle M (2017). Parameter estimation in nonlinear mixed effect "
    "models using saemix, an R implementation of the SAEM algorithm. J Stat Softw 80(3):1-41. "
    "doi:10.18637/jss.v080.i03"
)
_SAEMIX_SOURCE = "GitHub cran/saemix (commit 2d504770b1af), data/{}.saemix.tab.gz, saemix 3.4"
_MOORE = (
    "Moore CR, Johnson LS, Kwak IY, Livny M, Broman KW, Spalding EP (2013). High-throughput "
    "computer vision introduces the time axis to a quantitative trait map of a plant growth "
    "response. Genetics 195(3):1077-1086. doi:10.1534/genetics.113.153346"
)
_QTL2 = (
    "Broman KW, Gatti DM, Simecek P, Furlotte NA, Prins P, Sen S, Yandell BS, Churchill GA "
    "(2019). R/qtl2: software for mapping quantitative trait loci with high-dimensional data and "
    "multiparent populations. Genetics 211(2):495-502. doi:10.1534/genetics.118.301595"
)
_GRAV2_SOURCE = (
    "GitHub rqtl/qtl2 (commit b28ad12c268f), inst/extdata/grav2.zip (R/qtl2), reshaped to long format"
)

_INFO: dict[str, dict[str, Any]] = {
    "theo": {
        "description": "Theophylline pharmacokinetics: 12 subjects, single oral dose (mg), "
        "concentration (mg/L) from 0.25 to 24.65 h; 1-compartment oral model "
        "(ka, V, CL).",
        "source": _SAEMIX_SOURCE.format("theo"),
        "license": "GPL (>= 2)",
        "id": "Id",
        "x": ["Dose", "Time"],
        "y": "Concentration",
        "covariates": ["Weight", "Sex"],
        "citation": "Boeckmann AJ, Sheiner LB, Beal SL (1994). NONMEM Users Guide, Part V. "
        f"University of California, San Francisco. {_SAEMIX}",
    },
    "oxboys": {
        "description": "Heights (cm) of 26 boys from Oxford measured on 9 occasions; age centred "
        "(years); linear or nonlinear growth.",
        "source": _SAEMIX_SOURCE.format("oxboys"),
        "license": "GPL (>= 2)",
        "id": "Subject",
        "x": ["age"],
        "y": "height",
        "covariates": [],
        "citation": "Goldstein H (1987). Multilevel Models in Educational and Social Research. "
        f"Griffin, London. {_PINHEIRO_BATES} {_SAEMIX}",
    },
    "orange": {
        "description": "Trunk circumference (mm) of 5 orange trees against age (days since "
        "1968-12-31); logistic growth.",
        "source": "R package datasets (base R, Orange), exported with R 4.2",
        "license": "GPL-2 | GPL-3",
        "id": "Tree",
        "x": ["age"],
        "y": "circumference",
        "covariates": [],
        "citation": "Draper NR, Smith H (1998). Applied Regression Analysis, 3rd ed. Wiley "
        f"(exercise 24.N). {_PINHEIRO_BATES}",
    },
    "soybean": {
        "description": "Average leaf weight per plant (g) of 48 soybean plots (varieties F and P, "
        "years 1988-1990) against days after planting; logistic growth.",
        "source": "GitHub cran/nlme (commit f07b8c5375f5), data/Soybean.rda, nlme 3.1-169",
        "license": "GPL (>= 2)",
        "id": "Plot",
        "x": ["Time"],
        "y": "weight",
        "covariates": ["Variety", "Year"],
        "citation": "Davidian M, Giltinan DM (1995). Nonlinear Models for Repeated Measurement "
        f"Data. Chapman & Hall, London. {_PINHEIRO_BATES}",
    },
    "rapi": {
        "description": "Rutgers Alcohol Problem Index (count 0-45) of 818 college students "
        "(gender) measured every 6 months over 2 years; saemix's Poisson, "
        "zero-inflated and generalized Poisson examples (log-linear in time).",
        "source": _SAEMIX_SOURCE.format("rapi"),
        "license": "GPL (>= 2)",
        "id": "id",
        "x": ["time"],
        "y": "rapi",
        "covariates": ["gender"],
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
        "id": "subject",
        "x": ["V4"],
        "y": "y",
        "covariates": ["trt", "lbase", "lage", "base", "age"],
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
        "id": "id",
        "x": ["time"],
        "y": "y",
        "covariates": ["treatment"],
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
        "id": "id",
        "x": ["time"],
        "y": "y",
        "covariates": ["Age", "Sex", "treatment", "Age2"],
        "citation": "Tutz G (2012). Regression for Categorical Data. Cambridge University Press. " + _SAEMIX,
    },
    "grav2": {
        "description": "Arabidopsis root gravitropism: root-tip angle (degrees) of 162 Ler x Cvi "
        "recombinant inbred lines (RILs) every 2 min for 8 h after a 90-degree "
        "rotation (replicate 2, line means; missing values dropped); saturating "
        "growth (asymptotic exponential or logistic). 234 markers: "
        "load_markers('grav2'), load_map('grav2').",
        "source": _GRAV2_SOURCE,
        "license": "GPL-3",
        "id": "id",
        "x": ["time_h"],
        "y": "angle_deg",
        "covariates": [],
        "citation": f"{_MOORE} {_QTL2}",
    },
    "phenoarch": {
        "description": "Maize leaf area (m2, from images) of 1,673 plants of 90 genotypes in the "
        "PhenoArch greenhouse platform, well-watered (WW) or water deficit (WD), daily for 33 days "
        "(day 0 = 2017-04-13), pots on a Row x Col grid (60 x 28), two panels; Biomass and "
        "PlantHeight where measured. Logistic growth with genotype and scenario effects.",
        "source": "GitHub cran/statgenHTP (v1.0.9.4, commit 0cf1d78d2ce9), data/PhenoarchDat1.rda, "
        "rows with a leaf area, dates as days (pos renamed plant; phyllocron and LeafCount dropped)",
        "license": "GPL",
        "id": "plant",
        "x": ["day"],
        "y": "LeafArea",
        "covariates": ["Genotype", "Scenario", "population", "Row", "Col"],
        "citation": "Cabrera-Bosquet L, Fournier C, Brichet N, Welcker C, Suard B, Tardieu F "
        "(2016). High-throughput estimation of incident light, light interception and "
        "radiation-use efficiency of thousands of plants in a phenotyping platform. New Phytol "
        "212:269-281. Millet EJ, Kruijer W, Coupel-Ledru A et al. (2019). Genomic prediction of "
        "maize yield across European environmental conditions. Nat Genet 51:952-956. R package "
        "statgenHTP (Biometris, Wageningen).",
        "file": "phenoarch.csv.gz",
    },
}

_INFO["wheat2"] = {
    "description": "Yield (bushels/acre) of 56 wheat varieties in 4 blocks on a field (224 plots) "
    "with the plots' latitude and longitude; one observation per plot: a spatial regression, "
    "nlme's gls with corExp/corGaus/corSpher and a nugget (Pinheiro & Bates 2000, sec. 5.3.2), or "
    "pymixnn.fit(..., random=[], spatial=pymixnn.Spatial(params=[...], coords=['latitude', "
    "'longitude'], kind='gp')).",
    "source": "GitHub cran/nlme (commit f07b8c5375f5), data/Wheat2.rda, nlme 3.1-169; a column "
    "plot (the row number, 1-224) added as the individual's id",
    "license": "GPL (>= 2)",
    "id": "plot",
    "x": ["Block"],
    "y": "yield",
    "covariates": ["variety", "latitude", "longitude"],
    "citation": "Stroup WW, Baenziger PS, Mulitze DK (1994). Removing spatial variation from wheat "
    f"yield trials: a comparison of methods. Agronomy Journal 86:62-66. {_PINHEIRO_BATES}",
}

# Column types pandas cannot infer from the CSV: factors in the R source.
_DTYPES: dict[str, dict[str, str]] = {
    "soybean": {"Plot": "str", "Variety": "category", "Year": "category"},
    "wheat2": {"variety": "category"},
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
    return {k: v for k, v in copy.deepcopy(_INFO[name]).items() if k != "file"}


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set as a long DataFrame (one row per observation)."""
    _check(name)
    file = _INFO[name].get("file", f"{name}.csv")
    with resources.files(__name__).joinpath(file).open("rb") as handle:
        compression = "gzip" if file.endswith(".gz") else None
        return pd.read_csv(handle, dtype=_DTYPES.get(name), compression=compression, encoding="utf-8")


# Genomic marker sets (not necessarily longitudinal): file, map file (or None), source, license,
# citation. Marker files: first column = genotype id, then one 0/1 column per marker, NA = missing.
_MARKERS: dict[str, dict[str, Any]] = {
    "grav2": {
        "description": "234 markers of the 162 Ler x Cvi RILs of 'grav2' (0 = Ler, 1 = Cvi, "
        "1.4% missing; homozygous lines), 5 chromosomes, positions in cM.",
        "file": "grav2_markers.csv",
        "map": "grav2_map.csv",
        "source": _GRAV2_SOURCE.replace("reshaped to long format", "genotypes coded 0/1"),
        "license": "GPL-3",
        "citation": f"{_MOORE} {_QTL2}",
    },
    "wheat": {
        "description": "599 CIMMYT wheat lines x 1,279 DArT markers coded 0/1, no missing cells "
        "(not longitudinal; no marker map).",
        "file": "wheat_markers.csv.gz",
        "map": None,
        "source": "GitHub cran/BGLR (commit 0b9951a1560a), data/wheat.RData (wheat.X), BGLR 1.1.4",
        "license": "GPL-3",
        "citation": "Crossa J, de los Campos G, Pérez P, Gianola D, Burgueño J, Araus JL, "
        "Makumbi D, Singh RP, Dreisigacker S, Yan J, Arief V, Bänziger M, "
        "Braun HJ (2010). Prediction of genetic values of quantitative traits in "
        "plant breeding using pedigree and molecular markers. Genetics "
        "186(2):713-724. doi:10.1534/genetics.110.118521. Pérez P, de los Campos G "
        "(2014). Genome-wide regression and prediction with the BGLR statistical "
        "package. Genetics 198(2):483-495. doi:10.1534/genetics.114.164442",
    },
}


def marker_names() -> list[str]:
    """Names of the bundled genomic marker sets."""
    return sorted(_MARKERS)


def _check_markers(name: str) -> dict[str, Any]:
    if name not in _MARKERS:
        raise ValueError(f"unknown marker set {name!r}; available: {marker_names()}")
    return _MARKERS[name]


def load_markers(name: str) -> pd.DataFrame:
    """Load a bundled marker matrix: index = genotype id (named ``"genotype"``), one float column
    per marker (0/1, NaN = missing).

    The ids keep the type pandas infers (integers for ``grav2`` and ``wheat``), so the ``grav2``
    markers index the ``id`` column of ``load("grav2")`` directly; :mod:`pymixnn.markers` compares
    ids as strings anyway.
    """
    spec = _check_markers(name)
    with resources.files(__name__).joinpath(spec["file"]).open("rb") as handle:
        df = pd.read_csv(handle, index_col=0, compression="gzip" if spec["file"].endswith(".gz") else None)
    df = df.astype(float)
    df.index.name = "genotype"
    df.columns = [str(c) for c in df.columns]
    return df


def load_map(name: str) -> pd.DataFrame:
    """Load the map of a bundled marker set: columns ``marker``, ``chr``, ``pos`` (cM for grav2),
    in the column order of :func:`load_markers`."""
    spec = _check_markers(name)
    if spec["map"] is None:
        raise ValueError(
            f"marker set {name!r} has no marker map; sets with a map: "
            f"{sorted(k for k, v in _MARKERS.items() if v['map'] is not None)}"
        )
    with resources.files(__name__).joinpath(spec["map"]).open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle, dtype={"marker": "str"})
