"""The saemix bridge: the same problem fitted by saemix (SAEM) in R, returned as a Results."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence

import numpy as np

from pymixnn.compare.common import (
    bind_r_function,
    check_r_name,
    check_setting_names,
    r_env,
    r_settings,
    require,
    robjects,
    run_r,
)
from pymixnn.compare.translation import (
    ExternalFit,
    external_fit,
    external_results,
    num,
    table_row,
    translate,
    write_csv,
)
from pymixnn.fitting import problem_of
from pymixnn.model import transforms as tr
from pymixnn.model.named import resolve
from pymixnn.model.parameters import omega_rows, omega_scale
from pymixnn.problem import NLME

__all__ = ["saemix"]


def saemix(
    data,
    model,
    *,
    id: str | None = None,
    x: str | Sequence[str] | None = None,
    y: str | None = None,
    covariates: Mapping[str, Sequence[str] | str] | None = None,
    random: Sequence[str] | None = None,
    omega: str | None = None,
    error: str | None = None,
    transforms=None,
    init: Mapping[str, float] | None = None,
    observation: str = "gaussian",
    r_function: str | None = None,
    seed: int = 632545,
    ll_is: bool = True,
    nmc_is: int = 5000,
    omega_init: Mapping[str, float] | None = None,
    options: Mapping[str, object] | None = None,
):
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
        raise TypeError(f"options must be a mapping {{saemix option: value}}, got {type(options).__name__}")
    # checks that need no R (saemix is CRAN-only, often absent): before it is looked for
    check_setting_names(dict(options or {}), "options", "saemixControl")
    for p in resolve(model).parameters:
        check_r_name(p, "saemix: parameter name")
    require("saemix")
    problem = problem_of(locals())
    model, dat, design, start, obs = (
        problem.model,
        problem.data,
        problem.design,
        problem.start,
        problem.observation,
    )
    r_view = translate(problem, r_function)
    if obs.name not in ("gaussian", "poisson", "bernoulli"):
        raise ValueError(
            f"compare.saemix translates observation 'gaussian', 'poisson' and 'bernoulli', not {obs.name!r}"
        )
    opts = {
        "seed": int(seed),
        "save": False,
        "save.graphs": False,
        "displayProgress": False,
        "print": False,
        "ll.is": bool(ll_is),
        "fim": obs.name == "gaussian",
        "map": True,
        "nmc.is": int(nmc_is),
        **(options or {}),
    }
    opts_r = r_settings(opts, "options", "saemix", "saemixControl")
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
        lik = (
            "dpois(y, exp(f), log = TRUE)" if obs.name == "poisson" else "dbinom(y, 1, plogis(f), log = TRUE)"
        )
        model_r = (
            "{ f <- f_twin(psi[id, , drop = FALSE], "
            "as.matrix(xidep[, seq_len(.pm_nx), drop = FALSE])); "
            f"y <- xidep[, .pm_nx + 1]; {lik} }}"
        )
        extra = 'modeltype = "likelihood"'
    predictors = [f"x{j + 1}" for j in range(nx)] + ([] if obs.name == "gaussian" else ["y"])
    omega_diag = None
    if omega_init:
        unknown = [p for p in omega_init if p not in model.parameters]
        if unknown:
            raise ValueError(
                f"omega_init names {unknown}, not parameters of the model {list(model.parameters)}"
            )
        omega_diag = [float(omega_init.get(p, 1.0)) for p in model.parameters]
    ro = robjects()
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
                      {
        "covariate.model = matrix(.pm_covmodel, ncol = .pm_P, byrow = TRUE)," if cov_names else ""
    }
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
        env = r_env(
            {
                ".pm_path": ro.StrVector([write_csv(r_view.frame, tmp)]),
                ".pm_predictors": ro.StrVector(predictors),
                ".pm_covnames": ro.StrVector(cov_names),
                ".pm_nx": ro.IntVector([nx]),
                ".pm_P": ro.IntVector([P]),
                ".pm_pnames": ro.StrVector(list(model.parameters)),
                ".pm_psi0_values": ro.FloatVector([float(start[p]) for p in model.parameters]),
                ".pm_transform": ro.FloatVector(
                    [tr.SAEMIX_CODES[model.transforms[p]] for p in model.parameters]
                ),
                ".pm_covmodel": ro.FloatVector(cov_model.ravel().tolist()),
                ".pm_covariance": ro.FloatVector(cm.ravel().tolist()),
                ".pm_omega_init": ro.FloatVector(omega_diag or []),
                ".pm_error": ro.StrVector([model.error]),
                ".pm_options": opts_r,
            }
        )
        bind_r_function(r_view.twin, env, "r_function" if r_function else f"the R twin of {model.name!r}")
        out = run_r(code, env)
    return external_results(problem, _saemix_fit(out, problem, dict(seed=seed, nmc_is=nmc_is)))


def _saemix_fit(out: dict, problem: NLME, settings: dict) -> ExternalFit:
    """saemix's estimates (its JSON ``out``) as an ExternalFit."""
    model, data, design, obs = problem.model, problem.data, problem.design, problem.observation
    P = len(model.parameters)
    rand = list(model.random)
    ri = [model.parameters.index(p) for p in rand]
    fixed = np.array([num(v) for v in out["fixed"]])
    se_fixed = np.array([num(v) for v in np.atleast_1d(out["se_fixed"])])
    omega_full = np.array(out["omega"], dtype=float).reshape(P, P)
    omega = omega_full[np.ix_(ri, ri)]
    rows = []
    # saemix orders fixed effects as its name.fixed: each parameter then its covariate effects
    mu_nat, beta = {}, []
    k = 0
    for p in model.parameters:
        mu_nat[p] = (fixed[k], se_fixed[k])
        rows.append(table_row(p, "fixed", p, fixed[k], se_fixed[k], model.transforms[p]))
        k += 1
        for j, target in enumerate(design.parameters):
            if target == p:
                beta.append(fixed[k])
                rows.append(table_row(design.names[j], "beta", p, fixed[k], se_fixed[k], "identity"))
                k += 1
    se_om = np.atleast_1d(np.array([num(v) for v in np.atleast_1d(out.get("se_omega"))]))
    for name, param, a, b in omega_rows(rand, model.omega == "full"):
        se = se_om[ri[a]] if a == b and se_om.size == P else float("nan")
        rows.append(table_row(name, "omega", param, omega[a, b], se, omega_scale(a, b)))
    error = {}
    if obs.name == "gaussian":
        respar = np.array([num(v) for v in out["respar"]])
        se_res = np.array([num(v) for v in np.atleast_1d(out.get("se_respar"))])
        names = {"constant": ["a"], "proportional": ["b"], "combined": ["a", "b"], "exponential": ["a"]}[
            model.error
        ]
        idx = {"a": 0, "b": 1}
        for n in names:
            value = respar[idx[n]]
            se = se_res[idx[n]] if se_res.size > idx[n] else float("nan")
            error[n] = float(value)
            rows.append(table_row(n, "sigma", n, value, se, "log"))
    map_psi = np.array(out["map_psi"], dtype=float).reshape(data.n_individuals, P)
    ll = num(out.get("ll_is"))
    return external_fit(
        problem,
        rows,
        omega,
        error,
        map_psi,
        ll,
        "is",
        out["seconds"],
        engine=f"saemix {out['version']}",
        se_method="saemix: Fisher information by linearisation (fim = TRUE)",
        settings=settings,
        beta=np.array(beta),
        mu_natural=mu_nat,
    )
