"""What the R bridges share: R access through rpy2 (a fresh R environment per fit, user values as
R objects, control settings checked against the R function's arguments), the translation of an
:class:`pymixnn.NLME` problem into the data R reads, and :class:`ExternalFit`, another program's fit
in pymixnn's terms.

rpy2 is imported only when a bridge is called. The R entry points (``_robjects``, ``_require``,
``r_available``, ``r_package_available``) are looked up in the :mod:`pymixnn.compare` namespace at
call time, so that they can be replaced there (the tests do, to run without R).
"""
from __future__ import annotations

import importlib
import json
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pymixnn.model import transforms as tr
from pymixnn.model.named import NAMED_MODELS
from pymixnn.validation import closest

__all__ = ["R_TWINS", "ExternalFit", "Translation", "load_robjects", "robjects", "require",
           "r_available", "r_package_available", "require_package", "one_line", "r_eval", "r_env",
           "run_r", "bind_r_function", "check_r_name", "setting_kind", "r_setting",
           "check_setting_names", "r_settings", "translate", "write_csv", "num", "table_row",
           "external_results"]

# structural functions in R (psi: individuals x parameters, natural scale; x: matrix of x columns),
# kept in the named-model registry
R_TWINS = {name: record.r_function for name, record in NAMED_MODELS.items() if record.r_function}


def _package():
    """The pymixnn.compare package namespace (where the R entry points are looked up)."""
    return importlib.import_module("pymixnn.compare")


def robjects():
    """rpy2's ``robjects`` (``pymixnn.compare._robjects``); a RuntimeError saying what to install."""
    return _package()._robjects()


def require(package: str) -> None:
    """R and the R package ``package`` (``pymixnn.compare._require``), or a RuntimeError."""
    _package()._require(package)


# ---- R access ---------------------------------------------------------------------------------
_INSTALL_R = ("R and rpy2 are needed: apt-get install r-base-core r-base-dev r-cran-nlme "
              "r-cran-jsonlite, then pip install 'rpy2==3.5.17' (or pip install 'pymixnn[r]')")

# R's syntactic names (?make.names) and its reserved words (?Reserved)
_R_NAME = re.compile(r"((([A-Za-z]|[.][._A-Za-z])[._A-Za-z0-9]*)|[.])")
_R_RESERVED = frozenset({"if", "else", "repeat", "while", "function", "for", "in", "next", "break",
                         "TRUE", "FALSE", "NULL", "Inf", "NaN", "NA", "NA_integer_", "NA_real_",
                         "NA_character_", "NA_complex_"})
_R_KIND_WORDS = {"logical": "True or False", "numeric": "a number or a list of numbers",
                 "character": "a string or a list of strings"}

# fixed R code (no user text): evaluate `code` in `env`, returning list(ok, value or error message)
_R_RUN = """function(code, env) tryCatch(list(ok = TRUE, value = eval(parse(text = code), envir = env)),
                                    error = function(e) list(ok = FALSE, value = conditionMessage(e)))"""
_R_HAS_PACKAGE = "function(name) isTRUE(suppressWarnings(requireNamespace(name, quietly = TRUE)))"
# the arguments of a control function, the kind of each default and the default as R prints it
_R_CONTROL_SPEC = """function(package, name) {
  f <- getExportedValue(package, name)
  args <- setdiff(names(formals(f)), "...")
  d <- f()
  kind <- function(v) if (is.null(v) || (is.logical(v) && all(is.na(v)))) "any" else
    if (is.logical(v)) "logical" else if (is.numeric(v)) "numeric" else
    if (is.character(v)) "character" else "any"
  list(args = args, kind = unname(vapply(args, function(a) kind(d[[a]]), "")),
       shown = unname(vapply(args, function(a) paste(deparse(d[[a]]), collapse = " "), "")))
}"""


# ---- R availability ---------------------------------------------------------------------------
def load_robjects():
    try:
        import rpy2.robjects as ro  # noqa: F401
    except Exception as err:  # ImportError, or rpy2 failing to find / load libR
        raise RuntimeError(f"{_INSTALL_R} ({type(err).__name__}: {err})") from None
    return ro


def r_available() -> bool:
    """True when rpy2 can start R."""
    try:
        robjects()
        return True
    except RuntimeError:
        return False


def r_package_available(name: str) -> bool:
    """True when R can load package ``name`` (on R's library path, including R_LIBS)."""
    if not _package().r_available():
        return False
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    ro = robjects()
    return bool(ro.r(_R_HAS_PACKAGE)(name)[0])


def require_package(package: str) -> None:
    robjects()
    if not _package().r_package_available(package):
        if package == "saemix":
            raise RuntimeError(
                "the R package saemix is not installed: it is on CRAN only (with its dependency "
                "npde). In R: install.packages('saemix'); without CRAN, R CMD INSTALL -l <library> "
                "the npde then the saemix source, and set R_LIBS=<library> before starting Python")
        raise RuntimeError(f"the R package {package} is not installed: apt-get install "
                           f"r-cran-{package.lower()} (or install.packages('{package}') in R)")


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def r_eval(code: str, env):
    """Evaluate R ``code`` in the R environment ``env``: (True, value) or (False, R's message)."""
    ro = robjects()
    out = ro.r(_R_RUN)(code, env)
    return bool(out.rx2("ok")[0]), out.rx2("value")


def r_env(values: Mapping[str, object]):
    """A fresh R environment (child of R's global one, which is left unchanged) holding
    ``values``, R objects made by rpy2: how every user value reaches R, never as R source."""
    ro = robjects()
    env = ro.r["new.env"](parent=ro.globalenv)
    for name, value in values.items():
        env[name] = value
    return env


def run_r(code: str, env) -> dict:
    """Run the fixed R ``code`` in ``env``, where it leaves a JSON string in ``.pm_out``; return
    it parsed. ``code`` holds no user text: it reads the user's values from ``env``."""
    ok, value = r_eval(code, env)
    if not ok:
        raise RuntimeError(f"the R fit failed: {one_line(value[0])}")
    return json.loads(str(env[".pm_out"][0]))


def bind_r_function(source: str, env, what: str) -> None:
    """Evaluate ``source`` (an R twin, or the user's ``r_function``: R code by design) in ``env``
    and bind the function it gives to ``f_twin`` there."""
    ro = robjects()
    ok, value = r_eval(source, env)
    if not ok:
        raise ValueError(f"{what} is not R code that evaluates: {one_line(value[0])}")
    if not ro.r["is.function"](value)[0]:
        raise ValueError(f"{what} must be R code giving a function(psi, x), got an R "
                         f"{ro.r['class'](value)[0]}")
    env["f_twin"] = value


# ---- user values as R objects -----------------------------------------------------------------
def check_r_name(name: object, what: str) -> str:
    """``name`` when it is a syntactic R name (letters, digits, '.' and '_', starting with a letter
    or a '.' not followed by a digit; not a reserved word); a one-line ValueError otherwise."""
    if (not isinstance(name, str) or not _R_NAME.fullmatch(name) or name in _R_RESERVED
            or re.fullmatch(r"\.\.(\.|[0-9]+)", name)):
        raise ValueError(f"{what} {name!r} is not a syntactic R name (letters, digits, '.' and '_', "
                         "starting with a letter, not an R reserved word)")
    return name


def setting_kind(where: str, value: object) -> str:
    """The R kind a Python setting value becomes: "logical", "numeric", "character", or "any"
    for None (R's NULL); a one-line ValueError for anything else."""
    if value is None:
        return "any"
    items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
    if items and all(isinstance(v, (bool, np.bool_)) for v in items):
        return "logical"
    if items and all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in items):
        return "numeric"
    if items and all(isinstance(v, str) for v in items):
        return "character"
    raise ValueError(f"{where} is {value!r}: give a number, a string, True/False or a list of one "
                     "of these kinds")


def r_setting(kind: str, value: object):
    """A Python setting value of ``kind`` (see :func:`_setting_kind`) as an R vector."""
    ro = robjects()
    if value is None:
        return ro.NULL
    items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
    if kind == "logical":
        return ro.BoolVector([bool(v) for v in items])
    if kind == "numeric":
        return ro.FloatVector([float(v) for v in items])
    return ro.StrVector([str(v) for v in items])


def check_setting_names(settings: Mapping[str, object], what: str, function: str) -> None:
    """Before R is started: every key a syntactic R name (as every argument of ``function`` is)
    and every value of a kind R can take."""
    for key, value in settings.items():
        if not isinstance(key, str) or not _R_NAME.fullmatch(key):
            raise ValueError(f"{what} key {key!r} is not an argument of {function}()")
        setting_kind(f"{what}[{key!r}]", value)


def r_settings(settings: Mapping[str, object], what: str, package: str, function: str):
    """``settings`` as a named R list for ``package::function`` (saemixControl, nlmeControl): each
    key one of its arguments, each value of the kind of its default; otherwise a one-line
    ValueError naming the key (and the closest argument)."""
    ro = robjects()
    spec = ro.r(_R_CONTROL_SPEC)(package, function)
    args = [str(a) for a in spec.rx2("args")]
    kinds = dict(zip(args, (str(k) for k in spec.rx2("kind"))))
    shown = dict(zip(args, (str(k) for k in spec.rx2("shown"))))
    out = {}
    for key, value in settings.items():
        if not isinstance(key, str) or key not in kinds:
            close = closest(key, args)
            hint = f"did you mean {close!r}?" if close else f"its arguments are {args}"
            raise ValueError(f"{what} key {key!r} is not an argument of {function}(); {hint}")
        kind = setting_kind(f"{what}[{key!r}]", value)
        expected = kinds[key]
        if expected != "any" and kind not in ("any", expected):
            raise ValueError(f"{what}[{key!r}] must be {_R_KIND_WORDS[expected]} (the default of "
                             f"{function}() is {shown[key]}), got {value!r}")
        out[key] = r_setting(kind, value)
    return ro.vectors.ListVector(out)


# ---- translation ------------------------------------------------------------------------------

# ---- translation ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Translation:
    """A resolved problem as R reads it: the R twin of the structural function and the data frame
    (columns id (1..N), x1.., y, then cov1.. for the covariate design's columns)."""

    twin: str
    frame: pd.DataFrame


def translate(problem, r_function: str | None) -> Translation:
    """The R view of a :class:`pymixnn.NLME` problem; ``r_function`` (R source) for a custom model."""
    model, data, design = problem.model, problem.data, problem.design
    if r_function is not None and not isinstance(r_function, str):
        raise TypeError(f"r_function must be R code as a string, got {type(r_function).__name__}")
    twin = r_function or R_TWINS.get(model.name or "")
    if twin is None:
        raise ValueError(f"model {model.name or 'custom'!r} has no R twin: pass r_function="
                         "'function(psi, x) ...' (psi: individuals x parameters on the natural "
                         "scale, x: the matrix of x columns)")
    frame = pd.DataFrame({"id": np.asarray(data.index, dtype=np.int64) + 1})
    for j in range(len(data.x_cols)):
        frame[f"x{j + 1}"] = data.x[:, j]
    frame["y"] = data.y
    for j in range(design.n_effects):
        frame[f"cov{j + 1}"] = design.matrix[data.index, j]
    return Translation(twin=twin, frame=frame)


def write_csv(frame: pd.DataFrame, tmp: str) -> str:
    path = str(Path(tmp) / "data.csv")
    frame.to_csv(path, index=False, float_format="%.17g")
    return path


def num(v) -> float:
    """A JSON number from R, NaN for null."""
    return float("nan") if v is None else float(v)


def table_row(name, kind, param, est, se, scale) -> dict:
    """A row of the parameter table: the estimate and SE on the natural scale, and carried to the
    transformed scale by the delta method."""
    est, se = float(est), float(se)
    est_t, se_t = tr.delta_method(scale, est, se)
    return dict(name=name, kind=kind, parameter=param, estimate=est, se=se,
                estimate_transformed=est_t, se_transformed=se_t, scale=scale)


# ---- another program's fit --------------------------------------------------------------------
@dataclass(frozen=True)
class ExternalFit:
    """A fit by another program (saemix, nlme) in pymixnn's terms: the parameter table (natural and
    transformed scales, SEs), the population parameters (``mu`` transformed scale, ``beta``
    covariate effects, ``omega``, residual ``error``), the individual parameters (``psi_map``
    natural scale, ``eta_map`` random effects), the log-likelihood and how it was computed. It
    has no pymixnn parameter vector and no ELBO trace."""

    engine: str
    table: list[dict]
    mu: np.ndarray
    beta: np.ndarray
    omega: np.ndarray
    error: dict[str, float]
    psi_map: np.ndarray
    eta_map: np.ndarray
    loglik: float
    loglik_method: str
    seconds: float
    se_method: str
    warnings: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def cov_params(self) -> np.ndarray:
        """Covariance of the table's transformed estimates (diagonal: the program's SEs)."""
        se_t = np.array([r["se_transformed"] for r in self.table])
        return np.diag(se_t**2)


def external_fit(problem, rows, omega, error, psi_map, loglik, method, seconds, *, engine, se_method,
                 settings, beta, mu_natural, warnings=None) -> ExternalFit:
    """The ExternalFit of a program's estimates on ``problem`` (transformed-scale population
    parameters and random effects derived from its natural-scale ones)."""
    import torch

    model, data, design = problem.model, problem.data, problem.design
    mu = np.array([float(tr.inverse(model.transforms[p], torch.tensor(mu_natural[p][0],
                                                                        dtype=torch.float64)))
                   for p in model.parameters])
    phi_pop = np.tile(mu, (data.n_individuals, 1))
    for j, p in enumerate(design.parameters):
        phi_pop[:, model.parameters.index(p)] += design.matrix[:, j] * beta[j]
    phi_map = np.column_stack([
        tr.inverse(model.transforms[p], torch.as_tensor(psi_map[:, k], dtype=torch.float64)).numpy()
        for k, p in enumerate(model.parameters)])
    ri = [model.parameters.index(p) for p in model.random]
    return ExternalFit(engine=engine, table=list(rows), mu=mu, beta=np.asarray(beta, float),
                       omega=np.asarray(omega, float), error=dict(error), psi_map=psi_map,
                       eta_map=(phi_map - phi_pop)[:, ri], loglik=float(loglik), loglik_method=method,
                       seconds=float(seconds), se_method=se_method, warnings=tuple(warnings or ()),
                       settings=dict(settings))


def external_results(problem, ext: ExternalFit):
    """A :class:`pymixnn.Results` holding ``ext`` (also as ``res.external``). Results is built
    from an inference record today: the ExternalFit's values fill it, with no optimizer steps, an
    empty ELBO trace and the table's transformed estimates where a fit has its parameter vector."""
    from pymixnn.inference import Estimation
    from pymixnn.model.observation import to_dict as observation_to_dict
    from pymixnn.model.random_effects import Gaussian
    from pymixnn.model.random_effects import to_dict as law_to_dict
    from pymixnn.results.results import Results

    model, data = problem.model, problem.data
    n, d, P = data.n_individuals, len(model.random), len(model.parameters)
    est = Estimation(
        table=ext.table, theta=np.array([r["estimate_transformed"] for r in ext.table]),
        theta_cov=ext.cov_params, mu=ext.mu, beta=ext.beta, omega=ext.omega, error=ext.error,
        eta_map=ext.eta_map, eta_map_cov=np.zeros((n, d, d)), eta_mean=ext.eta_map, psi_mean=ext.psi_map,
        psi_sd=np.full((n, P), np.nan), loglik=ext.loglik, loglik_se=float("nan"),
        loglik_individual=np.full(n, np.nan), is_samples=int(ext.settings.get("nmc_is", 0)),
        is_samples_fisher=0, elbo_trace=np.zeros(0), steps=0, converged=True, refine_rounds=0,
        seconds={"total": ext.seconds}, device="R", dtype="float64", threads=1,
        se_method=ext.se_method, warnings=list(ext.warnings),
        law={"spec": law_to_dict(Gaussian()), "engine": ext.engine}, loglik_method=ext.loglik_method)
    settings = dict(ext.settings, engine=ext.engine, observation=observation_to_dict(problem.observation),
                    refine=False)
    res = Results(model=model, data=data, design=problem.design, estimation=est, settings=settings,
                  observation=problem.observation)
    res.external = ext
    return res
