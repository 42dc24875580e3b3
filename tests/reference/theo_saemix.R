# Reference fit of the theophylline data with the R package saemix.
#
# What it fits: saemix's documented reference model for theo.saemix, i.e. a
# one-compartment model with first-order absorption
#     f = dose*ka/(V*(ka-k)) * (exp(-k*t) - exp(-ka*t)),   k = CL/V
# with log-normal parameters (transform.par = c(1,1,1)), starting values
# psi0 = c(ka=1, V=20, CL=0.5), Weight as a covariate on V
# (covariate.model = matrix(c(0,1,0), ncol=3)), a diagonal omega and a
# constant residual error model; saemix options seed=632545, save=FALSE,
# save.graphs=FALSE, displayProgress=FALSE. The log-likelihood is computed by
# linearisation (ll.lin) and by importance sampling (ll.is).
#
# How to run it (from the repository root):
#     R_LIBS=/path/to/rlib Rscript tests/reference/theo_saemix.R [data.csv] [out.json]
# data.csv defaults to ../../pymixnn/datasets/theo.csv relative to this script,
# falling back to /work/shared/data/saemix_classic/theo.saemix.csv; the CSV must
# have columns "Id","Dose","Time","Concentration","Weight","Sex".
# out.json defaults to theo_saemix.json next to this script.
#
# Requirements: saemix 3.4 and its dependency npde come from CRAN (they are not
# packaged in Debian) and must be installed in a library on R_LIBS; jsonlite
# (Debian r-cran-jsonlite) is used to write the JSON.
#
# The JSON this script writes (theo_saemix.json) is committed to the
# repository, so the Python tests that compare against it run without R or
# saemix. Re-run this script only to regenerate the reference numbers.

suppressPackageStartupMessages({
  library(saemix)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
file_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
script_dir <- if (length(file_arg)) dirname(normalizePath(sub("^--file=", "", file_arg[1]))) else getwd()

if (length(args) >= 1) {
  data_path <- args[1]
} else {
  candidates <- c(file.path(script_dir, "..", "..", "pymixnn", "datasets", "theo.csv"),
                  "/work/shared/data/saemix_classic/theo.saemix.csv")
  data_path <- candidates[file.exists(candidates)][1]
  if (is.na(data_path)) stop("theophylline CSV not found; pass its path as the first argument")
}
out_path <- if (length(args) >= 2) args[2] else file.path(script_dir, "theo_saemix.json")

theo <- read.csv(data_path)

saemix.data <- saemixData(name.data = theo, header = TRUE,
                          name.group = c("Id"), name.predictors = c("Dose", "Time"),
                          name.response = c("Concentration"),
                          name.covariates = c("Weight"),
                          units = list(x = "hr", y = "mg/L", covariates = c("kg")),
                          name.X = "Time", verbose = FALSE)

model1cpt <- function(psi, id, xidep) {
  dose <- xidep[, 1]
  tim <- xidep[, 2]
  ka <- psi[id, 1]
  V <- psi[id, 2]
  CL <- psi[id, 3]
  k <- CL / V
  ypred <- dose * ka / (V * (ka - k)) * (exp(-k * tim) - exp(-ka * tim))
  return(ypred)
}

saemix.model <- saemixModel(model = model1cpt,
                            description = "One-compartment model with first-order absorption",
                            psi0 = matrix(c(1., 20, 0.5), ncol = 3, byrow = TRUE,
                                          dimnames = list(NULL, c("ka", "V", "CL"))),
                            transform.par = c(1, 1, 1),
                            covariate.model = matrix(c(0, 1, 0), ncol = 3, byrow = TRUE),
                            covariance.model = diag(3),
                            error.model = "constant", verbose = FALSE)

seed <- 632545
saemix.options <- list(seed = seed, save = FALSE, save.graphs = FALSE,
                       displayProgress = FALSE, print = FALSE,
                       ll.is = TRUE, fim = TRUE, map = TRUE)

t0 <- proc.time()[["elapsed"]]
fit <- saemix(saemix.model, saemix.data, saemix.options)
elapsed <- proc.time()[["elapsed"]] - t0

res <- fit@results
# fixed effects in the order ka, V, beta_Weight(V), CL (saemix's own names)
fe_names <- res@name.fixed
fixed <- setNames(lapply(seq_along(fe_names), function(i)
  list(estimate = res@fixed.effects[i], se = res@se.fixed[i])), fe_names)
omega2 <- setNames(as.list(diag(res@omega)), res@name.random)
names(omega2) <- sub("^omega2\\.", "", names(omega2))
sigma <- list(a = res@respar[res@indx.res][1])
omega2_se <- setNames(as.list(res@se.omega), names(omega2))
sigma_se <- list(a = res@se.respar[1])

per_id <- function(m) {
  m <- as.data.frame(m)
  if (is.null(colnames(m)) || !all(c("ka", "V", "CL") %in% colnames(m)))
    colnames(m)[1:3] <- c("ka", "V", "CL")  # cond.mean.psi is an unnamed matrix
  m <- m[, c("ka", "V", "CL")]
  list(id = as.character(unique(saemix.data@data[[saemix.data@name.group]])),
       ka = m$ka, V = m$V, CL = m$CL)
}

out <- list(
  saemix_version = as.character(packageVersion("saemix")),
  npde_version = as.character(packageVersion("npde")),
  R_version = paste(R.version$major, R.version$minor, sep = "."),
  data = basename(data_path),
  seed = seed,
  fixed_effects = fixed,
  omega2 = omega2,
  sigma = sigma,
  omega2_se = omega2_se,
  sigma_se = sigma_se,
  ll_lin = res@ll.lin,
  aic_lin = res@aic.lin,
  bic_lin = res@bic.lin,
  ll_is = res@ll.is,
  aic_is = res@aic.is,
  bic_is = res@bic.is,
  conditional_mean_psi = per_id(res@cond.mean.psi),
  map_psi = per_id(res@map.psi)
)

writeLines(toJSON(out, auto_unbox = TRUE, digits = I(10), pretty = TRUE), out_path)
cat("wrote", out_path, sprintf("(saemix fit took %.1f s)\n", elapsed))
suppressWarnings(print(fit))  # saemix's print method warns while formatting p-values
