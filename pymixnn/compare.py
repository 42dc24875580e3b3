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
psi an individuals x parameters matrix on the natural scale and x the matrix of x columns), the
parameter transforms (saemix ``transform.par``; in nlme the model is written in the transformed
parameters), the covariate model (numeric covariates, and categorical ones as the indicators
pymixnn uses), which parameters have random effects, a diagonal or full omega, and the error
model (saemix: constant, proportional, combined, exponential; nlme: constant, proportional by
``varPower(fixed = 1)``, exponential by fitting log y). saemix also gets the Poisson and
bernoulli families (``modeltype = "likelihood"``).

The R side runs inside this Python process (rpy2's embedded R); the data go to R as a CSV and the
results come back as JSON. ``import pymixnn`` never needs R: these functions raise one error
saying what to install when rpy2, R, saemix or nlme is missing.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

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
    ro = _robjects()
    return bool(ro.r(f'isTRUE(suppressWarnings(requireNamespace("{name}", quietly = TRUE)))')[0])


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


def _run_r(code: str) -> dict:
    """Run R ``code`` that leaves a JSON string in ``.pm_out``; return it parsed."""
    ro = _robjects()
    try:
        ro.r(code)
        text = str(ro.r(".pm_out")[0])
    except Exception as err:  # rpy2's RRuntimeError carries R's message
        raise RuntimeError(f"the R fit failed: {str(err).strip()}") from None
    return json.loads(text)


# ---- translation ------------------------------------------------------------------------------
def _prepare(data, model, id, x, y, covariates, random, omega, error, transforms, init, r_function,
             observation="gaussian"):
    """The pymixnn view of the problem (Model, Data, design, start) and the R pieces."""
    from pymixnn.covariates import CovariateDesign, normalize_mapping
    from pymixnn.fitting import _as_data, _initial_values
    from pymixnn.models import resolve
    from pymixnn.models.observation import observation as resolve_observation

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


def _r_vector(values, fmt="{!r}") -> str:
    return "c(" + ", ".join(fmt.format(v) for v in values) + ")"


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
    saemix's. Needs R, rpy2 and the CRAN package saemix."""
    _require("saemix")
    model, dat, design, start, twin, frame, obs = _prepare(
        data, model, id, x, y, covariates, random, omega, error, transforms, init, r_function,
        observation)
    if obs.name not in ("gaussian", "poisson", "bernoulli"):
        raise ValueError(f"compare.saemix translates observation 'gaussian', 'poisson' and "
                         f"'bernoulli', not {obs.name!r}")
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
    opts = {"seed": int(seed), "save": False, "save.graphs": False, "displayProgress": False,
            "print": False, "ll.is": bool(ll_is), "fim": obs.name == "gaussian", "map": True,
            "nmc.is": int(nmc_is), **(options or {})}
    opt_r = ", ".join(f"`{k}` = {_r_value(v)}" for k, v in opts.items())
    cov_names = [f"cov{j + 1}" for j in range(design.n_effects)]
    if obs.name == "gaussian":
        model_r = "f_twin(psi[id, , drop = FALSE], as.matrix(xidep))"
        extra = f'error.model = "{model.error}", modeltype = "structural"'
    else:
        lik = ("dpois(y, exp(f), log = TRUE)" if obs.name == "poisson"
               else "dbinom(y, 1, plogis(f), log = TRUE)")
        model_r = (f"{{ f <- f_twin(psi[id, , drop = FALSE], as.matrix(xidep[, 1:{nx}, drop = FALSE])); "
                   f"y <- xidep[, {nx + 1}]; {lik} }}")
        extra = 'modeltype = "likelihood"'
    predictors = [f"x{j + 1}" for j in range(nx)] + ([] if obs.name == "gaussian" else ["y"])
    omega_r = ""
    if omega_init:
        unknown = [p for p in omega_init if p not in model.parameters]
        if unknown:
            raise ValueError(f"omega_init names {unknown}, not parameters of the model {list(model.parameters)}")
        diag = [float(omega_init.get(p, 1.0)) for p in model.parameters]
        omega_r = f"omega.init = diag({_r_vector(diag)}, nrow = {P}), "
    with tempfile.TemporaryDirectory(prefix="pymixnn-saemix-") as tmp:
        path = _write(frame, tmp)
        code = f"""
suppressPackageStartupMessages({{ library(saemix); library(jsonlite) }})
.pm_df <- read.csv("{path}")
f_twin <- {twin}
.pm_model <- function(psi, id, xidep) {model_r}
.pm_data <- saemixData(name.data = .pm_df, name.group = "id",
                       name.predictors = {_r_vector(predictors, '"{}"')}, name.response = "y",
                       {"name.covariates = " + _r_vector(cov_names, '"{}"') + "," if cov_names else ""}
                       verbose = FALSE)
.pm_psi0 <- matrix({_r_vector([start[p] for p in model.parameters])}, ncol = {P}, byrow = TRUE,
                   dimnames = list(NULL, {_r_vector(model.parameters, '"{}"')}))
.pm_sm <- saemixModel(model = .pm_model, psi0 = .pm_psi0,
                      transform.par = {_r_vector([_SAEMIX_TRANSFORM[model.transforms[p]] for p in model.parameters])},
                      {"covariate.model = matrix(" + _r_vector(cov_model.ravel().tolist()) + f", ncol = {P}, byrow = TRUE)," if cov_names else ""}
                      covariance.model = matrix({_r_vector(cm.ravel().tolist())}, ncol = {P}, byrow = TRUE),
                      {omega_r}{extra}, verbose = FALSE)
.pm_t0 <- proc.time()[["elapsed"]]
.pm_fit <- saemix(.pm_sm, .pm_data, list({opt_r}))
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
  map_psi = as.matrix(.pm_r@map.psi[, {_r_vector(model.parameters, '"{}"')}, drop = FALSE])
), digits = NA, auto_unbox = TRUE, na = "null"))
"""
        out = _run_r(code)
    return _saemix_results(out, model, dat, design, obs, dict(seed=seed, nmc_is=nmc_is))


def _r_value(v) -> str:
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (list, tuple)):
        return _r_vector(v, "{!r}")
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


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
    from pymixnn.models import transforms as tr

    est, se = float(est), float(se)
    est_t, se_t = tr.delta_method(scale, est, se)
    return dict(name=name, kind=kind, parameter=param, estimate=est, se=se,
                estimate_transformed=est_t, se_transformed=se_t, scale=scale)


def _external(model, data, design, rows, omega, error, psi_map, loglik, method, seconds, *,
              engine, se_method, settings, beta, mu_natural, obs, warnings=None):
    """A Results holding another program's fit (saemix, nlme), with pymixnn's schema."""
    import torch

    from pymixnn.inference import Estimation
    from pymixnn.models import transforms as tr
    from pymixnn.models.observation import to_dict as observation_to_dict
    from pymixnn.random_effects import Gaussian
    from pymixnn.random_effects import to_dict as law_to_dict
    from pymixnn.results import Results

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
    exponential (log y on log f). Needs R, rpy2 and nlme (Debian r-cran-nlme)."""
    _require("nlme")
    _require("jsonlite")
    model, dat, design, start, twin, frame, obs = _prepare(
        data, model, id, x, y, covariates, random, omega, error, transforms, init, r_function)
    if model.error == "combined":
        raise ValueError("nlme has no combined error model sqrt(a^2 + b^2 f^2); use "
                         "compare.saemix or error='constant' / 'proportional'")
    if method not in ("ML", "REML"):
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

    from pymixnn.models import transforms as tr

    for k, p in enumerate(model.parameters):
        covs = [f"cov{j + 1}" for j, t in enumerate(design.parameters) if t == p]
        fixed_terms.append(f"{names[k]} ~ " + (" + ".join(covs) if covs else "1"))
        starts.append(float(tr.inverse(model.transforms[p], torch.tensor(start[p], dtype=torch.float64))))
        starts.extend([0.0] * len(covs))
    rand = [names[model.parameters.index(p)] for p in model.random]
    pd_class = "pdSymm" if model.omega == "full" else "pdDiag"
    weights = "varPower(form = ~ fitted(.), fixed = 1)" if model.error == "proportional" else "NULL"
    ctrl = {"maxIter": 200, "msMaxIter": 200, "pnlsMaxIter": 20, "returnObject": True,
            **(control or {})}
    ctrl_r = ", ".join(f"{k} = {_r_value(v)}" for k, v in ctrl.items())
    with tempfile.TemporaryDirectory(prefix="pymixnn-nlme-") as tmp:
        path = _write(frame, tmp)
        code = f"""
suppressPackageStartupMessages({{ library(nlme); library(jsonlite) }})
.pm_df <- read.csv("{path}")
.pm_df$id <- factor(.pm_df$id, levels = unique(.pm_df$id))
f_twin <- {twin}
.pm_f <- function({", ".join(names)}, {xs}) {body}
.pm_warn <- character(0)
.pm_t0 <- proc.time()[["elapsed"]]
.pm_fit <- withCallingHandlers(
  nlme({response} ~ .pm_f({", ".join(names)}, {xs}), data = .pm_df,
       fixed = list({", ".join(fixed_terms)}),
       random = {pd_class}({" + ".join(rand)} ~ 1), groups = ~ id,
       start = {_r_vector(starts)}, method = "{method}", weights = {weights},
       control = nlmeControl({ctrl_r})),
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
  warnings = .pm_warn
), digits = NA, auto_unbox = TRUE))
"""
        out = _run_r(code)
    return _nlme_results(out, model, dat, design, obs, names, method)


def _nlme_results(out, model, data, design, obs, names, method):
    import torch

    from pymixnn.models import transforms as tr

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
