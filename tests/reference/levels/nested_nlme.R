# Nested two-level logistic growth (trees within plots) and nlme's ML fit of it.
#
#   Rscript tests/reference/levels/nested_nlme.R [out_dir]
#
# Simulates 40 plots x 6 trees x 7 ages (seed 20261204): y = Asym / (1 + exp((xmid - age) / scal))
# + N(0, 2^2), Asym = 100 + b_plot + b_tree (sd 10 and 8), xmid = 6 + c_tree (sd 0.6), scal = 2;
# writes nested_logistic.csv and fits nlme::nlme (Debian's nlme) by ML with random =
# list(plot = pdDiag(Asym ~ 1), tree = pdDiag(Asym + xmid ~ 1)); writes nested_nlme.json.
# tests/test_levels.py compares pymixnn's levels= fit with it; it runs in about 2 s.
suppressPackageStartupMessages({library(nlme); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args) >= 1) args[1] else "tests/reference/levels"
set.seed(20261204)
n_plot <- 40; n_tree <- 6; ages <- seq(1, 13, by = 2)
rows <- list()
for (p in seq_len(n_plot)) {
  bp <- rnorm(1, 0, 10)
  for (t in seq_len(n_tree)) {
    bt <- rnorm(1, 0, 8); ct <- rnorm(1, 0, 0.6)
    A <- 100 + bp + bt; xm <- 6 + ct
    y <- A / (1 + exp((xm - ages) / 2)) + rnorm(length(ages), 0, 2)
    rows[[length(rows) + 1]] <- data.frame(plot = sprintf("P%02d", p), tree = sprintf("P%02d.T%d", p, t),
                                           age = ages, y = round(y, 4))
  }
}
d <- do.call(rbind, rows)
write.csv(d, file.path(out, "nested_logistic.csv"), row.names = FALSE)
d$plot <- factor(d$plot); d$tree <- factor(d$tree)
fit <- nlme(y ~ SSlogis(age, Asym, xmid, scal), data = d,
            fixed = Asym + xmid + scal ~ 1,
            random = list(plot = pdDiag(Asym ~ 1), tree = pdDiag(Asym + xmid ~ 1)),
            groups = ~ plot / tree, start = c(Asym = 100, xmid = 6, scal = 2), method = "ML")
vc <- VarCorr(fit)
num <- function(x) as.numeric(x)
plot_var <- num(vc[2, "Variance"])                   # plot = Asym
tree_var <- num(vc[c(4, 5), "Variance"])            # tree = Asym, xmid
res <- list(
  fixed = as.list(fixef(fit)),
  fixed_se = as.list(sqrt(diag(vcov(fit)))),
  omega2_plot_Asym = plot_var,
  omega2_tree = list(Asym = tree_var[1], xmid = tree_var[2]),
  sigma = fit$sigma,
  logLik = num(logLik(fit)),
  plot_effects = as.list(setNames(ranef(fit)$plot[, "Asym"], rownames(ranef(fit)$plot))),
  nlme_version = as.character(packageVersion("nlme"))
)
write_json(res, file.path(out, "nested_nlme.json"), auto_unbox = TRUE, digits = 10, pretty = TRUE)
print(fit); print(vc)
