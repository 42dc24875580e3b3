"""Cross-checks with the methods users trust: the same data and model fitted by saemix (SAEM) and
nlme (Lindstrom-Bates linearisation) in R, through rpy2, returned as a :class:`pymixnn.Results`.

>>> import pymixnn
>>> theo = pymixnn.datasets.load("theo")
>>> kw = dict(id="Id", x=["Dose", "Time"], y="Concentration", covariates={"V": ["Weight"]})
>>> ours = pymixnn.fit(theo, "onecpt_oral", **kw, seed=1)                 # doctest: +SKIP
>>> ref = pymixnn.compare.saemix(theo, "onecpt_oral", **kw, seed=632545)  # doctest: +SKIP
>>> pymixnn.compare_fits(ours, ref, names=["pymixnn", "saemix"])        # doctest: +SKIP

What is translated: the named models (each has an R twin of its structural function, checked
against the torch one in the tests; a custom model passes ``r_function="function(psi, x) ..."``,
psi an individuals x parameters matrix on the natural scale and x the matrix of x columns; that
text is evaluated as R code, so never pass text from an untrusted source), the
parameter transforms (saemix ``transform.par``; in nlme the model is written in the transformed
parameters), the covariate model (numeric covariates, and categorical ones as the indicators
pymixnn uses), which parameters have random effects, a diagonal or full omega, and the error
model (saemix: constant, proportional, combined, exponential; nlme: constant, proportional by
``varPower(fixed = 1)``, exponential by fitting log y). saemix also gets the Poisson and
bernoulli families (``modeltype = "likelihood"``).

The R side runs inside this Python process (rpy2's embedded R), in a fresh R environment (R's
global environment is left alone); the data go to R as a CSV and the results come back as JSON.
Apart from ``r_function``, nothing the user passes is pasted into R code: values (the CSV's path,
parameter names, ``options``/``control`` settings) go to R as R objects; setting names are checked
against the arguments of ``saemixControl()`` / ``nlmeControl()`` and parameter names that saemix
uses as column names against R's rule for syntactic names. ``import pymixnn`` never needs R: these
functions raise one error saying what to install when rpy2, R, saemix or nlme is missing.
"""
from __future__ import annotations

import json
import math
import numbers
import re
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from pymixnn.validation import closest

__all__ = ["saemix", "nlme", "R_TWINS", "r_available", "r_package_available"]

# structural functions in R: psi (individuals x parameters, natural scale), x (matrix of x columns)
R_TWINS = {
    "logistic": "function(psi, x) psi[, 1] / (1 + exp(-(x[, 1] - psi[, 2]) / psi[, 3]))",
    "gompertz": "function(psi, x) psi[, 1] * exp(-exp(-pmax((x[, 1] - psi[, 2]) / psi[, 3], -50)))",
    "asymptotic": "function(psi, x) psi[, 1] + (psi[, 2] - psi[, 1]) * exp(-exp(psi[, 3]) * x[, 1])",
    "exp_growth": "function(psi, x) psi[, 1] * (1 - psi[, 2] * exp(-psi[, 3] * x[, 1]))",
    "emax": "function(psi, x) psi[, 1] + psi[, 2] * x[, 1] / (psi[, 3] + x[, 1])",
    "sigmoid_emax": ("function(psi, x) { d <- x[, 1]^psi[, 4]; "
                     "psi[, 1] + psi[, 2] * d / (psi[, 3]^psi[, 4] + d) }"),
    "linear": "function(psi, x) psi[, 1] + psi[, 2] * x[, 1]",
    "onecpt_oral": ("function(psi, x) { ka <- psi[, 1]; V <- psi[, 2]; k <- psi[, 3] / V; "
                    "x[, 1] * ka / (V * (ka - k)) * (exp(-k * x[, 2]) - exp(-ka * x[, 2])) }"),
}

_SAEMIX_TRANSFORM = {"identity": 0, "log": 1, "probit": 2, "logit": 3}
_R_INVERSE = {"identity": "{}", "log": "exp({})", "logit": "plogis({})", "probit": "pnorm({})"}
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
def _robjects():
    try:
        import rpy2.robjects as ro  # noqa: F401
    except Exception as err:  # ImportError, or rpy2 failing to find / load libR
        raise RuntimeError(f"{_INSTALL_R} ({type(err).__name__}: {err})") from None
    return ro


def r_available() -> bool:
    """True when rpy2 can start R."""
    try:
        _robjects()
        return True
    except RuntimeError:
        return False


def r_package_available(name: str) -> bool:
    """True when R can load package ``name`` (on R's library path, including R_LIBS)."""
    if not r_available():
        return False
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    ro = _robjects()
    return bool(ro.r(_R_HAS_PACKAGE)(name)[0])


def _require(package: str) -> None:
    _robjects()
    if not r_package_available(package):
        if package == "saemix":
            raise RuntimeError(
                "the R package saemix is not installed: it is on CRAN only (with its dependency "
                "npde). In R: install.packages('saemix'); without CRAN, R CMD INSTALL -l <library> "
                "the npde then the saemix source, and set R_LIBS=<library> before starting Python")
        raise RuntimeError(f"the R package {package} is not installed: apt-get install "
                           f"r-cran-{package.lower()} (or install.packages('{package}') in R)")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _r_eval(code: str, env):
    """Evaluate R ``code`` in the R environment ``env``: (True, value) or (False, R's message)."""
    ro = _robjects()
    out = ro.r(_R_RUN)(code, env)
    return bool(out.rx2("ok")[0]), out.rx2("value")


def _r_env(values: Mapping[str, object]):
    """A fresh R environment (child of R's global one, which is left unchanged) holding
    ``values``, R objects made by rpy2: how every user value reaches R, never as R source."""
    ro = _robjects()
    env = ro.r["new.env"](parent=ro.globalenv)
    for name, value in values.items():
        env[name] = value
    return env


def _run_r(code: str, env) -> dict:
    """Run the fixed R ``code`` in ``env``, where it leaves a JSON string in ``.pm_out``; return
    it parsed. ``code`` holds no user text: it reads the user's values from ``env``."""
    ok, value = _r_eval(code, env)
    if not ok:
        raise RuntimeError(f"the R fit failed: {_one_line(value[0])}")
    return json.loads(str(env[".pm_out"][0]))


def _r_function(source: str, env, what: str) -> None:
    """Evaluate ``source`` (an R twin, or the user's ``r_function``: R code by design) in ``env``
    and bind the function it gives to ``f_twin`` there."""
    ro = _robjects()
    ok, value = _r_eval(source, env)
    if not ok:
        raise ValueError(f"{what} is not R code that evaluates: {_one_line(value[0])}")
    if not ro.r["is.function"](value)[0]:
        raise ValueError(f"{what} must be R code giving a function(psi, x), got an R "
                         f"{ro.r['class'](value)[0]}")
    env["f_twin"] = value


# ---- user values as R objects -----------------------------------------------------------------
def _check_r_name(name: object, what: str) -> str:
    """``name`` when it is a syntactic R name (letters, digits, '.' and '_', starting with a letter
    or a '.' not followed by a digit; not a reserved word); a one-line ValueError otherwise."""
    if (not isinstance(name, str) or not _R_NAME.fullmatch(name) or name in _R_RESERVED
            or re.fullmatch(r"\.\.(\.|[0-9]+)", name)):
        raise ValueError(f"{what} {name!r} is not a syntactic R name (letters, digits, '.' and '_', "
                         "starting with a letter, not an R reserved word)")
    return name


def _setting_kind(where: str, value: object) -> str:
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


def _r_setting(kind: str, value: object):
    """A Python setting value of ``kind`` (see :func:`_setting_kind`) as an R vector."""
    ro = _robjects()
    if value is None:
        return ro.NULL
    items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
    if kind == "logical":
        return ro.BoolVector([bool(v) for v in items])
    if kind == "numeric":
        return ro.FloatVector([float(v) for v in items])
    return ro.StrVector([str(v) for v in items])


def _check_setting_names(settings: Mapping[str, object], what: str, function: str) -> None:
    """Before R is started: every key a syntactic R name (as every argument of ``function`` is)
    and every value of a kind R can take."""
    for key, value in settings.items():
        if not isinstance(key, str) or not _R_NAME.fullmatch(key):
            raise ValueError(f"{what} key {key!r} is not an argument of {function}()")
        _setting_kind(f"{what}[{key!r}]", value)


def _r_settings(settings: Mapping[str, object], what: str, package: str, function: str):
    """``settings`` as a named R list for ``package::function`` (saemixControl, nlmeControl): each
    key one of its arguments, each value of the kind of its default; otherwise a one-line
    ValueError naming the key (and the closest argument)."""
    ro = _robjects()
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
        kind = _setting_kind(f"{what}[{key!r}]", value)
        expected = kinds[key]
        if expected != "any" and kind not in ("any", expected):
            raise ValueError(f"{what}[{key!r}] must be {_R_KIND_WORDS[expected]} (the default of "
                             f"{function}() is {shown[key]}), got {value!r}")
        out[key] = _r_setting(kind, value)
    return ro.vectors.ListVector(out)


# ---- translation ------------------------------------------------------------------------------
def _prepare(data, model, id, x, y, covariates, random, omega, error, transforms, init, r_function,
             observation="gaussian"):
    """The pymixnn view of the problem (Model, Data, design, start) and the R pieces."""
    from pymixnn.model.covariates import CovariateDesign, normalize_mapping
    from pymixnn.fitting import _as_data, _initial_values
    from pymixnn.model.named import resolve
    from pymixnn.model.observation import observation as resolve_observation

    mapping = normalize_mapping(covariates)
    model = resolve(model)
    overrides = {k: v for k, v in dict(error=error, omega=omega, random=random,
                                       transforms=transforms).items() if v is not None}
    if overrides:
        model = model.replace(**overrides)
    obs = resolve_observation(observation)
    cols = list(dict.fromkeys(c for cs in mapping.values() for c in cs))
    data = _as_data(data, id, x, y, cols, False, {})
    design = CovariateDesign.build(mapping, data.covariates, model.parameters)
    start = _initial_values(model, data, init, obs)
    if r_function is not None and not isinstance(r_function, str):
        raise TypeError(f"r_function must be R code as a string, got {type(r_function).__name__}")
    twin = r_function or R_TWINS.get(model.name or "")
    if twin is None:
        raise ValueError(f"model {model.name or 'custom'!r} has no R twin: pass r_function="
                         "'function(psi, x) ...' (psi: individuals x parameters on the natural "
                         "scale, x: the matrix of x columns)")
    # the design's columns become numeric covariates named cov1, cov2, ... in R
    frame = pd.DataFrame({"id": np.asarray(data.index, dtype=np.int64) + 1})
    for j, c in enumerate(data.x_cols):
        frame[f"x{j + 1}"] = data.x[:, j]
    frame["y"] = data.y
    for j in range(design.n_effects):
        frame[f"cov{j + 1}"] = design.matrix[data.index, j]
    return model, data, design, start, twin, frame, obs


def _write(frame: pd.DataFrame, tmp: str) -> str:
    path = str(Path(tmp) / "data.csv")
    frame.to_csv(path, index=False, float_format="%.17g")
    return path


# ---- saemix -----------------------------------------------------------------------------------
def saemix(data, model, *, id: str | None = None, x: str | Sequence[str] | None = None,
           y: str | None = None, covariates: Mapping[str, Sequence[str] | str] | None = None,
           random: Sequence[str] | None = None, omega: str | None = None, error: str | None = None,
           transforms=None, init: Mapping[str, float] | None = None, observation: str = "gaussian",
           r_function: str | None = None, seed: int = 632545, ll_is: bool = True,
           nmc_is: int = 5000, omega_init: Mapping[str, float] | None = None,
           options: Mapping[str, object] | None = None):
    """Fit with saemix (SAEM, then MAP estimates, the Fisher information by linearisation and the
    importance-sampling log-likelihood, saemix's defaults) and return a ``Results``.

    Arguments as :func:`pymixnn.fit`. ``observation``: "gaussian" (the model's error model),
    "poisson" or "bernoulli" (the structural function gives the log rate / logit).
    ``omega_init``: initial variances {parameter: value} (saemix's ``omega.init``, diagonal).
    ``options``: further saemix options (e.g. ``{"nbiter.saemix": [300, 100]}``); ``seed`` is
    saemix's; each key must be an argument of ``saemixControl()`` and each value of the kind of its
    default (checked, with the closest argument named when a key is wrong). ``r_function``: the R
    twin of a custom model's structural function, as R source text; it is evaluated as R code
    (it can do anything R can), so never pass text from an untrusted source. Nothing else passed
    here is pasted into R code: values reach R as R objects, and parameter names, which saemix
    uses as column names, must be syntactic R names. Needs R, rpy2 and the CRAN package saemix."""
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"options must be a mapping {{saemix option: value}}, "
                        f"got {type(options).__name__}")
    # checks that need no R (saemix is CRAN-only, often absent): before it is looked for
    _check_setting_names(dict(options or {}), "options", "saemixControl")
    from pymixnn.model.named import resolve

    for p in resolve(model).parameters:
        _check_r_name(p, "saemix: parameter name")
    _require("saemix")
    model, dat, design, start, twin, frame, obs = _prepare(
        data, model, id, x, y, covariates, random, omega, error, transforms, init, r_function,
        observation)
    if obs.name not in ("gaussian", "poisson", "bernoulli"):
        raise ValueError(f"compare.saemix translates observation 'gaussian', 'poisson' and "
                         f"'bernoulli', not {obs.name!r}")
    opts = {"seed": int(seed), "save": False, "save.graphs": False, "displayProgress": False,
            "print": False, "ll.is": bool(ll_is), "fim": obs.name == "gaussian", "map": True,
            "nmc.is": int(nmc_is), **(options or {})}
    opts_r = _r_settings(opts, "options", "saemix", "saemixControl")
    P = len(model.parameters)
    cov_model = np.zeros((max(design.n_effects, 1), P), dtype=int)
    for j, p in enumerate(design.parameters):
        cov_model[j, model.parameters.index(p)] = 1
    rand = [p in model.random for p in model.parameters]
    if model.omega == "full":
        cm = np.outer(rand, rand).astype(int)
    else:
        cm = np.diag(rand).astype(int)
    nx = len(dat.x_cols)
    cov_names = [f"cov{j + 1}" for j in range(design.n_effects)]
    if obs.name == "gaussian":
        model_r = "f_twin(psi[id, , drop = FALSE], as.matrix(xidep))"
        extra = 'error.model = .pm_error, modeltype = "structural"'
    else:
        lik = ("dpois(y, exp(f), log = TRUE)" if obs.name == "poisson"
               else "dbinom(y, 1, plogis(f), log = TRUE)")
        model_r = ("{ f <- f_twin(psi[id, , drop = FALSE], "
                   "as.matrix(xidep[, seq_len(.pm_nx), drop = FALSE])); "
                   f"y <- xidep[, .pm_nx + 1]; {lik} }}")
        extra = 'modeltype = "likelihood"'
    predictors = [f"x{j + 1}" for j in range(nx)] + ([] if obs.name == "gaussian" else ["y"])
    omega_diag = None
    if omega_init:
        unknown = [p for p in omega_init if p not in model.parameters]
        if unknown:
            raise ValueError(f"omega_init names {unknown}, not parameters of the model "
                             f"{list(model.parameters)}")
        omega_diag = [float(omega_init.get(p, 1.0)) for p in model.parameters]
    ro = _robjects()
    # the R source below is fixed text: every value it uses is an R object in its environment
    code = f"""
suppressPackageStartupMessages({{ library(saemix); library(jsonlite) }})
.pm_df <- read.csv(.pm_path)
.pm_model <- function(psi, id, xidep) {model_r}
.pm_data <- saemixData(name.data = .pm_df, name.group = "id",
                       name.predictors = .pm_predictors, name.response = "y",
                       {"name.covariates = .pm_covnames," if cov_names else ""}
                       verbose = FALSE)
.pm_psi0 <- matrix(.pm_psi0_values, ncol = .pm_P, byrow = TRUE, dimnames = list(NULL, .pm_pnames))
.pm_sm <- saemixModel(model = .pm_model, psi0 = .pm_psi0, transform.par = .pm_transform,
                      {"covariate.model = matrix(.pm_covmodel, ncol = .pm_P, byrow = TRUE),"
                       if cov_names else ""}
                      covariance.model = matrix(.pm_covariance, ncol = .pm_P, byrow = TRUE),
                      {"omega.init = diag(.pm_omega_init, nrow = .pm_P)," if omega_diag else ""}
                      {extra}, verbose = FALSE)
.pm_t0 <- proc.time()[["elapsed"]]
.pm_fit <- saemix(.pm_sm, .pm_data, .pm_options)
.pm_secs <- proc.time()[["elapsed"]] - .pm_t0
.pm_r <- .pm_fit@results
.pm_out <- as.character(toJSON(list(
  version = as.character(packageVersion("saemix")), seconds = .pm_secs,
  name_fixed = .pm_r@name.fixed, fixed = .pm_r@fixed.effects,
  se_fixed = if (length(.pm_r@se.fixed)) .pm_r@se.fixed else rep(NA, length(.pm_r@fixed.effects)),
  omega = .pm_r@omega, se_omega = if (length(.pm_r@se.omega)) .pm_r@se.omega else NA,
  respar = .pm_r@respar, se_respar = if (length(.pm_r@se.respar)) .pm_r@se.respar else NA,
  indx_res = .pm_r@indx.res,
  ll_is = if (length(.pm_r@ll.is)) .pm_r@ll.is else NA,
  ll_lin = if (length(.pm_r@ll.lin)) .pm_r@ll.lin else NA,
  map_psi = as.matrix(.pm_r@map.psi[, .pm_pnames, drop = FALSE])
), digits = NA, auto_unbox = TRUE, na = "null"))
"""
    with tempfile.TemporaryDirectory(prefix="pymixnn-saemix-") as tmp:
        env = _r_env({
            ".pm_path": ro.StrVector([_write(frame, tmp)]),
            ".pm_predictors": ro.StrVector(predictors),
            ".pm_covnames": ro.StrVector(cov_names),
            ".pm_nx": ro.IntVector([nx]),
            ".pm_P": ro.IntVector([P]),
            ".pm_pnames": ro.StrVector(list(model.parameters)),
            ".pm_psi0_values": ro.FloatVector([float(start[p]) for p in model.parameters]),
            ".pm_transform": ro.FloatVector([_SAEMIX_TRANSFORM[model.transforms[p]]
                                             for p in model.parameters]),
            ".pm_covmodel": ro.FloatVector(cov_model.ravel().tolist()),
            ".pm_covariance": ro.FloatVector(cm.ravel().tolist()),
            ".pm_omega_init": ro.FloatVector(omega_diag or []),
            ".pm_error": ro.StrVector([model.error]),
            ".pm_options": opts_r,
        })
        _r_function(twin, env, "r_function" if r_function else f"the R twin of {model.name!r}")
        out = _run_r(code, env)
    return _saemix_results(out, model, dat, design, obs, dict(seed=seed, nmc_is=nmc_is))


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def _saemix_results(out: dict, model, data, design, obs, settings):
    P = len(model.parameters)
    rand = list(model.random)
    ri = [model.parameters.index(p) for p in rand]
    fixed = np.array([_num(v) for v in out["fixed"]])
    se_fixed = np.array([_num(v) for v in np.atleast_1d(out["se_fixed"])])
    omega_full = np.array(out["omega"], dtype=float).reshape(P, P)
    omega = omega_full[np.ix_(ri, ri)]
    rows = []
    # saemix orders fixed effects as its name.fixed: each parameter then its covariate effects
    mu_nat, beta = {}, []
    k = 0
    for p in model.parameters:
        mu_nat[p] = (fixed[k], se_fixed[k])
        rows.append(_row(p, "fixed", p, fixed[k], se_fixed[k], model.transforms[p]))
        k += 1
        for j, target in enumerate(design.parameters):
            if target == p:
                beta.append(fixed[k])
                rows.append(_row(design.names[j], "beta", p, fixed[k], se_fixed[k], "identity"))
                k += 1
    se_om = np.atleast_1d(np.array([_num(v) for v in np.atleast_1d(out.get("se_omega"))]))
    for a, p in enumerate(rand):
        se = se_om[ri[a]] if se_om.size == P else float("nan")
        rows.append(_row(f"omega2.{p}", "omega", p, omega[a, a], se, "log"))
    if model.omega == "full":
        for a in range(len(rand)):
            for b in range(a):
                rows.append(_row(f"cov.{rand[b]}.{rand[a]}", "omega", f"{rand[b]}.{rand[a]}",
                                 omega[a, b], float("nan"), "identity"))
    error = {}
    if obs.name == "gaussian":
        respar = np.array([_num(v) for v in out["respar"]])
        se_res = np.array([_num(v) for v in np.atleast_1d(out.get("se_respar"))])
        names = {"constant": ["a"], "proportional": ["b"], "combined": ["a", "b"],
                 "exponential": ["a"]}[model.error]
        idx = {"a": 0, "b": 1}
        for n in names:
            value = respar[idx[n]]
            se = se_res[idx[n]] if se_res.size > idx[n] else float("nan")
            error[n] = float(value)
            rows.append(_row(n, "sigma", n, value, se, "log"))
    map_psi = np.array(out["map_psi"], dtype=float).reshape(data.n_individuals, P)
    ll = _num(out.get("ll_is"))
    return _external(model, data, design, rows, omega, error, map_psi, ll, "is",
                     out["seconds"], engine=f"saemix {out['version']}",
                     se_method="saemix: Fisher information by linearisation (fim = TRUE)",
                     settings=settings, beta=np.array(beta), mu_natural=mu_nat, obs=obs)


def _row(name, kind, param, est, se, scale) -> dict:
    from pymixnn.model import transforms as tr

    est, se = float(est), float(se)
    est_t, se_t = tr.delta_method(scale, est, se)
    return dict(name=name, kind=kind, parameter=param, estimate=est, se=se,
                estimate_transformed=est_t, se_transformed=se_t, scale=scale)


def _external(model, data, design, rows, omega, error, psi_map, loglik, method, seconds, *,
              engine, se_method, settings, beta, mu_natural, obs, warnings=None):
    """A Results holding another program's fit (saemix, nlme), with pymixnn's schema."""
    import torch

    from pymixnn.inference import Estimation
    from pymixnn.model import transforms as tr
    from pymixnn.model.observation import to_dict as observation_to_dict
    from pymixnn.model.random_effects import Gaussian
    from pymixnn.model.random_effects import to_dict as law_to_dict
    from pymixnn.results.results import Results

    P = len(model.parameters)
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
    eta = (phi_map - phi_pop)[:, ri]
    d = len(ri)
    theta_t = np.array([r["estimate_transformed"] for r in rows])
    se_t = np.array([r["se_transformed"] for r in rows])
    est = Estimation(
        table=rows, theta=theta_t, theta_cov=np.diag(se_t**2), mu=mu, beta=np.asarray(beta, float),
        omega=np.asarray(omega, float), error=error, eta_map=eta,
        eta_map_cov=np.zeros((data.n_individuals, d, d)), eta_mean=eta, psi_mean=psi_map,
        psi_sd=np.full((data.n_individuals, P), np.nan), loglik=float(loglik), loglik_se=float("nan"),
        loglik_individual=np.full(data.n_individuals, np.nan), is_samples=int(settings.get("nmc_is", 0)),
        is_samples_fisher=0, elbo_trace=np.zeros(0), steps=0, converged=True, refine_rounds=0,
        seconds={"total": float(seconds)}, device="R", dtype="float64", threads=1,
        se_method=se_method, warnings=list(warnings or []),
        law={"spec": law_to_dict(Gaussian()), "engine": engine}, loglik_method=method)
    full = dict(settings, engine=engine, observation=observation_to_dict(obs), refine=False)
    return Results(model=model, data=data, design=design, estimation=est, settings=full,
                   observation=obs)


# ---- nlme -------------------------------------------------------------------------------------
def nlme(data, model, *, id: str | None = None, x: str | Sequence[str] | None = None,
         y: str | None = None, covariates: Mapping[str, Sequence[str] | str] | None = None,
         random: Sequence[str] | None = None, omega: str | None = None, error: str | None = None,
         transforms=None, init: Mapping[str, float] | None = None, r_function: str | None = None,
         method: str = "ML", control: Mapping[str, object] | None = None):
    """Fit with nlme::nlme (Lindstrom-Bates, ``method="ML"`` by default so that log-likelihoods
    compare with pymixnn's) and return a ``Results``. The model is written in the transformed
    parameters (log A for a log-normal A), so nlme's normal random effects are pymixnn's eta.
    Error models: constant, proportional (``varPower(fixed = 1)`` on the fitted values) and
    exponential (log y on log f). ``control``: nlme settings (default ``maxIter=200``,
    ``msMaxIter=200``, ``pnlsMaxIter=20``, ``returnObject=True``), each key an argument of
    ``nlmeControl()`` and each value of the kind of its default (checked, with the closest
    argument named when a key is wrong). ``r_function``: the R twin of a custom model's structural
    function, as R source text; it is evaluated as R code (it can do anything R can), so never
    pass text from an untrusted source. Nothing else passed here is pasted into R code: values
    reach R as R objects and R's names for the parameters, columns and covariates are pymixnn's
    own (p1, x1, cov1, ...). Needs R, rpy2 and nlme (Debian r-cran-nlme)."""
    if control is not None and not isinstance(control, Mapping):
        raise TypeError(f"control must be a mapping {{nlmeControl argument: value}}, "
                        f"got {type(control).__name__}")
    _require("nlme")
    _require("jsonlite")
    ctrl = {"maxIter": 200, "msMaxIter": 200, "pnlsMaxIter": 20, "returnObject": True,
            **(control or {})}
    ctrl_r = _r_settings(ctrl, "control", "nlme", "nlmeControl")
    model, dat, design, start, twin, frame, obs = _prepare(
        data, model, id, x, y, covariates, random, omega, error, transforms, init, r_function)
    if model.error == "combined":
        raise ValueError("nlme has no combined error model sqrt(a^2 + b^2 f^2); use "
                         "compare.saemix or error='constant' / 'proportional'")
    if not isinstance(method, str) or method not in ("ML", "REML"):
        raise ValueError(f"method must be 'ML' or 'REML', got {method!r}")
    P = len(model.parameters)
    nx = len(dat.x_cols)
    names = [f"p{k + 1}" for k in range(P)]  # transformed parameters in R
    psi_cols = ", ".join(_R_INVERSE[model.transforms[p]].format(n) for p, n in zip(model.parameters, names))
    xs = ", ".join(f"x{j + 1}" for j in range(nx))
    response = "log(y)" if model.error == "exponential" else "y"
    body = f"f_twin(cbind({psi_cols}), cbind({xs}))"
    if model.error == "exponential":
        body = f"log({body})"
    fixed_terms = []
    starts = []
    import torch

    from pymixnn.model import transforms as tr

    for k, p in enumerate(model.parameters):
        covs = [f"cov{j + 1}" for j, t in enumerate(design.parameters) if t == p]
        fixed_terms.append(f"{names[k]} ~ " + (" + ".join(covs) if covs else "1"))
        starts.append(float(tr.inverse(model.transforms[p], torch.tensor(start[p], dtype=torch.float64))))
        starts.extend([0.0] * len(covs))
    rand = [names[model.parameters.index(p)] for p in model.random]
    pd_class = "pdSymm" if model.omega == "full" else "pdDiag"
    weights = "varPower(form = ~ fitted(.), fixed = 1)" if model.error == "proportional" else "NULL"
    ro = _robjects()
    # the R source below is fixed text (its names p1, x1, cov1 are pymixnn's): every value it uses
    # is an R object in its environment
    code = f"""
suppressPackageStartupMessages({{ library(nlme); library(jsonlite) }})
.pm_df <- read.csv(.pm_path)
.pm_df$id <- factor(.pm_df$id, levels = unique(.pm_df$id))
.pm_f <- function({", ".join(names)}, {xs}) {body}
.pm_warn <- character(0)
.pm_t0 <- proc.time()[["elapsed"]]
# nlme looks the model's function up from R's global environment, not from this one: the
# function object itself goes into the formula
.pm_model <- eval(bquote({response} ~ .(.pm_f)({", ".join(names)}, {xs})))
.pm_fit <- withCallingHandlers(
  nlme(.pm_model, data = .pm_df,
       fixed = list({", ".join(fixed_terms)}),
       random = {pd_class}({" + ".join(rand)} ~ 1), groups = ~ id,
       start = .pm_start, method = .pm_method, weights = {weights},
       control = do.call(nlmeControl, .pm_control)),
  warning = function(w) {{ .pm_warn <<- c(.pm_warn, conditionMessage(w)); invokeRestart("muffleWarning") }})
.pm_secs <- proc.time()[["elapsed"]] - .pm_t0
.pm_vc <- as.matrix(pdMatrix(.pm_fit$modelStruct$reStruct[[1]])) * .pm_fit$sigma^2
.pm_coef <- as.matrix(coef(.pm_fit))
.pm_out <- as.character(toJSON(list(
  version = as.character(packageVersion("nlme")), seconds = .pm_secs,
  fixef = unname(fixef(.pm_fit)), fixef_names = names(fixef(.pm_fit)),
  se = unname(sqrt(diag(vcov(.pm_fit)))), vcov = unname(as.matrix(vcov(.pm_fit))),
  omega = unname(.pm_vc), sigma = .pm_fit$sigma, logLik = as.numeric(logLik(.pm_fit)),
  df = attr(logLik(.pm_fit), "df"),
  ranef = unname(as.matrix(ranef(.pm_fit))), ranef_names = colnames(ranef(.pm_fit)),
  warnings = I(.pm_warn)
), digits = NA, auto_unbox = TRUE))
"""
    with tempfile.TemporaryDirectory(prefix="pymixnn-nlme-") as tmp:
        env = _r_env({".pm_path": ro.StrVector([_write(frame, tmp)]),
                      ".pm_start": ro.FloatVector(starts), ".pm_method": ro.StrVector([method]),
                      ".pm_control": ctrl_r})
        _r_function(twin, env, "r_function" if r_function else f"the R twin of {model.name!r}")
        out = _run_r(code, env)
    return _nlme_results(out, model, dat, design, obs, names, method)


def _nlme_results(out, model, data, design, obs, names, method):
    import torch

    from pymixnn.model import transforms as tr

    fe = np.array(out["fixef"], dtype=float)
    vc = np.array(out["vcov"], dtype=float).reshape(len(fe), len(fe))
    rows, mu_nat, beta = [], {}, []
    k = 0
    for p in model.parameters:
        t = model.transforms[p]
        phi = torch.tensor(fe[k], dtype=torch.float64)
        nat = float(tr.forward(t, phi))
        se_nat = float(tr.derivative(t, phi)) * math.sqrt(vc[k, k])
        mu_nat[p] = (nat, se_nat)
        rows.append(dict(name=p, kind="fixed", parameter=p, estimate=nat, se=se_nat,
                         estimate_transformed=float(fe[k]), se_transformed=math.sqrt(vc[k, k]),
                         scale=t))
        k += 1
        for j, target in enumerate(design.parameters):
            if target == p:
                beta.append(fe[k])
                rows.append(_row(design.names[j], "beta", p, fe[k], math.sqrt(vc[k, k]), "identity"))
                k += 1
    d = len(model.random)
    omega = np.array(out["omega"], dtype=float).reshape(d, d)
    for a, p in enumerate(model.random):
        rows.append(_row(f"omega2.{p}", "omega", p, omega[a, a], float("nan"), "log"))
    if model.omega == "full":
        for a in range(d):
            for b in range(a):
                rows.append(_row(f"cov.{model.random[b]}.{model.random[a]}", "omega",
                                 f"{model.random[b]}.{model.random[a]}", omega[a, b], float("nan"),
                                 "identity"))
    sigma = float(out["sigma"])
    name = "b" if model.error == "proportional" else "a"
    rows.append(_row(name, "sigma", name, sigma, float("nan"), "log"))
    ranef = np.array(out["ranef"], dtype=float).reshape(data.n_individuals, d)
    # individual transformed parameters: population (mu + covariates) + nlme's random effects
    mu = np.array([float(tr.inverse(model.transforms[p], torch.tensor(mu_nat[p][0], dtype=torch.float64)))
                   for p in model.parameters])
    phi_pop = np.tile(mu, (data.n_individuals, 1))
    for j, p in enumerate(design.parameters):
        phi_pop[:, model.parameters.index(p)] += design.matrix[:, j] * beta[j]
    for a, p in enumerate(model.random):
        phi_pop[:, model.parameters.index(p)] += ranef[:, a]
    psi = np.column_stack([tr.forward(model.transforms[p], torch.as_tensor(phi_pop[:, k],
                                                                            dtype=torch.float64)).numpy()
                           for k, p in enumerate(model.parameters)])
    loglik = float(out["logLik"])
    if model.error == "exponential":
        # nlme's likelihood is of log y: add the Jacobian so it is the likelihood of y
        loglik -= float(np.sum(np.log(data.y)))
    warnings = [f"nlme: {w}" for w in (out.get("warnings") or [])]
    return _external(model, data, design, rows, omega, {name: sigma}, psi, loglik, f"nlme.{method}",
                     out["seconds"], engine=f"nlme {out['version']}",
                     se_method=f"nlme: approximate covariance of the fixed effects (vcov), {method}",
                     settings=dict(method=method), beta=np.array(beta), mu_natural=mu_nat, obs=obs,
                     warnings=warnings)
