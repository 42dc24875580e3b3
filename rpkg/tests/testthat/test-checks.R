# Model checks from R: npde(), cwres() and the Python-drawn plots (NPDE, full goodness of fit,
# random effects against covariates, convergence trace, prediction-corrected VPC). The numbers are
# Python's (checked against the npde package in tests/test_npde.py); R must hand them over intact.

test_that("npde() gives Python's NPDE, pd and npde's tests, in the data's row order", {
  skip_if_no_pymixnn()
  fit <- theo_fit()
  tab <- npde(fit, nsim = 200, seed = 1)
  ref <- pymixnn:::.df(pymixnn:::.need_py(fit)$npde(200L, seed = 1L))
  expect_identical(rownames(tab), rownames(fit$residuals))
  expect_true(all(c("pd", "npde", "pred") %in% names(tab)))
  expect_equal(tab$npde, ref$npde, tolerance = 1e-12)
  expect_equal(tab$pd, ref$pd, tolerance = 1e-12)
  tests <- attr(tab, "tests")
  expect_identical(rownames(tests), c("mean", "variance", "normality", "global"))
  # npde's t-test of the mean, recomputed in R from the NPDE (raw p-value)
  expect_equal(tests["mean", "p_value_raw"], stats::t.test(tab$npde)$p.value, tolerance = 1e-8)
  expect_error(npde(fit, nsim = 10), "n_sim must be an integer >= 100")
})

test_that("cwres() gives Python's CWRES", {
  skip_if_no_pymixnn()
  fit <- theo_fit()
  tab <- cwres(fit)
  ref <- pymixnn:::.df(pymixnn:::.need_py(fit)$cwres())
  expect_equal(tab$cwres, ref$cwres, tolerance = 1e-12)
  expect_true(abs(mean(tab$cwres)) < 0.3)
  expect_error(cwres(fit, decorrelation = "qr"), "decorrelation must be")
})

test_that("plot() draws the NPDE, full GOF, covariate, trace and pcVPC figures", {
  skip_if_no_pymixnn()
  fit <- theo_fit()
  for (type in c("gof_npde", "npde", "trace", "eta_covariates", "vpc")) {
    file <- tempfile(fileext = ".png")
    args <- list(fit, type = type, file = file)
    if (type %in% c("gof_npde", "npde", "vpc")) args$n_sim <- 100
    if (type == "vpc") args$prediction_corrected <- TRUE
    if (type == "eta_covariates") args$data <- pymixnn_dataset("theo")
    out <- do.call(plot, args)
    expect_identical(out, file)
    expect_gt(file.size(file), 10000)
  }
})
