#' Train a graph-network estimator of a Matérn field's parameters
#'
#' Python's `pymixnn.SpatialEstimator()`: Matérn fields are simulated at fixed irregular locations
#' with their range, sd and nugget drawn from the prior, and a graph neural network over the
#' locations' neighbour graph learns to map a field to those parameters. Once trained, a field
#' observed at the locations (or per-individual estimates there) is estimated in one forward pass
#' with [predict()][predict.mixnnSpatialEstimator]; `likelihood = TRUE` adds the exact maximum-
#' likelihood estimates beside. [mixnnSpatialCompare()] puts both side by side on fields
#' simulated from the prior.
#'
#' @param locations A data.frame (its `coords` columns) or a matrix of coordinates, one row per
#'   location, each location once.
#' @param coords The coordinate columns of `locations` (default: all).
#' @param nu The Matérn smoothness, fixed.
#' @param prior A named list of laws for `range` (coordinate units, sqrt(8 nu) / kappa), `sd` and
#'   `nugget` (default 0): `list("uniform", lo, hi)`, `list("loguniform", lo, hi)`,
#'   `list("lognormal", meanlog, sdlog)`, or a number to hold one fixed. Default: range uniform
#'   between 5% and 50% of the locations' bounding-box diagonal, sd loguniform on (0.1, 10).
#' @param n_simulations Simulated fields seen in training.
#' @param neighbours Neighbours of each location on the graph.
#' @param seed,progress The seed of the weights and simulations; a progress bar.
#' @return An object of class `mixnnSpatialEstimator`.
#' @examples
#' if (pymixnn_available()) {
#'   set.seed(1)
#'   loc <- data.frame(x = runif(60), y = runif(60))
#'   est <- mixnnSpatialEstimator(loc, prior = list(range = list("uniform", 0.1, 0.6),
#'                                                  sd = list("uniform", 0.5, 2)),
#'                                n_simulations = 3200)
#'   fields <- mixnnSpatialSimulate(est, 2)
#'   predict(est, fields$fields, likelihood = TRUE)
#' }
#' @export
mixnnSpatialEstimator <- function(locations, coords = NULL, nu = 1.5, prior = NULL,
                                  n_simulations = 128000, neighbours = 16L, seed = 0L,
                                  progress = FALSE) {
  pm <- pymixnn_module()
  if (is.matrix(locations)) locations <- as.data.frame(locations)
  if (!is.data.frame(locations)) stop("locations must be a data.frame or a matrix", call. = FALSE)
  py_prior <- if (!is.null(prior))
    .py_prior(prior, "list(range = list(\"uniform\", 0.05, 0.5), sd = 1)")
  est <- .py_call(pm$SpatialEstimator, "matern", .py_frame(locations),
                  coords = if (!is.null(coords)) as.list(coords), nu = as.numeric(nu),
                  prior = py_prior, neighbours = as.integer(neighbours))
  .py_call(est$train, as.integer(n_simulations), seed = as.integer(seed), progress = progress)
  structure(list(py = est, call = match.call()), class = "mixnnSpatialEstimator")
}

#' @rdname mixnnSpatialEstimator
#' @param x,object A `mixnnSpatialEstimator`.
#' @param ... Unused.
#' @export
print.mixnnSpatialEstimator <- function(x, ...) {
  cat(reticulate::py_str(x$py), "\n")
  invisible(x)
}

.field_matrix <- function(fields) {
  if (is.data.frame(fields)) fields <- as.matrix(fields)
  if (is.null(dim(fields))) fields <- matrix(fields, nrow = 1)
  reticulate::np_array(fields)
}

#' @rdname mixnnSpatialEstimator
#' @param fields A matrix, one field per row, one column per location (in the locations' order),
#'   or one field as a vector.
#' @param likelihood Add the maximum-likelihood estimates (columns `likelihood.<p>`).
#' @return `predict()`: a data.frame, one row per field: `range`, `sd`, `nugget` (and
#'   `likelihood.range`, `likelihood.sd`, `likelihood.nugget`, `likelihood.loglik`).
#' @export
predict.mixnnSpatialEstimator <- function(object, fields, likelihood = FALSE, ...) {
  z <- .field_matrix(fields)
  out <- .df(.py_call(object$py$estimate, z), rownames = FALSE)
  if (isTRUE(likelihood)) {
    ml <- .df(.py_call(object$py$likelihood, z), rownames = FALSE)[, c("range", "sd", "nugget", "loglik")]
    names(ml) <- paste0("likelihood.", names(ml))
    out <- cbind(out, ml)
  }
  out
}

#' @rdname mixnnSpatialEstimator
#' @param n_fields Fields simulated from the prior.
#' @return `mixnnSpatialSimulate()`: a list with `params` (a data.frame of range, sd, nugget) and
#'   `fields` (a matrix, one field per row).
#' @export
mixnnSpatialSimulate <- function(object, n_fields, seed = 1L) {
  s <- .py_call(object$py$simulate, as.integer(n_fields), seed = as.integer(seed))
  list(params = .df(s[[1]], rownames = FALSE), fields = as.matrix(s[[2]]))
}

#' @rdname mixnnSpatialEstimator
#' @return `mixnnSpatialCompare()`: a data.frame, one row per method (`gnn`, `likelihood`) and
#'   parameter: `rmse`, `bias`, `mae`, `seconds_per_field`.
#' @export
mixnnSpatialCompare <- function(object, n_fields = 1000L, seed = 1L) {
  cmp <- .py_call(object$py$compare, as.integer(n_fields), seed = as.integer(seed))
  .df(cmp$frame(), rownames = FALSE)
}

#' The spatial field of a fit at new points
#'
#' The posterior mean and sd of a fit's spatial field (`mixnn(..., spatial = ...)`) at any
#' points, e.g. a regular grid over the field: Python's `Results.spatial_field(points)`. Exact for
#' an AR1 x AR1 grid field everywhere (beyond the grid's edge through the AR1s' Markov property);
#' for a Gaussian process the kriged mean, and the sd at fitted locations only (NA elsewhere).
#'
#' @param fit A [mixnn()] fit with a spatial field.
#' @param points A data.frame with the field's coordinate columns (default: the fitted locations,
#'   as `fit$spatial_field`).
#' @return A data.frame: the coordinates, and per parameter with a field `<p>` (mean) and `<p>.sd`.
#' @export
mixnnSpatialField <- function(fit, points = NULL) {
  if (!inherits(fit, "mixnnFit")) stop("fit must be a mixnn() fit", call. = FALSE)
  if (is.null(points)) return(fit$spatial_field)
  if (!is.data.frame(points)) stop("points must be a data.frame with the coordinate columns", call. = FALSE)
  .df(.py_call(fit$py$spatial_field, .py_frame(points)), rownames = FALSE)
}
