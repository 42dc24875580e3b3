# NONMEM-style event data from R (issue 18): mixnn() on a data.frame with NONMEM columns and a
# compartment model, mixnnEvents() naming other columns, mixnnSolve() against the closed form.

# nlme::Phenobarb as a NONMEM table: a dose record where a dose is given (EVID 1), else an
# observation record (EVID 0)
pheno_nonmem <- function() {
  p <- as.data.frame(nlme::Phenobarb)
  data.frame(ID = as.character(p$Subject), TIME = p$time,
             AMT = ifelse(is.na(p$dose), 0, p$dose), DV = p$conc,
             EVID = as.integer(!is.na(p$dose)), Wt = p$Wt)
}

pheno_fit <- function() {
  cached("pheno", mixnn(pheno_nonmem(), "pk1cpt_iv", init = list(CL = 0.005, V = 1),
                        control = mixnnControl(seed = 1, max_steps = 300, progress = FALSE)))
}

test_that("Phenobarb with NONMEM columns fits a one-compartment IV model near nlme", {
  skip_if_no_pymixnn()
  fit <- pheno_fit()
  expect_s3_class(fit, "mixnnFit")
  expect_identical(fit$model$name, "pk1cpt_iv")
  expect_identical(names(fixef(fit)), c("CL", "V"))
  expect_identical(fit$n_individuals, 59L)
  expect_identical(as.integer(nobs(fit)), 155L)
  # nlme's ML fit (tests/reference/dynamics: CL 0.00614, V 1.409). 15% here, not the Python
  # tests' bar, because this run stops after 300 SVI steps (measured: CL 8%, V 2% off); the full
  # comparison with nlme lives in the Python test suite.
  expect_equal(unname(fixef(fit)), c(0.00614, 1.409), tolerance = 0.15)
  expect_output(print(fit), "model pk1cpt_iv")
  expect_output(print(summary(fit)), "CL")
})

test_that("mixnnEvents() names the NONMEM columns, and covariates reach the data", {
  skip_if_no_pymixnn()
  p <- as.data.frame(nlme::Phenobarb)
  p$dose[is.na(p$dose)] <- 0
  ev <- mixnnEvents(p, id = "Subject", time = "time", dv = "conc", amt = "dose")
  expect_s3_class(ev, "mixnnEvents")
  pm <- pymixnn_module()
  d <- pymixnn:::.events_data(pm, ev, list(V = "Wt"))
  expect_identical(d$n_individuals, 59L)
  expect_identical(unlist(d$covariate_cols), "Wt")
  # the same table whichever way it is given: same observations, same doses
  d2 <- pymixnn:::.events_data(pm, mixnnEvents(pheno_nonmem()))
  expect_equal(as.numeric(d$y), as.numeric(d2$y))
  expect_identical(d$events$counts(), d2$events$counts())
  expect_error(mixnnEvents(p, id = "Subject", time = "time", amt = "DOSE_MG"),
               "'DOSE_MG' \\(amt\\) not found")
})

test_that("a covariate that changes within an individual is time-varying; censoring reaches the data", {
  skip_if_no_pymixnn()
  pm <- pymixnn_module()
  p <- pheno_nonmem()
  p$lWt <- log(p$Wt) + p$TIME / 1000  # changes record by record
  d <- pymixnn:::.events_data(pm, mixnnEvents(p), list(CL = "lWt", V = "Wt"))
  expect_identical(unlist(d$covariate_cols), "Wt")
  expect_identical(unlist(d$events$time_varying), "lWt")
  p$BLQ <- as.integer(p$EVID == 0 & p$DV < 15)
  d <- pymixnn:::.events_data(pm, mixnnEvents(p), censoring = "BLQ")
  expect_identical(as.numeric(sum(d$aux$censored)), as.numeric(sum(p$BLQ)))
})

test_that("a dose without an amount is an error naming R's row", {
  skip_if_no_pymixnn()
  bad <- pheno_nonmem()
  bad$AMT[3] <- -1
  expect_error(mixnn(bad, "pk1cpt_iv", control = mixnnControl(max_steps = 5, progress = FALSE)),
               "must be > 0 on dose records .*row 3 has value -1", class = "pymixnn_error")
})

test_that("mixnnSolve() is the closed form of a single bolus", {
  skip_if_no_pymixnn()
  doses <- data.frame(ID = rep(1:2, each = 3), TIME = c(0, 1, 2), AMT = c(100, 0, 0),
                      DV = c(0, 4.5, 4.1))
  t <- c(0.5, 1, 4, 12)
  out <- mixnnSolve("pk1cpt_iv", doses, c(CL = 2, V = 20), times = t)
  expect_identical(names(out), c("ID", "time", "endpoint", "prediction"))
  expect_equal(out$time, rep(t, 2))
  expect_equal(out$prediction, 100 / 20 * exp(-2 / 20 * out$time), tolerance = 1e-10)
  # at the observation records, one parameter set per individual (a data.frame by id)
  per_id <- data.frame(ID = c(2, 1), CL = c(1, 2), V = c(10, 20))
  obs <- mixnnSolve("pk1cpt_iv", doses, per_id)
  expect_equal(nrow(obs), 4L)
  cl <- ifelse(obs$ID == 1, 2, 1)
  v <- ifelse(obs$ID == 1, 20, 10)
  expect_equal(obs$prediction, 100 / v * exp(-cl / v * obs$time), tolerance = 1e-10)
  expect_error(mixnnSolve("pk1cpt_iv", doses, c(CL = 2)), "missing \\['V'\\]",
               class = "pymixnn_error")
})

test_that("predict() at new NONMEM records; with an encoder, new subjects' own doses and levels", {
  skip_if_no_pymixnn()
  pn <- pheno_nonmem()
  fit <- mixnn(pn, "pk1cpt_iv", init = list(CL = 0.005, V = 1),
               control = mixnnControl(seed = 1, max_steps = 300, progress = FALSE,
                                      local = "amortized"))
  # two fitted subjects under new ids: the encoder reads their doses and levels
  new <- pn[pn$ID %in% c("1", "2"), ]
  fitted_pred <- predict(fit, newdata = new, level = 1)
  new$ID <- paste0("new", new$ID)
  p <- predict(fit, newdata = new, level = 1)
  expect_identical(colnames(p), c("ID", "time", "endpoint", "prediction"))
  expect_identical(nrow(p), sum(new$EVID == 0))
  expect_true(all(p$ID %in% c("new1", "new2")))
  # the encoder alone against the fitted subjects' modes: within 15% (phenobarb's few levels
  # per subject; the Python tests and vignette 07 measure the encoder on theophylline)
  expect_equal(p$prediction, fitted_pred$prediction, tolerance = 0.15)
  pop <- predict(fit, newdata = new, level = 0)
  expect_false(isTRUE(all.equal(p$prediction, pop$prediction, tolerance = 1e-3)))
  expect_error(predict(fit, newdata = new[, names(new) != "DV"], level = 1),
               "not in the fit, need their observations")
})
