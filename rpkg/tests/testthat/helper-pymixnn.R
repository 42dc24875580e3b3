# Every test needs Python with pymixnn. Without it the tests skip and say why, except where
# PYMIXNN_REQUIRE_PYTHON=1 (set by `make test`): there a missing Python is an error, not a skip.
skip_if_no_pymixnn <- function() {
  if (pymixnn_available()) return(invisible(TRUE))
  msg <- paste0("Python with the pymixnn module is not available (Python: ",
                pymixnn:::.python_path(), "); run pymixnn::install_pymixnn()")
  if (identical(Sys.getenv("PYMIXNN_REQUIRE_PYTHON"), "1")) stop(msg)
  skip(msg)
}

# fits shared between test files, computed once per session
.cache <- new.env()
cached <- function(key, expr) {
  if (is.null(.cache[[key]])) .cache[[key]] <- expr
  .cache[[key]]
}

theo_args <- list(id = "Id", x = c("Dose", "Time"), y = "Concentration",
                  covariates = list(V = "Weight"))
theo_fit <- function() {
  cached("theo", do.call(mixnn, c(list(pymixnn_dataset("theo"), "onecpt_oral"), theo_args,
                                  list(control = mixnnControl(seed = 632545, progress = FALSE)))))
}
