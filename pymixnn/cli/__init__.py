"""The ``pymixnn`` command: ``pymixnn demo``, ``pymixnn fit DATA.csv --model NAME ...`` and
``pymixnn solve DATA.csv --model NAME --params NAME=VALUE ...``.

    pymixnn demo [--json PATH] [--plot PATH] [--seed N] [--max-steps N] [--lr LR]
    pymixnn fit DATA.csv --model NAME --id COL --x COL[,COL] --y COL [--encoding NAME]
                [--covariate PARAM=COL ...] [--error MODEL] [--omega diagonal|full]
                [--init NAME=VALUE ...] [--random P[,P]]
                [--random-effects gaussian|mixture|flow|latent_class] [--n-components K|auto]
                [--n-classes K|auto] [--class-on P[,P]] [--membership COL[,COL]]
                [--class-within gaussian|flow] [--classes PATH]
                [--plot-classes PATH] [--context COL[,COL]] [--levels L1,L2,...] [--time COL]
                [--json PATH] [--plot PATH] [--seed N] [--max-steps N] [--lr LR] [--no-progress]
    pymixnn fit DATA.csv --nonmem --model pk1cpt_iv [--id ID] [--time TIME] [--dv DV]
                [--column ROLE=COL ...] [--dosing tlag,F,rate,duration] [--time-varying COL[,COL]]
                [--init NAME=VALUE ...] [--covariate PARAM=COL ...] ...
    pymixnn solve DATA.csv --model pk1cpt_iv --params NAME=VALUE ... [--times T[,T]] [--out PATH]
                [--id ID] [--time TIME] [--dv DV] [--column ROLE=COL ...] [--dosing P[,P]]
    pymixnn amortize DESIGN.csv --model NAME --prior PRIOR.json --x COL[,COL] --out EST.json
                [--id COL] [--n-simulations N] [--seed N] [--no-progress]
    pymixnn estimate EST.json DATA.csv [--id COL] [--y COL] [--level 0.95] [--seed N] [--out PATH]
    pymixnn spatial-estimator LOCATIONS.csv --coords COL,COL --out EST.json [--prior PRIOR.json]
                [--nu NU] [--n-simulations N] [--seed N] [--no-progress]
    pymixnn spatial-estimate EST.json FIELDS.csv [--fields COL[,COL]] [--likelihood] [--out PATH]

``--nonmem`` reads DATA.csv as a NONMEM event table (:meth:`pymixnn.Data.from_nonmem`; columns ID,
TIME, DV, AMT, EVID, CMT, RATE, II, ADDL, SS, MDV, DVID matched case-insensitively, others named
by ``--column ROLE=COL``) for a compartment model (pk1cpt_iv, pk1cpt_oral, pk2cpt_iv, ...).

Errors in the input (a missing column or file, a non-numeric value, an unknown parameter name, an
output directory that does not exist...) print one line and exit with 2, before any fitting; rows of
the data file are named by their line in the file (the header is line 1). Ctrl-C prints one line and
exits with 130. Result files are written atomically (a temporary file in the same directory, then
renamed), so an interrupted run never leaves a half-written one. Input errors are ValueErrors
(pymixnn's checks raise :class:`pymixnn.validation.InputError`, a ValueError); any other failure,
a TypeError included, is a bug: it prints its traceback and exits with 1.

The command's parts: :mod:`pymixnn.cli.parser` (flags), :mod:`pymixnn.cli.spec` (the command line
as the arguments of :func:`pymixnn.fit`), :mod:`pymixnn.cli.nonmem` (NONMEM event data),
:mod:`pymixnn.cli.solve` (the ``solve`` subcommand), :mod:`pymixnn.cli.neural` (``amortize`` and
``estimate``: the neural estimator), :mod:`pymixnn.cli.spatial` (``spatial-estimator`` and
``spatial-estimate``: the graph-network estimator of a Matérn field), :mod:`pymixnn.cli.files`
(input and output paths, the data file), :mod:`pymixnn.cli.output` (atomic result files),
:mod:`pymixnn.cli.messages` (one-line errors and warnings in the command line's terms).
"""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager

from pymixnn.cli.messages import InputError, cli_text, fail, warning_printer
from pymixnn.cli.neural import run_amortize, run_estimate
from pymixnn.cli.output import write_results
from pymixnn.cli.parser import build_parser
from pymixnn.cli.solve import run_solve
from pymixnn.cli.spatial import run_spatial_estimate, run_spatial_estimator
from pymixnn.cli.spec import DEMO as DEMO  # the demo's fit arguments, as before the split
from pymixnn.cli.spec import prepare

__all__ = ["main", "InputError", "process_group"]

# seconds a process waits at a collective for the others before it stops with an error
PROCESS_TIMEOUT = 60


@contextmanager
def process_group(distributed: bool):
    """The torch.distributed process group of ``--distributed`` (torchrun's environment; gloo on
    the CPU, NCCL with CUDA), destroyed afterwards; yields this process's rank (0 without)."""
    if not distributed:
        yield 0
        return
    import datetime as dt
    import os

    import torch
    import torch.distributed as dist

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise InputError(
            "--distributed runs under torchrun: torchrun --standalone --nproc-per-node=K -m pymixnn "
            "fit ... --distributed (one machine), or torchrun --nnodes=M --rdzv-endpoint=HOST:PORT ..."
        )
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=dt.timedelta(seconds=PROCESS_TIMEOUT))
    try:
        yield dist.get_rank()
    finally:
        dist.destroy_process_group()


# former private name, kept for callers of pymixnn.cli._cli_text
_cli_text = cli_text


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status: 0, 2 for
    an error in the input (one line on stderr), 1 when a result file could not be written, 130 on
    Ctrl-C. Any other exception propagates (a traceback and status 1 from the ``pymixnn`` command)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        _close_progress_bars()
        print("pymixnn: interrupted", file=sys.stderr)
        return 130


def _close_progress_bars() -> None:
    """Clear the progress bars an interrupted fit left open, so the last line stands alone."""
    if "tqdm" in sys.modules:
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", ())):
            bar.close()


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0), or a usage error already printed on one line (2)
        return done.code if isinstance(done.code, int) else 0
    # the rows of a data file are its lines; the bundled demo data keep their index
    lines = args.command in ("fit", "solve", "amortize", "estimate")
    with warnings.catch_warnings():
        warnings.showwarning = warning_printer(lines)
        try:
            if args.command == "solve":
                return run_solve(args)
            if args.command == "amortize":
                return run_amortize(args)
            if args.command == "estimate":
                return run_estimate(args)
            if args.command == "spatial-estimator":
                return run_spatial_estimator(args)
            if args.command == "spatial-estimate":
                return run_spatial_estimate(args)
            df, spec = prepare(args)
            import pymixnn

            with process_group(getattr(args, "distributed", False)) as rank:
                res = pymixnn.fit(
                    df, spec.pop("model"), **spec, seed=args.seed, progress=not args.no_progress
                )
            if rank:  # a data-parallel fit: process 0 prints and writes, the others hold the same results
                return 0
        except ValueError as err:  # input errors (validation.InputError and other ValueErrors)
            return fail(err, lines)  # a TypeError or anything else is a bug: its traceback, exit 1
        except OSError as err:  # a file that vanished or cannot be read after the checks
            if err.filename is None:
                raise
            return fail(InputError(f"cannot read {err.filename!r}: {err.strerror}"), lines)
        print(res.summary())
        if hasattr(df, "columns"):  # the data file's columns: candidates for --eta-covariates
            args.frame = df
        return write_results(args, res, lines)
