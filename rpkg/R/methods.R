#' @importFrom nlme fixef ranef VarCorr
#' @export
nlme::fixef
#' @export
nlme::ranef
#' @export
nlme::VarCorr

#' Methods for mixnnFit objects
#'
#' Estimates and predictions of a [mixnn()] fit, in the vocabulary of nlme, lme4 and saemix.
#' All numbers are computed in Python; the estimates are stored in the object at fit time.
#'
#' * `fixef()`: named vector of fixed effects on the natural scale (`h(mu)`) and covariate
#'   effects (`beta_Weight(V)`).
#' * `ranef()`: data.frame, one row per individual (row names: ids), one column per parameter
#'   with a random effect: eta_i on the transformed scale; `type = "map"` (conditional mode) or
#'   `"mean"` (conditional mean). With `level = "plot"` (a fit with grouping levels): the level's
#'   effects, one row per group (row names: the group labels), columns `<p>` (posterior mean,
#'   transformed scale), `<p>.sd` and `n_individuals`.
#' * `coef()`: data.frame, one row per individual, one column per parameter: psi_i.
#' * `VarCorr()`: the d x d covariance matrix Omega of the random effects (transformed scale),
#'   with attributes `stddev`, `correlation` and `residual` (the error model's parameters).
#' * `vcov()`: covariance matrix of the estimates (inverse observed Fisher information, delta
#'   method); `which = "fixed"` (default, as nlme) or `"all"` (every reported parameter).
#' * `confint()`: Wald intervals on each parameter's transformed scale, mapped back.
#' * `logLik()`: ll.is (or ll.gq) with `df` free parameters and `nobs` the number of
#'   individuals (saemix's convention), so `AIC()` and `BIC()` equal the Python `aic`, `bic`.
#' * `nobs()`: number of observations.
#' * `predict()`: vector, one value per row of `newdata` (default: the fitted data), named by
#'   its row names, in its row order; `level = 0` (population, eta = 0) or `1` (individual,
#'   conditional mode; new ids get eta = 0, or with `local = "amortized"` the encoder's posterior
#'   from their own records); `type = "response"` (expected value) or `"link"` (the structural
#'   function's output). For a fit on event data, `newdata` holds NONMEM records (the fitted ID,
#'   TIME and DV names, doses included) and the result is a data.frame, one row per observation
#'   record: id, time, endpoint, prediction; individual predictions of new ids need the encoder
#'   and their DV.
#' * `fitted()`, `residuals()`: one value per observation, named by the data's row names, in the
#'   data's row order (rows dropped by `dropna` left out); residual `type = "response"`
#'   (y - prediction) or `"pearson"` (IWRES, level 1 only).
#' * `print()`, `summary()`: the estimates and a line "Convergence: yes" or "Convergence: NO"
#'   with the message of each failing check (`x$diagnostics`).
#'
#' @param object,x A `mixnnFit`.
#' @param type See above.
#' @param level Population (0, "population") or individual (1, "individual"); for `confint`,
#'   the confidence level; for `ranef`, a grouping level's column (a fit with `levels`).
#' @param newdata A data.frame with the id, x and covariate columns (event data: NONMEM records).
#' @param which For `vcov`: "fixed" or "all".
#' @param parm Parameters (names) for `confint`; default all.
#' @param sigma Unused (nlme's generic).
#' @param ... Unused.
#' @name mixnnFit-methods
#' @return See above.
NULL

.level <- function(level) {
  if (is.character(level)) return(match.arg(level, c("population", "individual")))
  if (!level %in% c(0, 1)) stop("level must be 0 (population) or 1 (individual)", call. = FALSE)
  c("population", "individual")[level + 1]
}

.need_py <- function(object) {
  if (reticulate::py_is_null_xptr(object$py))
    stop("this fit's Python object is gone (the fit was saved and reloaded in a new session); ",
         "refit to predict on new data or plot", call. = FALSE)
  object$py
}

#' @rdname mixnnFit-methods
#' @export
print.mixnnFit <- function(x, ...) {
  cat("Nonlinear mixed-effects model fitted by pymixnn\n")
  cat(sprintf("  model %s, %s random effects, %s observations\n",
              x$model$name %||% "(custom)", x$random_effects, x$observation))
  cat(sprintf("  %d observations of %d individuals\n", x$nobs, x$n_individuals))
  cat("Fixed effects:\n")
  print(x$fixef, digits = 5)
  cat("Random effects variances (omega2):\n")
  print(diag(x$omega), digits = 5)
  if (length(x$sigma)) {
    cat("Residual error (", x$model$error, "):\n", sep = "")
    print(x$sigma, digits = 5)
  }
  cat(sprintf("ll.%s %.3f  AIC %.3f  BIC %.3f\n", x$loglik_method, x$loglik, x$aic, x$bic))
  cat(.convergence(x), sep = "\n")
  invisible(x)
}

# "Convergence: yes (n checks passed)" or "Convergence: NO (...)" and each failing check's message
.convergence <- function(x) {
  d <- x$diagnostics
  if (is.null(d) || is.na(x$converged))
    return("Convergence: not checked (this pymixnn has no convergence report)")
  severity <- d$severity %||% rep("error", nrow(d))
  failed <- d[!d$ok & severity %in% c("error", "warning"), , drop = FALSE]
  checks <- sum(severity == "error")
  head <- if (x$converged) sprintf("Convergence: yes (%d checks passed)", checks)
          else sprintf("Convergence: NO (%d of %d checks failed)",
                       sum(!d$ok & severity == "error"), checks)
  c(head, if (nrow(failed))
    paste0("  ", rownames(failed), ": ", vapply(failed$message, .r_terms, "", USE.NAMES = FALSE)))
}

#' @rdname mixnnFit-methods
#' @export
summary.mixnnFit <- function(object, ...) {
  structure(list(coefficients = object$params, text = object$summary_text,
                 loglik = object$loglik, aic = object$aic, bic = object$bic,
                 converged = object$converged, convergence = .convergence(object)),
            class = "summary.mixnnFit")
}

#' @rdname mixnnFit-methods
#' @export
print.summary.mixnnFit <- function(x, ...) {
  lines <- strsplit(x$text, "\n")[[1]]
  at <- grep("^Convergence:", lines)
  if (length(at)) {  # Python's convergence section, its hints in R syntax
    tail <- seq(at[1], length(lines))
    lines[tail] <- vapply(lines[tail], .r_terms, "", USE.NAMES = FALSE)
  } else {           # a Python summary without one
    lines <- c(lines, "", x$convergence)
  }
  cat(lines, sep = "\n")
  invisible(x)
}

#' @rdname mixnnFit-methods
#' @method fixef mixnnFit
#' @export
fixef.mixnnFit <- function(object, ...) object$fixef

#' @rdname mixnnFit-methods
#' @method ranef mixnnFit
#' @export
ranef.mixnnFit <- function(object, type = c("map", "mean"), level = NULL, ...) {
  if (is.null(level)) return(object$ranef[[match.arg(type)]])
  if (!level %in% names(object$level_effects))
    stop("no level \"", level, "\" in this fit; its levels: ",
         if (length(object$level_effects)) paste(names(object$level_effects), collapse = ", ")
         else "none (fit with levels = list(column = parameters))", call. = FALSE)
  object$level_effects[[level]]
}

#' @rdname mixnnFit-methods
#' @export
coef.mixnnFit <- function(object, type = c("map", "mean"), ...) {
  object$coef[[match.arg(type)]]
}

#' @rdname mixnnFit-methods
#' @method VarCorr mixnnFit
#' @export
VarCorr.mixnnFit <- function(x, sigma = 1, ...) {
  om <- x$omega
  sd <- sqrt(diag(om))
  structure(om, stddev = sd, correlation = om / outer(sd, sd), residual = x$sigma)
}

#' @rdname mixnnFit-methods
#' @export
vcov.mixnnFit <- function(object, which = c("fixed", "all"), ...) {
  if (match.arg(which) == "all") return(object$cov_params)
  f <- names(object$fixef)
  object$cov_params[f, f, drop = FALSE]
}

#' @rdname mixnnFit-methods
#' @export
confint.mixnnFit <- function(object, parm, level = 0.95, ...) {
  ci <- if (isTRUE(all.equal(level, 0.95))) object$params[, c("ci_lower", "ci_upper")]
        else .df(.py_call(.need_py(object)$conf_int, 1 - level))
  ci <- as.matrix(ci)
  colnames(ci) <- paste(format(100 * c(1 - level, 1 + level) / 2, trim = TRUE), "%")
  if (missing(parm)) ci else ci[parm, , drop = FALSE]
}

#' @rdname mixnnFit-methods
#' @export
logLik.mixnnFit <- function(object, ...) {
  structure(object$loglik, df = object$df, nobs = object$n_individuals,
            method = object$loglik_method, class = "logLik")
}

#' @rdname mixnnFit-methods
#' @export
nobs.mixnnFit <- function(object, ...) object$nobs

#' @rdname mixnnFit-methods
#' @export
predict.mixnnFit <- function(object, newdata = NULL, level = 1,
                             type = c("response", "link"), ...) {
  level <- .level(level)
  type <- match.arg(type)
  if (is.null(newdata) && type == "response")
    return(.by_row(object, object$residuals[[if (level == "population") "pred" else "ipred"]]))
  which <- if (type == "response") "mean" else "linear"
  py <- .need_py(object)
  if (is.null(newdata))
    return(.by_row(object, as.numeric(.py_call(py$predict, NULL, level = level, which = which))))
  if (!is.data.frame(newdata)) stop("newdata must be a data.frame", call. = FALSE)
  d <- object$data
  if ("_individual" %in% d$x) {
    # a fit on event data: newdata are NONMEM records (the fit's ID, TIME and DV names); one row
    # per observation record (id, time, endpoint, prediction)
    p <- .py_call(py$predict, .py_frame(newdata), level = level, which = which)
    return(.df(p, rownames = FALSE))
  }
  newdata <- .factor_columns(newdata, id = d$id, x = d$x, y = NULL, roles = list(),
                             observation = object$observation)
  # Python returns one value per row of newdata, in its order (reticulate 1.28 pads a Series'
  # integer labels with spaces: the names are taken from newdata itself)
  p <- .py_call(py$predict, .py_frame(newdata), level = level, which = which)
  setNames(as.numeric(p), rownames(newdata))
}

# per-observation values of the fitted data, named by the data's row names (the residual
# table's rows: the user's row order)
.by_row <- function(object, values) setNames(values, rownames(object$residuals))

#' @rdname mixnnFit-methods
#' @export
fitted.mixnnFit <- function(object, level = 1, ...) predict(object, level = level)

#' @rdname mixnnFit-methods
#' @export
residuals.mixnnFit <- function(object, type = c("response", "pearson"), level = 1, ...) {
  r <- object$residuals
  if (match.arg(type) == "pearson") {
    if (.level(level) == "population") stop("Pearson residuals (IWRES) are individual: level = 1",
                                            call. = FALSE)
    return(.by_row(object, r$iwres))
  }
  .by_row(object, if (.level(level) == "individual") r$ires else r[[object$data$y]] - r$pred)
}

#' Plot a mixnnFit
#'
#' `type = "gof"` (default) draws saemix's goodness-of-fit panels in R: observations against
#' population and individual predictions, IWRES against x and against individual predictions.
#' The other types are drawn by Python into a PNG `file` (a temporary file when `NULL`), shown
#' in the R device when the png package is installed: `"gof_npde"` (saemix's four panels plus
#' NPDE against time and against the population prediction, their QQ plot and histogram;
#' `npde = FALSE`: CWRES there instead), `"npde"` (the npde package's four panels with its
#' tests), `"individuals"` (individual and population curves over the data), `"vpc"` (visual
#' predictive check; `prediction_corrected = TRUE` for a prediction-corrected VPC of data with
#' different doses or covariates), `"random_effects"` (fitted law of the random effects),
#' `"eta_covariates"` (random effects against covariates; `data =` a data.frame with the
#' candidate covariates), `"trace"` (each population parameter along the SVI steps and the
#' refinement rounds) and `"classes"` (the latent classes' mean curves with 90% bands).
#' @param x A `mixnnFit`.
#' @param y Unused.
#' @param type "gof", "gof_npde", "npde", "individuals", "vpc", "random_effects",
#'   "eta_covariates", "trace", "classes" or "neural_terms" (a fit with neural terms: each
#'   learned function over the inputs seen along the fitted trajectories).
#' @param file PNG path for the Python-drawn plots.
#' @param ... Passed to the Python plot method (e.g. `n_sim = 100L` for the VPC or NPDE,
#'   `prediction_corrected = TRUE` for the VPC, `covariates = c("Weight")` or `data = df` for
#'   `"eta_covariates"`).
#' @return The PNG path (Python plots) or `x`, invisibly.
#' @export
plot.mixnnFit <- function(x, y, type = c("gof", "gof_npde", "npde", "individuals", "vpc",
                                         "random_effects", "eta_covariates", "trace", "classes",
                                         "neural_terms"),
                          file = NULL, ...) {
  type <- match.arg(type)
  if (type == "gof") {
    r <- x$residuals
    obs <- r[[x$data$y]]
    t <- r[[utils::tail(x$data$x, 1)]]
    op <- par(mfrow = c(2, 2), mar = c(4, 4, 1, 1))
    on.exit(par(op))
    graphics::plot(r$pred, obs, xlab = "population prediction", ylab = x$data$y)
    abline(0, 1, col = "red")
    graphics::plot(r$ipred, obs, xlab = "individual prediction", ylab = x$data$y)
    abline(0, 1, col = "red")
    graphics::plot(t, r$iwres, xlab = utils::tail(x$data$x, 1), ylab = "IWRES")
    abline(h = 0, col = "red")
    graphics::plot(r$ipred, r$iwres, xlab = "individual prediction", ylab = "IWRES")
    abline(h = 0, col = "red")
    return(invisible(x))
  }
  args <- list(...)
  if (!is.null(args$data)) args$data <- .py_frame(args$data)
  if (!is.null(args$covariates)) args$covariates <- as.list(args$covariates)
  for (k in intersect(names(args), c("n_sim", "seed"))) args[[k]] <- as.integer(args[[k]])
  file <- file %||% tempfile(fileext = ".png")
  py <- .need_py(x)
  f <- switch(type, individuals = py$plot_individuals, vpc = py$plot_vpc,
              random_effects = py$plot_random_effects, classes = py$plot_classes,
              gof_npde = py$plot_gof, npde = py$plot_npde, eta_covariates = py$plot_eta_covariates,
              trace = py$plot_trace, neural_terms = py$plot_neural_terms)
  .py_do(f, c(list(file), args))
  if (requireNamespace("png", quietly = TRUE)) {
    img <- png::readPNG(file)
    op <- par(mar = c(0, 0, 0, 0))
    on.exit(par(op))
    plot.new()
    s <- min(par("pin") / dim(img)[2:1])  # keep the PNG's aspect ratio
    w <- dim(img)[2:1] * s / par("pin")
    rasterImage(img, (1 - w[1]) / 2, (1 - w[2]) / 2, (1 + w[1]) / 2, (1 + w[2]) / 2)
  }
  invisible(file)
}

#' Posterior classification of a latent-class fit
#'
#' lcmm's `postprob()`: per class the number and percentage of individuals whose highest
#' posterior probability is that class, the mean posterior probability of the assigned class
#' among them, and the shares above 0.7, 0.8 and 0.9.
#' @param x A `mixnnFit` with `random_effects = "latent_class"`.
#' @param ... Unused.
#' @return The table (a data.frame, one row per class), invisibly after printing it.
#' @export
postprob <- function(x, ...) UseMethod("postprob")

#' @rdname postprob
#' @export
postprob.mixnnFit <- function(x, ...) {
  if (is.null(x$class_table))
    stop("postprob() needs a fit with random_effects = \"latent_class\"", call. = FALSE)
  cat("Posterior classification (highest posterior probability):\n")
  print(x$class_table)
  invisible(x$class_table)
}

#' Classify new individuals into the latent classes of a fit
#'
#' lcmm's `predictClass()`: the posterior class probabilities of individuals not in the fit,
#' from their data and membership covariates alone, at the fitted parameters.
#' @param model A `mixnnFit` with `random_effects = "latent_class"`.
#' @param newdata A data.frame with the fit's id, x, y and membership covariate columns.
#' @param ... Passed to Python's `Results.classify` (`n_samples`, `seed`).
#' @return A data.frame, one row per new individual (row names their ids): `prob.1` ...
#'   `prob.K` and `class`.
#' @export
predictClass <- function(model, newdata, ...) {
  if (is.null(model$class_table))
    stop("predictClass() needs a fit with random_effects = \"latent_class\"", call. = FALSE)
  py <- .need_py(model)
  .df(.py_call(py$classify, .py_frame(newdata), ...))
}
