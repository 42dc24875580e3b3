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

# Call Python through pymixnn.rbridge.call(): each Python warning raised during the call becomes
# an R warning (class "pymixnn_warning" and "pymixnn_<Python class>", e.g.
# "pymixnn_ConvergenceWarning"), a Python exception one R error (class "pymixnn_error", the Python
# traceback in its `traceback` field, no call); both messages in R syntax (.r_terms()).
.py_call <- function(f, ...) {
  out <- reticulate::import("pymixnn.rbridge")$call(f, ...)
  categories <- unlist(out$categories)
  for (i in seq_along(categories))
    warning(warningCondition(.r_terms(out$warnings[[i]]),
                             class = c(paste0("pymixnn_", categories[[i]]), "pymixnn_warning")))
  if (!is.null(out$error)) {
    msg <- .r_terms(out$error)
    if (!out$error_type %in% c("ValueError", "TypeError")) msg <- paste0(out$error_type, ": ", msg)
    stop(errorCondition(msg, class = c(paste0("pymixnn_", out$error_type), "pymixnn_error"),
                        traceback = out$traceback))
  }
  out$value
}

# .py_call() with the arguments in a list (named ones become Python keyword arguments)
.py_do <- function(f, args) do.call(.py_call, c(list(f), args))

# A data.frame as a pandas DataFrame indexed by R's row names: integers for automatic or integer
# row names (1..n), strings otherwise. Python's messages then name R's rows ("row 6" is R's row
# 6) and its per-row results come back named by them.
.py_frame <- function(data) {
  labels <- .row_names_info(data, type = 0L)
  if (is.integer(labels) && length(labels) == 2 && is.na(labels[1])) labels <- seq_len(nrow(data))
  frame <- reticulate::r_to_py(data)
  reticulate::py_set_attr(frame, "index", reticulate::np_array(labels))
  frame
}

# Python's hints in R syntax, e.g. "pass dropna=True" -> "set mixnnControl(dropna = TRUE)",
# "init={...}" -> "psi0 = c(...)", "x=['Dose', 'Time']" -> "x = c(\"Dose\", \"Time\")",
# "pymixnn.Ordinal(levels=[...])" -> an ordered factor. Whole phrases first, then every
# `name=value` with a Python literal value.
.r_terms <- function(msg) {
  list_ <- "(\\[(?:[^][]|(?-1))*\\])"                      # a [list], nested
  ordinal <- paste0("(?:observation=)?pymixnn\\.Ordinal\\(levels=", list_, "\\)")
  msg <- .gsub_fun(ordinal, msg, function(m) sprintf(
    "observation = \"ordinal\" with y an ordered factor: factor(y, levels = %s, ordered = TRUE)",
    .r_value(sub("^[^[]*(\\[.*\\])\\)$", "\\1", m))))
  column <- function(m) {  # df['Id'] -> data$Id
    name <- sub("^df\\['([^']*)'\\].*$", "\\1", m)
    if (make.names(name) == name) paste0("data$", name) else sprintf("data[[\"%s\"]]", name)
  }
  msg <- .gsub_fun("df\\['[^']*'\\] = df\\['[^']*'\\]\\.astype\\(str\\)\\.str\\.strip\\(\\)", msg,
                   function(m) sprintf("%1$s <- trimws(%1$s)", column(m)))
  msg <- .gsub_fun("df\\['[^']*'\\] = df\\['[^']*'\\]\\.astype\\(str\\)", msg,
                   function(m) sprintf("%1$s <- as.character(%1$s)", column(m)))
  msg <- .gsub_fun("df\\['[^']*'\\]\\.astype\\(float\\)", msg,
                   function(m) sprintf("as.numeric(%s)", column(m)))
  phrases <- c(
    "pass dropna=True" = "set mixnnControl(dropna = TRUE)",
    "df\\.columns = \\[\\.\\.\\.\\]" = "names(data) <- make.unique(names(data))",
    "scipy\\.optimize\\.curve_fit" = "stats::nls()",
    "\\bTrue or False\\b" = "TRUE or FALSE", "\\(True/False\\)" = "(TRUE/FALSE)",
    "\\binit must be a mapping \\{parameter: value\\}" =
      "psi0 must be named values c(parameter = value)",
    "\\binit names\\b" = "psi0 names", "\\binit\\[" = "psi0[",
    "\\b(\\w+)= names\\b" = "\\1 names",
    "(?:genomic=)?pymixnn\\.Genomic\\(markers, params=\\[\\.\\.\\.\\]\\)" =
      "genomic = list(markers = <matrix>, params = c(...))",
    "init=\\{\\.\\.\\.\\}" = "psi0 = c(...) in mixnnModel()",
    "\\(init=\\)" = "(psi0 = c(...) in mixnnModel())")
  for (p in names(phrases)) msg <- gsub(p, phrases[[p]], msg, perl = TRUE)
  # name=value: a quoted string, a number, a word (True, nan, ...), a [list] or a {dict}
  value <- paste0("('[^']*'|\"[^\"]*\"|-?[0-9.]+(?:e-?[0-9]+)?|-?\\w+|", list_,
                  "|(\\{(?:[^{}]|(?-1))*\\}))")
  .gsub_fun(paste0("(?<![\\w=<>!.])([A-Za-z_]\\w*)=(?!=)", value), msg, .r_argument)
}

# gsub() with a function of each match
.gsub_fun <- function(pattern, x, f) {
  hits <- gregexpr(pattern, x, perl = TRUE)
  if (hits[[1]][1] == -1) return(x)
  regmatches(x, hits) <- list(vapply(regmatches(x, hits)[[1]], f, "", USE.NAMES = FALSE))
  x
}

# a Python literal in R syntax: 'a' -> "a", [..] -> c(..), {'k': v} -> list(k = v), True -> TRUE
.r_value <- function(value) {
  value <- gsub("'([^']*)'", "\"\\1\"", value)
  value <- gsub("\"([A-Za-z_.][A-Za-z0-9_.]*)\": ", "\\1 = ", value)
  value <- gsub("\\{", "list(", gsub("\\[", "c(", value))
  value <- gsub("[]}]", ")", value)
  words <- c(True = "TRUE", False = "FALSE", None = "NULL", nan = "NaN", inf = "Inf")
  for (w in names(words)) value <- gsub(paste0("\\b", w, "\\b"), words[[w]], value, perl = TRUE)
  sub("^c\\(\\)$", "character(0)", value)
}

# one Python keyword argument `name=value` in R syntax; settings of mixnnControl() wrapped in it
.r_argument <- function(arg) {
  name <- sub("=.*$", "", arg)
  value <- .r_value(substring(arg, nchar(name) + 2))
  if (name == "init") return(paste0("psi0 = ", sub("^list\\(", "c(", value)))
  out <- paste(name, "=", value)
  if (name %in% names(formals(mixnnControl))) paste0("mixnnControl(", out, ")") else out
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
#'   holding pyproject.toml), a wheel or source archive of it, or a `git+https://` URL. Default:
#'   the environment variable `PYMIXNN_SOURCE`. pymixnn is not published on a package index, so a
#'   bare name (`pymixnn`, `pymixnn==0.1.0`) is refused: whatever an index serves under that name
#'   would be someone else's package.
#' @param python Python interpreter used to create the virtualenv (default: `python3`).
#' @param force Reinstall even when the virtualenv already imports pymixnn.
#' @return The virtualenv's Python executable, invisibly.
#' @examples
#' \dontrun{
#' install_pymixnn(source = "~/src/pymixnn")   # a checkout of the repository
#' }
#' @export
install_pymixnn <- function(envname = "r-pymixnn", source = Sys.getenv("PYMIXNN_SOURCE"),
                            python = NULL, force = FALSE) {
  source <- .pymixnn_source(source)
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
  # numpy<2 and pandas<3 here only (pymixnn itself takes NumPy 2 / pandas 3): reticulate 1.28
  # (Debian 12's) fails on NumPy 2 arrays and returns pandas 3 frames unconverted
  reticulate::virtualenv_install(envname, c("torch==2.13.0", "numpy>=1.24,<2",
                                            "pandas>=2.0,<3", source),
                                 ignore_installed = force)
  invisible(.use_env(envname, reticulate::virtualenv_python(envname)))
}

`%||%` <- function(a, b) if (is.null(a)) b else a

# install_pymixnn()'s source, checked before anything is installed: an existing checkout (a
# folder with pyproject.toml, as an absolute path), a wheel or source archive, or a git URL
.pymixnn_source <- function(source) {
  if (is.null(source) || length(source) != 1 || is.na(source) || !nzchar(source))
    stop("install_pymixnn() needs source = the path of a pymixnn checkout (the folder holding ",
         "pyproject.toml) or of a pymixnn wheel, or set the environment variable PYMIXNN_SOURCE; ",
         "pymixnn is not published on a package index, so nothing is installed from one",
         call. = FALSE)
  if (grepl("^git\\+https://", source)) return(source)
  if (dir.exists(source)) {
    if (!file.exists(file.path(source, "pyproject.toml")))
      stop("source = '", source, "' is a folder without pyproject.toml: give the root of a ",
           "pymixnn checkout", call. = FALSE)
    return(normalizePath(source))
  }
  if (file.exists(source)) {
    if (!grepl("\\.(whl|tar\\.gz|zip)$", source))
      stop("source = '", source, "' is neither a wheel (.whl) nor a source archive (.tar.gz, ",
           ".zip)", call. = FALSE)
    return(normalizePath(source))
  }
  stop("source = '", source, "' is not an existing folder or file (nor a git+https:// URL); ",
       "pymixnn is not published on a package index, so a package name is not installed from one: ",
       "give the path of a pymixnn checkout or wheel", call. = FALSE)
}

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
