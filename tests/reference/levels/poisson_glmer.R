# Counts with a grouping level: a Poisson log-linear model with plants nested in genotypes, and
# lme4::glmer's Laplace fit of it (the reference for a level with a non-Gaussian family).
#
#   Rscript tests/reference/levels/poisson_glmer.R [out_dir]
#
# Design (seed 20261207): 40 genotypes x 6 plants, counts at t = 0..5;
# y ~ Poisson(exp(1 + u_genotype + e_plant + 0.2 t)), sd(u) = 0.4, sd(e) = 0.3; written as
# poisson_level.csv. Fit: glmer(y ~ t + (1 | genotype) + (1 | plant), family = poisson) (Laplace,
# nAGQ = 1: adaptive quadrature needs a single scalar random effect). Written to
# poisson_glmer.json with the estimates, SEs, variances and log-likelihood. tests/test_levels.py
# compares pymixnn's fit; about 2 s.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "tests/reference/levels"
set.seed(20261207)
times <- 0:5
rows <- list()
u <- rnorm(40, 0, 0.4)
k <- 0
for (g in 1:40) for (r in 1:6) {
  k <- k + 1
  e <- rnorm(1, 0, 0.3)
  rows[[k]] <- data.frame(plant = sprintf("G%02d.P%d", g, r), genotype = sprintf("G%02d", g),
                          t = times, y = rpois(length(times), exp(1 + u[g] + e + 0.2 * times)))
}
d <- do.call(rbind, rows)
write.csv(d, file.path(out, "poisson_level.csv"), row.names = FALSE)
fit <- glmer(y ~ t + (1 | genotype) + (1 | plant), data = d, family = poisson,
             control = glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))
vc <- as.data.frame(VarCorr(fit))
ref <- list(
  lme4 = as.character(packageVersion("lme4")),
  fixed = as.list(fixef(fit)),
  se = as.list(sqrt(diag(as.matrix(vcov(fit))))),
  omega2_genotype = vc$vcov[vc$grp == "genotype"],
  omega2_plant = vc$vcov[vc$grp == "plant"],
  loglik = as.numeric(logLik(fit))
)
write_json(ref, file.path(out, "poisson_glmer.json"), auto_unbox = TRUE, digits = 10, pretty = TRUE)
