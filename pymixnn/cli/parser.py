"""The command line's grammar: the ``pymixnn`` argument parser, its subcommands and flags."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from pymixnn.cli.neural import add_neural_parsers
from pymixnn.cli.nonmem import add_nonmem_flags
from pymixnn.cli.solve import add_solve_parser
from pymixnn.cli.spatial import add_spatial_parsers

__all__ = ["CommandParser", "build_parser", "positive_int", "positive_float", "fit_requires"]


class CommandParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (the usage of ``fit`` alone takes a dozen).

    ``requires(namespace)`` names the flags still missing once parsed (flags required or not
    depending on others, e.g. ``--id`` unless ``--nonmem``): reported as argparse reports
    missing required arguments."""

    def __init__(self, *args: Any, requires: Callable[[argparse.Namespace], list[str]] | None = None, **kw):
        super().__init__(*args, **kw)
        self.requires = requires

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace, rest = super().parse_known_args(args, namespace)
        missing = self.requires(namespace) if self.requires is not None else []
        if missing:
            self.error(f"the following arguments are required: {', '.join(missing)}")
        return namespace, rest


def fit_requires(args: argparse.Namespace) -> list[str]:
    """The flags ``fit`` misses: --model always; --id, --x and --y unless --nonmem (then ID, TIME
    and DV by default)."""
    needed = ["model"] if getattr(args, "nonmem", False) else ["model", "id", "x", "y"]
    return ["--" + k for k in needed if getattr(args, k, None) is None]


def positive_int(text: str) -> int:
    """An argparse type: a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"give a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a positive finite number."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"give a positive number, got {text!r}")
    return value


def _outputs(p: argparse.ArgumentParser) -> None:
    """The flags every subcommand shares: result files, seed and SVI settings."""
    p.add_argument("--json", metavar="PATH", help="write the results record as JSON")
    p.add_argument("--plot", metavar="PATH", help="write a PNG of the individual fits")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--max-steps", type=positive_int, metavar="N", help="most SVI steps (default: pymixnn.fit's, 4000)"
    )
    p.add_argument(
        "--lr", type=positive_float, metavar="LR", help="SVI learning rate (default: pymixnn.fit's, 0.02)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``pymixnn`` command, with its subcommands ``demo``, ``fit``, ``solve``,
    ``amortize``, ``estimate``, ``spatial-estimator`` and ``spatial-estimate``."""
    parser = CommandParser(
        prog="pymixnn",
        description="Nonlinear mixed-effects models by minibatch stochastic variational inference.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="fit the bundled theophylline data (saemix's reference model) and print the summary"
    )
    _outputs(demo)
    fit = sub.add_parser(
        "fit",
        help="fit a named model to a CSV file in long format (or a NONMEM table: --nonmem)",
        requires=fit_requires,
    )
    fit.add_argument("data", metavar="DATA.csv")
    fit.add_argument(
        "--encoding", default="utf-8", help="text encoding of DATA.csv (default utf-8; e.g. latin-1, cp1252)"
    )
    fit.add_argument(
        "--model",
        help="named model, e.g. logistic, onecpt_oral, pk1cpt_iv (with --nonmem), or FILE.py:NAME, a "
        "pymixnn.Model in a Python file (an ODEModel, a model with neural terms)",
    )
    fit.add_argument("--id", help="column identifying individuals (with --nonmem: default ID)")
    fit.add_argument("--x", help="column(s) of the structural model, comma-separated (not with --nonmem)")
    fit.add_argument("--y", "--dv", dest="y", help="response column (with --nonmem: default DV)")
    fit.add_argument(
        "--covariate",
        action="append",
        metavar="PARAM=COL",
        help="covariate COL on the transformed parameter PARAM (repeatable)",
    )
    fit.add_argument(
        "--init",
        action="extend",
        nargs="+",
        metavar="NAME=VALUE",
        help="initial value(s) of fixed effects, natural scale (repeatable)",
    )
    fit.add_argument(
        "--random",
        metavar="P[,P]",
        help="parameters with a random effect (default: the model's, all); none: no individual random "
        "effects (nonlinear regression, or --level / --spatial carrying the random variation)",
    )
    fit.add_argument("--error", choices=["constant", "proportional", "combined", "exponential"])
    fit.add_argument("--omega", choices=["diagonal", "full"])
    fit.add_argument("--dropna", action="store_true", help="drop rows with missing y")
    fit.add_argument(
        "--random-effects",
        choices=["gaussian", "mixture", "flow", "latent_class"],
        default="gaussian",
        help="law of the random effects (default gaussian)",
    )
    fit.add_argument(
        "--n-classes", metavar="K", help="latent classes: an integer or 'auto' (K = 1..4 by ICL)"
    )
    fit.add_argument("--class-on", metavar="P[,P]", help="parameters with class-specific fixed effects")
    fit.add_argument("--membership", metavar="COL[,COL]", help="covariates of the class-membership model")
    fit.add_argument(
        "--class-within",
        choices=["gaussian", "flow"],
        help="the law within a latent class (default gaussian)",
    )
    fit.add_argument("--classes", metavar="PATH", help="write the posterior class probabilities as CSV")
    fit.add_argument("--n-components", metavar="K", help="mixture components: an integer or 'auto'")
    fit.add_argument("--context", metavar="COL[,COL]", help="covariates a flow is conditioned on")
    fit.add_argument(
        "--observation",
        default="gaussian",
        choices=[
            "gaussian",
            "poisson",
            "negative_binomial",
            "zero_inflated_poisson",
            "binomial",
            "bernoulli",
            "ordinal",
        ],
        help="observation model (default gaussian, with the model's error model)",
    )
    fit.add_argument(
        "--link",
        help="link of the observation model (e.g. identity; default the "
        "family's: log for counts, logit for binomial/bernoulli)",
    )
    fit.add_argument(
        "--levels",
        metavar="L1,L2,...",
        help="ordinal categories in order, lowest first (with --observation ordinal)",
    )
    fit.add_argument("--trials", metavar="COL", help="column of binomial trials")
    fit.add_argument(
        "--censoring",
        metavar="COL",
        help="column flagging left-censored rows (1; y holds the limit): M3 likelihood",
    )
    fit.add_argument(
        "--likelihood",
        choices=["auto", "is", "gq"],
        default="auto",
        help="importance sampling (is), adaptive quadrature (gq) or auto (default)",
    )
    fit.add_argument(
        "--local",
        choices=["individual", "amortized"],
        default="individual",
        help="local posteriors per individual (default) or one encoder network for all (amortized)",
    )
    fit.add_argument(
        "--gear",
        choices=["auto", "newton", "svi"],
        default="auto",
        help="Newton steps on the marginal likelihood from the Laplace-EM start (newton), minibatch "
        "SVI first (svi), or chosen by the problem (auto, default)",
    )
    fit.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over the processes torchrun started (torchrun --standalone "
        "--nproc-per-node=K -m pymixnn fit ... --distributed): each process fits its block of "
        "individuals' part of every sum; process 0 prints and writes the results",
    )
    fit.add_argument(
        "--shards",
        action="store_true",
        help="with --distributed: each process reads only its own individuals' rows of DATA (CSV or "
        ".parquet; pymixnn.read_shard), none the whole table; process 0 prints and writes the "
        "population results (--json)",
    )
    fit.add_argument(
        "--shard-by",
        choices=["range", "hash"],
        default="range",
        help="with --shards: contiguous blocks of the sorted ids (range, default: the fit equals the "
        "whole table's) or crc32(id) modulo the processes (hash)",
    )
    fit.add_argument(
        "--refine-steps",
        metavar="K",
        help="with --local amortized: K Newton steps per individual from the encoder's output",
    )
    fit.add_argument("--vpc", metavar="PATH", help="write a visual predictive check PNG")
    fit.add_argument(
        "--pcvpc", metavar="PATH", help="write a prediction-corrected VPC PNG (data with several doses)"
    )
    fit.add_argument(
        "--gof", metavar="PATH", help="write the goodness-of-fit panels (PNG; PRED, IPRED, IWRES, NPDE)"
    )
    fit.add_argument("--npde", metavar="PATH", help="write NPDE and pd per observation (CSV)")
    fit.add_argument("--cwres", metavar="PATH", help="write CWRES per observation (CSV)")
    fit.add_argument("--trace", metavar="PATH", help="write the population parameters along the fit (PNG)")
    fit.add_argument(
        "--eta-covariates",
        metavar="PATH",
        help="write the random effects against the data's individual-level columns (PNG)",
    )
    fit.add_argument(
        "--n-sim", metavar="N", type=int, default=1000, help="simulations for --npde and --gof (default 1000)"
    )
    fit.add_argument("--plot-classes", metavar="PATH", help="write the latent classes' mean curves (PNG)")
    fit.add_argument(
        "--time",
        metavar="COL",
        help="the x column that is time in --plot and --vpc "
        "(needed when x has several columns and the model does not say); "
        "with --nonmem the TIME column (default TIME)",
    )
    add_nonmem_flags(fit)
    fit.add_argument(
        "--genotype", metavar="COL", help="column of each individual's genotype (with --markers)"
    )
    fit.add_argument(
        "--markers",
        metavar="PATH",
        help="marker matrix: CSV (genotypes x markers, first column the genotype id) or PLINK .bed",
    )
    fit.add_argument("--genomic-params", metavar="P[,P]", help="parameters with marker effects")
    fit.add_argument(
        "--prior",
        choices=["horseshoe", "ridge"],
        default="horseshoe",
        help="prior of the marker effects (default horseshoe)",
    )
    fit.add_argument(
        "--level",
        dest="grouping_levels",
        action="append",
        metavar="COL:P[,P][:full]",
        help="a grouping level (repeatable): its column, the parameters with a random effect at it, "
        "':full' for a full covariance; e.g. --level plot:A --level genotype:A,B:full",
    )
    fit.add_argument(
        "--spatial",
        metavar="P[,P]:COL,COL[:KIND]",
        help="a spatial field on the parameters over the coordinate columns; KIND exponential "
        "(default), gaussian or spherical (an exact Gaussian process with that kernel), or ar1xar1 "
        "(a separable AR1 x AR1 field on a row x column grid), or matern (a Matérn field, nu 1.5, by nearest "
        "neighbours, for 10^4-10^6 locations; matern0.5 or matern2.5 for another smoothness); e.g. "
        "--spatial A:Row,Col:ar1xar1",
    )
    fit.add_argument("--map", metavar="PATH", help="marker map CSV (marker, chr, pos)")
    fit.add_argument("--manhattan", metavar="DIR", help="write Manhattan PNGs (one per parameter)")
    fit.add_argument("--marker-effects", metavar="PATH", help="write the marker effects as CSV")
    _outputs(fit)
    add_solve_parser(sub)
    add_neural_parsers(sub, positive_int)
    add_spatial_parsers(sub, positive_int)
    return parser
