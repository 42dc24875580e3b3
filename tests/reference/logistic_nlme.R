# Reference fit of logistic growth data with nlme (maximum likelihood).
#
# What it fits: the logistic curve with log-normal random effects on all three
# parameters and a constant residual error,
#     y ~ exp(lA) / (1 + exp(-(t - exp(lB)) / exp(lC)))
#     fixed = lA + lB + lC ~ 1, random = pdDiag(lA + lB + lC ~ 1), groups = ~id
# i.e. the model pymixnn.simulate.simulate_logistic draws from, estimated by
# nlme's linearisation (Lindstrom-Bates) with method = "ML" and
# nlmeControl(maxIter = 200, msMaxIter = 200, pnlsMaxIter = 20,
# returnObject = TRUE).
#
# How to run it (from the repository root):
#     Rscript tests/reference/logistic_nlme.R IN.csv OUT.json [A0 B0 C0]
# IN.csv has columns id, t, y (others are ignored). A0, B0, C0 are starting
# values on the natural scale (the fit starts at their logs); they default to
# 100, 5, 1.5, the truth of simulate_logistic.
#
# OUT.json holds: fixed (lA, lB, lC, log scale) and fixed_se (from
# summary()$tTable), natural (exp of fixed: A, B, C), omega2 (random-effect
# variances from VarCorr()), sigma (residual SD), logLik, AIC, BIC, seconds
# (elapsed time of the nlme() call), start, converged and warnings (nlme's
# messages, e.g. when returnObject = TRUE hands back an unconverged fit),
# n_individuals, n_observations (rows), nlme_version and R_version.
#
# Requirements: nlme (Debian r-cran-nlme, part of R's recommended packages)
# and jsonlite (Debian r-cran-jsonlite). tests/r_helpers.py::nlme_logistic
# runs this script from the Python tests.

suppressPackageStartupMessages({
  library(nlme)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
if (!(length(args) %in% c(2, 5))) {
  stop("usage: Rscript logistic_nlme.R IN.csv OUT.json [A0 B0 C0]")
}
in_path <- args[1]
out_path <- args[2]
start_natural <- if (length(args) == 5) as.numeric(args[3:5]) else c(100, 5, 1.5)
if (any(!is.finite(start_natural)) || any(start_natural <= 0)) {
  stop("starting values A0 B0 C0 must be positive numbers")
}
start <- setNames(log(start_natural), c("lA", "lB", "lC"))

data <- read.csv(in_path)
missing_cols <- setdiff(c("id", "t", "y"), names(data))
if (length(missing_cols)) {
  stop("IN.csv lacks column(s): ", paste(missing_cols, collapse = ", "))
}
data <- groupedData(y ~ t | id, data = data[, c("id", "t", "y")])

messages <- character(0)
elapsed <- system.time(
  fit <- withCallingHandlers(
    nlme(y ~ exp(lA) / (1 + exp(-(t - exp(lB)) / exp(lC))),
         data = data,
         fixed = lA + lB + lC ~ 1,
         random = pdDiag(lA + lB + lC ~ 1),
         groups = ~id,
         start = start,
         method = "ML",
         control = nlmeControl(maxIter = 200, msMaxIter = 200, pnlsMaxIter = 20,
                               returnObject = TRUE)),
    warning = function(w) {
      messages <<- c(messages, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
)[["elapsed"]]

fixed <- fixef(fit)                                    # fixef(fit)
fixed_se <- summary(fit)$tTable[, "Std.Error"]         # summary(fit)$tTable
# VarCorr(fit)[, "Variance"], at full precision (VarCorr() formats its numbers as text)
omega2 <- diag(pdMatrix(fit$modelStruct$reStruct)$id) * fit$sigma^2
ll <- logLik(fit)                                      # logLik(fit)

result <- list(
  model = "y ~ exp(lA)/(1+exp(-(t-exp(lB))/exp(lC))), random = pdDiag(lA+lB+lC~1), method = ML",
  fixed = as.list(fixed[c("lA", "lB", "lC")]),
  fixed_se = as.list(fixed_se[c("lA", "lB", "lC")]),
  natural = list(A = exp(fixed[["lA"]]), B = exp(fixed[["lB"]]), C = exp(fixed[["lC"]])),
  omega2 = as.list(omega2),
  sigma = fit$sigma,                                   # sigma(fit)
  logLik = as.numeric(ll),
  df = attr(ll, "df"),
  AIC = AIC(fit),
  BIC = BIC(fit),
  seconds = elapsed,
  start = as.list(start),
  converged = length(messages) == 0,
  warnings = I(messages),
  n_individuals = length(unique(data$id)),
  n_observations = nrow(data),
  nlme_version = as.character(packageVersion("nlme")),
  R_version = paste(R.version$major, R.version$minor, sep = ".")
)
write_json(result, out_path, auto_unbox = TRUE, digits = NA, pretty = TRUE)
