# Issue 16 from R: results in the user's row order and named by row names, messages that name
# R's rows and R's settings, Python warnings as R warnings, factors handled explicitly, a
# convergence report, and no install from a package index.

# tiny fits: SVI stopped early, no refinement (these tests are about rows and messages, not
# estimates); such fits fail the convergence checks, whose warnings are tested on their own below
tiny <- function(...) mixnnControl(refine = FALSE, seed = 1, progress = FALSE, ...)
quiet_fit <- function(expr) suppressWarnings(expr, classes = "pymixnn_ConvergenceWarning")
theo_tiny <- function(data, ...) {
  quiet_fit(mixnn(data, "onecpt_oral", id = "Id", x = c("Dose", "Time"), y = "Concentration",
                  covariates = list(V = "Weight"), control = tiny(max_steps = 30), ...))
}

test_that("shuffled rows: fitted, predict and residuals align with the sorted fit by row names", {
  skip_if_no_pymixnn()
  theo <- pymixnn_dataset("theo")
  set.seed(4)
  shuffled <- theo[sample(nrow(theo)), ]  # rows shuffled across and within individuals
  expect_false(identical(unique(shuffled$Id), unique(theo$Id)))
  sorted_fit <- theo_tiny(theo)
  shuffled_fit <- theo_tiny(shuffled)
  rows <- rownames(theo)
  # names: the data's row names, in the data's row order
  expect_identical(names(fitted(shuffled_fit)), rownames(shuffled))
  expect_identical(names(predict(shuffled_fit, level = 0)), rownames(shuffled))
  expect_identical(names(residuals(shuffled_fit)), rownames(shuffled))
  expect_identical(rownames(shuffled_fit$residuals), rownames(shuffled))
  expect_identical(names(predict(shuffled_fit, newdata = shuffled)), rownames(shuffled))
  # individuals in sorted id order, whatever the rows' order (as nlme and lme4 order groups)
  expect_identical(rownames(ranef(shuffled_fit)), as.character(1:12))
  # the same individuals in the same order: the fits differ only by the order of the sums over
  # an individual's observations (measured 1e-14 on every value); 1e-8 is far above that and far
  # below any misalignment (predictions of different rows differ by ~1 mg/L)
  for (level in c(0, 1)) {
    expect_equal(predict(shuffled_fit, level = level)[rows], predict(sorted_fit, level = level),
                 tolerance = 1e-8)
    expect_equal(predict(shuffled_fit, newdata = theo, level = level),
                 predict(sorted_fit, newdata = theo, level = level), tolerance = 1e-8)
    expect_equal(residuals(shuffled_fit, level = level)[rows], residuals(sorted_fit, level = level),
                 tolerance = 1e-8)
  }
  expect_equal(fitted(shuffled_fit)[rows], fitted(sorted_fit), tolerance = 1e-8)
  expect_equal(residuals(shuffled_fit, type = "pearson")[rows],
               residuals(sorted_fit, type = "pearson"), tolerance = 1e-8)
  expect_equal(predict(shuffled_fit, type = "link")[rows], predict(sorted_fit, type = "link"),
               tolerance = 1e-8)
  # each fitted value is the prediction at its own row, computed from the rows of the data
  # directly (predict(newdata =) does not regroup)
  expect_equal(fitted(shuffled_fit), predict(shuffled_fit, newdata = shuffled), tolerance = 1e-10)
  # assigned back to the data frame, y - fitted is the residual row by row
  expect_equal(residuals(shuffled_fit), shuffled$Concentration - fitted(shuffled_fit),
               tolerance = 1e-12, ignore_attr = TRUE)
  expect_lt(mean(abs(shuffled$Concentration - fitted(shuffled_fit))), 1)  # measured 0.41
})

test_that("Python's messages name R's rows and R's settings", {
  skip_if_no_pymixnn()
  theo <- pymixnn_dataset("theo")
  bad <- theo
  bad$Concentration[c(6, 20)] <- NA
  err <- tryCatch(mixnn(bad, "onecpt_oral", id = "Id", x = c("Dose", "Time"), y = "Concentration"),
                  error = identity)
  expect_s3_class(err, "pymixnn_error")
  expect_null(conditionCall(err))
  expect_identical(conditionMessage(err), paste0(
    "column 'Concentration' has 2 missing values (first at row 6); set ",
    "mixnnControl(dropna = TRUE) to drop those rows"))
  expect_match(err$traceback, "Traceback")  # kept for debugging, out of the message
  # the rows of a subset keep their numbers; named rows are named
  expect_error(mixnn(bad[c(20, 6, 1:5), ], "onecpt_oral", id = "Id", x = c("Dose", "Time"),
                     y = "Concentration"), "(first at row 20)", fixed = TRUE)
  rownames(bad) <- paste0("s", seq_len(nrow(bad)))
  expect_error(mixnn(bad, "onecpt_oral", id = "Id", x = c("Dose", "Time"), y = "Concentration"),
               "(first at row 's6')", fixed = TRUE)
  bad <- theo
  bad$Time[9] <- Inf
  expect_error(mixnn(bad, "onecpt_oral", id = "Id", x = c("Dose", "Time"), y = "Concentration"),
               "column 'Time' must be finite and not missing: row 9 has value inf", fixed = TRUE)
  expect_error(mixnn(theo, "onecpt_oral", id = "Id", x = c("Dose", "Time"), y = "Concentration",
                     control = mixnnControl(lr = -1)), "mixnnControl(lr = 0.02)", fixed = TRUE)
  expect_error(mixnn(theo, "onecpt_oral", id = "Id", x = c("Dose", "Time"), y = "Concentration",
                     init = list(Ka = 1)), "psi0 names 'Ka'", fixed = TRUE)
})

test_that("the translation table puts Python's hints in R syntax", {
  r <- pymixnn:::.r_terms
  expect_identical(r("missing values (first at row 3); pass dropna=True to drop"),
                   "missing values (first at row 3); set mixnnControl(dropna = TRUE) to drop")
  expect_identical(r("no initial value for ['ka']: give init={...} (natural scale)"),
                   "no initial value for ['ka']: give psi0 = c(...) in mixnnModel() (natural scale)")
  expect_identical(r("in increasing order: observation=pymixnn.Ordinal(levels=['lo', 'hi'])"),
                   paste0("in increasing order: observation = \"ordinal\" with y an ordered ",
                          "factor: factor(y, levels = c(\"lo\", \"hi\"), ordered = TRUE)"))
  expect_identical(r("random=[]: at least one parameter needs one, e.g. random=['ka']"),
                   "random = character(0): at least one parameter needs one, e.g. random = c(\"ka\")")
  expect_identical(r("refit with refine=True or other init; random_effects='flow'"),
                   "refit with mixnnControl(refine = TRUE) or other init; random_effects = \"flow\"")
  expect_identical(r("covariates={'V': ['Weight']}, lr=nan, x==1, a<=b"),
                   "covariates = list(V = c(\"Weight\")), mixnnControl(lr = NaN), x==1, a<=b")
  expect_identical(r("strip them: df['Id'] = df['Id'].astype(str).str.strip()"),
                   "strip them: data$Id <- trimws(data$Id)")
  expect_identical(r("refine must be True or False; convert it: df['my y'].astype(float)"),
                   "refine must be TRUE or FALSE; convert it: as.numeric(data[[\"my y\"]])")
  expect_identical(r("column 'Id' not found in data"), "column 'Id' not found in data")
})

test_that("Python warnings are R warnings; a fit that did not converge says so", {
  skip_if_no_pymixnn()
  theo <- pymixnn_dataset("theo")
  theo$Concentration[c(6, 20)] <- NA
  caught <- list()
  # 5 SVI steps and no refinement: the estimates are not at the maximum (seed 1: a Newton step
  # would gain 1.8 log-likelihood units, the limit is 0.5)
  fit <- withCallingHandlers(
    mixnn(theo, "onecpt_oral", id = "Id", x = c("Dose", "Time"), y = "Concentration",
          control = tiny(max_steps = 5, dropna = TRUE)),
    warning = function(w) {
      caught[[length(caught) + 1]] <<- w
      invokeRestart("muffleWarning")
    })
  messages <- vapply(caught, conditionMessage, "")
  expect_true(all(vapply(caught, inherits, TRUE, "pymixnn_warning")))
  expect_identical(messages[1], "dropped 2 rows with a missing 'Concentration' (first at row 6)")
  expect_s3_class(caught[[1]], "pymixnn_UserWarning")
  convergence <- Filter(function(w) inherits(w, "pymixnn_ConvergenceWarning"), caught)
  expect_gte(length(convergence), 1)
  expect_match(conditionMessage(convergence[[1]]), "^fit did not converge: a Newton step would")
  expect_match(conditionMessage(convergence[[1]]), "mixnnControl(refine = TRUE)", fixed = TRUE)
  # tryCatch and expect_warning see them too
  expect_warning(mixnn(theo, "onecpt_oral", id = "Id", x = c("Dose", "Time"),
                       y = "Concentration", control = tiny(max_steps = 5, dropna = TRUE)),
                 "dropped 2 rows", class = "pymixnn_UserWarning") |> quiet_fit()

  expect_false(fit$converged)
  d <- fit$diagnostics
  expect_s3_class(d, "data.frame")
  expect_true(all(c("value", "limit", "ok", "message") %in% names(d)))
  expect_type(d$ok, "logical")
  expect_false(d["newton_decrement", "ok"])
  expect_gt(d["newton_decrement", "value"], d["newton_decrement", "limit"])
  out <- capture.output(print(fit))
  expect_match(out, "^Convergence: NO \\([0-9]+ of [0-9]+ checks failed\\)$", all = FALSE)
  expect_match(out, "^  newton_decrement: a Newton step would raise the log-likelihood", all = FALSE)
  s <- capture.output(print(summary(fit)))
  expect_match(s, "^Convergence: NOT converged", all = FALSE)
  expect_match(s, "problem: a Newton step .*mixnnControl\\(refine = TRUE\\)", all = FALSE)
  expect_false(summary(fit)$converged)
  # the kept rows, named by their row numbers: rows 6 and 20 dropped
  expect_identical(names(fitted(fit)), as.character(setdiff(1:120, c(6, 20))))
})

test_that("a fit that converged says so in print and summary", {
  skip_if_no_pymixnn()
  fit <- theo_fit()  # the full fit of test-theophylline.R
  expect_true(fit$converged)
  expect_true(all(fit$diagnostics$ok))
  expect_match(capture.output(print(fit)), "^Convergence: yes \\([0-9]+ checks passed\\)$",
               all = FALSE)
  expect_match(capture.output(print(summary(fit))), "^Convergence: yes", all = FALSE)
})

test_that("factors: an error in numeric roles, labels for ids, levels for covariates and ordinal y", {
  skip_if_no_pymixnn()
  theo <- pymixnn_dataset("theo")
  bad <- theo
  bad$Dose <- factor(bad$Dose)
  expect_error(mixnn(bad, "onecpt_oral", id = "Id", x = c("Dose", "Time"), y = "Concentration"),
               paste0("column 'Dose' is a factor (levels '267.84', '318.56', '319.365', '319.77', ",
                      "'319.8', ...): convert with as.numeric(as.character(data$Dose))"),
               fixed = TRUE)
  bad <- theo
  bad$Concentration <- factor(ifelse(bad$Concentration > 5, "high", "low"))
  expect_error(mixnn(bad, "onecpt_oral", id = "Id", x = c("Dose", "Time"), y = "Concentration"),
               paste0("column 'Concentration' is a factor (levels 'high', 'low'): code it as ",
                      "numbers, or fit it with observation = \"ordinal\""), fixed = TRUE)

  # a factor id is read through its labels (not its codes 12..1; individuals in sorted label
  # order, as for character ids); a factor covariate keeps R's levels: its first level ("male")
  # is the reference (alphabetical order would make it "female")
  f <- theo
  f$Id <- factor(sprintf("S%02d", f$Id), levels = sprintf("S%02d", 12:1))
  f$Sex <- factor(ifelse(f$Sex == 1, "male", "female"), levels = c("male", "female"))
  fit <- quiet_fit(mixnn(f, "onecpt_oral", id = "Id", x = c("Dose", "Time"),
                         y = "Concentration", covariates = list(CL = "Sex"),
                         control = tiny(max_steps = 5)))
  expect_identical(rownames(ranef(fit)), sprintf("S%02d", 1:12))
  expect_identical(names(fixef(fit)), c("ka", "V", "CL", "beta_Sex[female](CL)"))
  # new data with the same factors: the individual predictions of the fitted rows
  expect_equal(predict(fit, newdata = f[c(15, 2), ]), fitted(fit)[c("15", "2")], tolerance = 1e-10)

  # an ordered factor response: its levels in R's order (not alphabetical) are the ordinal
  # levels, so the fit is the fit of the numeric codes 1..5 (the same numbers, exactly)
  knee <- pymixnn_dataset("knee")
  lv <- c("none", "mild", "moderate", "severe", "extreme")
  labelled <- knee
  labelled$y <- factor(lv[knee$y], levels = lv, ordered = TRUE)
  ordinal <- function(data) {
    quiet_fit(mixnn(data, "linear", id = "id", x = "time", y = "y", observation = "ordinal",
                    random = "intercept", control = tiny(max_steps = 30)))
  }
  by_codes <- ordinal(knee)
  by_levels <- ordinal(labelled)
  expect_identical(unlist(by_levels$py$observation$levels), lv)
  expect_identical(rownames(by_levels$params)[4:6], c("threshold.mild|moderate",
                                                      "threshold.moderate|severe",
                                                      "threshold.severe|extreme"))
  expect_equal(by_levels$params$estimate, by_codes$params$estimate, tolerance = 1e-12)
  # character levels are not ordered silently: Python's error, in R terms
  text <- knee
  text$y <- lv[knee$y]
  expect_error(ordinal(text), "factor(y, levels = c(", fixed = TRUE)
})

test_that("no random effect at all is a nonlinear regression: stats::nls", {
  skip_if_no_pymixnn()
  theo <- pymixnn_dataset("theo")
  args <- list(id = "Id", x = c("Dose", "Time"), y = "Concentration",
               control = mixnnControl(seed = 1, progress = FALSE))
  by_cov <- do.call(mixnn, c(list(theo, mixnnModel("onecpt_oral", covariance.model = diag(0, 3),
                                                   psi0 = c(ka = 1, V = 20, CL = 0.5))), args))
  by_random <- do.call(mixnn, c(list(theo, "onecpt_oral", random = character(0),
                                     init = list(ka = 1, V = 20, CL = 0.5)), args))
  ref <- nls(Concentration ~ Dose * ka / (V * (ka - CL / V)) * (exp(-CL / V * Time) - exp(-ka * Time)),
             data = theo, start = list(ka = 1.5, V = 30, CL = 2.5))
  # the same exact likelihood (ML: sigma^2 = RSS / n, nls's logLik), both maximized to convergence
  expect_equal(as.numeric(logLik(by_random)), as.numeric(logLik(ref)), tolerance = 1e-6)
  expect_equal(as.numeric(logLik(by_cov)), as.numeric(logLik(by_random)), tolerance = 1e-8)
  expect_equal(unname(fixef(by_random)[c("ka", "V", "CL")]), unname(coef(ref)[c("ka", "V", "CL")]),
               tolerance = 1e-4)
  expect_error(mixnn(theo, mixnnModel("onecpt_oral", covariance.model = diag(2)), id = "Id",
                     x = c("Dose", "Time"), y = "Concentration"),
               "covariance.model is 2 x 2 but the model has 3 parameters (ka, V, CL)", fixed = TRUE)
})

test_that("install_pymixnn() installs only from a checkout, an archive or a git URL", {
  old <- Sys.getenv("PYMIXNN_SOURCE", unset = NA)
  on.exit(if (is.na(old)) Sys.unsetenv("PYMIXNN_SOURCE") else Sys.setenv(PYMIXNN_SOURCE = old))
  Sys.unsetenv("PYMIXNN_SOURCE")
  # every case stops before any virtualenv is made or looked at
  expect_error(install_pymixnn(envname = "never-made"),
               "install_pymixnn() needs source = the path of a pymixnn checkout", fixed = TRUE)
  expect_error(install_pymixnn(envname = "never-made", source = "pymixnn==0.1.0"),
               "not published on a package index", fixed = TRUE)
  empty <- tempfile()
  dir.create(empty)
  expect_error(install_pymixnn(envname = "never-made", source = empty),
               "is a folder without pyproject.toml", fixed = TRUE)
  Sys.setenv(PYMIXNN_SOURCE = "pymixnn")
  expect_error(install_pymixnn(envname = "never-made"), "source = 'pymixnn' is not an existing",
               fixed = TRUE)
  expect_false(reticulate::virtualenv_exists("never-made"))
})
