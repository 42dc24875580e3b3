"""The nlme bridge: the same problem fitted by nlme::nlme (Lindstrom-Bates) in R, returned as a
Results."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence

import numpy as np

from pymixnn.compare.common import (
    bind_r_function,
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
    population_phi,
    table_row,
    translate,
    write_csv,
)
from pymixnn.fitting import problem_of
from pymixnn.model import transforms as tr
from pymixnn.model.parameters import omega_rows, omega_scale
from pymixnn.problem import NLME

__all__ = ["nlme"]


def nlme(
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
    r_function: str | None = None,
    method: str = "ML",
    control: Mapping[str, object] | None = None,
):
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
        raise TypeError(
            f"control must be a mapping {{nlmeControl argument: value}}, got {type(control).__name__}"
        )
    require("nlme")
    require("jsonlite")
    ctrl = {"maxIter": 200, "msMaxIter": 200, "pnlsMaxIter": 20, "returnObject": True, **(control or {})}
    ctrl_r = r_settings(ctrl, "control", "nlme", "nlmeControl")
    problem = problem_of(locals())
    model, dat, design, start = problem.model, problem.data, problem.design, problem.start
    r_view = translate(problem, r_function)
    if model.error == "combined":
        raise ValueError(
            "nlme has no combined error model sqrt(a^2 + b^2 f^2); use "
            "compare.saemix or error='constant' / 'proportional'"
        )
    if not isinstance(method, str) or method not in ("ML", "REML"):
        raise ValueError(f"method must be 'ML' or 'REML', got {method!r}")
    P = len(model.parameters)
    nx = len(dat.x_cols)
    names = [f"p{k + 1}" for k in range(P)]  # transformed parameters in R
    psi_cols = ", ".join(
        tr.TABLE[model.transforms[p]].r_forward.format(n) for p, n in zip(model.parameters, names)
    )
    xs = ", ".join(f"x{j + 1}" for j in range(nx))
    response = "log(y)" if model.error == "exponential" else "y"
    body = f"f_twin(cbind({psi_cols}), cbind({xs}))"
    if model.error == "exponential":
        body = f"log({body})"
    fixed_terms = []
    starts = []
    import torch

    for k, p in enumerate(model.parameters):
        covs = [f"cov{j + 1}" for j, t in enumerate(design.parameters) if t == p]
        fixed_terms.append(f"{names[k]} ~ " + (" + ".join(covs) if covs else "1"))
        starts.append(float(tr.inverse(model.transforms[p], torch.tensor(start[p], dtype=torch.float64))))
        starts.extend([0.0] * len(covs))
    rand = [names[model.parameters.index(p)] for p in model.random]
    pd_class = "pdSymm" if model.omega == "full" else "pdDiag"
    weights = "varPower(form = ~ fitted(.), fixed = 1)" if model.error == "proportional" else "NULL"
    ro = robjects()
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
        env = r_env(
            {
                ".pm_path": ro.StrVector([write_csv(r_view.frame, tmp)]),
                ".pm_start": ro.FloatVector(starts),
                ".pm_method": ro.StrVector([method]),
                ".pm_control": ctrl_r,
            }
        )
        bind_r_function(r_view.twin, env, "r_function" if r_function else f"the R twin of {model.name!r}")
        out = run_r(code, env)
    return external_results(problem, _nlme_fit(out, problem, method))


def _nlme_fit(out: dict, problem: NLME, method: str) -> ExternalFit:
    """nlme's estimates (its JSON ``out``) as an ExternalFit."""
    import torch

    model, data, design = problem.model, problem.data, problem.design

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
        rows.append(
            dict(
                name=p,
                kind="fixed",
                parameter=p,
                estimate=nat,
                se=se_nat,
                estimate_transformed=float(fe[k]),
                se_transformed=math.sqrt(vc[k, k]),
                scale=t,
            )
        )
        k += 1
        for j, target in enumerate(design.parameters):
            if target == p:
                beta.append(fe[k])
                rows.append(table_row(design.names[j], "beta", p, fe[k], math.sqrt(vc[k, k]), "identity"))
                k += 1
    d = len(model.random)
    omega = np.array(out["omega"], dtype=float).reshape(d, d)
    for name, param, a, b in omega_rows(model.random, model.omega == "full"):
        rows.append(table_row(name, "omega", param, omega[a, b], float("nan"), omega_scale(a, b)))
    sigma = float(out["sigma"])
    name = "b" if model.error == "proportional" else "a"
    rows.append(table_row(name, "sigma", name, sigma, float("nan"), "log"))
    ranef = np.array(out["ranef"], dtype=float).reshape(data.n_individuals, d)
    # individual transformed parameters: population (mu + covariates) + nlme's random effects
    _, phi_pop = population_phi(problem, mu_nat, beta)
    for a, p in enumerate(model.random):
        phi_pop[:, model.parameters.index(p)] += ranef[:, a]
    psi = np.column_stack(
        [
            tr.forward(model.transforms[p], torch.as_tensor(phi_pop[:, k], dtype=torch.float64)).numpy()
            for k, p in enumerate(model.parameters)
        ]
    )
    loglik = float(out["logLik"])
    if model.error == "exponential":
        # nlme's likelihood is of log y: add the Jacobian so it is the likelihood of y
        loglik -= float(np.sum(np.log(data.y)))
    warnings = [f"nlme: {w}" for w in (out.get("warnings") or [])]
    return external_fit(
        problem,
        rows,
        omega,
        {name: sigma},
        psi,
        loglik,
        f"nlme.{method}",
        out["seconds"],
        engine=f"nlme {out['version']}",
        se_method=f"nlme: approximate covariance of the fixed effects (vcov), {method}",
        settings=dict(method=method),
        beta=np.array(beta),
        mu_natural=mu_nat,
        warnings=warnings,
    )
