# Reference numbers for the count-data issue: saemix's documented Poisson model on rapi
# (man/rapi.saemix.Rd of saemix 3.4: log-linear intercept and slope in time, correlated random
# effects, gender on both) and its zero-inflated Poisson model (diagonal omega, p0 without random
# effect), and lme4::glmer on the Poisson GLMM (Laplace, nAGQ = 1: two random effects).
#
#   R_LIBS=<library with saemix and npde> Rscript tests/reference/rapi_saemix.R [OUT.json] [rapi.csv]
#
# saemix and npde are on CRAN only (not in Debian); this script is run by hand where they are
# installed, and its output is committed as tests/reference/rapi_saemix.json.
suppressPackageStartupMessages({library(saemix); library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "rapi_saemix.json"
here <- normalizePath(dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE))))
data_path <- if (length(args) >= 2) args[2] else
  file.path(here, "..", "..", "..", "shared", "data", "count_longitudinal", "rapi.saemix.csv")
rapi <- read.csv(data_path)

saemix.data <- saemixData(name.data = rapi, name.group = "id", name.predictors = c("time", "rapi"),
                          name.response = "rapi", name.covariates = "gender",
                          units = list(x = "months", y = "", covariates = ""), verbose = FALSE)
count.poisson <- function(psi, id, xidep) {
  time <- xidep[, 1]; y <- xidep[, 2]
  lambda <- exp(psi[id, 1] + psi[id, 2] * time)
  -lambda + y * log(lambda) - log(factorial(y))
}
model <- saemixModel(model = count.poisson, description = "Count model Poisson", modeltype = "likelihood",
                     psi0 = matrix(c(log(5), 0.01), ncol = 2, byrow = TRUE,
                                   dimnames = list(NULL, c("intercept", "slope"))),
                     transform.par = c(0, 0), omega.init = diag(c(0.5, 0.5)),
                     covariance.model = matrix(1, 2, 2), covariate.model = matrix(c(1, 1), ncol = 2),
                     verbose = FALSE)
t0 <- proc.time()[["elapsed"]]
fit <- saemix(model, saemix.data, list(seed = 632545, save = FALSE, save.graphs = FALSE,
                                       displayProgress = FALSE, fim = FALSE, print = FALSE))
fit <- llis.saemix(fit)
seconds <- proc.time()[["elapsed"]] - t0
res <- fit@results
fixed <- setNames(as.list(res@fixed.effects), res@name.fixed)
omega <- res@omega
rownames(omega) <- colnames(omega) <- c("intercept", "slope")

# saemix's documented zero-inflated Poisson model (same help page): diagonal omega on intercept
# and slope, p0 (logit-transformed) without random effect, gender on intercept and slope
count.zip <- function(psi, id, xidep) {
  time <- xidep[, 1]; y <- xidep[, 2]
  p0 <- psi[id, 3]
  lambda <- exp(psi[id, 1] + psi[id, 2] * time)
  logp <- log(1 - p0) - lambda + y * log(lambda) - log(factorial(y))
  logp0 <- log(p0 + (1 - p0) * exp(-lambda))
  logp[y == 0] <- logp0[y == 0]
  logp
}
model.zip <- saemixModel(model = count.zip, description = "count model ZIP", modeltype = "likelihood",
                         psi0 = matrix(c(1.5, 0.01, 0.2), ncol = 3, byrow = TRUE,
                                       dimnames = list(NULL, c("intercept", "slope", "p0"))),
                         transform.par = c(0, 0, 3), covariance.model = diag(c(1, 1, 0)),
                         omega.init = diag(c(0.5, 0.3, 0)),
                         covariate.model = matrix(c(1, 1, 0), ncol = 3, byrow = TRUE), verbose = FALSE)
t0 <- proc.time()[["elapsed"]]
zip <- saemix(model.zip, saemix.data, list(seed = 632545, save = FALSE, save.graphs = FALSE,
                                           displayProgress = FALSE, fim = FALSE, print = FALSE))
zip <- llis.saemix(zip)
seconds_zip <- proc.time()[["elapsed"]] - t0
rz <- zip@results
zip_fixed <- setNames(as.list(rz@fixed.effects), rz@name.fixed)

# the same GLMM with lme4 (gender coded as in saemix: indicator of the second level)
g <- glmer(rapi ~ time * gender + (time | id), data = rapi, family = poisson, nAGQ = 1)
vc <- as.matrix(VarCorr(g)$id)

record <- list(
  saemix_version = as.character(packageVersion("saemix")), seed = 632545, seconds = seconds,
  covariate_levels = levels(factor(rapi$gender)),
  saemix = list(fixed_effects = fixed, omega = list(intercept = omega[1, 1], slope = omega[2, 2],
                                                    cov = omega[1, 2]),
                ll_is = res@ll.is, aic_is = res@aic.is, bic_is = res@bic.is),
  saemix_zip = list(fixed_effects = zip_fixed, omega = list(intercept = rz@omega[1, 1],
                                                            slope = rz@omega[2, 2]),
                    ll_is = rz@ll.is, aic_is = rz@aic.is, bic_is = rz@bic.is, seconds = seconds_zip),
  glmer = list(fixed_effects = as.list(fixef(g)), omega = list(intercept = vc[1, 1], slope = vc[2, 2],
                                                               cov = vc[1, 2]),
               loglik = as.numeric(logLik(g)), nAGQ = 1,
               lme4_version = as.character(packageVersion("lme4"))))
write(toJSON(record, auto_unbox = TRUE, digits = NA, pretty = TRUE), out)
cat("wrote", out, "\n")
