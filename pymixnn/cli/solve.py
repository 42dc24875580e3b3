"""``pymixnn solve``: a compartment model's predictions on NONMEM event data at given parameter
values (:func:`pymixnn.solve`), without fitting; written as CSV to ``--out`` or to stdout.

    pymixnn solve DATA.csv --model pk1cpt_iv --params CL=2 V=20 [--times 0,1,2] [--out PATH]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from pymixnn.cli.files import check_input, check_output_file, read_csv
from pymixnn.cli.messages import InputError
from pymixnn.cli.nonmem import add_nonmem_flags, check_columns, nonmem_columns
from pymixnn.cli.output import write_table
from pymixnn.cli.spec import check_model, check_parameter, names, pairs

__all__ = ["add_solve_parser", "run_solve", "parse_times"]


def add_solve_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``solve`` subcommand of the parser's subcommands ``sub``."""
    p = sub.add_parser(
        "solve", help="predictions of a compartment model on NONMEM event data at given parameter values"
    )
    p.add_argument("data", metavar="DATA.csv", help="NONMEM event table")
    p.add_argument("--encoding", default="utf-8", help="text encoding of DATA.csv (default utf-8)")
    p.add_argument("--model", required=True, help="compartment model, e.g. pk1cpt_iv, pk2cpt_oral")
    p.add_argument(
        "--params",
        required=True,
        action="extend",
        nargs="+",
        metavar="NAME=VALUE",
        help="value of every model parameter, natural scale, the same for all individuals",
    )
    p.add_argument(
        "--times",
        metavar="T[,T]",
        help="predict every individual at these times (default: at the observation records)",
    )
    p.add_argument("--out", metavar="PATH", help="write the predictions as CSV (default: stdout)")
    add_nonmem_flags(p, solve=True)
    return p


def parse_times(text: str) -> list[float]:
    """``--times``: comma-separated finite numbers."""
    out = []
    for token in names(text):
        try:
            value = float(token)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise InputError(f"--times: {token!r} is not a finite number")
        out.append(value)
    if not out:
        raise InputError("--times: give at least one time, e.g. --times 0,1,2")
    return out


def run_solve(args: argparse.Namespace) -> int:
    """Check the command line, read the data, solve and write the predictions; every input error
    an InputError (one line). Returns 0."""
    import pymixnn

    out = check_output_file(args.out, "--out") if args.out else None
    model = check_model(args)
    path = check_input(Path(args.data), "data file")
    params: dict[str, float] = {}
    for name, value in pairs(args.params, "--params", "NAME=VALUE"):
        check_parameter(model, name, "--params")
        try:
            params[name] = float(value)
        except ValueError:
            raise InputError(f"--params {name}={value!r}: the value must be a number") from None
    missing = [p for p in model.parameters if p not in params]
    if missing:
        raise InputError(
            f"--params: no value for {missing}; model {model.name!r} needs NAME=VALUE for each of "
            f"{list(model.parameters)}"
        )
    times = parse_times(args.times) if args.times is not None else None
    df = read_csv(path, args.encoding)
    varying = names(args.time_varying)
    columns = nonmem_columns(args)
    check_columns(df, columns)
    data = pymixnn.Data.from_nonmem(df, **columns, time_varying=varying or None)
    table = pymixnn.solve(model, data, params, times=times)
    return write_table(table, out, args.out, "predictions")
