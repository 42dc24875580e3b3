# Model checks computed in Python: NPDE (as the npde package computes them) and CWRES.

#' Normalised prediction distribution errors of a fit
#'
#' NPDE and pd of each observation (Brendel et al. 2006; Comets et al. 2008), computed from
#' `nsim` data sets simulated from the fitted model exactly as the npde package's `autonpde()`
#' computes them (`ties = TRUE`; decorrelation by `decor.method`), with npde's tests of the
#' NPDE: mean 0 (t-test), variance 1 (Fisher's test), normality (Shapiro-Wilk) and the global
#' test (Bonferroni-adjusted p-values, as npde prints them).
#' @param object A `mixnnFit` (continuous observations).
#' @param nsim Number of simulated data sets (npde's `nrep`; at least 100).
#' @param seed Seed of the simulations.
#' @param decorr.method "cholesky" (default), "inverse" or "polar" (npde's `decorr.method`).
#' @param ... Unused.
#' @return A data.frame, one row per observation in the data's row order (row names the data's):
#'   the id, x and y columns, `ypred` (mean of the simulations), `pd`, `npd`, `npde` and `pred`
#'   (population prediction); attribute `tests`: a data.frame with one row per test (`mean`,
#'   `variance`, `normality`, `global`) and columns `statistic`, `p_value` (adjusted),
#'   `p_value_raw`.
#' @export
npde <- function(object, ...) UseMethod("npde")

#' @rdname npde
#' @export
npde.mixnnFit <- function(object, nsim = 1000L, seed = 0L, decorr.method = "cholesky", ...) {
  py <- .need_py(object)
  tab <- .df(.py_call(py$npde, as.integer(nsim), seed = as.integer(seed),
                      decorr_method = decorr.method))
  checks <- reticulate::import("pymixnn.results.npde")
  attr(tab, "tests") <- .df(checks$npde_tests(reticulate::np_array(as.numeric(tab$npde))))
  tab
}

#' Conditional weighted residuals of a fit
#'
#' CWRES (Hooker et al. 2007): each individual's observations decorrelated by the model
#' linearized in the random effects around their conditional modes (FOCE):
#' `C_i^(-1/2) (y_i - E_i)` with `E_i = f(eta_i) - G_i eta_i` and
#' `C_i = G_i Omega t(G_i) + R_i`.
#' @param object A `mixnnFit` (Gaussian observations).
#' @param decorrelation "cholesky" (inverse Cholesky factor, default) or "symmetric" (inverse
#'   symmetric square root).
#' @param ... Unused.
#' @return A data.frame, one row per observation in the data's row order: the id, x and y
#'   columns, `pred`, `ipred`, `epred_foce` and `cwres`.
#' @export
cwres <- function(object, ...) UseMethod("cwres")

#' @rdname cwres
#' @export
cwres.mixnnFit <- function(object, decorrelation = "cholesky", ...) {
  py <- .need_py(object)
  .df(.py_call(py$cwres, decorrelation = decorrelation))
}
