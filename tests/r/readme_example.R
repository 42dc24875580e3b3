# Runs the R code of README.md as written: every ```r block, in order, in one session.
#   Rscript tests/r/readme_example.R [README.md]
# `make test` runs it after installing rpkg (with RETICULATE_PYTHON at the project's .venv-r);
# after pymixnn::install_pymixnn() it runs the same way with no environment variable set.
args <- commandArgs(trailingOnly = TRUE)
readme <- if (length(args)) args[1] else "README.md"
lines <- readLines(readme, warn = FALSE)
starts <- grep("^```r\\s*$", lines)
if (!length(starts)) stop("no ```r block in ", readme)
code <- unlist(lapply(starts, function(s) {
  end <- s + which(lines[(s + 1):length(lines)] == "```")[1]
  lines[(s + 1):(end - 1)]
}))
cat(sprintf("running %d lines of R from %d block(s) of %s\n", length(code), length(starts), readme))
grDevices::pdf(NULL)  # plots go nowhere
source(exprs = parse(text = code), echo = TRUE, max.deparse.length = Inf, local = globalenv())
cat("README R example: OK\n")
