"""The command line's NONMEM event data (``--nonmem``): its flags, the compartment model of
``--model`` with its ``--dosing`` parameters, and the data file read by
:meth:`pymixnn.Data.from_nonmem` with the column names of ``--id``, ``--time``, ``--dv`` and
``--column ROLE=COL``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from pymixnn.cli.messages import InputError
from pymixnn.validation import did_you_mean

if TYPE_CHECKING:
    import pandas as pd

    from pymixnn.data.table import Data
    from pymixnn.model.spec import Model

__all__ = [
    "ROLES",
    "DOSING",
    "add_nonmem_flags",
    "is_compartment",
    "compartment_model",
    "nonmem_columns",
    "read_events",
    "check_columns",
]

# the optional columns of a NONMEM table, by role (Data.from_nonmem's keywords), default names
ROLES = ("amt", "evid", "cmt", "rate", "ii", "addl", "ss", "mdv", "dvid")
# the dosing parameters a compartment model can add (pymixnn.Model.named's options)
DOSING = ("tlag", "F", "rate", "duration")


def add_nonmem_flags(p: argparse.ArgumentParser, solve: bool = False) -> None:
    """The flags of NONMEM event data; ``solve``: the data are always NONMEM (--nonmem optional),
    and ``--id``, ``--time``, ``--dv`` are added here (``fit`` has them already)."""
    p.add_argument(
        "--nonmem",
        action="store_true",
        default=solve,
        help="the data are a NONMEM event table (ID, TIME, DV, AMT, EVID, CMT, RATE, II, ADDL, SS, "
        "MDV, DVID; names matched case-insensitively, absent optional columns take NONMEM's defaults)"
        + ("; always so for solve" if solve else "; needs a compartment model, e.g. --model pk1cpt_iv"),
    )
    if solve:
        p.add_argument("--id", metavar="COL", help="ID column (default ID)")
        p.add_argument("--time", metavar="COL", help="TIME column (default TIME)")
        p.add_argument("--dv", dest="y", metavar="COL", help="DV column (default DV)")
    p.add_argument(
        "--column",
        action="extend",
        nargs="+",
        metavar="ROLE=COL",
        help=f"with --nonmem: the column of a NONMEM role ({', '.join(r.upper() for r in ROLES)}), "
        "e.g. --column AMT=dose EVID=evid (repeatable)",
    )
    p.add_argument(
        "--time-varying",
        metavar="COL[,COL]",
        help="with --nonmem: covariates carried forward from record to record (an ODE's covariates; "
        "a --covariate column that changes within an individual is time-varying by itself)",
    )
    p.add_argument(
        "--dosing",
        metavar="P[,P]",
        help=f"dosing parameters added to a compartment model: {', '.join(DOSING)} (e.g. tlag,F)",
    )


def is_compartment(name: str) -> bool:
    """Whether ``name`` is a named compartment model (its data: NONMEM event records)."""
    from pymixnn.model.dynamics.compartments import COMPARTMENT_MODELS

    return name in COMPARTMENT_MODELS


def compartment_model(args: argparse.Namespace) -> Model:
    """The compartment model of ``--model`` with the parameters of ``--dosing``; an error unless
    the data are NONMEM (``--nonmem``)."""
    from pymixnn.model.named import named

    if not args.nonmem:
        raise InputError(
            f"--model {args.model!r} is a compartment model: its data are NONMEM event records; "
            "add --nonmem (and --id/--time/--dv if the columns are not ID, TIME, DV)"
        )
    options: dict[str, Any] = {}
    for token in [t.strip() for t in (args.dosing or "").split(",") if t.strip()]:
        key = {d.lower(): d for d in DOSING}.get(token.lower())
        if key is None:
            raise InputError(
                f"--dosing {token!r} is not a dosing parameter{did_you_mean(token, DOSING, cutoff=0.5)}; "
                f"use some of {list(DOSING)}"
            )
        options[key] = True
    return named(args.model, **options)


def nonmem_columns(args: argparse.Namespace) -> dict[str, str]:
    """Data.from_nonmem's column keywords: ``--id``, ``--time``, ``--dv`` and ``--column ROLE=COL``
    (roles case-insensitive); the defaults (ID, TIME, DV...) for the others."""
    if getattr(args, "x", None) is not None:
        raise InputError("--x does not apply with --nonmem: name the time column with --time (default TIME)")
    given = dict(id=args.id, time=args.time, dv=getattr(args, "y", None))
    columns = {k: v for k, v in given.items() if v is not None}
    for item in args.column or []:
        if "=" not in item:
            raise InputError(f"--column must be ROLE=COL, got {item!r}")
        role, col = (part.strip() for part in item.split("=", 1))
        if role.lower() not in ROLES:
            known = [r.upper() for r in ROLES]
            hint = did_you_mean(role.upper(), known, cutoff=0.5)
            raise InputError(
                f"--column {item}: {role!r} is not a NONMEM role{hint}; roles are {known} "
                "(ID, TIME and DV: --id, --time, --dv)"
            )
        if not col:
            raise InputError(f"--column {item}: give the column's name after '='")
        columns[role.lower()] = col
    return columns


def read_events(df: pd.DataFrame, args: argparse.Namespace, covariates: list[str]) -> Data:
    """The data file as NONMEM event data; ``covariates``: the columns the fit uses (those of
    --covariate and --context), time-varying when listed in --time-varying or when they change
    within an individual (the covariate model then acts record by record)."""
    from pymixnn.data.table import Data
    from pymixnn.data.varying import covariate_roles

    varying = [c.strip() for c in (args.time_varying or "").split(",") if c.strip()]
    roles = covariate_roles(df, nonmem_columns(args).get("id", "ID"), covariates)
    varying = list(dict.fromkeys(varying + (roles["time_varying"] or [])))
    covariates = [c for c in covariates if c not in varying]
    columns = nonmem_columns(args)
    if getattr(args, "censoring", None):  # --censoring COL: the BLQ flag of observation records
        columns["censoring"] = args.censoring
    check_columns(df, columns)
    return Data.from_nonmem(df, **columns, covariates=covariates or None, time_varying=varying or None)


def check_columns(df: pd.DataFrame, columns: dict[str, str]) -> None:
    """Every column named on the command line is in the data (case-insensitively, as
    Data.from_nonmem matches them): a misspelt optional one would otherwise take its default."""
    present = {str(c).lower() for c in df.columns}
    for role, col in columns.items():
        if col.lower() not in present:
            flag = (
                f"--{role}" if role in ("id", "time", "dv", "censoring") else f"--column {role.upper()}={col}"
            )
            hint = did_you_mean(col, [str(c) for c in df.columns], cutoff=0.5)
            raise InputError(
                f"{flag}: {col!r} is not a column of the data file{hint}; its columns are "
                f"{[str(c) for c in df.columns]}"
            )
