# mixnnControl(distributed = TRUE) from R (issue 25): two R processes, each with its own Python
# joined to a gloo process group (what torchrun's environment gives a Python process; an R user
# starts the group with torch.distributed through reticulate), fit theophylline together. Each
# process's estimates equal the plain fit's to 1e-8 relative, the issue's bar: the processes' sums
# differ from one sum only in the order of the additions (Python's test: 2e-15 measured).

worker_lines <- function(dir, shards = FALSE) {
  data <- if (shards) {
    "mixnnReadShard(file.path(dir, 'theo.csv'), 'Id', rank = rank, world = 2L)"
  } else "pymixnn_dataset('theo')"
  c(sprintf(".libPaths(c(%s, .libPaths()))", paste(deparse(.libPaths()), collapse = "")),
    "args <- commandArgs(TRUE); rank <- as.integer(args[1]); dir <- args[2]",
    "suppressPackageStartupMessages(library(pymixnn))",
    "dist <- reticulate::import('torch.distributed')",
    "dist$init_process_group('gloo', init_method = paste0('file://', dir, '/init'),",
    "                        rank = rank, world_size = 2L)",
    paste0("fit <- mixnn(", data, ", 'onecpt_oral', id = 'Id', x = c('Dose', 'Time'),"),
    "             y = 'Concentration', covariates = list(V = 'Weight'),",
    sprintf("             control = mixnnControl(seed = 632545, progress = FALSE, distributed = TRUE, shards = %s))",
            shards),
    "saveRDS(list(estimate = fit$params$estimate, se = fit$params$se,",
    "             loglik = as.numeric(logLik(fit)), ranef = as.matrix(ranef(fit)),",
    "             processes = fit$info$processes, n = fit$n_individuals),",
    "        file.path(dir, paste0(rank, '.rds')))",
    "dist$destroy_process_group()")
}

run_workers <- function(shards = FALSE) {
  dir <- tempfile("distributed")
  dir.create(dir)
  if (shards) utils::write.csv(pymixnn_dataset("theo"), file.path(dir, "theo.csv"), row.names = FALSE)
  script <- file.path(dir, "worker.R")
  writeLines(worker_lines(dir, shards), script)
  rscript <- file.path(R.home("bin"), "Rscript")
  logs <- file.path(dir, paste0(0:1, ".log"))
  for (r in 0:1) {
    system2(rscript, c(shQuote(script), r, shQuote(dir)), wait = FALSE, stdout = logs[r + 1],
            stderr = logs[r + 1])
  }
  outs <- file.path(dir, paste0(0:1, ".rds"))
  deadline <- Sys.time() + 300  # a process that failed leaves no file: its log is shown
  while (!all(file.exists(outs)) && Sys.time() < deadline) Sys.sleep(1)
  Sys.sleep(1)  # saveRDS finished writing
  if (!all(file.exists(outs))) {
    tails <- vapply(logs[file.exists(logs)], function(f) paste(tail(readLines(f), 20), collapse = "\n"), "")
    fail(paste(c("a process did not finish; its log:", tails), collapse = "\n---\n"))
    return(NULL)
  }
  lapply(outs, readRDS)
}

test_that("two R processes fit theophylline data-parallel like the plain fit", {
  skip_if_no_pymixnn()
  ranks <- run_workers()
  if (is.null(ranks)) return(invisible())
  ref <- theo_fit()
  expect_equal(ref$info$processes, 1L)
  for (r in ranks) {
    expect_equal(r$processes, 2L)  # the fit ran over both processes
    expect_equal(r$estimate, ref$params$estimate, tolerance = 1e-8)
    expect_equal(r$se, ref$params$se, tolerance = 1e-8)
    expect_equal(r$loglik, as.numeric(logLik(ref)), tolerance = 1e-8)
    expect_equal(r$ranef, as.matrix(ranef(ref)), tolerance = 1e-7, ignore_attr = TRUE)
  }
  expect_identical(ranks[[1]], ranks[[2]])  # every process holds the same numbers
})

test_that("two R processes reading their own shards of a CSV fit like the plain fit", {
  skip_if_no_pymixnn()
  ranks <- run_workers(shards = TRUE)
  if (is.null(ranks)) return(invisible())
  ref <- theo_fit()
  ref_ranef <- as.matrix(ranef(ref))
  for (r in seq_along(ranks)) {
    x <- ranks[[r]]
    expect_equal(x$processes, 2L)
    expect_equal(x$estimate, ref$params$estimate, tolerance = 1e-8)  # as above: the sums' order
    expect_equal(x$se, ref$params$se, tolerance = 1e-8)
    expect_equal(x$loglik, as.numeric(logLik(ref)), tolerance = 1e-8)
    # each process holds its 6 of the 12 subjects (sorted ids, in blocks); the fit has all 12
    expect_identical(x$n, 12L)
    expect_identical(nrow(x$ranef), 6L)
    rows <- if (r == 1) 1:6 else 7:12
    expect_equal(x$ranef, ref_ranef[rows, , drop = FALSE], tolerance = 1e-7, ignore_attr = TRUE)
  }
})
