"""The ``pymixnn`` command: ``pymixnn demo`` and ``pymixnn fit DATA.csv --model NAME ...``.

    pymixnn demo [--json PATH] [--plot PATH] [--seed N] [--max-steps N] [--lr LR]
    pymixnn fit DATA.csv --model NAME --id COL --x COL[,COL] --y COL [--encoding NAME]
                [--covariate PARAM=COL ...] [--error MODEL] [--omega diagonal|full]
                [--init NAME=VALUE ...] [--random P[,P]] [--random-effects gaussian|mixture|flow]
                [--n-components K|auto] [--context COL[,COL]] [--levels L1,L2,...] [--time COL]
                [--json PATH] [--plot PATH] [--seed N] [--max-steps N] [--lr LR] [--no-progress]

Errors in the input (a missing column or file, a non-numeric value, an unknown parameter name, an
output directory that does not exist...) print one line and exit with 2, before any fitting; rows of
the data file are named by their line in the file (the header is line 1). Ctrl-C prints one line and
exits with 130. Result files are written atomically (a temporary file in the same directory, then
renamed), so an interrupted run never leaves a half-written one. Any other failure is a bug: it
prints its traceback and exits with 1.
"""
from __future__ import annotations

import argparse
import codecs
import contextlib
import csv
import io
import math
import os
import re
import shutil
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pymixnn.validation import did_you_mean

__all__ = ["main", "InputError"]

DEMO = dict(model="onecpt_oral", id="Id", x=["Dose", "Time"], y="Concentration",
            covariates={"V": ["Weight"]}, init={"ka": 1.0, "V": 20.0, "CL": 0.5})

PACKAGE = Path(__file__).resolve().parent


class InputError(ValueError):
    """An error in the command line or its files: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (the usage of ``fit`` alone takes a dozen)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"give a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"give a positive number, got {text!r}")
    return value


def _pairs(items: list[str] | None, flag: str, form: str) -> list[tuple[str, str]]:
    """``NAME=VALUE`` arguments of a repeatable flag as (name, value) pairs."""
    out = []
    for item in items or []:
        if "=" not in item:
            raise InputError(f"{flag} must be {form}, got {item!r}")
        key, value = item.split("=", 1)
        out.append((key.strip(), value.strip()))
    return out


def _names(text: str | None) -> list[str]:
    """A comma-separated list of names (columns, parameters); [] for None."""
    return [c.strip() for c in text.split(",")] if text else []


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pymixnn", description="Nonlinear mixed-effects models "
                     "by minibatch stochastic variational inference.")
    sub = parser.add_subparsers(dest="command", required=True)

    def outputs(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", metavar="PATH", help="write the results record as JSON")
        p.add_argument("--plot", metavar="PATH", help="write a PNG of the individual fits")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.add_argument("--max-steps", type=_positive_int, metavar="N",
                       help="most SVI steps (default: pymixnn.fit's, 4000)")
        p.add_argument("--lr", type=_positive_float, metavar="LR",
                       help="SVI learning rate (default: pymixnn.fit's, 0.02)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    demo = sub.add_parser("demo", help="fit the bundled theophylline data (saemix's reference "
                          "model) and print the summary")
    outputs(demo)
    fit = sub.add_parser("fit", help="fit a named model to a CSV file in long format")
    fit.add_argument("data", metavar="DATA.csv")
    fit.add_argument("--encoding", default="utf-8",
                     help="text encoding of DATA.csv (default utf-8; e.g. latin-1, cp1252)")
    fit.add_argument("--model", required=True, help="named model, e.g. logistic, onecpt_oral")
    fit.add_argument("--id", required=True, help="column identifying individuals")
    fit.add_argument("--x", required=True, help="column(s) of the structural model, comma-separated")
    fit.add_argument("--y", required=True, help="response column")
    fit.add_argument("--covariate", action="append", metavar="PARAM=COL",
                     help="covariate COL on the transformed parameter PARAM (repeatable)")
    fit.add_argument("--init", action="append", metavar="NAME=VALUE",
                     help="initial value of a fixed effect, natural scale (repeatable)")
    fit.add_argument("--random", metavar="P[,P]",
                     help="parameters with a random effect (default: the model's, all)")
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
    fit.add_argument("--levels", metavar="L1,L2,...",
                     help="ordinal categories in order, lowest first (with --observation ordinal)")
    fit.add_argument("--trials", metavar="COL", help="column of binomial trials")
    fit.add_argument("--censoring", metavar="COL",
                     help="column flagging left-censored rows (1; y holds the limit): M3 likelihood")
    fit.add_argument("--likelihood", choices=["auto", "is", "gq"], default="auto",
                     help="importance sampling (is), adaptive quadrature (gq) or auto (default)")
    fit.add_argument("--vpc", metavar="PATH", help="write a visual predictive check PNG")
    fit.add_argument("--time", metavar="COL", help="the x column that is time in --plot and --vpc "
                     "(needed when x has several columns and the model does not say)")
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
        raise InputError(f"{flag} {value!r}: give an integer or 'auto'") from None


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
        args = _parser().parse_args(argv)
    except SystemExit as done:  # --help (0), or a usage error already printed on one line (2)
        return done.code if isinstance(done.code, int) else 0
    # the rows of a data file are its lines; the bundled demo data keep their index
    lines = args.command == "fit"
    with warnings.catch_warnings():
        warnings.showwarning = _warning_printer(lines)
        try:
            df, spec = _prepare(args)
            import pymixnn

            res = pymixnn.fit(df, spec.pop("model"), **spec, seed=args.seed,
                              progress=not args.no_progress)
        except (ValueError, TypeError) as err:  # pymixnn's input errors, raised before fitting
            return _fail(err, lines)
        except OSError as err:  # a file that vanished or cannot be read after the checks
            if err.filename is None:
                raise
            return _fail(InputError(f"cannot read {err.filename!r}: {err.strerror}"), lines)
        print(res.summary())
        return _write_results(args, res, lines)


def _prepare(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Check the command line, its files and its output paths, then read the data: every error
    here is an InputError (one line), and nothing has been fitted yet. Returns (data, fit kwargs)."""
    import pymixnn

    _check_outputs(args)
    steps = {k: getattr(args, k) for k in ("max_steps", "lr") if getattr(args, k) is not None}
    if args.command == "demo":
        return pymixnn.datasets.load("theo"), {**DEMO, **steps}
    model = _check_model(args)
    path = _check_input(Path(args.data), "data file")
    for flag, value in (("--markers", args.markers), ("--map", args.map)):
        if value:
            _check_input(Path(value), f"{flag} file")
    if args.markers and args.markers.lower().endswith(".bed"):  # PLINK: the .bim and .fam beside it
        for sibling in (".bim", ".fam"):
            _check_input(Path(args.markers).with_suffix(sibling), "--markers: PLINK file")
    covariates: dict[str, list[str]] = {}
    for param, col in _pairs(args.covariate, "--covariate", "PARAM=COL"):
        covariates.setdefault(param, []).append(col)
    init = {}
    for name, value in _pairs(args.init, "--init", "NAME=VALUE"):
        try:
            init[name] = float(value)
        except ValueError:
            raise InputError(f"--init {name}={value!r}: the value must be a number") from None
    for flag, names in (("--init", init), ("--covariate", covariates), ("--random", _names(args.random)),
                        ("--genomic-params", _names(args.genomic_params))):
        for name in names:
            _check_parameter(model, name, flag)
    df = _read_csv(path, args.encoding)
    spec = dict(model=args.model, id=args.id, x=_names(args.x), y=args.y, covariates=covariates or None,
                init=init or None, **steps)
    if args.random:
        spec["random"] = _names(args.random)
    spec.update({k: v for k, v in dict(error=args.error, omega=args.omega).items() if v})
    spec["dropna"] = args.dropna
    spec["random_effects"] = args.random_effects
    if args.n_components is not None:
        k = args.n_components
        spec["n_components"] = k if k == "auto" else _integer(k, "--n-components")
    if args.context:
        spec["context"] = _names(args.context)
    spec["observation"] = _observation(args.observation, args.link, args.levels)
    spec["likelihood"] = args.likelihood
    for key in ("trials", "censoring"):
        if getattr(args, key):
            spec[key] = getattr(args, key)
    if args.markers or args.genotype or args.genomic_params:
        if not (args.markers and args.genotype and args.genomic_params):
            raise InputError("marker effects need --markers, --genotype and --genomic-params")
        spec["genotype"] = args.genotype
        spec["genomic"] = pymixnn.Genomic(args.markers, params=_names(args.genomic_params),
                                          prior=args.prior, map=args.map)
    if args.time is not None and args.time not in df.columns:
        raise InputError(f"--time {args.time!r} is not a column of {str(path)!r}; its columns are "
                         f"{list(df.columns)}")
    return df, spec


def _check_model(args: argparse.Namespace):
    """The named model of ``--model``; an unknown name is an error listing the valid ones."""
    from pymixnn.model.named import NAMED_MODELS, named

    if args.model not in NAMED_MODELS:
        hint = did_you_mean(args.model, NAMED_MODELS, cutoff=0.5)
        raise InputError(f"--model {args.model!r} is not a named model{hint}; use one of "
                         f"{sorted(NAMED_MODELS)}")
    return named(args.model)


def _check_parameter(model, name: str, flag: str) -> None:
    if name not in model.parameters:
        raise InputError(f"{flag} {name}: model {model.name!r} has no parameter {name!r}"
                         f"{did_you_mean(name, model.parameters, cutoff=0.5)}; its parameters are "
                         f"{list(model.parameters)}")


def _observation(name: str, link: str | None, levels: str | None):
    from pymixnn.model.observation import FAMILIES, Ordinal, observation

    if levels is not None:
        if name != "ordinal":
            raise InputError(f"--levels applies to --observation ordinal, not {name!r}")
        if link is not None:
            raise InputError("--link: observation 'ordinal' has no link to choose")
        return observation(Ordinal(levels=_level_values(_names(levels))))
    if link is None:
        return name
    cls = FAMILIES[name]
    if not cls.links:
        raise InputError(f"--link: observation {name!r} has no link to choose")
    return observation(cls(link=link))


def _level_values(tokens: list[str]) -> list:
    """Ordinal levels as the CSV reader types them: integers, else numbers, else strings."""
    for kind in (int, float):
        try:
            return [kind(t) for t in tokens]
        except ValueError:
            pass
    return tokens


# ---- files ----------------------------------------------------------------------------------
def _check_input(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(f"{what} {str(path)!r} not found")
    if not path.is_file():
        raise InputError(f"{what} {str(path)!r} is not a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} {str(path)!r} is not readable")
    return path


def _check_outputs(args: argparse.Namespace) -> None:
    """Every output path can be written, checked before fitting (not after an hour of it)."""
    for key in ("json", "plot", "vpc", "marker_effects"):
        value = getattr(args, key, None)
        if value:
            flag = "--" + key.replace("_", "-")
            path = _check_output_file(value, flag)
            if key in ("plot", "vpc"):
                _check_image_format(path, flag)
    if getattr(args, "manhattan", None):
        path = Path(args.manhattan)
        if path.suffix.lower() == ".png":  # one parameter: one file
            _check_output_file(args.manhattan, "--manhattan")
        elif path.exists() and not path.is_dir():
            raise InputError(f"--manhattan: {args.manhattan!r} is a file, not a directory")
        else:
            _check_directory(path if path.exists() else path.parent, "--manhattan")


def _check_output_file(value: str, flag: str) -> Path:
    path = Path(value)
    if value.endswith(("/", os.sep)) or path.is_dir():
        raise InputError(f"{flag}: {value!r} is a directory; give a file name")
    _check_directory(path.parent, flag)
    return path


def _check_directory(directory: Path, flag: str) -> None:
    if not directory.exists():
        raise InputError(f"{flag}: directory {str(directory)!r} does not exist")
    if not directory.is_dir():
        raise InputError(f"{flag}: {str(directory)!r} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(f"{flag}: directory {str(directory)!r} is not writable")


def _check_image_format(path: Path, flag: str) -> None:
    if not path.suffix:
        return  # matplotlib's default format, PNG
    from matplotlib.backend_bases import FigureCanvasBase

    kinds = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in kinds:
        raise InputError(f"{flag}: cannot write a {path.suffix!r} image; use one of "
                         f"{sorted('.' + k for k in kinds)}")


def _read_csv(path: Path, encoding: str):
    """The data file as a DataFrame indexed by line number in the file (the header is line 1), so
    that messages name the line a user sees in an editor; one-line errors for an undecodable,
    empty or malformed file and for a column name repeated in the header."""
    import pandas as pd

    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise InputError(f"--encoding {encoding!r}: unknown encoding") from None
    raw = path.read_bytes()
    try:  # decoded here, not by pandas, to name the byte and the line of an error
        text = raw.decode("utf-8-sig" if codec == "utf-8" else encoding)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise InputError(f"data file {str(path)!r} is not {encoding}: byte 0x{raw[err.start]:02x} at "
                         f"position {err.start} (line {line}); give its encoding, e.g. --encoding latin-1"
                         ) from None
    header, starts = _csv_lines(text)
    if header is None:
        raise InputError(f"data file {str(path)!r} is empty")
    seen: dict[str, int] = {}
    for k, name in enumerate(header):
        if name.strip() and name in seen:
            raise InputError(f"data file {str(path)!r}: column {name!r} appears twice in the header "
                             f"(columns {seen[name] + 1} and {k + 1}); rename one")
        seen.setdefault(name, k)
    try:
        df = pd.read_csv(io.StringIO(text))
    except pd.errors.EmptyDataError:
        raise InputError(f"data file {str(path)!r} is empty") from None
    except pd.errors.ParserError as err:
        raise InputError(f"cannot read data file {str(path)!r}: {err}") from None
    if starts is not None and len(starts) == len(df):
        df.index = pd.Index(starts, dtype="int64")
    else:  # a layout the line scan does not follow: lines counted from the header
        df.index = pd.RangeIndex(2, len(df) + 2)
    return df


def _csv_lines(text: str) -> tuple[list[str] | None, list[int] | None]:
    """The header fields and the first line (1-based) of each data record, skipping blank lines as
    pandas does (records may span lines inside quotes); (header, None) if the scan fails."""
    reader = csv.reader(io.StringIO(text))
    header, starts, done = None, [], 0
    try:
        for record in reader:
            start, done = done + 1, reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            if header is None:
                header = record
            else:
                starts.append(start)
    except csv.Error:
        return header, None
    return header, starts


# ---- results --------------------------------------------------------------------------------
@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path`` with the same suffix (plots choose their format from it);
    renamed onto ``path`` when the block succeeds, removed when it fails or is interrupted, so that
    ``path`` is never half-written."""
    tmp = path.with_name(f".{path.stem.lstrip('.')}-{uuid.uuid4().hex[:8]}-tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def _atomic_directory(path: Path) -> Iterator[Path]:
    """A temporary directory whose files are moved one by one (each atomically) into ``path``
    (created if needed) when the block succeeds; removed in any case."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path if path.is_dir() else path.parent))
    try:
        yield tmp
        path.mkdir(exist_ok=True)
        for file in sorted(tmp.iterdir()):
            os.replace(file, path / file.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_results(args: argparse.Namespace, res, lines: bool) -> int:
    """Write the requested result files, each atomically; 2 for a setting a result cannot honour,
    1 when the disk refuses a file (the fit itself went fine)."""
    time = {"time": args.time} if getattr(args, "time", None) else {}

    def file(write, message: str):
        def run(target: Path) -> str:
            with _atomic(target) as tmp:
                write(tmp)
            return f"{message} {target}"
        return run

    def manhattan(target: Path) -> str:
        if target.suffix.lower() == ".png":  # one parameter, one file
            with _atomic(target) as tmp:
                res.plot_manhattan(tmp)
            paths = [target]
        else:
            with _atomic_directory(target) as tmp:
                paths = [target / p.name for p in res.plot_manhattan(tmp)]
        return f"Manhattan plots written to {', '.join(str(p) for p in paths)}"

    jobs = [("--json", args.json, file(res.to_json, "\nresults written to")),
            ("--plot", args.plot, file(lambda tmp: res.plot_individuals(tmp, **time),
                                       "individual fits plotted in")),
            ("--vpc", getattr(args, "vpc", None),
             file(lambda tmp: res.plot_vpc(tmp, seed=args.seed, **time),
                  "visual predictive check plotted in")),
            ("--manhattan", getattr(args, "manhattan", None), manhattan),
            ("--marker-effects", getattr(args, "marker_effects", None),
             file(lambda tmp: res.marker_effects.to_csv(tmp, index=False), "marker effects written to"))]
    for flag, value, job in jobs:
        if not value:
            continue
        try:
            print(job(Path(value)))
        except (ValueError, TypeError) as err:
            return _fail(err, lines)
        except OSError as err:
            print(f"pymixnn: error: {flag}: cannot write {value!r}: {err.strerror or err}", file=sys.stderr)
            return 1
    return 0


# ---- messages -------------------------------------------------------------------------------
# Python hints in pymixnn's messages, said the command line's way
_HINTS = (
    (re.compile(r"\bdropna=True\b"), "--dropna"),
    (re.compile(r"\binit=\{[^}]*\}"), "--init NAME=VALUE"),
    (re.compile(r"\bchange init\b"), "change --init"),
    (re.compile(r"\bcovariates=\{[^}]*\}"), "--covariate PARAM=COL"),
    (re.compile(r"\bgenomic=(pymixnn\.)?Genomic\([^)]*\)"), "--markers PATH --genomic-params P[,P]"),
    (re.compile(r"\b(pymixnn\.)?Genomic\(params=[^)]*\)"), "--genomic-params"),
    (re.compile(r"\b(pymixnn\.)?Ordinal\(levels=[^)]*\)"), "--levels L1,L2,..."),
)
_FLAGS = ("random_effects", "n_components", "context", "observation", "link", "levels", "trials",
          "censoring", "likelihood", "error", "omega", "random", "genotype", "time", "max_steps", "lr",
          "seed")
_KEYWORD = re.compile(r"(?<![\w.(])(" + "|".join(_FLAGS) + r")="
                      r"(\[[^\]]*\]|'[^']*'|\"[^\"]*\"|[\w.\-]*)")
_ROW = re.compile(r"\brow (\d+)\b(?! \(0-based\))")


def _keyword(match: re.Match) -> str:
    flag, value = "--" + match.group(1).replace("_", "-"), match.group(2)
    if value.startswith("["):  # a list: the comma-separated form of the flag
        value = ",".join(v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip())
    elif value[:1] in ("'", '"'):
        value = value[1:-1]
    if value:
        return f"{flag} {value}"
    following = match.string[match.end():match.end() + 1]  # e.g. "trials=<column>", "random=, now"
    return flag + (" " if following and not following.isspace() and following not in ",;:.)]" else "")


def _cli_text(text: str, lines: bool) -> str:
    """A message of pymixnn's Python API as the command line's user should read it: on one line,
    with flags for Python keywords and, for a data file, its line numbers for rows."""
    text = " ".join(text.split())
    for pattern, flag in _HINTS:
        text = pattern.sub(flag, text)
    text = _KEYWORD.sub(_keyword, text)
    if lines and "marker" not in text:  # marker files number their rows their own way
        text = _ROW.sub(r"line \1", text)
    return text


def _fail(err: Exception, lines: bool) -> int:
    print(f"pymixnn: error: {_cli_text(str(err), lines)}", file=sys.stderr)
    return 2


def _warning_printer(lines: bool):
    """``warnings.showwarning`` for the command: pymixnn's own warnings as one line in the
    command line's terms; other libraries' warnings as Python shows them."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if str(filename).startswith(str(PACKAGE)):
            print(f"pymixnn: warning: {_cli_text(str(message), lines)}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
