#' Train a neural estimator of a whole data set's population parameters
#'
#' Neural posterior estimation with Python's `pymixnn.amortize()`: data sets of one design are
#' simulated from the model with their population parameters drawn from the prior, and a network
#' learns to map a data set to a Gaussian posterior over those parameters. Once trained, a new
#' data set of that design is estimated in one forward pass with [predict()][predict.mixnnNeural];
#' [mixnnSBC()] checks the calibration by simulation-based calibration.
#'
#' @param model A named model ("logistic", ...) or a [mixnnModel()] with a closed-form structural
#'   function and a continuous residual error model.
#' @param design A data.frame of the individuals and their records: the id column and the x
#'   columns (a y column is ignored).
#' @param prior A named list, one law per population parameter named as in [fixef()] and
#'   [VarCorr()] (fixed effects on the natural scale, `omega2.<p>`, the residual error `a`,
#'   `b`): `list("uniform", lo, hi)`, `list("loguniform", lo, hi)`, `list("normal", mean, sd)`,
#'   `list("lognormal", meanlog, sdlog)`, or a number to hold the parameter fixed.
#' @param n_simulations Simulated data sets seen in training (`n_simulations / batch_size` steps).
#' @param id,x The id column and the x column(s) of `design`.
#' @param batch_size,seed,progress Data sets per step, the seed of everything random, a progress bar.
#' @return An object of class `mixnnNeural`.
#' @examples
#' if (pymixnn_available()) {
#'   design <- data.frame(id = rep(1:20, each = 5), t = rep(seq(0, 10, length.out = 5), 20))
#'   prior <- list(A = list("uniform", 80, 120), B = list("uniform", 4, 6), C = 1.5,
#'                 omega2.A = 0.04, omega2.B = 0.04, omega2.C = 0.04, a = list("uniform", 1, 3))
#'   est <- mixnnAmortize("logistic", design, prior, n_simulations = 3200, x = "t")
#'   new <- design
#'   new$y <- 100 / (1 + exp(-(new$t - 5) / 1.5)) + rnorm(nrow(new), sd = 2)
#'   predict(est, new)
#' }
#' @export
mixnnAmortize <- function(model, design, prior, n_simulations = 480000, id = "id", x = NULL,
                          batch_size = 32L, seed = 0L, progress = FALSE) {
  pm <- pymixnn_module()
  if (inherits(model, "mixnnModel")) model <- .python_model(pm, model, NULL)$model
  if (!is.data.frame(design)) stop("design must be a data.frame", call. = FALSE)
  py_prior <- .py_prior(prior, "list(A = list(\"uniform\", 80, 120), C = 1.5)")
  est <- .py_call(pm$amortize, model, .py_frame(design), py_prior, as.integer(n_simulations),
                  id = id, x = if (!is.null(x)) as.list(x), batch_size = as.integer(batch_size),
                  seed = as.integer(seed), progress = progress)
  structure(list(py = est, call = match.call()), class = "mixnnNeural")
}

#' @rdname mixnnAmortize
#' @export
print.mixnnNeural <- function(x, ...) {
  cat(reticulate::py_str(x$py), "\n")
  invisible(x)
}

#' Estimates of a new data set by a neural estimator
#'
#' @param object A [mixnnAmortize()] estimator.
#' @param newdata A data.frame of one data set: the design's id and x columns and the observations.
#' @param id,y Its id and observation columns.
#' @param level Level of the equal-tailed posterior interval.
#' @param n_draws,seed Posterior draws behind the summaries, and their seed.
#' @param ... Unused.
#' @rdname mixnnAmortize
#' @return A data.frame, one row per population parameter: `parameter`, `kind`, `estimate`
#'   (posterior mean), `se` (posterior sd), `ci_lower`, `ci_upper`, `median`.
#' @export
predict.mixnnNeural <- function(object, newdata, id = "id", y = "y", level = 0.95, n_draws = 4000L,
                                seed = 0L, ...) {
  e <- .py_call(object$py$estimate, .py_frame(newdata), id = id, y = y, level = level,
                n_draws = as.integer(n_draws), seed = as.integer(seed))
  for (w in e$warnings) warning(w, call. = FALSE)
  .by_parameter(e$params)
}

#' Simulation-based calibration of a neural estimator
#'
#' @param object A [mixnnAmortize()] estimator.
#' @param n_replicates,n_draws Data sets simulated from the prior, posterior draws per data set.
#' @param seed Seed of the simulations and draws.
#' @rdname mixnnAmortize
#' @return A data.frame, one row per estimated parameter: `parameter`, `ks_statistic`, `p_value`
#'   (Kolmogorov-Smirnov test of the truth's normalized ranks against the uniform),
#'   `n_replicates`, `n_draws`.
#' @export
mixnnSBC <- function(object, n_replicates = 200L, n_draws = 100L, seed = 1L) {
  s <- .py_call(object$py$sbc, n_replicates = as.integer(n_replicates), n_draws = as.integer(n_draws),
                seed = as.integer(seed))
  .by_parameter(s$table)
}

# a prior as Python's laws: a named list of numbers (held fixed) and list(kind, arg1, arg2)
.py_prior <- function(prior, example) {
  if (!is.list(prior) || is.null(names(prior)) || any(names(prior) == ""))
    stop(sprintf("prior must be a named list, e.g. %s", example), call. = FALSE)
  py_prior <- lapply(names(prior), function(name) {
    law <- prior[[name]]
    if (is.numeric(law) && length(law) == 1) return(as.numeric(law))
    law <- as.list(law)
    if (length(law) != 3)
      stop(sprintf("prior for '%s' must be a number or list(kind, arg1, arg2)", name), call. = FALSE)
    reticulate::tuple(as.character(law[[1]]), as.numeric(law[[2]]), as.numeric(law[[3]]))
  })
  names(py_prior) <- names(prior)
  py_prior
}

# a pandas table indexed by parameter (converted to a data.frame with row names) as a
# data.frame whose first column is `parameter`
.by_parameter <- function(table) {
  table <- .df(table)
  out <- cbind(data.frame(parameter = rownames(table), stringsAsFactors = FALSE), table)
  rownames(out) <- NULL
  out
}
