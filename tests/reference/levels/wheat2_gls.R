# nlme's ML fits of the Wheat2 spatial models (Pinheiro & Bates 2000, sec. 5.3.2) on the bundled
# data (pymixnn/datasets/wheat2.csv, which is nlme's Wheat2 with a plot column added):
#
#   Rscript tests/reference/levels/wheat2_gls.R [wheat2.csv] [out.json]
#
# gls(yield ~ variety - 1, correlation = cor<Kind>(form = ~ latitude + longitude, nugget = TRUE),
# method = "ML") for the exponential, Gaussian and spherical correlations (starts: range 13 and
# nugget 0.2, as in the book's fits; the spherical's likelihood has a second maximum at range 49,
# reached from a start of 48, recorded too), and the model with independent errors. Writes the
# range, the nugget (a share of the sill), sigma, the sill sigma^2, the log-likelihood, AIC and the
# variety means with their SEs; tests/test_spatial_regression.py compares pymixnn's random=[] fit
# with a kind="gp" field with it. Debian's nlme; about 3 s.
suppressPackageStartupMessages({library(nlme); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
path <- if (length(args) >= 1) args[1] else "pymixnn/datasets/wheat2.csv"
out <- if (length(args) >= 2) args[2] else "tests/reference/levels/wheat2_gls.json"
d <- read.csv(path)
d$variety <- factor(d$variety)
one <- function(cs) {
  t0 <- proc.time()[3]
  f <- gls(yield ~ variety - 1, d, correlation = cs, method = "ML")
  el <- as.numeric(proc.time()[3] - t0)
  cp <- coef(f$modelStruct$corStruct, unconstrained = FALSE)
  list(range = as.numeric(cp[1]), nugget = as.numeric(cp[2]), sigma = f$sigma, sill = f$sigma^2,
       logLik = as.numeric(logLik(f)), AIC = AIC(f), seconds = el,
       coef = as.list(coef(f)), coef_se = as.list(sqrt(diag(vcov(f)))))
}
form <- ~ latitude + longitude
res <- list(
  exponential = one(corExp(c(13, 0.2), form = form, nugget = TRUE)),
  gaussian = one(corGaus(c(13, 0.2), form = form, nugget = TRUE)),
  spherical = one(corSpher(c(13, 0.2), form = form, nugget = TRUE)),
  spherical_from_48 = one(corSpher(c(48, 0.2), form = form, nugget = TRUE))
)
f0 <- gls(yield ~ variety - 1, d, method = "ML")
res$independent <- list(logLik = as.numeric(logLik(f0)), sigma = f0$sigma, AIC = AIC(f0))
res$nlme_version <- as.character(packageVersion("nlme"))
write_json(res, out, auto_unbox = TRUE, digits = 10, pretty = TRUE)
for (k in names(res)[1:4]) cat(k, "range", res[[k]]$range, "nugget", res[[k]]$nugget, "sill", res[[k]]$sill,
                                "logLik", res[[k]]$logLik, "\n")
cat("independent logLik", res$independent$logLik, "\n")
