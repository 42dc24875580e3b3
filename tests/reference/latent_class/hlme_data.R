# Reference numbers for latent-class linear mixed models: lcmm::hlme on lcmm's own simulated example
# data data_hlme (100 subjects, 326 observations; lcmm is GPL (>= 2.0)).
#
#   R_LIBS=/opt/rlib-lcmm Rscript tests/reference/latent_class/hlme_data.R tests/reference/latent_class
#
# writes OUTDIR/data_hlme.csv (the data, ID first, no row names) and OUTDIR/hlme_data.json.
# lcmm is CRAN-only: install it (and marqLevAlg, spacefillr) in a private library outside the
# repository and point R_LIBS at it (see tests/reference/README.md). jsonlite is Debian's.
#
# Fits (all with fixed = Y ~ Time*X1, random = ~Time, subject = 'ID', idiag = FALSE, nwg = FALSE):
#   m1           ng = 1
#   m2           ng = 2, mixture = ~Time, classmb = ~X2 + X3, B = the vector of lcmm's hlme example (m2b)
#   m2a          the same model from B = m1 (the example whose summary lcmm's documentation prints)
#   m2_tight     m2 with convB = convL = convG = 1e-10 (the defaults are 1e-4)
#   m2_grid      the same model by gridsearch(rep = 30, maxiter = 15, minit = m1), seed 1
#   m2_noclassmb_grid  ng = 2, mixture = ~Time, no classmb (class-membership intercept only), gridsearch, seed 2
#   m3_grid      ng = 3, mixture = ~Time, classmb = ~X2 + X3, gridsearch(rep = 30, maxiter = 15), seed 6
#                (its supremum is on the boundary: one class has no subject with X2 = 1 and its X2
#                coefficient runs off to -Inf; see the note in the JSON)
#
# Parametrization (lcmm's): the class-membership model is a multinomial logit whose reference is the
# LAST class (parameters "intercept class g", "X2 class g", ... for g = 1..ng-1); the fixed effects in
# mixture are class-specific ("intercept class g", "Time class g"), the others common ("X1",
# "Time:X1"); one random-effect covariance matrix for all classes (nwg = FALSE) and one residual
# standard deviation ("stderr", a standard deviation, not a variance).
# m$best holds the random-effect variance-covariance (lower triangle by rows, = upper triangle by
# columns: "varcov 1" = var(intercept), "varcov 2" = cov(intercept, Time), "varcov 3" = var(Time)),
# but the optimisation and m$V use their Cholesky parametrisation: estimates(m) (cholesky = TRUE)
# returns the vector with "cholesky 1..3" = the upper-triangular U (by columns) with U'U = varcov, and
# the standard errors sqrt(diag(VarCov(m))) belong to that Cholesky vector. summary() prints no SE for
# the variance-covariance; se_varcov_delta below is the delta-method SE computed here from m$V.
suppressPackageStartupMessages({library(lcmm); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args) >= 1) args[1] else "."
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)

data(data_hlme, package = "lcmm")
write.csv(data_hlme, file.path(outdir, "data_hlme.csv"), row.names = FALSE)

# delta-method SEs of the variance-covariance entries from the Cholesky entries' covariance
varcov_delta_se <- function(m) {
  idx <- m$N[1] + m$N[2] + seq_len(m$N[3])
  if (!length(idx) || m$idiag) return(NULL)
  nea <- sum(m$idea0)
  V <- VarCov(m)[idx, idx, drop = FALSE]
  f <- function(ch) { U <- matrix(0, nea, nea); U[upper.tri(U, diag = TRUE)] <- ch
                      z <- t(U) %*% U; z[upper.tri(z, diag = TRUE)] }
  ch <- estimates(m)[idx]
  J <- numDeriv::jacobian(f, ch)
  setNames(as.list(sqrt(diag(J %*% V %*% t(J)))), names(m$best)[idx])
}

re_names <- function(m) m$Xnames[m$idea0 != 0]

postprob_full <- function(m, thresholds = c(0.7, 0.8, 0.9)) {
  pp <- m$pprob; G <- m$ng; P <- as.matrix(pp[, 2 + seq_len(G)])
  cls <- pp[, 2]
  n <- sapply(seq_len(G), function(g) sum(cls == g))
  mean_pp <- t(sapply(seq_len(G), function(g) colMeans(P[cls == g, , drop = FALSE])))
  dimnames(mean_pp) <- list(paste0("class", seq_len(G)), paste0("prob", seq_len(G)))
  above <- sapply(seq_len(G), function(g) sapply(thresholds, function(t) 100 * mean(P[cls == g, g] > t)))
  above <- matrix(above, nrow = length(thresholds), dimnames = list(paste0("prob>", thresholds),
                                                                     paste0("class", seq_len(G))))
  printed <- NULL
  invisible(capture.output(printed <- postprob(m)))
  list(n = setNames(as.list(n), paste0("class", seq_len(G))),
       percent = setNames(as.list(100 * n / m$ns), paste0("class", seq_len(G))),
       mean_posterior_of_assigned_class = setNames(as.list(diag(mean_pp)), paste0("class", seq_len(G))),
       mean_posterior_by_assigned_class = list(rows_assigned_class = rownames(mean_pp),
                                               cols_prob = colnames(mean_pp), matrix = unname(mean_pp)),
       percent_above_threshold = list(thresholds = thresholds, cols_class = colnames(above),
                                      matrix = unname(above)),
       note = paste("class = argmax posterior probability (m$pprob$class); percent_above_threshold[t, g] =",
                    "100 * share of individuals assigned to class g whose posterior probability of class g",
                    "is > t (strict), as postprob() prints; unrounded here, lcmm's rounded print in 'printed'"),
       printed = list(classif = printed[[1]], mean_pp = printed[[2]], above = printed[[3]]))
}

# lcmm's names repeat "intercept class1" (class-membership and longitudinal intercepts) and JSON
# objects need unique keys: keys = lcmm's names with "classmb " before the class-membership ones.
param_keys <- function(m) {
  nm <- names(m$best)
  ifelse(seq_along(nm) <= m$N[1], paste("classmb", nm), nm)
}

describe <- function(m, seconds, spec, init) {
  st <- summarytable(m, which = c("G", "loglik", "conv", "npm", "AIC", "BIC", "SABIC", "entropy", "ICL1", "ICL2"),
                     display = FALSE)
  keys <- param_keys(m)
  keys_chol <- sub("^varcov", "cholesky", keys)
  est_chol <- estimates(m, cholesky = TRUE)
  stopifnot(identical(unname(sub("^cholesky", "varcov", names(est_chol))), names(m$best)))
  idx <- m$N[1] + m$N[2] + seq_len(m$N[3])
  nea <- sum(m$idea0)
  D <- matrix(0, nea, nea); D[upper.tri(D, diag = TRUE)] <- m$best[idx]; D <- D + t(D) - diag(diag(D))
  U <- matrix(0, nea, nea); U[upper.tri(U, diag = TRUE)] <- m$cholesky
  block <- rep(c("classmb", "fixed", "varcov", "varprop", "cor"), m$N[1:5])
  res <- list(
    call = paste(deparse(m$call, width.cutoff = 500L), collapse = " "),
    spec = c(spec, list(ng = m$ng, nwg = FALSE, idiag = as.logical(m$idiag), init = init)),
    ns = m$ns, nobs = nrow(m$pred),
    loglik = m$loglik, npm = length(m$best), AIC = m$AIC, BIC = m$BIC,
    SABIC = unname(st[1, "SABIC"]), entropy = unname(st[1, "entropy"]),
    ICL1 = unname(st[1, "ICL1"]), ICL2 = unname(st[1, "ICL2"]),
    conv = m$conv, niter = m$niter, gconv = m$gconv, seconds = seconds,
    names = names(m$best), keys = keys, blocks = c(block, "stderr"),
    best = setNames(as.list(unname(m$best)), keys),
    best_cholesky = setNames(as.list(unname(est_chol)), keys_chol),
    random_effects_varcov = list(names = re_names(m), matrix = unname(D)),
    random_effects_cholesky_upper = unname(U),
    residual_sd = unname(m$best["stderr"]))
  if (m$conv %in% c(1, 3)) {        # with conv = 2, lcmm's V holds second derivatives, not a covariance
    Vc <- VarCov(m)
    res$se <- setNames(as.list(unname(sqrt(diag(Vc)))), keys_chol)
    res$se_varcov_delta <- varcov_delta_se(m)
    res$vcov_cholesky <- list(keys = keys_chol, matrix = unname(Vc))
  } else {
    res$se <- NULL
    res$se_note <- "no SEs: the fit stopped without convergence (lcmm's V is then not a covariance matrix)"
  }
  if (m$ng > 1) {
    res$postprob <- postprob_full(m)
    res$class_intercepts <- as.list(unname(m$best[m$N[1] + seq_len(m$ng)]))
  }
  res
}

timed <- function(expr) { t0 <- proc.time()[["elapsed"]]; v <- expr; list(v, proc.time()[["elapsed"]] - t0) }

base_spec <- list(fixed = "Y ~ Time * X1", random = "~Time", subject = "ID")
spec2 <- c(base_spec, list(mixture = "~Time", classmb = "~X2 + X3"))
spec2n <- c(base_spec, list(mixture = "~Time", classmb = "~1 (default, omitted)"))
B_doc <- c(0.11, -0.74, -0.07, 20.71, 29.39, -1, 0.13, 2.45, -0.29, 4.5, 0.36, 0.79, 0.97)

t <- timed(m1 <- hlme(Y ~ Time * X1, random = ~Time, subject = 'ID', ng = 1, data = data_hlme))[[2]]
fits <- list(m1 = describe(m1, t, c(base_spec, list(mixture = NA, classmb = NA)), "lcmm default"))
cat(sprintf("m1: loglik %.6f (%.1f s)\n", m1$loglik, t))

t <- timed(m2 <- hlme(Y ~ Time * X1, mixture = ~Time, random = ~Time, classmb = ~X2 + X3, subject = 'ID',
                      ng = 2, data = data_hlme, B = B_doc))[[2]]
fits$m2 <- describe(m2, t, spec2, list(B = B_doc, source = "lcmm man/hlme.Rd example m2b"))
fits$m2$pprob <- list(ID = m2$pprob$ID, class = m2$pprob$class, prob1 = m2$pprob$prob1, prob2 = m2$pprob$prob2)
cat(sprintf("m2: loglik %.6f (%.1f s)\n", m2$loglik, t))

t <- timed(m2a <- hlme(Y ~ Time * X1, mixture = ~Time, random = ~Time, classmb = ~X2 + X3, subject = 'ID',
                       ng = 2, data = data_hlme, B = m1))[[2]]
fits$m2a <- describe(m2a, t, spec2, "B = m1 (lcmm man/hlme.Rd example m2a)")
cat(sprintf("m2a: loglik %.6f (%.1f s)\n", m2a$loglik, t))

t <- timed(m2t <- hlme(Y ~ Time * X1, mixture = ~Time, random = ~Time, classmb = ~X2 + X3, subject = 'ID',
                       ng = 2, data = data_hlme, B = B_doc, convB = 1e-10, convL = 1e-10, convG = 1e-10))[[2]]
fits$m2_tight <- describe(m2t, t, spec2, list(B = B_doc, convB = 1e-10, convL = 1e-10, convG = 1e-10,
                                               source = "m2 with tighter convergence criteria"))
cat(sprintf("m2_tight: loglik %.8f (%.1f s)\n", m2t$loglik, t))

set.seed(1)
t <- timed(m2g <- gridsearch(rep = 30, maxiter = 15, minit = m1,
                             hlme(Y ~ Time * X1, mixture = ~Time, random = ~Time, classmb = ~X2 + X3,
                                  subject = 'ID', ng = 2, data = data_hlme)))[[2]]
fits$m2_grid <- describe(m2g, t, spec2, "gridsearch(rep = 30, maxiter = 15, minit = m1), set.seed(1)")
cat(sprintf("m2_grid: loglik %.6f (%.1f s)\n", m2g$loglik, t))

set.seed(2)
t <- timed(m2n <- gridsearch(rep = 30, maxiter = 15, minit = m1,
                             hlme(Y ~ Time * X1, mixture = ~Time, random = ~Time,
                                  subject = 'ID', ng = 2, data = data_hlme)))[[2]]
fits$m2_noclassmb_grid <- describe(m2n, t, spec2n, "gridsearch(rep = 30, maxiter = 15, minit = m1), set.seed(2)")
cat(sprintf("m2_noclassmb_grid: loglik %.6f (%.1f s)\n", m2n$loglik, t))

set.seed(6)
t <- timed(m3g <- gridsearch(rep = 30, maxiter = 15, minit = m1,
                             hlme(Y ~ Time * X1, mixture = ~Time, random = ~Time, classmb = ~X2 + X3,
                                  subject = 'ID', ng = 3, data = data_hlme)))[[2]]
fits$m3_grid <- describe(m3g, t, spec2, "gridsearch(rep = 30, maxiter = 15, minit = m1), set.seed(6)")
x2 <- data_hlme$X2[match(m3g$pprob$ID, data_hlme$ID)]
fits$m3_grid$X2_by_class <- list(X2_0 = as.integer(table(factor(m3g$pprob$class[x2 == 0], levels = 1:3))),
                                 X2_1 = as.integer(table(factor(m3g$pprob$class[x2 == 1], levels = 1:3))))
fits$m3_grid$note <- paste(
  "Boundary solution: the class with no X2 = 1 subject has its class-membership X2 coefficient (vs the",
  "reference class 3) running off to -Inf (here about -23, where lcmm's criteria stop); the loglik",
  "-769.6274 is a supremum. With other seeds the same call gave the same loglik (seeds 2, 4, 5, 7:",
  "conv = 1, that coefficient between -21.6 and -25.4, classes possibly relabelled), conv = 2 at",
  "maxiter 500 (seed 3, 24 s), or conv = 4 'infinite parameters' (seed 1). Its SEs are meaningless",
  "for that coefficient and unreliable for the others.")
cat(sprintf("m3_grid: loglik %.6f (%.1f s)\n", m3g$loglik, t))

# lcmm's documentation (pkgdown reference page of hlme, lcmm 2.2.2) prints summary(m1), summary(m2a)
# and postprob(m2a); compare at the printed precision.
doc <- list(m1 = list(loglik = -790.51, AIC = 1597.02, BIC = 1617.86),
            m2a = list(loglik = -773.82, AIC = 1573.64, BIC = 1607.51,
                       best = c(`intercept class1` = 0.10518, `X2 class1` = -0.73939, `X3 class1` = -0.06818,
                                `intercept class1` = 20.70604, `intercept class2` = 29.39251,
                                `Time class1` = -1.00426, `Time class2` = 0.13102, X1 = 2.45177,
                                `Time:X1` = -0.28770, `varcov 1` = 4.50087, `varcov 2` = 0.35984,
                                `varcov 3` = 0.79338, stderr = 0.96808),
                       se_fixed = c(0.33393, 0.48978, 0.19279, 0.64004, 0.54893, 0.19584, 0.17259,
                                    0.64546, 0.20015), se_stderr = 0.06062,
                       postprob_n = c(46, 54)))
doc_vs <- function(m) {
  se <- sqrt(diag(VarCov(m)))
  list(loglik = c(doc = doc$m2a$loglik, here = m$loglik), BIC = c(doc = doc$m2a$BIC, here = m$BIC),
       max_abs_diff_best = max(abs(unname(m$best) - unname(doc$m2a$best))),
       max_abs_diff_se = max(abs(c(se[1:9], se[13]) - c(doc$m2a$se_fixed, doc$m2a$se_stderr))),
       postprob_n = as.integer(table(factor(m$pprob$class, levels = 1:2))))
}
docs_check <- list(
  source = "lcmm pkgdown reference page docs/reference/hlme.html (lcmm 2.2.2), examples m1 and m2a",
  note = paste("printed to 5 decimals (loglik, AIC, BIC to 2); lcmm's SEs come from a finite-difference",
               "Hessian and move by up to ~1e-4 with the stopping point, hence the SE tolerance 1e-4"),
  m1 = list(loglik = c(doc = doc$m1$loglik, here = m1$loglik), AIC = c(doc = doc$m1$AIC, here = m1$AIC),
            BIC = c(doc = doc$m1$BIC, here = m1$BIC)),
  m2a = doc_vs(m2a), m2 = doc_vs(m2))
docs_check$ok <- abs(m1$loglik - doc$m1$loglik) < 0.006 && abs(m1$BIC - doc$m1$BIC) < 0.006 &&
  all(sapply(docs_check[c("m2a", "m2")], function(d) abs(d$loglik[2] - d$loglik[1]) < 0.006 &&
    abs(d$BIC[2] - d$BIC[1]) < 0.006 && d$max_abs_diff_best < 6e-5 && d$max_abs_diff_se < 1e-4 &&
    all(d$postprob_n == doc$m2a$postprob_n)))
print(docs_check)

same <- function(a, b) abs(a$loglik - b$loglik) < 1e-4
comparisons <- list(
  m2_grid_vs_m2_same_loglik = same(m2g, m2), m2_grid_minus_m2_loglik = m2g$loglik - m2$loglik,
  m2a_vs_m2_same_loglik = same(m2a, m2), m2a_minus_m2_loglik = m2a$loglik - m2$loglik,
  m2_tight_minus_m2_loglik = m2t$loglik - m2$loglik,
  m2_tight_max_abs_diff_best = max(abs(m2t$best - m2$best)),
  m2_grid_labels_switched = unname(m2g$best["X2 class1"] * m2$best["X2 class1"] < 0 ||
    abs(m2g$best[4] - m2$best[4]) > 1))

record <- list(
  R_version = R.version.string,
  lcmm_version = as.character(packageVersion("lcmm")),
  marqLevAlg_version = as.character(packageVersion("marqLevAlg")),
  package_versions = sapply(c("lcmm", "marqLevAlg", "spacefillr", "mvtnorm", "doParallel", "numDeriv",
                              "survival", "nlme", "jsonlite"), function(p) as.character(packageVersion(p)),
                            simplify = FALSE),
  data = list(file = "data_hlme.csv", source = "lcmm::data_hlme (simulated; lcmm is GPL (>= 2.0))",
              n_subjects = length(unique(data_hlme$ID)), n_obs = nrow(data_hlme),
              columns = names(data_hlme)),
  parametrization = list(
    class_membership = paste("multinomial logit; the reference is the LAST class (its intercept and",
                             "covariate coefficients are 0); parameters 'intercept class g', 'X2 class g',",
                             "'X3 class g' for g = 1..ng-1, ordered intercepts first then covariate by covariate"),
    reference_class = "last",
    fixed_effects = paste("covariates in mixture have one coefficient per class ('intercept class g',",
                          "'Time class g'), listed covariate by covariate; the others ('X1', 'Time:X1') are common"),
    nwg = FALSE, random_effects_covariance_common_to_classes = TRUE, idiag = FALSE,
    varcov_order = paste("'varcov 1..3' = var(intercept), cov(intercept, Time), var(Time) (upper triangle",
                         "by columns); best holds these values"),
    names_keys = paste("names = lcmm's parameter names in order (they repeat 'intercept class1');",
                       "keys = the same with 'classmb ' before the class-membership parameters;",
                       "best, best_cholesky and se are keyed by them (best_cholesky and se with",
                       "'cholesky k' for 'varcov k'); blocks = classmb / fixed / varcov / stderr"),
    cholesky = paste("best_cholesky / estimates(m): 'cholesky 1..3' = U[1,1], U[1,2], U[2,2] of the",
                     "upper-triangular U with U'U = varcov; lcmm optimises these, and se / vcov_cholesky",
                     "(sqrt(diag(VarCov(m))), = vcov(m)) are for this vector, not for 'varcov k'"),
    se_varcov_delta = "delta-method SEs of 'varcov k' computed by this script from vcov_cholesky (not an lcmm output)",
    residual = "'stderr' = residual standard deviation (not variance), common to all classes",
    npm = "length(best) (no posfix)", BIC = "-2 loglik + npm log(ns), ns = number of subjects",
    SABIC = "-2 loglik + npm log((ns + 2)/24)",
    entropy = "1 + sum_{i,g} p_ig log p_ig / (ns log G) (summarytable; 1 when G = 1)",
    ICL1 = "BIC - sum_{i,g} p_ig log p_ig (summarytable; note: 1x, not 2x, the entropy term)",
    ICL2 = "BIC - 2 sum_i log p_{i,c_i}, c_i = argmax class (summarytable)",
    optimiser = "Marquardt-Levenberg (lcmm's Fortran); defaults convB = convL = convG = 1e-4, maxiter = 500"),
  fits = fits, comparisons = comparisons, docs_check = docs_check,
  seconds_total = sum(sapply(fits, `[[`, "seconds")))

writeLines(toJSON(record, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"),
           file.path(outdir, "hlme_data.json"))
cat("wrote", file.path(outdir, "hlme_data.json"), "\n")
