# Reference fits of the multiple-dose PK data sets Phenobarb and Quinidine by R's nlme
# (Pinheiro & Bates 2000, sections 6.4 and 8.2; nlme/scripts/ch06.R and ch08.R).
#
# Run from the repository root:
#   Rscript tests/reference/dynamics/nlme_pk.R
# Writes tests/reference/dynamics/nlme_pk.json (jsonlite, full precision).
#
# The data are taken from the nlme package (nlme::Phenobarb, nlme::Quinidine); these are
# identical, row by row and value by value, to ../shared/data/nlme_classic/Phenobarb_nlme.csv
# and Quinidine_nlme.csv. When those CSV files are present the script re-checks the equality
# and records the result ("csv_equal"); otherwise it stores null.

suppressPackageStartupMessages({
  library(nlme)
  library(jsonlite)
})

out_path <- "tests/reference/dynamics/nlme_pk.json"
csv_dir <- "../shared/data/nlme_classic"
options(contrasts = c("contr.treatment", "contr.poly"))  # as in the book

phenobarb <- as.data.frame(nlme::Phenobarb)
quinidine <- as.data.frame(nlme::Quinidine)

csv_equal <- function(csv_name, ds) {
  path <- file.path(csv_dir, csv_name)
  if (!file.exists(path)) return(NULL)
  x <- read.csv(path, stringsAsFactors = FALSE)
  if (!identical(dim(x), dim(ds)) || !identical(names(x), names(ds))) return(FALSE)
  for (n in names(ds)) {
    a <- x[[n]]
    b <- ds[[n]]
    if (is.numeric(b)) {
      a <- suppressWarnings(as.numeric(a))
      if (!identical(is.na(a), is.na(b)) || any(a[!is.na(a)] != b[!is.na(b)])) return(FALSE)
    } else if (!identical(as.character(a), as.character(b))) {
      return(FALSE)
    }
  }
  TRUE
}

n_subjects_changing <- function(df, var) {
  sum(tapply(as.character(df[[var]]), as.character(df$Subject), function(z) length(unique(z)) > 1))
}

# Fit with warnings and errors captured; never stops the script.
run_fit <- function(expr_fun) {
  warns <- character(0)
  t0 <- proc.time()[["elapsed"]]
  fit <- tryCatch(
    withCallingHandlers(expr_fun(), warning = function(w) {
      warns <<- c(warns, conditionMessage(w))
      invokeRestart("muffleWarning")
    }),
    error = function(e) e
  )
  list(fit = fit, warnings = unique(warns), wall_s = proc.time()[["elapsed"]] - t0)
}

summarise_fit <- function(res, data, call_text, start, log_names = NULL) {
  fit <- res$fit
  warns <- res$warnings
  base <- list(call = call_text, start = start, wall_time_s = res$wall_s, n_warnings = length(warns),
               warnings = I(utils::head(warns, 5)))
  if (inherits(fit, "error")) {
    return(c(list(converged = FALSE, error = conditionMessage(fit)), base))
  }
  sig <- fit$sigma
  fe <- fixef(fit)
  # random-effect covariance = pdMat (relative to sigma^2) * sigma^2; VarCorr() prints the same
  # numbers rounded to 7 digits, so take them at full precision from the pdMat.
  pd <- pdMatrix(fit$modelStruct$reStruct)[[1]] * sig^2
  exp_fe <- list()
  for (n in intersect(names(fe), log_names)) {
    exp_fe[[sub("^l", "", n)]] <- unname(exp(fe[[n]]))
  }
  obs_rows <- which(!is.na(data$conc))
  f0 <- fitted(fit, level = 0)
  f1 <- fitted(fit, level = 1)
  re <- ranef(fit)
  c(list(
    converged = TRUE,
    error = NULL,
    method = fit$method,
    fixed_effects = as.list(fe),
    exp_intercepts = exp_fe,
    fixed_effects_se = as.list(sqrt(diag(vcov(fit)))),
    omega2 = as.list(diag(pd)),
    sigma = sig,
    sigma2 = sig^2,
    logLik = as.numeric(logLik(fit)),
    df = attr(logLik(fit), "df"),
    AIC = AIC(fit),
    BIC = BIC(fit),
    n_obs = fit$dims$N,
    n_subjects = unname(fit$dims$ngrps[1]),
    num_iter = if (!is.null(fit$numIter)) fit$numIter else NA,
    ranef = list(Subject = as.character(rownames(re)),
                 values = lapply(as.list(re), as.numeric)),
    obs_row_index_1based = obs_rows,
    fitted_level0 = as.numeric(f0),
    fitted_level1 = as.numeric(f1)
  ), base)
}

ctrl_default <- nlmeControl()
ctrl_json <- ctrl_default[c("maxIter", "pnlsMaxIter", "msMaxIter", "minScale", "tolerance",
                            "niterEM", "pnlsTol", "msTol", "opt")]

# ---------------------------------------------------------------- Phenobarb (ch06.R, 6.4)
pheno_fit <- function(method, fixed = lCl + lV ~ 1, start = c(-5, 0), control = list()) {
  nlme(conc ~ phenoModel(Subject, time, dose, lCl, lV),
       data = nlme::Phenobarb, fixed = fixed,
       random = pdDiag(lCl + lV ~ 1), start = start,
       na.action = NULL, naPattern = ~ !is.na(conc), method = method, control = control)
}

pheno <- list()
for (m in c("ML", "REML")) {
  r <- run_fit(function() pheno_fit(m))
  pheno[[paste0("fm1_", m)]] <- summarise_fit(
    r, phenobarb,
    sprintf(paste("nlme(conc ~ phenoModel(Subject, time, dose, lCl, lV), data = Phenobarb,",
                  "fixed = lCl + lV ~ 1, random = pdDiag(lCl + lV ~ 1), start = c(-5, 0),",
                  "na.action = NULL, naPattern = ~ !is.na(conc), method = '%s')"), m),
    c(-5, 0), c("lCl", "lV"))
}

# Book covariate model fm2Pheno.nlme (ch06.R notes that it "ping-pongs until max.iterations").
fe1 <- pheno$fm1_ML$fixed_effects
r <- run_fit(function() pheno_fit("ML", fixed = list(lCl ~ Wt, lV ~ Wt + ApgarInd),
                                  start = c(-5.0935, 0, 0.34259, 0, 0),
                                  control = list(pnlsTol = 1e-4, maxIter = 500, opt = "nlm")))
pheno$fm2_ML <- summarise_fit(
  r, phenobarb,
  paste("update(fm1Pheno, fixed = list(lCl ~ Wt, lV ~ Wt + ApgarInd),",
        "start = c(-5.0935, 0, 0.34259, 0, 0), method = 'ML',",
        "control = list(pnlsTol = 1e-4, maxIter = 500, opt = 'nlm'))"),
  c(-5.0935, 0, 0.34259, 0, 0), NULL)
# Book fm3Pheno.nlme: lCl + lV ~ Wt (started from fm1 when fm2 failed).
st3 <- c(fe1$lCl, 0, fe1$lV, 0)
r <- run_fit(function() pheno_fit("ML", fixed = lCl + lV ~ Wt, start = st3))
pheno$fm3_ML <- summarise_fit(
  r, phenobarb,
  paste("update(fm1Pheno, fixed = lCl + lV ~ Wt, start = c(fixef(fm1_ML)[1], 0,",
        "fixef(fm1_ML)[2], 0), method = 'ML')"),
  st3, NULL)

pheno_notes <- list(
  model = paste(
    "phenoModel (C nlme_one_comp_first): one-compartment IV bolus, first-order elimination,",
    "superposition of all doses: for a row without dose (observation row),",
    "pred(t) = sum_{dose rows j of the subject with time_j <= row order} dose_j / V * exp(-(CL/V) * (t - time_j)),",
    "with CL = exp(lCl), V = exp(lV) taken from the observation row (constant within subject here).",
    "Dose rows get prediction 0 (they are excluded from the likelihood by naPattern = ~!is.na(conc)).",
    "Dose goes directly into the central compartment (amount/V added instantaneously); no absorption, no lag,",
    "no infusion. The first row of every subject must be a dose (checked: true for all 59)."),
  units = paste(
    "time in hours. Documentation (?Phenobarb, book App. A.23) gives dose in ug/kg and conc in ug/L;",
    "the magnitudes (loading doses 15-70 for birth weights 0.6-3.6 kg, conc 5-70) look like mg and mg/L.",
    "The model is linear in dose and does not use Wt: V is in (dose unit)/(conc unit)",
    "and CL in V-units per hour; fitted V ~ 1.4 and CL ~ 0.006."),
  data = paste(
    "744 rows, 59 subjects, 589 dose rows (dose non-NA, conc NA), 155 observation rows",
    "(conc non-NA, dose NA); no row has both; rows sorted by time within subject; Wt, Apgar,",
    "ApgarInd are constant within subject (ApgarInd '< 5' for 10 subjects, '>= 5' for 49)."),
  error_model = "additive (constant) residual error conc = pred + eps, eps ~ N(0, sigma^2)",
  random_effects = "lCl = beta_Cl + b_Cl, lV = beta_V + b_V, (b_Cl, b_V) ~ N(0, diag(omega2)) per subject",
  covariate_coding = paste(
    "fm2/fm3: Wt numeric (kg) enters lCl/lV linearly on the log scale; ApgarInd coded by",
    "contr.treatment: indicator of ApgarInd == '>= 5' (reference '< 5').")
)

# ---------------------------------------------------------------- Quinidine (ch08.R, 8.2)
quin_fit <- function(fixed, random, start, method = "ML", control = list()) {
  nlme(conc ~ quinModel(Subject, time, conc, dose, interval, lV, lKa, lCl),
       data = nlme::Quinidine, fixed = fixed, random = random, groups = ~ Subject,
       start = list(fixed = start), na.action = NULL, naPattern = ~ !is.na(conc),
       method = method, control = control)
}

quin <- list()
st1 <- c(5, -0.3, 2)
r <- run_fit(function() quin_fit(lV + lKa + lCl ~ 1, pdDiag(lV + lCl ~ 1), st1))
quin$fm1_ML <- summarise_fit(
  r, quinidine,
  paste("nlme(conc ~ quinModel(Subject, time, conc, dose, interval, lV, lKa, lCl),",
        "data = Quinidine, fixed = lV + lKa + lCl ~ 1, random = pdDiag(lV + lCl ~ 1),",
        "groups = ~ Subject, start = list(fixed = c(5, -0.3, 2)), na.action = NULL,",
        "naPattern = ~ !is.na(conc), method = 'ML')"),
  st1, c("lV", "lKa", "lCl"))

# Extra (not in the book): random effect on lCl only, since fm1 puts omega2(lV) on the boundary.
r <- run_fit(function() quin_fit(lV + lKa + lCl ~ 1, pdDiag(lCl ~ 1), st1))
quin$fm1_lClRE_ML <- summarise_fit(
  r, quinidine,
  paste("nlme(conc ~ quinModel(Subject, time, conc, dose, interval, lV, lKa, lCl),",
        "data = Quinidine, fixed = lV + lKa + lCl ~ 1, random = pdDiag(lCl ~ 1),",
        "groups = ~ Subject, start = list(fixed = c(5, -0.3, 2)), na.action = NULL,",
        "naPattern = ~ !is.na(conc), method = 'ML')"),
  st1, c("lV", "lKa", "lCl"))

st2 <- c(2.5, 0, 5.4, -0.2)
r <- run_fit(function() quin_fit(list(lCl ~ glyco, lV + lKa ~ 1),
                                 pdDiag(diag(c(0.3, 0.3)), form = lV + lCl ~ 1), st2))
quin$fm2_ML <- summarise_fit(
  r, quinidine,
  paste("nlme(conc ~ quinModel(Subject, time, conc, dose, interval, lV, lKa, lCl),",
        "data = Quinidine, fixed = list(lCl ~ glyco, lV + lKa ~ 1),",
        "random = pdDiag(diag(c(0.3, 0.3)), form = lV + lCl ~ 1), groups = ~ Subject,",
        "start = list(fixed = c(2.5, 0, 5.4, -0.2)), na.action = NULL,",
        "naPattern = ~ !is.na(conc), method = 'ML')"),
  st2, c("lV", "lKa"))

if (isTRUE(quin$fm2_ML$converged)) {
  f2 <- unlist(quin$fm2_ML$fixed_effects)
  st3q <- unname(c(f2[1:2], 0.2, f2[3:4]))
  r <- run_fit(function() quin_fit(list(lCl ~ glyco + Creatinine, lV + lKa ~ 1),
                                   pdDiag(diag(c(0.3, 0.3)), form = lV + lCl ~ 1), st3q))
  quin$fm3_ML <- summarise_fit(
    r, quinidine,
    paste("update(fm2Quin, fixed = list(lCl ~ glyco + Creatinine, lV + lKa ~ 1),",
          "start = c(fixef(fm2)[1:2], 0.2, fixef(fm2)[3:4]))"),
    st3q, c("lV", "lKa"))
  if (isTRUE(quin$fm3_ML$converged)) {
    f3 <- unlist(quin$fm3_ML$fixed_effects)
    st4q <- unname(c(f3[1:3], 0, f3[4:5]))
    r <- run_fit(function() quin_fit(list(lCl ~ glyco + Creatinine + Weight, lV + lKa ~ 1),
                                     pdDiag(diag(c(0.3, 0.3)), form = lV + lCl ~ 1), st4q))
    quin$fm4_ML <- summarise_fit(
      r, quinidine,
      paste("update(fm3Quin, fixed = list(lCl ~ glyco + Creatinine + Weight, lV + lKa ~ 1),",
            "start = c(fixef(fm3)[1:3], 0, fixef(fm3)[4:5]))"),
      st4q, c("lV", "lKa"))
  }
}

first_row <- !duplicated(as.character(quinidine$Subject))
covs <- c("Age", "Height", "Weight", "Race", "Smoke", "Ethanol", "Heart", "Creatinine", "glyco")
within_changes <- lapply(setNames(covs, covs), function(v) n_subjects_changing(quinidine, v))
glyco_chg <- c(FALSE, quinidine$glyco[-1] != quinidine$glyco[-nrow(quinidine)]) & !first_row

quin_counts <- list(
  rows = nrow(quinidine),
  subjects = length(unique(quinidine$Subject)),
  dose_rows = sum(!is.na(quinidine$dose)),
  obs_rows = sum(!is.na(quinidine$conc)),
  rows_with_dose_and_conc = sum(!is.na(quinidine$dose) & !is.na(quinidine$conc)),
  rows_with_neither = sum(is.na(quinidine$dose) & is.na(quinidine$conc)),
  ss_dose_rows = sum(!is.na(quinidine$interval)),
  ss_rows_without_dose = sum(!is.na(quinidine$interval) & is.na(quinidine$dose)),
  ss_rows_first_of_subject = sum(!is.na(quinidine$interval) & first_row),
  interval_values = as.list(table(quinidine$interval)),
  subjects_first_row_without_dose = as.character(quinidine$Subject[first_row & is.na(quinidine$dose)]),
  subjects_with_within_subject_change = within_changes,
  glyco_changes_on_dose_rows = sum(glyco_chg & !is.na(quinidine$dose)),
  glyco_changes_on_obs_rows = sum(glyco_chg & !is.na(quinidine$conc)),
  glyco_changes_on_other_rows = sum(glyco_chg & is.na(quinidine$dose) & is.na(quinidine$conc))
)

quin_notes <- list(
  model = paste(
    "quinModel (C nlme_one_comp_open): one-compartment model with first-order absorption from a",
    "depot and first-order elimination, in concentration units: state (C, Ca) = (central amount/V,",
    "depot amount/V); V = exp(lV), ka = exp(lKa), ke = CL/V = exp(lCl - lV). Bioavailability is 1",
    "(not estimable from oral data alone, so CL and V are apparent CL/F and V/F). ka is estimated",
    "(fixed effect lKa, no random effect in the book's models); no lag time."),
  rows = paste(
    "Dose rows: dose non-NA (conc is NA on all of them). Observation rows: conc non-NA (dose NA);",
    "only these enter the likelihood (naPattern = ~!is.na(conc)). Rows with neither get prediction 0",
    "and do not change the state (they only carry covariate values). Dose rows get prediction 0."),
  recursion = paste(
    "Per subject, rows in file order (time nondecreasing). tl = time of the last dose row.",
    "First row of a subject: tl = its time; if interval non-NA: steady state (below); else C = 0,",
    "Ca = dose/V (if the first row has no dose, Ca = NA, which only happens for subject 46 whose next",
    "row is a steady-state dose that resets the state). Later dose row without interval: delta = t - tl,",
    "C <- C*exp(-ke*delta) + Ca*ka*(exp(-ke*delta) - exp(-ka*delta))/(ka - ke), Ca <- Ca*exp(-ka*delta) + dose/V,",
    "tl <- t. Observation row: pred = C*exp(-ke*delta) + Ca*ka*(exp(-ke*delta) - exp(-ka*delta))/(ka - ke)",
    "with delta = t - tl; observation rows do NOT update (C, Ca, tl), so every observation is projected",
    "from the last dose using the ka, ke, V of the observation row itself."),
  interval = paste(
    "interval (hours; values 4, 6, 8, 12) is non-NA only on dose rows and means steady-state dosing",
    "(like NONMEM SS=1, II=interval): all previous history of the subject is discarded and the state is",
    "set to the steady state just after a dose, C = dose*ka/(V*(ka-ke)) * (1/(1-exp(-ke*II)) - 1/(1-exp(-ka*II))),",
    "Ca = dose/(V*(1-exp(-ka*II))); tl <- t. No additional dose is given beyond this (the SS state includes",
    "the current dose). Subsequent rows without interval continue as single doses from this state."),
  time_varying_parameters = paste(
    "nlme evaluates lV, lKa, lCl row by row from the row's covariates and the subject's random effects.",
    "The C code uses the current row's ka, ke, V: at a dose row to advance the state from tl to t",
    "(and for dose/V), at an observation row to project from tl to t. This matches NONMEM's convention",
    "(parameters of the event record apply over the preceding interval) for dose rows, but NOT for",
    "observation rows after a covariate change between two doses (NONMEM would advance piecewise).",
    "Within-subject changes exist: see counts.subjects_with_within_subject_change (glyco changes",
    "within 89 subjects, mostly on dose rows; 3 changes fall on observation rows)."),
  units = "time hours since entry; dose mg quinidine base; conc mg/L; glyco mg/dL; Weight kg.",
  error_model = "additive (constant) residual error conc = pred + eps, eps ~ N(0, sigma^2)",
  random_effects = "pdDiag random effects on lV and lCl only (not lKa), one per subject",
  covariate_coding = paste(
    "options(contrasts = c('contr.treatment', 'contr.poly')). Creatinine is an ORDERED factor",
    "('< 50' < '>= 50'), so in fm3/fm4 it is coded by contr.poly with two levels: '< 50' -> -1/sqrt(2),",
    "'>= 50' -> +1/sqrt(2) (coefficient name 'lCl.Creatinine.L'). glyco and Weight numeric, untransformed."),
  book_status = paste(
    "ch08.R says fm1Quin.nlme 'just ping-pongs' and is commented out; fm2Quin.nlme is run with the",
    "comment '# wrong values' and fm3/fm4 are commented out ('subsequent fits don't work').")
)

general_notes <- list(
  objective = paste(
    "nlme maximises the Lindstrom-Bates approximation to the likelihood (alternating PNLS and LME",
    "steps, the LME step linearised at the current conditional modes), i.e. a FOCE-like linearisation,",
    "not the exact marginal likelihood and not Laplace. logLik/AIC/BIC are of that approximation",
    "(AIC/BIC use df = #fixed + #variance parameters + 1 for sigma)."),
  precision = paste(
    "nlme's convergence test is loose: for Quinidine fm1 restarting from the optimum gives logLik",
    "-496.6416 instead of -496.6147 and fixed effects that differ by ~1e-3; compare with tolerances",
    "of about 1e-2 (log scale parameters) and 0.05 in logLik, not at machine precision."),
  fitted = paste(
    "fitted_level0 / fitted_level1: nlme's population (random effects 0) and subject-level",
    "predictions at the final estimates, for the observation rows obs_row_index_1based",
    "(1-based row numbers in the data / CSV, file order)."),
  failures = "a fit that fails stores converged = false and nlme's error message in 'error'."
)

result <- list(
  description = paste("nlme reference fits of Phenobarb and Quinidine (Pinheiro & Bates 2000, 6.4 and 8.2);",
                      "produced by tests/reference/dynamics/nlme_pk.R"),
  software = list(R = R.version.string, nlme = as.character(packageVersion("nlme")),
                  jsonlite = as.character(packageVersion("jsonlite"))),
  nlme_control_default = ctrl_json,
  notes = general_notes,
  phenobarb = list(
    data = "nlme::Phenobarb (== Phenobarb_nlme.csv)",
    csv_equal = csv_equal("Phenobarb_nlme.csv", phenobarb),
    notes = pheno_notes,
    fits = pheno
  ),
  quinidine = list(
    data = "nlme::Quinidine (== Quinidine_nlme.csv)",
    csv_equal = csv_equal("Quinidine_nlme.csv", quinidine),
    counts = quin_counts,
    notes = quin_notes,
    fits = quin
  )
)

jsonlite::write_json(result, out_path, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null",
                     na = "null")
cat("wrote", out_path, "\n")
for (ds in c("phenobarb", "quinidine")) {
  for (nm in names(result[[ds]]$fits)) {
    f <- result[[ds]]$fits[[nm]]
    cat(sprintf("%s %s converged=%s logLik=%s wall=%.1fs %s\n", ds, nm, f$converged,
                if (isTRUE(f$converged)) format(f$logLik, digits = 10) else "NA", f$wall_time_s,
                if (!isTRUE(f$converged)) f$error else ""))
  }
}
