# nlme's reported logLik is the first-order conditional (FOCE / Laplace with the Gauss-Newton Hessian)
# approximation at its estimates, yet its Lindstrom-Bates estimates are not the maximum of that
# approximation. This script shows both, for the Phenobarb and Quinidine fits of nlme_pk.json.
#
# Run from the repository root (about 40 s):
#   Rscript tests/reference/dynamics/foce_objective.R
# Writes tests/reference/dynamics/foce_objective.json.
#
# The FOCE objective is exact_ml.R's adaptive Gauss-Hermite log-likelihood with ONE node per
# dimension: sum_i [ h_i(b_i) + q/2 log(2 pi) - 1/2 log det H_i ] - N/2 log det(2 pi Omega) + ..., with
# b_i the conditional mode and H_i the Gauss-Newton Hessian there; for an additive error model this is
# NONMEM's FOCE-I objective (-OFV/2 up to a constant) and nlme's linearized likelihood at convergence.
# The functions (model predictions from nlme::phenoModel / nlme::quinModel, the vectorised mode search)
# are those of exact_ml.R, read from it, so that the two references cannot drift apart.

src <- readLines("tests/reference/dynamics/exact_ml.R")
eval(parse(text = src[seq_len(grep("^lower_log_om2 <-", src) - 1)]))
gh_rule_full <- gh_rule
gh_rule <- function(n) if (n == 1) list(z = 0, w = sqrt(pi)) else gh_rule_full(n)

results <- list()
for (nm in names(specs)) {
  s <- specs[[nm]]
  m <- make_model(s$data, s$f, s$fixed, s$re)
  th_nlme <- c(unlist(s$nl$fixed_effects)[m$fixed], log(pmax(unlist(s$nl$omega2)[m$re], 1e-8)),
               log(s$nl$sigma))
  lower <- c(rep(-Inf, length(m$fixed)), rep(log(1e-10), m$q), -Inf)
  at_nlme <- loglik(m, th_nlme, 1)
  o <- nlminb(th_nlme, function(t) -loglik(m, t, 1), lower = lower,
              control = list(rel.tol = 1e-10, iter.max = 300, eval.max = 1000))
  p <- unpack(m, o$par)
  nl_fe <- exp(unlist(s$nl$fixed_effects)[m$fixed])
  results[[nm]] <- list(
    logLik_nlme = s$nl$logLik, foce_at_nlme_estimates = at_nlme, foce_maximum = -o$objective,
    convergence = o$convergence,
    foce_estimates = list(exp_fixed_effects = as.list(setNames(exp(p$beta), sub("^l", "", m$fixed))),
                          omega2 = as.list(p$om2), sigma = p$sig),
    nlme_estimates = list(exp_fixed_effects = as.list(setNames(nl_fe, sub("^l", "", m$fixed))),
                          omega2 = s$nl$omega2, sigma = s$nl$sigma),
    rel_diff_fixed_foce_vs_nlme = as.list(setNames(exp(p$beta) / nl_fe - 1, sub("^l", "", m$fixed))))
  cat(sprintf("%s: nlme logLik %.4f, FOCE at nlme %.4f, FOCE maximum %.4f\n", nm, s$nl$logLik, at_nlme,
              -o$objective))
  print(unlist(results[[nm]]$rel_diff_fixed_foce_vs_nlme))
}
out <- list(
  description = paste(
    "FOCE (Laplace, Gauss-Newton Hessian, one adaptive Gauss-Hermite node per dimension) objective of",
    "the nlme fits in nlme_pk.json: its value at nlme's estimates (equal to nlme's logLik) and its",
    "maximum (nlminb), with the estimates there. Produced by tests/reference/dynamics/foce_objective.R."),
  software = list(R = R.version.string, nlme = as.character(packageVersion("nlme"))),
  models = results)
jsonlite::write_json(out, "tests/reference/dynamics/foce_objective.json", auto_unbox = TRUE, digits = NA,
                     pretty = TRUE)
cat("wrote tests/reference/dynamics/foce_objective.json\n")
