"""``pymixnn amortize`` and ``pymixnn estimate``: train a neural estimator of whole data sets
(:func:`pymixnn.amortize`) on a design and a prior, save it; estimate a data set with it.

    pymixnn amortize DESIGN.csv --model logistic --prior PRIOR.json --x t --out EST.json
                     [--id id] [--n-simulations N] [--seed S] [--no-progress]
    pymixnn estimate EST.json DATA.csv [--id id] [--y y] [--level 0.95] [--out PATH]

PRIOR.json holds one law per population parameter: ``{"A": ["uniform", 80, 120], "C": 1.5, ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pymixnn.cli.files import check_input, check_output_file, read_csv
from pymixnn.cli.messages import InputError
from pymixnn.cli.output import save_estimator, write_table
from pymixnn.cli.spec import check_model, names

__all__ = ["add_neural_parsers", "read_prior", "run_amortize", "run_estimate"]


def add_neural_parsers(sub: Any, positive_int) -> None:
    """The ``amortize`` and ``estimate`` subcommands of the parser's subcommands ``sub``."""
    p = sub.add_parser("amortize", help="train a neural estimator of whole data sets of one design")
    p.add_argument("data", metavar="DESIGN.csv", help="the design: id and x columns (y ignored)")
    p.add_argument("--encoding", default="utf-8", help="text encoding of DESIGN.csv (default utf-8)")
    p.add_argument("--model", required=True, help="named model, e.g. logistic")
    p.add_argument("--prior", required=True, metavar="PRIOR.json", help="one law per population parameter")
    p.add_argument("--id", default="id", help="id column (default id)")
    p.add_argument("--x", required=True, metavar="COL[,COL]", help="x column(s)")
    p.add_argument("--n-simulations", type=positive_int, default=None, help="simulated data sets in training")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, prior draws and simulations")
    p.add_argument("--out", required=True, metavar="EST.json", help="where to save the trained estimator")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    e = sub.add_parser("estimate", help="estimate one data set with a trained neural estimator")
    e.add_argument("estimator", metavar="EST.json", help="a saved estimator (pymixnn amortize --out)")
    e.add_argument("data", metavar="DATA.csv", help="one data set of the estimator's design, with y")
    e.add_argument("--encoding", default="utf-8", help="text encoding of DATA.csv (default utf-8)")
    e.add_argument("--id", default="id", help="id column (default id)")
    e.add_argument("--y", default="y", help="observation column (default y)")
    e.add_argument("--level", type=float, default=0.95, help="posterior interval level (default 0.95)")
    e.add_argument("--seed", type=int, default=0, help="seed of the posterior draws")
    e.add_argument("--out", metavar="PATH", help="write the estimates as CSV (default: stdout)")


def read_prior(path: Path) -> dict:
    try:
        prior = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"--prior {str(path)!r} is not JSON: {err.msg} (line {err.lineno})") from None
    if not isinstance(prior, dict):
        raise InputError(f"--prior {str(path)!r} must hold a JSON object of laws by parameter name")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in prior.items()}


def run_amortize(args: argparse.Namespace) -> int:
    """Check the command line, read the design and the prior, train, save. Returns 0 (1 when the
    estimator could not be written)."""
    import pymixnn

    out = check_output_file(args.out, "--out")
    model = check_model(args)
    prior = read_prior(check_input(Path(args.prior), "prior file"))
    design = read_csv(check_input(Path(args.data), "design file"), args.encoding)
    est = pymixnn.amortize(
        model,
        design,
        prior,
        **({"n_simulations": args.n_simulations} if args.n_simulations else {}),
        id=args.id,
        x=names(args.x),
        seed=args.seed,
        progress=not args.no_progress,
    )
    return save_estimator(est, out, args.out)


def run_estimate(args: argparse.Namespace) -> int:
    """Estimate DATA.csv with a saved estimator; the table (CSV) to --out or stdout."""
    from pymixnn.results.neural import NeuralEstimator

    out = check_output_file(args.out, "--out") if args.out else None
    path = check_input(Path(args.estimator), "estimator file")
    try:
        est = NeuralEstimator.load(path)
    except (json.JSONDecodeError, KeyError):
        raise InputError(f"estimator file {str(path)!r} is not a saved pymixnn neural estimator") from None
    df = read_csv(check_input(Path(args.data), "data file"), args.encoding)
    e = est.estimate(df, id=args.id, y=args.y, level=args.level, seed=args.seed)
    for w in e.warnings:
        print(f"pymixnn: warning: {w}", file=sys.stderr)
    table = e.params.reset_index()
    return write_table(table, out, args.out, "estimates")
