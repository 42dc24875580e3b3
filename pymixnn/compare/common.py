"""What the R bridges share: R access through rpy2 (a fresh R environment per fit, user values as
R objects, control settings checked against the R function's arguments). The translation of a
problem into R's data and of a program's estimates back into an :class:`ExternalFit` is in
:mod:`pymixnn.compare.translation` (its names are re-exported here).

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

import numpy as np

from pymixnn.compare import translation
from pymixnn.compare.translation import *  # noqa: F403 - translation's names, re-exported
from pymixnn.validation import closest

__all__ = [
    "load_robjects",
    "robjects",
    "require",
    "r_available",
    "r_package_available",
    "require_package",
    "one_line",
    "r_eval",
    "r_env",
    "run_r",
    "bind_r_function",
    "check_r_name",
    "setting_kind",
    "r_setting",
    "check_setting_names",
    "r_settings",
    *translation.__all__,
]


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
_INSTALL_R = (
    "R and rpy2 are needed: apt-get install r-base-core r-base-dev r-cran-nlme "
    "r-cran-jsonlite, then pip install 'rpy2==3.5.17' (or pip install 'pymixnn[r]')"
)

# R's syntactic names (?make.names) and its reserved words (?Reserved)
_R_NAME = re.compile(r"((([A-Za-z]|[.][._A-Za-z])[._A-Za-z0-9]*)|[.])")
_R_RESERVED = frozenset(
    {
        "if",
        "else",
        "repeat",
        "while",
        "function",
        "for",
        "in",
        "next",
        "break",
        "TRUE",
        "FALSE",
        "NULL",
        "Inf",
        "NaN",
        "NA",
        "NA_integer_",
        "NA_real_",
        "NA_character_",
        "NA_complex_",
    }
)
_R_KIND_WORDS = {
    "logical": "True or False",
    "numeric": "a number or a list of numbers",
    "character": "a string or a list of strings",
}

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
                "the npde then the saemix source, and set R_LIBS=<library> before starting Python"
            )
        raise RuntimeError(
            f"the R package {package} is not installed: apt-get install "
            f"r-cran-{package.lower()} (or install.packages('{package}') in R)"
        )


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
        raise ValueError(
            f"{what} must be R code giving a function(psi, x), got an R {ro.r['class'](value)[0]}"
        )
    env["f_twin"] = value


# ---- user values as R objects -----------------------------------------------------------------
def check_r_name(name: object, what: str) -> str:
    """``name`` when it is a syntactic R name (letters, digits, '.' and '_', starting with a letter
    or a '.' not followed by a digit; not a reserved word); a one-line ValueError otherwise."""
    if (
        not isinstance(name, str)
        or not _R_NAME.fullmatch(name)
        or name in _R_RESERVED
        or re.fullmatch(r"\.\.(\.|[0-9]+)", name)
    ):
        raise ValueError(
            f"{what} {name!r} is not a syntactic R name (letters, digits, '.' and '_', "
            "starting with a letter, not an R reserved word)"
        )
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
    raise ValueError(
        f"{where} is {value!r}: give a number, a string, True/False or a list of one of these kinds"
    )


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
            raise ValueError(
                f"{what}[{key!r}] must be {_R_KIND_WORDS[expected]} (the default of "
                f"{function}() is {shown[key]}), got {value!r}"
            )
        out[key] = r_setting(kind, value)
    return ro.vectors.ListVector(out)
