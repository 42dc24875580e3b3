# Grouping levels (levels = list(column = parameters)) from R, against lme4's ML fit.

test_that("a crossed genotype x block fit from R matches lme4::lmer", {
  skip_if_no_pymixnn()
  set.seed(11)
  d <- do.call(rbind, lapply(1:24, function(g) do.call(rbind, lapply(1:2, function(b) {
    do.call(rbind, lapply(1:3, function(r) {
      t <- 0:3
      data.frame(plant = sprintf("G%02d.B%d.R%d", g, b, r), genotype = factor(sprintf("G%02d", g)),
                 block = sprintf("B%d", b), t = t, stringsAsFactors = FALSE)
    }))
  }))))
  u <- rnorm(24, 0, 1.2); v <- c(-0.5, 0.5)
  e <- rnorm(length(unique(d$plant)), 0, 0.8); names(e) <- unique(d$plant)
  d$y <- 5 + u[as.integer(d$genotype)] + v[as.integer(factor(d$block))] + e[d$plant] +
    0.7 * d$t + rnorm(nrow(d), 0, 0.4)
  fit <- mixnn(d, "linear", id = "plant", x = "t", y = "y", random = "intercept",
               levels = list(genotype = "intercept", block = "intercept"),
               control = mixnnControl(seed = 1, progress = FALSE))
  g <- lme4::lmer(y ~ t + (1 | genotype) + (1 | block) + (1 | plant), data = d, REML = FALSE)
  vc <- as.data.frame(lme4::VarCorr(g))
  # a linear model: the levels' likelihood is exact, both fits are ML (measured 1e-5 apart in
  # Python's tests); 1% and 0.01 units leave room for the stopping rules
  expect_equal(fit$params["omega2.genotype.intercept", "estimate"],
               vc$vcov[vc$grp == "genotype"], tolerance = 0.01)
  expect_equal(fit$params["omega2.intercept", "estimate"], vc$vcov[vc$grp == "plant"], tolerance = 0.01)
  expect_equal(unname(fixef(fit)), unname(lme4::fixef(g)), tolerance = 1e-3)
  expect_equal(as.numeric(logLik(fit)), as.numeric(logLik(g)), tolerance = 0.01 / abs(as.numeric(logLik(g))))
  re <- ranef(fit, level = "genotype")
  expect_identical(rownames(re), levels(d$genotype))
  expect_identical(colnames(re), c("intercept", "intercept.sd", "n_individuals"))
  expect_equal(re$intercept, unname(lme4::ranef(g)$genotype[, 1]), tolerance = 0.02)
  expect_error(ranef(fit, level = "plot"), "no level \"plot\"")
  expect_error(mixnn(d, "linear", id = "plant", x = "t", y = "y", levels = list("intercept")),
               "named list")
})

test_that("a spatial field from R: its rows, the field at the locations", {
  skip_if_no_pymixnn()
  set.seed(3)
  n <- 40
  xy <- cbind(runif(n, 0, 10), runif(n, 0, 10))
  f <- drop(t(chol(exp(-as.matrix(dist(xy)) / 3) + diag(1e-8, n))) %*% rnorm(n))
  d <- do.call(rbind, lapply(seq_len(n), function(i) {
    t <- 0:3
    data.frame(plant = sprintf("p%02d", i), x = xy[i, 1], y_coord = xy[i, 2], t = t,
               y = 5 + f[i] + rnorm(1, 0, 0.5) + t + rnorm(4, 0, 0.3))
  }))
  fit <- mixnn(d, "linear", id = "plant", x = "t", y = "y", random = "intercept",
               spatial = list(params = "intercept", coords = c("x", "y_coord")),
               control = mixnnControl(seed = 1, progress = FALSE))
  expect_true(all(c("spatial.intercept.sd", "spatial.intercept.range") %in% rownames(fit$params)))
  expect_identical(colnames(fit$spatial_field),
                   c("x", "y_coord", "intercept", "intercept.sd", "n_individuals"))
  expect_identical(nrow(fit$spatial_field), 40L)
  expect_error(mixnn(d, "linear", id = "plant", x = "t", y = "y", spatial = list(params = "intercept")),
               "coords")
  # the Matérn field by nearest neighbours, nu = 1/2 with all 39 predecessors: exact, the same
  # fit as the exponential gp's (its range 2x the gp's); Python measures 1e-6 apart
  mat <- mixnn(d, "linear", id = "plant", x = "t", y = "y", random = "intercept",
               spatial = list(params = "intercept", coords = c("x", "y_coord"), kind = "matern",
                              nu = 0.5, neighbours = 39),
               control = mixnnControl(seed = 1, progress = FALSE))
  expect_equal(mat$loglik, fit$loglik, tolerance = 1e-4)
  expect_equal(mat$params["spatial.intercept.range", "estimate"],
               2 * fit$params["spatial.intercept.range", "estimate"], tolerance = 1e-3)
  expect_equal(mat$params["spatial.intercept.sd", "estimate"],
               fit$params["spatial.intercept.sd", "estimate"], tolerance = 1e-3)
  expect_error(mixnn(d, "linear", id = "plant", x = "t", y = "y",
                     spatial = list(params = "intercept", coords = c("x", "y_coord"), kind = "matern",
                                    nu = 1)), "nu is one of")
})

test_that("a grid field from R (kind = \"ar1xar1\"): its rows, every cell of the grid", {
  skip_if_no_pymixnn()
  set.seed(4)
  cells <- expand.grid(Col = 1:6, Row = 1:5)[, c("Row", "Col")]
  f <- drop(t(chol(outer(cells$Row, cells$Row, function(a, b) 0.6^abs(a - b)) *
                   outer(cells$Col, cells$Col, function(a, b) 0.5^abs(a - b)))) %*% rnorm(30))
  keep <- seq_len(30)[-c(8, 17)]  # two empty pots
  d <- do.call(rbind, lapply(keep, function(k) {
    t <- 0:3
    data.frame(plant = sprintf("r%dc%d", cells$Row[k], cells$Col[k]), Row = cells$Row[k],
               Col = cells$Col[k], t = t, y = 5 + f[k] + rnorm(1, 0, 0.4) + t + rnorm(4, 0, 0.3))
  }))
  fit <- mixnn(d, "linear", id = "plant", x = "t", y = "y", random = "intercept",
               spatial = list(params = "intercept", coords = c("Row", "Col"), kind = "ar1xar1"),
               control = mixnnControl(seed = 1, progress = FALSE))
  expect_true(all(paste0("spatial.intercept.", c("sd", "rho_row", "rho_col")) %in% rownames(fit$params)))
  expect_identical(nrow(fit$spatial_field), 30L)
  expect_identical(sum(fit$spatial_field$n_individuals == 0), 2L)
  # the field at new points: an empty pot as in the table, two rows beyond the edge with the
  # AR1's Markov variance sd^2 (1 - rho^4) + rho^4 var(edge)
  at <- mixnnSpatialField(fit, data.frame(Row = c(2, 7), Col = c(2, 3)))
  expect_identical(colnames(at), c("Row", "Col", "intercept", "intercept.sd"))
  tab <- fit$spatial_field
  expect_equal(at$intercept.sd[1], tab$intercept.sd[tab$Row == 2 & tab$Col == 2], tolerance = 1e-12)
  rho <- fit$params["spatial.intercept.rho_row", "estimate"]
  sd <- fit$params["spatial.intercept.sd", "estimate"]
  edge <- tab$intercept.sd[tab$Row == 5 & tab$Col == 3]
  expect_equal(at$intercept.sd[2], sqrt(sd^2 * (1 - rho^4) + rho^4 * edge^2), tolerance = 1e-12)
  expect_equal(fit$spatial_variance["intercept", "field"], sd^2, tolerance = 1e-12)
  expect_true(fit$spatial_variance["intercept", "share"] > 0 && fit$spatial_variance["intercept", "share"] < 1)
  d$Row[d$plant == "r1c2"] <- 1.5
  expect_error(mixnn(d, "linear", id = "plant", x = "t", y = "y", random = "intercept",
                     spatial = list(params = "intercept", coords = c("Row", "Col"), kind = "ar1xar1")),
               "grid positions")
})

test_that("random = character(0) with a spatial field is nlme's gls with a nugget (Wheat2)", {
  skip_if_no_pymixnn()
  skip_if_not_installed("nlme")
  d <- pymixnn_dataset("wheat2")
  d$variety <- factor(as.character(d$variety))
  # yield = intercept + slope * Block + variety effects + exponential field + nugget (the residual)
  fit <- mixnn(d, "linear", id = "plot", x = "Block", y = "yield", random = character(0),
               covariates = list(intercept = "variety"),
               spatial = list(params = "intercept", coords = c("latitude", "longitude"), range_init = 20),
               control = mixnnControl(seed = 1, progress = FALSE))
  g <- nlme::gls(yield ~ variety + Block, d, method = "ML",
                 correlation = nlme::corExp(c(20, 0.2), form = ~ latitude + longitude, nugget = TRUE))
  cp <- coef(g$modelStruct$corStruct, unconstrained = FALSE)
  sd <- fit$params["spatial.intercept.sd", "estimate"]
  a <- fit$params["a", "estimate"]
  # the same likelihood (a linear model, Gaussian errors): optimizer tolerances (Python measures
  # 1e-4 in ll on the book's model); 1% on range and sill, 2% on the nugget (a ratio), 0.01 in ll
  expect_equal(fit$params["spatial.intercept.range", "estimate"], unname(cp[1]), tolerance = 0.01)
  expect_equal(sd^2 + a^2, g$sigma^2, tolerance = 0.01)
  expect_equal(a^2 / (sd^2 + a^2), unname(cp[2]), tolerance = 0.02)
  expect_equal(as.numeric(logLik(fit)), as.numeric(logLik(g)), tolerance = 0.01 / abs(as.numeric(logLik(g))))
  expect_equal(fit$params["slope", "estimate"], unname(coef(g)["Block"]), tolerance = 1e-3)
})
