# Linear growth with grouping levels, where the levels' likelihood is exact (a linear mixed model),
# and the ML fits of nlme::lme (nested) and lme4::lmer (crossed) of it.
#
#   Rscript tests/reference/levels/linear_levels.R [out_dir]
#
# Crossed design (seed 20261205): 30 genotypes x 2 blocks x 4 plants = 240 plants, 5 times each;
# y = 10 + u_genotype + v_block + e_plant + (1 + f_plant) t + N(0, 0.5^2), sd(u) = 1.5, sd(v) = 1,
# sd(e) = 1, sd(f) = 0.3; written as crossed_linear.csv. Fits (ML):
#   nested: lme(y ~ t, random = list(genotype = ~ 1, plant = pdDiag(~ t)))   (plants in genotypes)
#   crossed: lmer(y ~ t + (1 | genotype) + (1 | block) + (1 | plant) + (0 + t | plant)), and with
#   a genotype-level covariate (half = "a" for G01-G15, "b" for G16-G30) on the intercept
# Full covariance (seed 20261206): 40 genotypes x 5 plants, 5 times; genotype effects on intercept
# and slope with sds 1.5 and 0.4, correlation 0.6; plant sds 1 and 0.2; residual sd 0.5; written as
# full_linear.csv and fitted by lmer(y ~ t + (1 + t | genotype) + (1 | plant) + (0 + t | plant)).
# All written to linear_levels.json. tests/test_levels.py compares pymixnn's fits; about 3 s.
suppressPackageStartupMessages({library(nlme); library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "tests/reference/levels"
set.seed(20261205)
times <- 0:4
rows <- list()
u <- rnorm(30, 0, 1.5); v <- rnorm(2, 0, 1)
k <- 0
for (g in 1:30) for (b in 1:2) for (r in 1:4) {
  k <- k + 1
  e <- rnorm(1, 0, 1); f <- rnorm(1, 0, 0.3)
  y <- 10 + u[g] + v[b] + e + (1 + f) * times + rnorm(length(times), 0, 0.5)
  rows[[k]] <- data.frame(plant = sprintf("G%02d.B%d.R%d", g, b, r), genotype = sprintf("G%02d", g),
                          block = sprintf("B%d", b), t = times, y = round(y, 5))
}
d <- do.call(rbind, rows)
write.csv(d, file.path(out, "crossed_linear.csv"), row.names = FALSE)
nested <- lme(y ~ t, random = list(genotype = ~ 1, plant = pdDiag(~ t)), data = d, method = "ML")
vc <- VarCorr(nested)
crossed <- lmer(y ~ t + (1 | genotype) + (1 | block) + (1 | plant) + (0 + t | plant), data = d, REML = FALSE)
# a genotype-level covariate on the intercept: genotypes G01-G15 ("a") against G16-G30 ("b")
d$half <- ifelse(d$genotype <= "G15", "a", "b")
with_cov <- lmer(y ~ t + half + (1 | genotype) + (1 | block) + (1 | plant) + (0 + t | plant), data = d,
                 REML = FALSE)
vcc <- as.data.frame(VarCorr(crossed))
# lme4 names the second term of a grouping factor "plant.1": found by the prefix and the variable
var_of <- function(prefix, var1, v = vcc) v$vcov[startsWith(v$grp, prefix) & v$var1 == var1 & is.na(v$var2)][1]
set.seed(20261206)
rows <- list(); k <- 0
Sg <- matrix(c(1.5^2, 0.6 * 1.5 * 0.4, 0.6 * 1.5 * 0.4, 0.4^2), 2)
for (g in 1:40) {
  ug <- drop(t(chol(Sg)) %*% rnorm(2))
  for (r in 1:5) {
    k <- k + 1
    y <- 10 + ug[1] + rnorm(1, 0, 1) + (1 + ug[2] + rnorm(1, 0, 0.2)) * times + rnorm(length(times), 0, 0.5)
    rows[[k]] <- data.frame(plant = sprintf("G%02d.R%d", g, r), genotype = sprintf("G%02d", g), t = times,
                            y = round(y, 5))
  }
}
d3 <- do.call(rbind, rows)
write.csv(d3, file.path(out, "full_linear.csv"), row.names = FALSE)
full <- lmer(y ~ t + (1 + t | genotype) + (1 | plant) + (0 + t | plant), data = d3, REML = FALSE)
vcf <- as.data.frame(VarCorr(full))
vf <- function(grp, v1, v2 = NA) vcf$vcov[vcf$grp == grp & vcf$var1 == v1 &
                                            (if (is.na(v2)) is.na(vcf$var2) else vcf$var2 %in% v2)][1]
res <- list(
  crossed_covariate = list(
    fixed = as.list(fixef(with_cov)), fixed_se = as.list(sqrt(diag(as.matrix(vcov(with_cov))))),
    logLik = as.numeric(logLik(with_cov))
  ),
  full = list(
    fixed = as.list(fixef(full)), fixed_se = as.list(sqrt(diag(as.matrix(vcov(full))))),
    omega_genotype = list(intercept = vf("genotype", "(Intercept)"), slope = vf("genotype", "t"),
                          cov = vf("genotype", "(Intercept)", "t")),
    omega2_plant = list(intercept = var_of("plant", "(Intercept)", vcf), t = var_of("plant", "t", vcf)),
    sigma = sigma(full), logLik = as.numeric(logLik(full))
  ),
  nested = list(
    fixed = as.list(fixef(nested)), fixed_se = as.list(sqrt(diag(vcov(nested)))),
    omega2_genotype = as.numeric(vc[2, "Variance"]),
    omega2_plant = list(intercept = as.numeric(vc[4, "Variance"]), t = as.numeric(vc[5, "Variance"])),
    sigma = nested$sigma, logLik = as.numeric(logLik(nested))
  ),
  crossed = list(
    fixed = as.list(fixef(crossed)), fixed_se = as.list(sqrt(diag(as.matrix(vcov(crossed))))),
    omega2_genotype = var_of("genotype", "(Intercept)"), omega2_block = var_of("block", "(Intercept)"),
    omega2_plant = list(intercept = var_of("plant", "(Intercept)"), t = var_of("plant", "t")),
    sigma = sigma(crossed), logLik = as.numeric(logLik(crossed)),
    genotype_effects = as.list(setNames(ranef(crossed)$genotype[, 1], rownames(ranef(crossed)$genotype)))
  ),
  nlme_version = as.character(packageVersion("nlme")), lme4_version = as.character(packageVersion("lme4"))
)
write_json(res, file.path(out, "linear_levels.json"), auto_unbox = TRUE, digits = 10, pretty = TRUE)
print(vc); print(VarCorr(crossed)); print(logLik(nested)); print(logLik(crossed))
