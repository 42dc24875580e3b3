"""The ``pymixnn`` command: ``pymixnn demo`` and ``pymixnn fit DATA.csv --model NAME ...``.

    pymixnn demo [--json PATH] [--plot PATH] [--seed N]
    pymixnn fit DATA.csv --model NAME --id COL --x COL[,COL] --y COL
                [--covariate PARAM=COL ...] [--error MODEL] [--omega diagonal|full]
                [--init NAME=VALUE ...] [--random-effects gaussian|mixture|flow]
                [--n-components K|auto] [--context COL[,COL]]
                [--json PATH] [--plot PATH] [--seed N] [--no-progress]

Errors in the input (a missing column, a non-numeric value...) print one line and exit with 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]

DEMO = dict(model="onecpt_oral", id="Id", x=["Dose", "Time"], y="Concentration",
            covariates={"V": ["Weight"]}, init={"ka": 1.0, "V": 20.0, "CL": 0.5})


def _pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{what} must be NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out.append((key.strip(), value.strip()))
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pymixnn", description="Nonlinear mixed-effects models "
                                     "by minibatch stochastic variational inference.")
    sub = parser.add_subparsers(dest="command", required=True)

    def outputs(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", metavar="PATH", help="write the results record as JSON")
        p.add_argument("--plot", metavar="PATH", help="write a PNG of the individual fits")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    demo = sub.add_parser("demo", help="fit the bundled theophylline data (saemix's reference "
                          "model) and print the summary")
    outputs(demo)
    fit = sub.add_parser("fit", help="fit a named model to a CSV file in long format")
    fit.add_argument("data", metavar="DATA.csv")
    fit.add_argument("--model", required=True, help="named model, e.g. logistic, onecpt_oral")
    fit.add_argument("--id", required=True, help="column identifying individuals")
    fit.add_argument("--x", required=True, help="column(s) of the structural model, comma-separated")
    fit.add_argument("--y", required=True, help="response column")
    fit.add_argument("--covariate", action="append", metavar="PARAM=COL",
                     help="covariate COL on the transformed parameter PARAM (repeatable)")
    fit.add_argument("--init", action="append", metavar="NAME=VALUE",
                     help="initial value of a fixed effect, natural scale (repeatable)")
    fit.add_argument("--error", choices=["constant", "proportional", "combined", "exponential"])
    fit.add_argument("--omega", choices=["diagonal", "full"])
    fit.add_argument("--dropna", action="store_true", help="drop rows with missing y")
    fit.add_argument("--random-effects", choices=["gaussian", "mixture", "flow"], default="gaussian",
                     help="law of the random effects (default gaussian)")
    fit.add_argument("--n-components", metavar="K", help="mixture components: an integer or 'auto'")
    fit.add_argument("--context", metavar="COL[,COL]", help="covariates a flow is conditioned on")
    fit.add_argument("--observation", default="gaussian",
                     choices=["gaussian", "poisson", "negative_binomial", "zero_inflated_poisson",
                              "binomial", "bernoulli", "ordinal"],
                     help="observation model (default gaussian, with the model's error model)")
    fit.add_argument("--link", help="link of the observation model (e.g. identity; default the "
                                    "family's: log for counts, logit for binomial/bernoulli)")
    fit.add_argument("--trials", metavar="COL", help="column of binomial trials")
    fit.add_argument("--censoring", metavar="COL",
                     help="column flagging left-censored rows (1; y holds the limit): M3 likelihood")
    fit.add_argument("--likelihood", choices=["auto", "is", "gq"], default="auto",
                     help="importance sampling (is), adaptive quadrature (gq) or auto (default)")
    fit.add_argument("--vpc", metavar="PATH", help="write a visual predictive check PNG")
    fit.add_argument("--genotype", metavar="COL", help="column of each individual's genotype "
                     "(with --markers)")
    fit.add_argument("--markers", metavar="PATH", help="marker matrix: CSV (genotypes x markers, "
                     "first column the genotype id) or PLINK .bed")
    fit.add_argument("--genomic-params", metavar="P[,P]", help="parameters with marker effects")
    fit.add_argument("--prior", choices=["horseshoe", "ridge"], default="horseshoe",
                     help="prior of the marker effects (default horseshoe)")
    fit.add_argument("--map", metavar="PATH", help="marker map CSV (marker, chr, pos)")
    fit.add_argument("--manhattan", metavar="DIR", help="write Manhattan PNGs (one per parameter)")
    fit.add_argument("--marker-effects", metavar="PATH", help="write the marker effects as CSV")
    outputs(fit)
    return parser


def _integer(value: str, flag: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{flag} {value!r}: give an integer or 'auto'") from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import pandas as pd

    import pymixnn

    try:
        if args.command == "demo":
            df = pymixnn.datasets.load("theo")
            spec = dict(DEMO)
            extra = {}
        else:
            path = Path(args.data)
            if not path.is_file():
                raise ValueError(f"data file {str(path)!r} not found")
            df = pd.read_csv(path)
            covariates: dict[str, list[str]] = {}
            for param, col in _pairs(args.covariate, "--covariate"):
                covariates.setdefault(param, []).append(col)
            init = {}
            for name, value in _pairs(args.init, "--init"):
                try:
                    init[name] = float(value)
                except ValueError:
                    raise ValueError(f"--init {name}={value!r}: the value must be a number") from None
            spec = dict(model=args.model, id=args.id, x=[c.strip() for c in args.x.split(",")],
                        y=args.y, covariates=covariates or None, init=init or None)
            extra = {k: v for k, v in dict(error=args.error, omega=args.omega).items() if v}
            extra["dropna"] = args.dropna
            extra["random_effects"] = args.random_effects
            if args.n_components is not None:
                k = args.n_components
                extra["n_components"] = k if k == "auto" else _integer(k, "--n-components")
            if args.context:
                extra["context"] = [c.strip() for c in args.context.split(",")]
            extra["observation"] = _observation(args.observation, args.link)
            extra["likelihood"] = args.likelihood
            for key in ("trials", "censoring"):
                if getattr(args, key):
                    extra[key] = getattr(args, key)
            if args.markers or args.genotype or args.genomic_params:
                if not (args.markers and args.genotype and args.genomic_params):
                    raise ValueError("marker effects need --markers, --genotype and --genomic-params")
                extra["genotype"] = args.genotype
                extra["genomic"] = pymixnn.Genomic(
                    args.markers, params=[p.strip() for p in args.genomic_params.split(",")],
                    prior=args.prior, map=args.map)
        res = pymixnn.fit(df, spec.pop("model"), **spec, **extra, seed=args.seed,
                          progress=not args.no_progress)
    except (ValueError, TypeError) as err:
        print(f"pymixnn: error: {err}", file=sys.stderr)
        return 2
    print(res.summary())
    if args.json:
        res.to_json(args.json)
        print(f"\nresults written to {args.json}")
    if args.plot:
        res.plot_individuals(args.plot)
        print(f"individual fits plotted in {args.plot}")
    if getattr(args, "vpc", None):
        res.plot_vpc(args.vpc, seed=args.seed)
        print(f"visual predictive check plotted in {args.vpc}")
    if getattr(args, "manhattan", None):
        paths = res.plot_manhattan(args.manhattan)
        print(f"Manhattan plots written to {', '.join(str(p) for p in paths)}")
    if getattr(args, "marker_effects", None):
        res.marker_effects.to_csv(args.marker_effects, index=False)
        print(f"marker effects written to {args.marker_effects}")
    return 0


def _observation(name: str, link: str | None):
    from pymixnn.models.observation import FAMILIES, observation

    if link is None:
        return name
    cls = FAMILIES[name]
    if not cls.links:
        raise ValueError(f"--link: observation {name!r} has no link to choose")
    return observation(cls(link=link))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
