#' pymixnn: nonlinear mixed-effects models by stochastic variational inference
#'
#' An R front end of the Python package pymixnn. Every computation runs in Python through
#' reticulate; R only converts data and results. Start with [install_pymixnn()], then [mixnn()].
#' @keywords internal
#' @importFrom stats AIC BIC coef confint fitted logLik nobs predict residuals vcov setNames
#' @importFrom graphics abline par plot.new rasterImage
"_PACKAGE"

py_pm <- NULL

.onLoad <- function(libname, pkgname) {
  # Python starts on first use: the RETICULATE_PYTHON interpreter, else the virtualenv
  # "r-pymixnn" made by install_pymixnn() (reticulate looks for "r-<module>")
  py_pm <<- reticulate::import("pymixnn", delay_load = TRUE)
}

#' The Python module behind the R functions
#'
#' For what the R wrapper does not cover, e.g. spec objects such as
#' `pymixnn_module()$Flow(n_layers = 2L)` or `pymixnn_module()$Poisson(link = "identity")`.
#' @return The `pymixnn` Python module (a reticulate object).
#' @export
pymixnn_module <- function() {
  if (!pymixnn_available())
    stop("the Python module 'pymixnn' is not available to reticulate (Python: ",
         .python_path(), "). Run pymixnn::install_pymixnn(), or point RETICULATE_PYTHON ",
         "at a Python where pymixnn is installed; see pymixnn_sitrep().", call. = FALSE)
  # reticulate 1.28 converts pandas frames through Index.format, deprecated in pandas 2.x
  reticulate::py_run_string(paste0("import warnings; warnings.filterwarnings('ignore', ",
                                   "message='.*Index.format is deprecated')"))
  py_pm
}

.python_path <- function() {
  cfg <- tryCatch(reticulate::py_config(), error = function(e) NULL)
  if (is.null(cfg)) "none found" else cfg$python
}

# call Python; a Python exception becomes one R error with its message (no traceback)
.py_call <- function(f, ...) {
  tryCatch(f(...), error = function(e) {
    msg <- sub("\n+Detailed traceback:.*$", "", conditionMessage(e))
    stop(trimws(msg), call. = FALSE)
  })
}

# A folder named "pymixnn" in the working directory (e.g. the R package's own installed folder
# under R CMD check) imports as an empty namespace package and shadows an editable install:
# import again with the working directory moved to the end of sys.path.
.unshadow <- "
def _unshadow():
    import sys, os, importlib
    if not hasattr(sys.modules.get('pymixnn'), 'fit'):
        sys.modules.pop('pymixnn', None)
        here = ('', os.getcwd())
        sys.path[:] = [p for p in sys.path if p not in here] + [p for p in sys.path if p in here]
        importlib.import_module('pymixnn')
    return hasattr(sys.modules.get('pymixnn'), 'fit')
ok = _unshadow()
"

#' Is the Python module pymixnn available?
#'
#' Starts Python (if not started) and tries to import pymixnn.
#' @return `TRUE` or `FALSE`.
#' @export
pymixnn_available <- function() {
  ok <- isTRUE(tryCatch(reticulate::py_module_available("pymixnn"), error = function(e) FALSE))
  ok && isTRUE(reticulate::py_run_string(.unshadow, local = TRUE)$ok)
}

#' Install the Python side of pymixnn in a virtual environment
#'
#' Creates (or reuses) a virtualenv with pymixnn and its pinned stack: `torch==2.13.0` (a CPU
#' build), `numpy<2` and `pandas<3` (reticulate 1.28, Debian 12's, cannot convert NumPy 2 arrays).
#' @param envname Name (or path) of the virtualenv; reticulate uses "r-pymixnn" by default.
#' @param source What pip installs as pymixnn: a checkout of the pymixnn repository (the folder
#'   holding pyproject.toml), a wheel, or a pip requirement. Default: the environment variable
#'   `PYMIXNN_SOURCE`, else `pymixnn==<this package's version>` from the package index.
#' @param python Python interpreter used to create the virtualenv (default: `python3`).
#' @param force Reinstall even when the virtualenv already imports pymixnn.
#' @return The virtualenv's Python executable, invisibly.
#' @examples
#' \dontrun{
#' install_pymixnn(source = "~/src/pymixnn")   # a checkout of the repository
#' }
#' @export
install_pymixnn <- function(envname = "r-pymixnn", source = NULL, python = NULL,
                            force = FALSE) {
  if (is.null(source)) {
    source <- Sys.getenv("PYMIXNN_SOURCE", "")
    if (!nzchar(source)) source <- paste0("pymixnn==", utils::packageVersion("pymixnn"))
  }
  if (dir.exists(source) || file.exists(source)) source <- normalizePath(source)
  # R puts its own library folders on LD_LIBRARY_PATH; a shared-library Python (pyenv) started
  # from R can then load another libpython (seen here: Debian's 3.11.2 under pyenv's 3.11.7,
  # "_ssl: undefined symbol") and pip loses TLS. The pip and python subprocesses need none of it.
  ld <- Sys.getenv("LD_LIBRARY_PATH", unset = NA)
  if (!is.na(ld)) {
    Sys.unsetenv("LD_LIBRARY_PATH")
    on.exit(Sys.setenv(LD_LIBRARY_PATH = ld), add = TRUE)
  }
  if (reticulate::virtualenv_exists(envname)) {
    py <- reticulate::virtualenv_python(envname)
    if (!force && system2(py, c("-c", shQuote("import pymixnn")), stdout = FALSE,
                          stderr = FALSE) == 0) {
      message("virtualenv '", envname, "' already has pymixnn: reusing it (force = TRUE ",
              "reinstalls)")
      return(invisible(.use_env(envname, py)))
    }
  } else {
    reticulate::virtualenv_create(envname, python = python %||% Sys.which("python3"),
                                  packages = NULL)
  }
  reticulate::virtualenv_install(envname, c("torch==2.13.0", "numpy>=1.24,<2",
                                            "pandas>=2.0,<3", source),
                                 ignore_installed = force)
  invisible(.use_env(envname, reticulate::virtualenv_python(envname)))
}

`%||%` <- function(a, b) if (is.null(a)) b else a

.use_env <- function(envname, py) {
  if (reticulate::py_available(initialize = FALSE)) {
    if (normalizePath(reticulate::py_config()$python) != normalizePath(py))
      message("this R session already runs another Python; restart R to use '", envname, "'")
  } else if (!nzchar(Sys.getenv("RETICULATE_PYTHON"))) {
    reticulate::use_virtualenv(envname, required = TRUE)
  }
  py
}

#' Report on the Python side of pymixnn
#'
#' Which Python reticulate uses, and the versions of pymixnn, torch, pyro, numpy and pandas in it.
#' @return A named list (invisibly): `python`, `available`, `versions`, `problems`.
#' @export
pymixnn_sitrep <- function() {
  out <- list(python = .python_path(), available = pymixnn_available(),
              reticulate = as.character(utils::packageVersion("reticulate")),
              versions = list(), problems = character())
  if (out$available) {
    for (m in c("pymixnn", "torch", "pyro", "numpy", "pandas"))
      out$versions[[m]] <- reticulate::import(m)$`__version__`
    if (utils::compareVersion(out$versions$numpy, "2") >= 0 &&
        utils::packageVersion("reticulate") < "1.35")
      out$problems <- c(out$problems, "numpy >= 2 with reticulate < 1.35: install numpy<2")
  } else {
    out$problems <- "pymixnn is not importable: run install_pymixnn()"
  }
  cat("Python:     ", out$python, "\n", "reticulate: ", out$reticulate, "\n", sep = "")
  for (m in names(out$versions)) cat(sprintf("%-12s%s\n", paste0(m, ":"), out$versions[[m]]))
  cat(if (length(out$problems)) paste("problem:", out$problems, collapse = "\n") else "ready",
      "\n")
  invisible(out)
}
