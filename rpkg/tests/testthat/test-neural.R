# The neural estimator from R: mixnnAmortize() trains Python's pymixnn.amortize(), predict()
# estimates a new data set, mixnnSBC() checks calibration; R's numbers are Python's.

neural_design <- function() data.frame(id = rep(1:20, each = 5), t = rep(seq(0, 10, length.out = 5), 20))
neural_prior <- list(A = list("uniform", 80, 120), B = list("uniform", 4, 6), C = 1.5,
                     omega2.A = 0.04, omega2.B = 0.04, omega2.C = 0.04, a = list("uniform", 1, 3))

test_that("mixnnAmortize trains, predicts and calibrates as Python does", {
  skip_if_no_pymixnn()
  est <- mixnnAmortize("logistic", neural_design(), neural_prior, n_simulations = 3200, x = "t")
  expect_s3_class(est, "mixnnNeural")
  expect_output(print(est), "NeuralEstimator\\(logistic: 20 individuals x up to 5 records")
  new <- neural_design()
  set.seed(1)
  new$y <- 100 / (1 + exp(-(new$t - 5) / 1.5)) + rnorm(nrow(new), sd = 2)
  p <- predict(est, new, seed = 2L)
  expect_identical(p$parameter, c("A", "B", "C", "omega2.A", "omega2.B", "omega2.C", "a"))
  expect_identical(colnames(p), c("parameter", "kind", "estimate", "se", "ci_lower", "ci_upper", "median"))
  # the fixed parameters come back at their values with sd 0
  expect_equal(p$estimate[p$parameter == "C"], 1.5)
  expect_equal(p$se[p$parameter == "omega2.A"], 0)
  # the same estimator and data in Python give the same numbers (same seed, same draws)
  py <- est$py$estimate(pymixnn:::.py_frame(new), seed = 2L)$params
  expect_equal(p$estimate, as.numeric(py$estimate), tolerance = 1e-12)
  s <- mixnnSBC(est, n_replicates = 40L, n_draws = 20L)
  expect_identical(s$parameter, c("A", "B", "a"))
  expect_true(all(s$p_value >= 0 & s$p_value <= 1))
})

test_that("mixnnAmortize names a prior's missing parameter", {
  skip_if_no_pymixnn()
  expect_error(mixnnAmortize("logistic", neural_design(), neural_prior[-7], x = "t"),
               "prior has no law for \\['a'\\]", class = "pymixnn_error")
})
