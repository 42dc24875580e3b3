# The graph-network estimator of a Matérn field from R: mixnnSpatialEstimator() trains Python's
# pymixnn.SpatialEstimator, predict() estimates fields; R's numbers are Python's.

test_that("mixnnSpatialEstimator trains, predicts and compares as Python does", {
  skip_if_no_pymixnn()
  set.seed(1)
  loc <- data.frame(x = runif(60), y = runif(60))
  prior <- list(range = list("uniform", 0.1, 0.6), sd = list("uniform", 0.5, 2))
  est <- mixnnSpatialEstimator(loc, prior = prior, n_simulations = 3200)
  expect_s3_class(est, "mixnnSpatialEstimator")
  expect_output(print(est), "SpatialEstimator\\(matern nu=1.5 at 60 locations; estimates \\['range', 'sd'\\]")
  sim <- mixnnSpatialSimulate(est, 3, seed = 2L)
  expect_identical(dim(sim$fields), c(3L, 60L))
  expect_identical(colnames(sim$params), c("range", "sd", "nugget"))
  p <- predict(est, sim$fields, likelihood = TRUE)
  expect_identical(colnames(p), c("range", "sd", "nugget", "likelihood.range", "likelihood.sd",
                                  "likelihood.nugget", "likelihood.loglik"))
  # the same fields in Python give the same numbers
  py <- est$py$estimate(reticulate::np_array(sim$fields))
  expect_equal(p$range, as.numeric(py$range), tolerance = 1e-12)
  expect_equal(p$nugget, rep(0, 3))
  # the estimates are equivariant: a rescaled field gives a rescaled sd, the same range
  q <- predict(est, 2 * sim$fields[1, ] + 5)
  expect_equal(q$range, p$range[1], tolerance = 1e-4)
  expect_equal(q$sd, 2 * p$sd[1], tolerance = 1e-4)
  cmp <- mixnnSpatialCompare(est, n_fields = 20L)
  expect_identical(paste(cmp$method, cmp$parameter), c("gnn range", "gnn sd", "likelihood range", "likelihood sd"))
  expect_true(all(cmp$rmse > 0))
})

test_that("mixnnSpatialEstimator names a bad location", {
  skip_if_no_pymixnn()
  loc <- data.frame(x = c(seq(0, 1, length.out = 11), 0), y = c(seq(1, 0, length.out = 11), 1))
  expect_error(mixnnSpatialEstimator(loc, n_simulations = 64), "rows 0 and 11 are the same location",
               class = "pymixnn_error")
})
