# Reference numbers for the ordinal-data issue: ordinal::clmm cumulative-logit random-intercept model
# on the knee pain data (saemix's knee.saemix), fitted by adaptive Gauss-Hermite quadrature
# (nAGQ = 10: the reference), with nAGQ = 50 (converged quadrature) and the Laplace fit (nAGQ = 1)
# alongside for context.
# clmm's parameterisation: logit P(Y <= k | u_i) = theta_k - x'beta - u_i, u_i ~ N(0, omega2),
# so a positive beta shifts towards higher pain categories. The observed pain levels are 1..5,
# so the thresholds are named "1|2", "2|3", "3|4", "4|5". se_log_sd is the SE of log(sqrt(omega2)).
# Each fit also records loglik_integrate: the exact marginal log-likelihood at the fitted parameters
# (stats::integrate over u_i, per individual), as a check on the quadrature.
# The nAGQ = 10 SEs agree (to ~1%) with a finite-difference Hessian of the exact likelihood (checked by
# hand); clmm's numerical Hessian at nAGQ = 50 does not (SEs up to 1.8x too big), so they are dropped.
# If nlminb stops with a non-zero code, max|grad| > 0.01 or a non-positive-definite Hessian (the Laplace
# fit does: "false convergence"), the fit is redone with ucminf (first try kept under first_attempt).
#
#   Rscript tests/reference/knee_clmm.R [OUT.json] [knee.csv]   (default: pymixnn/datasets/knee.csv)
#
# ordinal and jsonlite are the Debian packages; the output is committed as
# tests/reference/knee_clmm.json.
suppressPackageStartupMessages({library(ordinal); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "knee_clmm.json"
here <- normalizePath(dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE))))
data_path <- if (length(args) >= 2) args[2] else
  file.path(here, "..", "..", "pymixnn", "datasets", "knee.csv")
knee <- read.csv(data_path)
knee$pain <- factor(knee$y, ordered = TRUE)
form <- pain ~ time + treatment + Sex + Age + Age2 + (1 | id)

loglik_integrate <- function(m) {
  eta <- drop(model.matrix(~ time + treatment + Sex + Age + Age2, knee)[, names(m$beta)] %*% m$beta)
  th <- c(-Inf, m$alpha, Inf); k <- as.integer(knee$pain); s <- sqrt(VarCorr(m)$id[1, 1])
  sum(sapply(split(seq_len(nrow(knee)), knee$id), function(i) log(integrate(function(u) sapply(u,
    function(v) prod(plogis(th[k[i] + 1] - eta[i] - v) - plogis(th[k[i]] - eta[i] - v))) *
    dnorm(u, 0, s), -Inf, Inf, rel.tol = 1e-10)$value)))
}

fit_clmm <- function(nAGQ, ctrl = clmm.control()) {
  warns <- character(0)
  t0 <- proc.time()[["elapsed"]]
  m <- withCallingHandlers(clmm(form, data = knee, link = "logit", nAGQ = nAGQ, control = ctrl),
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") })
  seconds <- proc.time()[["elapsed"]] - t0
  se <- tryCatch(sqrt(diag(vcov(m))),
                 error = function(e) { warns <<- c(warns, conditionMessage(e)); NULL })
  list(thresholds = as.list(m$alpha), thresholds_ordered = unname(m$alpha),
       beta = as.list(m$beta), se_thresholds = as.list(se[names(m$alpha)]),
       se_beta = as.list(se[names(m$beta)]), se_log_sd = se[["ST1"]],
       omega2 = as.numeric(VarCorr(m)$id[1, 1]),
       loglik = as.numeric(logLik(m)), loglik_integrate = loglik_integrate(m), nAGQ = nAGQ,
       optimizer = ctrl$method, optimizer_message = m$optRes$message,
       max_grad = max(abs(m$gradient)), cond_H = with(eigen(m$Hessian), max(values) / min(values)),
       n_individuals = length(unique(knee$id)), n_obs = nrow(knee),
       seconds = seconds, warnings = as.list(unique(warns)))
}
fit_checked <- function(nAGQ) {
  f <- fit_clmm(nAGQ)
  if (f$max_grad < 0.01 && length(f$se_beta) > 0 && !grepl("false", f$optimizer_message)) return(f)
  g <- fit_clmm(nAGQ, clmm.control(method = "ucminf", maxIter = 1000, gradTol = 1e-6))
  g$first_attempt <- f; g
}

record <- list(
  ordinal_version = as.character(packageVersion("ordinal")), link = "logit",
  formula = deparse(form), response_counts = as.list(table(knee$y)),
  parameterisation = "logit P(Y <= k) = theta_k - x'beta - u_i",
  agq = fit_checked(10), agq50 = fit_checked(50), laplace = fit_checked(1))
record$agq50[c("se_thresholds", "se_beta", "se_log_sd")] <- NULL
write(toJSON(record, auto_unbox = TRUE, digits = NA, pretty = TRUE), out)
cat("wrote", out, "\n")
