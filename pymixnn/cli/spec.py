"""The command line as a fit: the checked arguments of ``pymixnn fit`` (or ``demo``) turned into
the data and the keyword arguments of :func:`pymixnn.fit`, every error an :class:`InputError`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pymixnn.cli.files import check_input, check_outputs, read_csv
from pymixnn.cli.messages import InputError
from pymixnn.cli.nonmem import compartment_model, is_compartment, read_events
from pymixnn.validation import did_you_mean

if TYPE_CHECKING:
    from pymixnn.model.observation import Observation
    from pymixnn.model.spec import Model

__all__ = [
    "DEMO",
    "prepare",
    "pairs",
    "names",
    "integer",
    "check_model",
    "check_parameter",
    "observation_of",
    "level_values",
]

DEMO = dict(
    model="onecpt_oral",
    id="Id",
    x=["Dose", "Time"],
    y="Concentration",
    covariates={"V": ["Weight"]},
    init={"ka": 1.0, "V": 20.0, "CL": 0.5},
)


def pairs(items: list[str] | None, flag: str, form: str) -> list[tuple[str, str]]:
    """``NAME=VALUE`` arguments of a repeatable flag as (name, value) pairs."""
    out = []
    for item in items or []:
        if "=" not in item:
            raise InputError(f"{flag} must be {form}, got {item!r}")
        key, value = item.split("=", 1)
        out.append((key.strip(), value.strip()))
    return out


def names(text: str | None) -> list[str]:
    """A comma-separated list of names (columns, parameters); [] for None."""
    return [c.strip() for c in text.split(",")] if text else []


def integer(value: str, flag: str) -> int:
    """``value`` as an integer, else an InputError for ``flag``."""
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{flag} {value!r}: give an integer or 'auto'") from None


def prepare(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Check the command line, its files and its output paths, then read the data: every error
    here is an InputError (one line), and nothing has been fitted yet. Returns (data, fit kwargs)."""
    import pymixnn

    check_outputs(args)
    steps = {k: getattr(args, k) for k in ("max_steps", "lr") if getattr(args, k) is not None}
    if args.command == "demo":
        return pymixnn.datasets.load("theo"), {**DEMO, **steps}
    model = check_model(args)
    path = check_input(Path(args.data), "data file")
    for flag, value in (("--markers", args.markers), ("--map", args.map)):
        if value:
            check_input(Path(value), f"{flag} file")
    if args.markers and args.markers.lower().endswith(".bed"):  # PLINK: the .bim and .fam beside it
        for sibling in (".bim", ".fam"):
            check_input(Path(args.markers).with_suffix(sibling), "--markers: PLINK file")
    covariates: dict[str, list[str]] = {}
    for param, col in pairs(args.covariate, "--covariate", "PARAM=COL"):
        covariates.setdefault(param, []).append(col)
    init = {}
    for name, value in pairs(args.init, "--init", "NAME=VALUE"):
        try:
            init[name] = float(value)
        except ValueError:
            raise InputError(f"--init {name}={value!r}: the value must be a number") from None
    for flag, given in (
        ("--init", init),
        ("--covariate", covariates),
        ("--random", random_names(args.random)),
        ("--genomic-params", names(args.genomic_params)),
    ):
        for name in given:
            check_parameter(model, name, flag)
    df = _read_shard(path, args) if getattr(args, "shards", False) else read_csv(path, args.encoding)
    spec = dict(
        model=model if ".py:" in args.model else args.model,  # FILE.py:NAME: the Model itself
        id=args.id,
        x=names(args.x),
        y=args.y,
        covariates=covariates or None,
        init=init or None,
        **steps,
    )
    if args.nonmem:  # the event table as Data: its columns are named here, not by id/x/y
        used = (
            [c for cols in covariates.values() for c in cols] + names(args.context) + names(args.membership)
        )
        df = read_events(df, args, list(dict.fromkeys(used)))
        spec.update(model=model, id=None, x=None, y=None)
        if args.time is not None:  # the TIME column as the data name it (matched case-insensitively)
            args.time = df.x_cols[0]
    if args.random:
        spec["random"] = random_names(args.random)
    spec.update({k: v for k, v in dict(error=args.error, omega=args.omega).items() if v})
    spec["dropna"] = args.dropna
    spec["random_effects"] = args.random_effects
    if args.n_components is not None:
        k = args.n_components
        spec["n_components"] = k if k == "auto" else integer(k, "--n-components")
    if args.context:
        spec["context"] = names(args.context)
    latent = dict(
        n_classes=args.n_classes, on=args.class_on, membership=args.membership, within=args.class_within
    )
    if args.random_effects == "latent_class":
        spec["random_effects"] = latent_class_spec(args)
    elif any(v is not None for v in latent.values()):
        names_of = {"on": "--class-on", "within": "--class-within"}
        flags = [names_of.get(k, f"--{k.replace('_', '-')}") for k, v in latent.items() if v]
        raise InputError(f"{', '.join(flags)} apply to --random-effects latent_class")
    spec["observation"] = observation_of(args.observation, args.link, args.levels)
    spec["likelihood"] = args.likelihood
    spec["local"] = args.local
    if args.gear != "auto":
        spec["gear"] = args.gear
    if getattr(args, "distributed", False):
        spec["distributed"] = True
    if getattr(args, "shards", False):
        spec["shards"] = True
    if args.refine_steps is not None:
        if not args.refine_steps.isdigit():
            raise InputError(f"--refine-steps {args.refine_steps!r}: give a non-negative integer")
        spec["refine_steps"] = int(args.refine_steps)
    for key in ("trials", "censoring"):
        if getattr(args, key):
            spec[key] = getattr(args, key)
    if args.markers or args.genotype or args.genomic_params:
        if not (args.markers and args.genotype and args.genomic_params):
            raise InputError("marker effects need --markers, --genotype and --genomic-params")
        spec["genotype"] = args.genotype
        spec["genomic"] = pymixnn.Genomic(
            args.markers, params=names(args.genomic_params), prior=args.prior, map=args.map
        )
    if getattr(args, "grouping_levels", None):
        spec["levels"] = [_level(text, model) for text in args.grouping_levels]
    if getattr(args, "spatial", None):
        spec["spatial"] = _spatial(args.spatial, model)
    if not args.nonmem and args.time is not None and args.time not in df.columns:
        raise InputError(
            f"--time {args.time!r} is not a column of {str(path)!r}; its columns are {list(df.columns)}"
        )
    return df, spec


# result files of every individual or observation: a process of a fit from shards holds its own
SHARD_REFUSED = (
    "plot",
    "vpc",
    "pcvpc",
    "gof",
    "npde",
    "cwres",
    "classes",
    "eta_covariates",
    "marker_effects",
)


def _read_shard(path: Path, args: argparse.Namespace):
    """``--shards``: this process's individuals' rows of the data file (pymixnn.read_shard, torchrun's
    RANK and WORLD_SIZE), indexed by line number in the file as read_csv's (the header is line 1)."""
    import pymixnn

    given = [f"--{k.replace('_', '-')}" for k in SHARD_REFUSED if getattr(args, k, None)]
    refused = [
        (not args.distributed, "--shards is a data-parallel fit's: add --distributed (under torchrun)"),
        (args.nonmem or args.markers, "--shards reads a plain long table: not with --nonmem or --markers"),
        (not args.id, "--shards needs --id (the column that assigns rows to processes)"),
        (
            bool(given),
            f"{', '.join(given)} with --shards: each process holds its own individuals only; "
            "write the population results with --json",
        ),
    ]
    for bad, message in refused:
        if bad:
            raise InputError(message)
    df = pymixnn.read_shard(path, args.id, by=args.shard_by, format="parquet" if _parquet(path) else "csv")
    df.index = df.index + 2
    return df


def _parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _level(text: str, model: Model) -> Any:
    """``--level COL:P[,P][:full]`` as a pymixnn.Level; an error naming the flag's value."""
    import pymixnn

    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1] or (len(parts) == 3 and parts[2] != "full"):
        raise InputError(f"--level {text!r}: give COL:P[,P] or COL:P,P:full, e.g. --level plot:A")
    for name in names(parts[1]):
        check_parameter(model, name, "--level")
    return pymixnn.Level(parts[0], names(parts[1]), omega="full" if len(parts) == 3 else "diagonal")


def random_names(text: str | None) -> list[str]:
    """``--random P[,P]``, or ``--random none``: a model without individual random effects
    (nonlinear regression, or levels / a spatial field carrying the random variation)."""
    return [] if text is not None and text.strip().lower() == "none" else names(text)


def _spatial(text: str, model: Model) -> Any:
    """``--spatial P[,P]:COL,COL[:KIND]`` as a pymixnn.Spatial (KIND a gp's kernel, exponential,
    gaussian or spherical, or ar1xar1, or matern / matern<nu> e.g. matern2.5); an error naming the value."""
    import pymixnn

    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise InputError(f"--spatial {text!r}: give P[,P]:COL,COL[:KIND], e.g. --spatial A:Row,Col")
    for name in names(parts[0]):
        check_parameter(model, name, "--spatial")
    kind = parts[2] if len(parts) == 3 else "exponential"
    if kind == "ar1xar1":
        return pymixnn.Spatial(names(parts[0]), names(parts[1]), kind="ar1xar1")
    if kind.startswith("matern"):
        try:
            nu = float(kind[len("matern") :] or 1.5)
        except ValueError:
            raise InputError(
                f"--spatial {text!r}: KIND matern<nu> has nu 0.5, 1.5 or 2.5, e.g. matern2.5"
            ) from None
        return pymixnn.Spatial(names(parts[0]), names(parts[1]), kind="matern", nu=nu)
    return pymixnn.Spatial(names(parts[0]), names(parts[1]), kernel=kind)


def check_model(args: argparse.Namespace) -> Model:
    """The named model of ``--model``; an unknown name is an error listing the valid ones. A
    compartment model (with its ``--dosing`` parameters) needs ``--nonmem`` and ``--nonmem`` one."""
    from pymixnn.model.dynamics.compartments import COMPARTMENT_MODELS
    from pymixnn.model.named import NAMED_MODELS, named

    nonmem = getattr(args, "nonmem", False)
    if ".py:" in args.model:  # a model written in Python: FILE.py:NAME
        return model_from_file(args.model)
    if is_compartment(args.model):
        return compartment_model(args)
    if nonmem:  # NONMEM data: the compartment models are the candidates
        hint = did_you_mean(args.model, COMPARTMENT_MODELS, cutoff=0.5)
        raise InputError(
            f"--nonmem: model {args.model!r} is not a compartment model{hint}; with NONMEM event data "
            f"use one of {sorted(COMPARTMENT_MODELS)}"
        )
    if args.model not in NAMED_MODELS:
        hint = did_you_mean(args.model, NAMED_MODELS, cutoff=0.5)
        raise InputError(
            f"--model {args.model!r} is not a named model{hint}; use one of {sorted(NAMED_MODELS)}"
        )
    for flag in ("--column", "--time-varying", "--dosing"):
        if getattr(args, flag[2:].replace("-", "_"), None):
            raise InputError(f"{flag} applies to NONMEM data: add --nonmem and a compartment model")
    return named(args.model)


def model_from_file(text: str) -> Model:
    """``--model FILE.py:NAME``: the pymixnn.Model named NAME in the Python file FILE.py (an
    ODEModel, a model with neural terms, any model written in Python)."""
    import importlib.util
    from pathlib import Path

    from pymixnn.model.spec import Model

    path, _, name = text.rpartition(":")
    if not Path(path).is_file():
        raise InputError(f"--model {text!r}: no file {path!r}")
    spec = importlib.util.spec_from_file_location(f"pymixnn_user_model_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's file: say which, and what it raised
        raise InputError(f"--model {text!r}: running {path!r} raised {type(err).__name__}: {err}") from err
    model = getattr(module, name, None)
    if not isinstance(model, Model):
        raise InputError(
            f"--model {text!r}: {path!r} has no pymixnn.Model named {name!r}"
            + (f" ({name} is a {type(model).__name__})" if model is not None else "")
        )
    return model


def check_parameter(model: Model, name: str, flag: str) -> None:
    """An InputError unless ``name`` is a parameter of ``model``."""
    if name not in model.parameters:
        raise InputError(
            f"{flag} {name}: model {model.name!r} has no parameter {name!r}"
            f"{did_you_mean(name, model.parameters, cutoff=0.5)}; its parameters are "
            f"{list(model.parameters)}"
        )


def observation_of(name: str, link: str | None, levels: str | None) -> str | Observation:
    """The observation model of ``--observation``, ``--link`` and ``--levels``: the family's name
    when neither of the others is given."""
    from pymixnn.model.observation import FAMILIES, Ordinal, observation

    if levels is not None:
        if name != "ordinal":
            raise InputError(f"--levels applies to --observation ordinal, not {name!r}")
        if link is not None:
            raise InputError("--link: observation 'ordinal' has no link to choose")
        return observation(Ordinal(levels=level_values(names(levels))))
    if link is None:
        return name
    cls = FAMILIES[name]
    if not cls.links:
        raise InputError(f"--link: observation {name!r} has no link to choose")
    return observation(cls(link=link))


def level_values(tokens: list[str]) -> list[Any]:
    """Ordinal levels as the CSV reader types them: integers, else numbers, else strings."""
    for kind in (int, float):
        try:
            return [kind(t) for t in tokens]
        except ValueError:
            pass
    return tokens


def latent_class_spec(args):
    """``--random-effects latent_class`` with ``--n-classes``, ``--class-on``, ``--membership``
    (and ``--n-components`` read as ``--n-classes``)."""
    from pymixnn.model.random_effects import LatentClass

    k = args.n_classes if args.n_classes is not None else args.n_components
    k = 2 if k is None else (k if k == "auto" else integer(k, "--n-classes"))
    try:
        return LatentClass(
            n_classes=k,
            on=names(args.class_on) if args.class_on else None,
            membership=names(args.membership) if args.membership else None,
            within=args.class_within or "gaussian",
        )
    except ValueError as err:
        raise InputError(str(err)) from None
