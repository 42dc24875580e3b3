# Latent classes from R in lcmm's vocabulary (ng -> n_classes, mixture, classmb), postprob(),
# predictClass() and plot(type = "classes"). The comparison with lcmm itself (CRAN-only) runs in
# Python's tests on lcmm's committed numbers (tests/test_latent_class.py).

simulate_classes <- function(n, seed) {
  set.seed(seed)
  x2 <- rbinom(n, 1, 0.5)
  cls <- 1 + rbinom(n, 1, ifelse(x2 == 1, 0.7, 0.2))
  b0 <- c(10, 20)[cls] + rnorm(n, 0, 1)
  b1 <- c(1, -1)[cls] + rnorm(n, 0, 0.3)
  d <- do.call(rbind, lapply(seq_len(n), function(i) {
    t <- 0:4
    data.frame(ID = i, Time = t, X2 = x2[i], Y = b0[i] + b1[i] * t + rnorm(5, 0, 0.5))
  }))
  list(data = d, classes = cls)
}

test_that("a 2-class linear model with a membership covariate from R", {
  skip_if_no_pymixnn()
  sim <- simulate_classes(150, 1)
  fit <- mixnn(sim$data, "linear", id = "ID", x = "Time", y = "Y", random_effects = "latent_class",
               n_classes = 2, mixture = c("intercept", "slope"), classmb = ~X2,
               control = mixnnControl(seed = 1, progress = FALSE))
  expect_identical(fit$n_classes, 2L)
  expect_identical(colnames(fit$classes), c("prob.1", "prob.2", "class"))
  # classes 10 within-class SDs apart: every individual's class recovered (measured 150 of 150)
  expect_gte(mean(fit$classes$class == sim$classes), 0.98)
  p <- fit$params
  # class-specific intercepts within 3 SE of the truth (10, 20); the membership slope of X2
  # (truth log(0.7/0.3) - log(0.2/0.8) = 2.23) within 3 SE
  expect_lt(abs(p["intercept.class1", "estimate"] - 10), 3 * p["intercept.class1", "se"])
  expect_lt(abs(p["intercept.class2", "estimate"] - 20), 3 * p["intercept.class2", "se"])
  expect_lt(abs(p["membership.class2.X2", "estimate"] - 2.2336), 3 * p["membership.class2.X2", "se"])
  invisible(utils::capture.output(tab <- postprob(fit)))
  expect_identical(sum(tab$n), 150L)
  expect_identical(tab$class, 1:2)
  expect_output(postprob(fit), "Posterior classification")
  new <- simulate_classes(40, 2)
  pred <- predictClass(fit, new$data)
  expect_identical(rownames(pred), as.character(1:40))
  expect_gte(mean(pred$class == new$classes), 0.95)
  png <- plot(fit, type = "classes", file = tempfile(fileext = ".png"))
  expect_true(file.exists(png))
  # lcmm-style arguments reach pymixnn.LatentClass (its checks answer in R)
  expect_error(mixnn(sim$data, "linear", id = "ID", x = "Time", y = "Y", random_effects = "latent_class",
                     within = "flow", shared_omega = FALSE), "shared_omega")
  expect_error(postprob(mixnn(sim$data, "linear", id = "ID", x = "Time", y = "Y",
                              control = mixnnControl(seed = 1, progress = FALSE, max_steps = 50L))),
               "latent_class")
})
