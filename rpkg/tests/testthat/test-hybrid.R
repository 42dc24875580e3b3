# A model with a neural term fitted from R (issue 20): the model built in Python through
# pymixnn_module(), its learned link returned as a data.frame.

define_emax_link <- function() {
  reticulate::py_run_string(paste(
    "import torch",
    "def emax_link(psi, x, neural):",
    "    c = x[..., :1]",
    "    return psi[..., 0] + (neural['link'](c) - neural['link'](torch.zeros_like(c)))[..., 0]",
    sep = "\n"))
}

test_that("mixnn() fits a model with a neural term and returns the learned function", {
  skip_if_no_pymixnn()
  pm <- pymixnn_module()
  define_emax_link()
  # no penalty: E0 and the link near C = 0 trade off under the "minimal" one (guide/hybrid.md)
  model <- pm$Model(reticulate::py$emax_link, list("E0"), init = list(E0 = 12), transforms = "log",
                    neural = list(link = pm$NeuralTerm(1L, hidden = list(8L), penalty = NULL)))
  df <- pymixnn:::.df(pm$simulate$simulate_emax_link(60L, seed = 1L), rownames = FALSE)
  fit <- mixnn(df, model, id = "id", x = "c", y = "y",
               control = mixnnControl(seed = 1L, max_steps = 400L, progress = FALSE))
  expect_s3_class(fit, "mixnnFit")
  expect_identical(names(fixef(fit)), "E0")
  # E0 is 10 in the simulation; 400 steps on 60 individuals: within 10%
  expect_equal(unname(fixef(fit)), 10, tolerance = 0.10)
  expect_true(all(c("term", "level", "z1", "g1") %in% names(fit$neural_terms)))
  expect_true(fit$neural_share > 0 && fit$neural_share < 1)
  # the network's 25 weights are counted in the degrees of freedom (E0, omega2.E0, a: 3)
  expect_identical(as.integer(fit$df), 28L)
  expect_output(print(summary(fit)), "conditional on the trained networks")
})

test_that("mixnnControl(neural_starts = 2) keeps the start of highest log-likelihood", {
  skip_if_no_pymixnn()
  pm <- pymixnn_module()
  define_emax_link()
  model <- function() pm$Model(reticulate::py$emax_link, list("E0"), init = list(E0 = 12),
                               transforms = "log",
                               neural = list(link = pm$NeuralTerm(1L, hidden = list(8L), penalty = NULL)))
  df <- pymixnn:::.df(pm$simulate$simulate_emax_link(60L, seed = 1L), rownames = FALSE)
  ctl <- function(...) mixnnControl(seed = 1L, neural_steps = 40L, progress = FALSE, ...)
  fit <- mixnn(df, model(), id = "id", x = "c", y = "y", control = ctl(neural_starts = 2L))
  st <- fit$neural_starts
  expect_identical(as.integer(st$seed), c(1L, 2L))
  expect_identical(sum(st$kept), 1L)
  expect_equal(logLik(fit)[[1]], max(st$loglik), tolerance = 1e-12)
  # the kept start is the one-start fit with its seed, exactly
  alone <- mixnn(df, model(), id = "id", x = "c", y = "y",
                 control = mixnnControl(seed = as.integer(st$seed[st$kept]), neural_steps = 40L,
                                        progress = FALSE))
  expect_identical(unname(fixef(alone)), unname(fixef(fit)))
  expect_identical(nrow(alone$neural_starts), 0L)
})
