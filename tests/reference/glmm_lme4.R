# Reference numbers for the count/binary GLMM issue: lme4::glmer random-intercept GLMMs fitted by
# adaptive Gauss-Hermite quadrature (nAGQ = 25), with the Laplace fit (nAGQ = 1) alongside for context.
#   (a) epil (MASS): Poisson, y ~ lbase + progabide + lbase:progabide + lage + V4 + (1 | subject)
#   (b) toenail: logistic, y ~ time + treatment + time:treatment + (1 | id)
# Interactions are coded as explicit numeric columns so coefficient names match pymixnn's.
# Caution: for nAGQ > 1 lme4's logLik() is on a different scale from nAGQ = 1 (it drops the
# normalising constants, e.g. sum(log(y!)) for Poisson; lme4 issues #161 and #567). Each fit therefore
# also records loglik_integrate: the exact marginal log-likelihood at the fitted parameters, by
# stats::integrate over the random intercept, per individual. Compare against that one. (On toenail,
# omega2 ~ 16, even lme4's 25-node logLik is 0.018 below the exact value at the same parameters.)
#
#   Rscript tests/reference/glmm_lme4.R [OUT.json] [epil.csv] [toenail.csv]   (default: pymixnn/datasets)
#
# lme4 and jsonlite are the Debian packages; the output is committed as tests/reference/glmm_lme4.json.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "glmm_lme4.json"
here <- normalizePath(dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE))))
data_dir <- file.path(here, "..", "..", "pymixnn", "datasets")  # the bundled copies of the shared data
epil_path <- if (length(args) >= 2) args[2] else file.path(data_dir, "epil.csv")
toe_path <- if (length(args) >= 3) args[3] else file.path(data_dir, "toenail.csv")

rename <- function(x) setNames(as.list(x), sub("(Intercept)", "intercept", names(x), fixed = TRUE))

# fit one glmer, collecting warnings (including lme4's convergence checks) instead of printing them
fit_glmm <- function(formula, data, family, nAGQ) {
  warns <- character(0)
  t0 <- proc.time()[["elapsed"]]
  g <- withCallingHandlers(
    glmer(formula, data = data, family = family, nAGQ = nAGQ,
          control = glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))),
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") })
  seconds <- proc.time()[["elapsed"]] - t0
  warns <- unique(c(warns, g@optinfo$conv$lme4$messages, g@optinfo$warnings))
  grp <- names(getME(g, "flist"))[1]
  omega2 <- as.numeric(VarCorr(g)[[grp]][1, 1])
  eta <- drop(getME(g, "X") %*% fixef(g)); y <- getME(g, "y"); id <- getME(g, "flist")[[1]]
  dens <- if (family()$family == "poisson") function(e, i) dpois(y[i], exp(e)) else
    function(e, i) dbinom(y[i], 1, plogis(e))
  ll_int <- sum(sapply(split(seq_along(y), id), function(i) log(integrate(function(u)
    sapply(u, function(v) prod(dens(eta[i] + v, i))) * dnorm(u, 0, sqrt(omega2)),
    -Inf, Inf, rel.tol = 1e-10)$value)))
  list(fixed_effects = rename(fixef(g)), se = rename(sqrt(diag(as.matrix(vcov(g))))),
       omega2 = omega2, loglik = as.numeric(logLik(g)), loglik_integrate = ll_int,
       nAGQ = nAGQ, n_individuals = as.integer(ngrps(g)[[1]]), n_obs = nobs(g),
       seconds = seconds, warnings = as.list(warns))
}

epil <- read.csv(epil_path)
epil$progabide <- as.numeric(epil$trt == "progabide")
epil$lbase_progabide <- epil$lbase * epil$progabide
f_epil <- y ~ lbase + progabide + lbase_progabide + lage + V4 + (1 | subject)

toe <- read.csv(toe_path)
toe$time_treatment <- toe$time * toe$treatment
f_toe <- y ~ time + treatment + time_treatment + (1 | id)

record <- list(
  lme4_version = as.character(packageVersion("lme4")),
  optimizer = "bobyqa",
  epil = list(family = "poisson", formula = deparse(f_epil),
              agq = fit_glmm(f_epil, epil, poisson, 25),
              laplace = fit_glmm(f_epil, epil, poisson, 1)),
  toenail = list(family = "binomial", formula = deparse(f_toe),
                 agq = fit_glmm(f_toe, toe, binomial, 25),
                 laplace = fit_glmm(f_toe, toe, binomial, 1)))
write(toJSON(record, auto_unbox = TRUE, digits = NA, pretty = TRUE), out)
cat("wrote", out, "\n")
