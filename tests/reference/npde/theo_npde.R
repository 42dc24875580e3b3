# Reference npde of the theophylline data, computed by the R package npde.
#
# Input (written by export_theo.py): theo_obs.csv (id, time, y: 120 observations,
# each individual's rows together) and theo_sims.csv.gz (ysim: 1000 replicates of
# the 120 rows simulated under a pymixnn fit, stacked by replicate, rounded to 8
# significant digits). This script builds npde's simulated data set (idsim, xsim,
# ysim) by repeating id and time of the observations, and runs
#     autonpde(obs, sims, iid = 1, ix = 2, iy = 3, boolsave = FALSE,
#              decorr.method = M, cens.method = "omit", ties = TRUE, detect = FALSE)
# for M in cholesky (npde's default), inverse and polar. With ties = TRUE (npde's
# default) and no censored data npde draws no random numbers: the numbers are
# deterministic (no seed is set).
#
# Output (theo_npde.json): per method, pd, npd, npde and ypred of each observation
# (full precision), the gof.test results (mean, variance, skewness, kurtosis and
# the Bonferroni-adjusted p-values of the t-test, the Fisher variance test, the
# Shapiro-Wilk test and the global test), the test statistics (t.test,
# (n-1) var, shapiro.test W) and their unadjusted p-values; the npde and R versions.
#
# How to run it (from the repository root, about 5 s):
#     NPDE_LIB=/opt/rlib-npde Rscript tests/reference/npde/theo_npde.R [indir] [out.json]
# indir defaults to this script's folder, out.json to theo_npde.json there.
# npde (CRAN only) must be installed in NPDE_LIB (default /opt/rlib-npde), see
# tests/reference/README.md; jsonlite is Debian's r-cran-jsonlite.

.libPaths(c(Sys.getenv("NPDE_LIB", "/opt/rlib-npde"), .libPaths()))
suppressPackageStartupMessages({
  library(npde)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
here <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(), value = TRUE)[1])))
indir <- if (length(args) >= 1) args[1] else here
out <- if (length(args) >= 2) args[2] else file.path(here, "theo_npde.json")

obs <- read.csv(file.path(indir, "theo_obs.csv"))
ysim <- read.csv(gzfile(file.path(indir, "theo_sims.csv.gz")))$ysim
nrep <- length(ysim) / nrow(obs)
stopifnot(nrep == round(nrep))
sims <- data.frame(idsim = rep(obs$id, nrep), xsim = rep(obs$time, nrep), ysim = ysim)

run <- function(method) {
  x <- autonpde(obs, sims, iid = 1, ix = 2, iy = 3, boolsave = FALSE, verbose = FALSE,
                decorr.method = method, cens.method = "omit", ties = TRUE, detect = FALSE)
  res <- x@results@res
  g <- gof.test(res$npde, which = "npde")
  npde <- res$npde
  list(
    decorr_method = method,
    pd = res$pd,
    npd = qnorm(res$pd),
    npde = npde,
    ypred = res$ypred,
    gof = list(
      n_obs = g$nobs, mean = g$mean, se_mean = g$se.mean, variance = g$var,
      se_variance = g$se.var, skewness = g$skewness, kurtosis = g$kurtosis,
      p_mean = unname(g$p.value[1]), p_variance = unname(g$p.value[2]),
      p_normality = unname(g$p.value[3]), p_global = unname(g$p.value[4])
    ),
    statistics = list(
      t = unname(t.test(npde)$statistic),
      chi2 = var(npde) * (length(npde) - 1),
      shapiro_w = unname(shapiro.test(npde)$statistic)
    ),
    p_raw = list(
      mean = t.test(npde)$p.value,
      variance = 2 * min(pchisq(var(npde) * (length(npde) - 1), length(npde) - 1),
                         1 - pchisq(var(npde) * (length(npde) - 1), length(npde) - 1)),
      normality = shapiro.test(npde)$p.value
    )
  )
}

invisible(capture.output(results <- lapply(c("cholesky", "inverse", "polar"), run)))
names(results) <- c("cholesky", "inverse", "polar")
write_json(
  list(
    npde_version = as.character(packageVersion("npde")),
    r_version = R.version.string,
    n_sim = nrep,
    options = list(cens.method = "omit", ties = TRUE),
    results = results
  ),
  out, digits = NA, auto_unbox = TRUE, pretty = TRUE
)
cat("wrote", out, "\n")
