# Other random-effect laws and observation families, run from R.

test_that("a Poisson fit from R matches lme4's glmer on the epilepsy counts", {
  skip_if_no_pymixnn()
  epil <- pymixnn_dataset("epil")
  # log rate = intercept + slope * V4 (+ a random intercept): glmer's y ~ V4 + (1 | subject)
  fit <- suppressWarnings(  # epil repeats some (subject, V4, y) rows: Python says so, keeps them
    mixnn(epil, "linear", id = "subject", x = "V4", y = "y", observation = "poisson",
          random = "intercept", control = mixnnControl(seed = 1, progress = FALSE)))
  expect_identical(fit$observation, "poisson")
  expect_identical(names(fixef(fit)), c("intercept", "slope"))
  expect_identical(dim(ranef(fit)), c(59L, 1L))
  expect_length(predict(fit, level = 0), nrow(epil))
  expect_true(all(predict(fit) > 0))                           # expected counts
  expect_equal(predict(fit, type = "link", newdata = epil[1:4, ], level = 0),
               setNames(fixef(fit)[[1]] + fixef(fit)[[2]] * epil$V4[1:4], 1:4), tolerance = 1e-10)
  expect_length(fit$sigma, 0)
  g <- lme4::glmer(y ~ V4 + (1 | subject), data = epil, family = stats::poisson, nAGQ = 25)
  # both maximize the same adaptive-quadrature likelihood (pymixnn's gq with 25 nodes): measured
  # 2e-6 relative; 1e-3 leaves room for the optimizers' stopping rules
  expect_equal(unname(fixef(fit)), unname(lme4::fixef(g)), tolerance = 1e-3)
  expect_equal(unname(VarCorr(fit)[1, 1]), unname(lme4::VarCorr(g)$subject[1, 1]),
               tolerance = 1e-3)
  # lme4 drops constants from logLik when nAGQ > 1 (lme4 issues #161, #567): the reference is
  # the exact marginal log-likelihood at glmer's estimates, by numerical integration centred on
  # each subject's mode (its posterior sd is ~0.05 for large counts: an integral over the prior's
  # range misses mass, 0.18 units here)
  b <- lme4::fixef(g)
  s <- sqrt(lme4::VarCorr(g)$subject[1, 1])
  ll <- sum(vapply(split(epil, epil$subject), function(d) {
    lf <- function(u) sum(stats::dpois(d$y, exp(b[1] + b[2] * d$V4 + u), log = TRUE)) +
      stats::dnorm(u, 0, s, log = TRUE)
    m <- stats::optimize(lf, c(-10 * s, 10 * s), maximum = TRUE)$maximum
    sd <- 1 / sqrt(sum(exp(b[1] + b[2] * d$V4 + m)) + 1 / s^2)
    lf(m) + log(stats::integrate(function(u) exp(vapply(u, lf, 0) - lf(m)), m - 12 * sd,
                                 m + 12 * sd, rel.tol = 1e-10)$value)
  }, 0))
  # ll.gq (25 nodes) against the exact integral, at estimates 1e-6 apart (measured 1e-7 units)
  expect_equal(as.numeric(logLik(fit)), ll, tolerance = 0.01 / abs(ll))
})

test_that("a normalizing-flow fit from R runs and stays near the Gaussian fit on theophylline", {
  skip_if_no_pymixnn()
  flow <- do.call(mixnn, c(list(pymixnn_dataset("theo"), "onecpt_oral"), theo_args,
                           list(random_effects = "flow",
                                control = mixnnControl(seed = 632545, progress = FALSE))))
  gauss <- theo_fit()
  expect_identical(flow$random_effects, "flow")
  expect_identical(dim(ranef(flow)), c(12L, 3L))
  expect_identical(dim(VarCorr(flow)), c(3L, 3L))
  # 12 subjects: the flow's penalty (chosen by cross-validation) keeps it near the Gaussian
  # law, as in the Python suite (tests/test_random_effects.py): ll within 3, CL within 5%
  expect_lt(abs(as.numeric(logLik(flow)) - as.numeric(logLik(gauss))), 3)
  expect_lt(abs(fixef(flow)[["CL"]] / fixef(gauss)[["CL"]] - 1), 0.05)
  expect_gt(attr(logLik(flow), "df"), attr(logLik(gauss), "df"))  # the flow's own parameters
  expect_equal(AIC(flow), flow$py$aic, tolerance = 1e-12)
  # the same flow with the encoder (local = "amortized"): the issue's bar, the log-likelihood
  # within 2 units (measured in Python: -171.35 against -171.30); the gap is the flow stage's
  amo <- do.call(mixnn, c(list(pymixnn_dataset("theo"), "onecpt_oral"), theo_args,
                          list(random_effects = "flow",
                               control = mixnnControl(seed = 632545, progress = FALSE,
                                                      local = "amortized", max_steps = 300L))))
  expect_lt(abs(as.numeric(logLik(amo)) - as.numeric(logLik(flow))), 2)
  expect_identical(dim(amo$amortization), c(12L, 5L))
  expect_true(all(is.finite(amo$amortization$gap)))
})

test_that("rapi (Poisson, saemix's count example) with an amortized encoder from R", {
  skip_if_no_pymixnn()
  rapi <- pymixnn_dataset("rapi")
  args <- list(rapi, "linear", id = "id", x = "time", y = "rapi", observation = "poisson",
               covariates = list(intercept = "gender", slope = "gender"), omega = "full")
  ctrl <- function(...) mixnnControl(seed = 1, progress = FALSE, max_steps = 300L, ...)
  fit <- do.call(mixnn, c(args, list(control = ctrl(local = "amortized", refine_steps = 2L))))
  ref <- do.call(mixnn, c(args, list(control = ctrl())))
  # the same maximum likelihood from the encoder's posteriors (measured 1e-12 relative in Python;
  # the issue's bar is 2 units of log-likelihood)
  expect_equal(fixef(fit), fixef(ref), tolerance = 1e-4)
  expect_equal(as.numeric(logLik(fit)), as.numeric(logLik(ref)), tolerance = 1e-5)
  expect_identical(dim(fit$amortization), c(818L, 7L))
  # mean amortization gap (measured 0.09 nats at 1,500 steps in Python), below 0.01 after the
  # two Newton steps
  expect_lt(mean(fit$amortization$gap), 1)
  expect_lt(mean(fit$amortization$gap_refined), 0.01)
})
