"""``pymixnn spatial-estimator`` and ``pymixnn spatial-estimate``: train the graph-network
estimator of a Matérn field at fixed locations (:class:`pymixnn.SpatialEstimator`), save it;
estimate fields observed at those locations with it (and, with ``--likelihood``, by maximum
likelihood beside it).

    pymixnn spatial-estimator LOCATIONS.csv --coords x,y --out EST.json [--prior PRIOR.json]
                              [--nu 1.5] [--n-simulations N] [--seed S] [--no-progress]
    pymixnn spatial-estimate EST.json FIELDS.csv [--fields COL[,COL]] [--likelihood] [--out PATH]

FIELDS.csv has one row per location, in the order of LOCATIONS.csv, and one column per field
(``--fields``; default every column that is not a coordinate). When it has the coordinate columns
too, they must match the estimator's locations row by row. PRIOR.json: ``{"range": ["uniform",
0.05, 0.5], "sd": ["uniform", 0.5, 2], "nugget": 0}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pymixnn.cli.files import check_input, check_output_file, read_csv
from pymixnn.cli.messages import InputError
from pymixnn.cli.neural import read_prior
from pymixnn.cli.output import save_estimator, write_table
from pymixnn.cli.spec import names
from pymixnn.validation.errors import show_value

__all__ = ["add_spatial_parsers", "run_spatial_estimator", "run_spatial_estimate"]


def add_spatial_parsers(sub: Any, positive_int) -> None:
    """The ``spatial-estimator`` and ``spatial-estimate`` subcommands."""
    p = sub.add_parser(
        "spatial-estimator", help="train a graph-network estimator of a Matérn field's parameters"
    )
    p.add_argument("locations", metavar="LOCATIONS.csv", help="one row per location")
    p.add_argument("--encoding", default="utf-8", help="text encoding of LOCATIONS.csv (default utf-8)")
    p.add_argument("--coords", required=True, metavar="COL,COL", help="coordinate columns")
    p.add_argument("--prior", metavar="PRIOR.json", help="laws of range, sd and nugget (default: see docs)")
    p.add_argument("--nu", type=float, default=1.5, help="Matérn smoothness (default 1.5)")
    p.add_argument("--n-simulations", type=positive_int, default=None, help="simulated fields in training")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and simulations")
    p.add_argument("--out", required=True, metavar="EST.json", help="where to save the trained estimator")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    e = sub.add_parser("spatial-estimate", help="estimate fields with a trained spatial estimator")
    e.add_argument(
        "estimator", metavar="EST.json", help="a saved estimator (pymixnn spatial-estimator --out)"
    )
    e.add_argument(
        "data", metavar="FIELDS.csv", help="one row per location (estimator's order), a column per field"
    )
    e.add_argument("--encoding", default="utf-8", help="text encoding of FIELDS.csv (default utf-8)")
    e.add_argument("--fields", metavar="COL[,COL]", help="field columns (default: all but the coordinates)")
    e.add_argument("--likelihood", action="store_true", help="add maximum-likelihood estimates beside")
    e.add_argument("--out", metavar="PATH", help="write the estimates as CSV (default: stdout)")


def run_spatial_estimator(args: argparse.Namespace) -> int:
    """Read the locations (and prior), train, save. Returns 0 (1 when the file cannot be written)."""
    import pymixnn

    out = check_output_file(args.out, "--out")
    prior = read_prior(check_input(Path(args.prior), "prior file")) if args.prior else None
    loc = read_csv(check_input(Path(args.locations), "locations file"), args.encoding)
    est = pymixnn.SpatialEstimator("matern", loc, coords=names(args.coords), nu=args.nu, prior=prior)
    est.train(
        **({"n_simulations": args.n_simulations} if args.n_simulations else {}),
        seed=args.seed,
        progress=not args.no_progress,
    )
    return save_estimator(est, out, args.out)


def run_spatial_estimate(args: argparse.Namespace) -> int:
    """Estimate the field columns of FIELDS.csv; one row per field (CSV) to --out or stdout."""
    from pymixnn.results.spatial_estimator import SpatialEstimator

    out = check_output_file(args.out, "--out") if args.out else None
    est = SpatialEstimator.load(check_input(Path(args.estimator), "estimator file"))
    df = read_csv(check_input(Path(args.data), "fields file"), args.encoding)
    if len(df) != len(est.locations):
        raise InputError(f"FIELDS.csv has {len(df)} rows; the estimator has {len(est.locations)} locations")
    coords = [c for c in est.coords if c in df.columns]
    for j, c in enumerate(est.coords):
        if c in df.columns:
            v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
            bad = np.flatnonzero(~np.isclose(v, est.locations[:, j], rtol=0, atol=1e-9))
            if bad.size:
                r = int(bad[0])
                raise InputError(
                    f"FIELDS.csv row {r}: {c} = {show_value(df[c].iloc[r])}, but the estimator's location "
                    f"{r} has "
                    f"{c} = {est.locations[r, j]:g}; rows must follow the estimator's locations"
                )
    cols = names(args.fields) if args.fields else [c for c in df.columns if c not in coords]
    absent = [c for c in cols if c not in df.columns]
    if absent:
        raise InputError(f"--fields: no column(s) {absent} in FIELDS.csv; it has {list(df.columns)}")
    if not cols:
        raise InputError("FIELDS.csv has no field column besides the coordinates")
    z = df[cols].T.to_numpy()
    table = est.estimate(z).rename(columns=lambda c: f"gnn.{c}")
    if args.likelihood:
        ml = est.likelihood(z)[["range", "sd", "nugget", "loglik"]].rename(
            columns=lambda c: f"likelihood.{c}"
        )
        table = pd.concat([table, ml], axis=1)
    table.insert(0, "field", cols)
    return write_table(table.reset_index(drop=True), out, args.out, "estimates")
