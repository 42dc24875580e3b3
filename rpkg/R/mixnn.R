#' Describe the data of a fit, as saemix's saemixData()
#'
#' @param name.data A data.frame in long format (one row per observation), or a CSV file.
#' @param name.group Column identifying the individual.
#' @param name.predictors Column(s) of the structural function's x, e.g. `c("Dose", "Time")`.
#' @param name.response Column of the observations.
#' @param name.covariates Covariate columns (constant within an individual).
#' @param name.cens Column flagging left-censored observations (1: below the limit of
#'   quantification, the response holding that limit), fitted by the M3 likelihood.
#' @param name.trials Column with the number of trials of binomial observations.
#' @param name.genotype Column with each individual's genotype (genomic fits).
#' @param units Optional list of units (`x`, `y`) for plot labels.
#' @return An object of class `mixnnData`, for [mixnn()].
#' @export
mixnnData <- function(name.data, name.group, name.predictors, name.response,
                      name.covariates = NULL, name.cens = NULL, name.trials = NULL,
                      name.genotype = NULL, units = NULL) {
  if (is.character(name.data) && length(name.data) == 1) name.data <- utils::read.csv(name.data)
  if (!is.data.frame(name.data)) stop("name.data must be a data.frame or a CSV file", call. = FALSE)
  cols <- c(name.group, name.predictors, name.response, name.covariates, name.cens,
            name.trials, name.genotype)
  missing <- setdiff(cols, names(name.data))
  if (length(missing))
    stop("column(s) ", paste(sQuote(missing, FALSE), collapse = ", "), " not found in the ",
         "data; available columns: ", paste(names(name.data), collapse = ", "), call. = FALSE)
  structure(list(data = name.data, id = name.group, x = name.predictors, y = name.response,
                 covariates = name.covariates, censoring = name.cens, trials = name.trials,
                 genotype = name.genotype, units = units), class = "mixnnData")
}

#' Describe the model of a fit, as saemix's saemixModel()
#'
#' @param model A named model ("onecpt_oral", "logistic", "gompertz", "asymptotic",
#'   "exp_growth", "emax", "sigmoid_emax", "linear"), a Python `pymixnn.Model`, or a Python
#'   function `f(psi, x)` written in torch (then `psi0` or `name.modpar` names the parameters).
#' @param description A label.
#' @param psi0 Initial fixed effects on the natural scale: a named vector or a one-row matrix
#'   with column names. Named models start from the data when omitted.
#' @param transform.par Transform of each parameter: saemix codes (0 identity, 1 log,
#'   2 probit, 3 logit) or names, in parameter order or named.
#' @param covariate.model 0/1 matrix, covariates (rows) by parameters (columns).
#' @param covariance.model 0/1 matrix over the parameters: a zero diagonal entry removes the
#'   random effect, off-diagonal ones make the covariance full.
#' @param error.model "constant", "proportional", "combined" or "exponential".
#' @param error.init Initial values `c(a, b)` of the error model.
#' @param name.modpar Parameter names of a Python function model.
#' @return An object of class `mixnnModel`, for [mixnn()].
#' @export
mixnnModel <- function(model, description = NULL, psi0 = NULL, transform.par = NULL,
                       covariate.model = NULL, covariance.model = NULL, error.model = NULL,
                       error.init = NULL, name.modpar = NULL) {
  if (is.matrix(psi0)) psi0 <- psi0[1, ]
  if (!is.null(psi0) && is.null(names(psi0))) names(psi0) <- name.modpar
  structure(list(model = model, description = description, psi0 = psi0,
                 transform.par = transform.par, covariate.model = covariate.model,
                 covariance.model = covariance.model, error.model = error.model,
                 error.init = error.init, name.modpar = name.modpar %||% names(psi0)),
            class = "mixnnModel")
}

#' Settings of the estimation, for mixnn()
#'
#' The settings of Python's `pymixnn.Control`, one to one and with the same names (mixnn() builds
#' a `pymixnn.Control` from them and checks them there), plus `dropna`, a setting of the data
#' (`pymixnn.NLME(dropna = )`).
#'
#' @param seed Random seed: the same seed gives identical results.
#' @param batch_size Individuals per SVI minibatch.
#' @param max_steps,lr,num_particles SVI steps, Adam step size and ELBO particles.
#' @param refine Maximize the importance-weighted likelihood after SVI.
#' @param is_samples Importance samples per individual for ll.is and SEs (saemix's nmc.is).
#' @param likelihood "auto", "is" (importance sampling) or "gq" (adaptive quadrature).
#' @param device "cpu", "cuda" or "auto".
#' @param dtype "float64" or "float32" (default: float64 on CPU).
#' @param threads torch threads (default 1 for small data).
#' @param progress Show a progress bar.
#' @param dropna Drop rows with a missing response instead of stopping (an R warning says how
#'   many, and the first one's row name).
#' @param ode_rtol,ode_atol Tolerances of the ODE solver of an ODE model (compartment models
#'   are solved exactly).
#' @param local "individual" (variational parameters per individual) or "amortized" (one encoder
#'   network maps each individual's data to its posterior; new individuals in one forward pass;
#'   Gaussian, mixture and flow random effects, conditional flows and event data; not a genomic
#'   block yet).
#' @param refine_steps With `local = "amortized"`, Newton steps per individual from the encoder's
#'   output (semi-amortized).
#' @param gear "auto", "newton" (Newton steps on the marginal likelihood straight from the
#'   Laplace-EM start, as FOCE/Laplace engines do) or "svi" (minibatch SVI first, then the same
#'   Newton refinement). "auto" takes "newton" for up to 10^6 individuals with Gaussian random
#'   effects (a genomic block is updated between its refinements when genotypes have several
#'   individuals), per-individual posteriors, no grouping level, a closed-form model and the CPU;
#'   the fit's
#'   `info$gear` says which ran.
#' @param distributed `TRUE`: data-parallel over the processes of an initialized
#'   torch.distributed group (Python processes started by `torchrun`, or R processes that each
#'   join it through reticulate, `reticulate::import("torch.distributed")$init_process_group(...)`;
#'   see the README's "Beyond one machine"); the Gaussian law by the Newton gear or SVI,
#'   closed-form models so far. `info$processes` says how many took part.
#' @param neural_steps A model with neural terms: the most steps of each training stage
#'   (default `NULL`: `max_steps`, at most 600 for an ODE model, each step a whole solve).
#' @param shards With `distributed = TRUE`: each process passes only its own individuals (read
#'   by [mixnnReadShard()]); the fit's individual tables are then this process's, the population
#'   estimates every process's (see the README's "Beyond one machine").
#' @param neural_starts A model with neural terms: how many times the staged fit runs (start k
#'   with seed `seed + k`), the fit of highest log-likelihood kept; `fit$neural_starts` lists them.
#' @return A list of settings: the fields of `pymixnn.Control`, then `dropna`.
#' @export
mixnnControl <- function(seed = 0L, batch_size = 512L, max_steps = 4000L, lr = 0.02,
                         num_particles = 4L, refine = TRUE, is_samples = NULL,
                         likelihood = "auto", device = "cpu", dtype = NULL, threads = NULL,
                         progress = interactive(), dropna = FALSE, ode_rtol = 1e-6,
                         ode_atol = 1e-8, local = "individual", refine_steps = 0L,
                         gear = "auto", distributed = FALSE, neural_steps = NULL,
                         neural_starts = 1L, shards = FALSE) {
  int <- function(v) if (is.null(v)) NULL else as.integer(v)
  list(seed = int(seed), batch_size = int(batch_size), max_steps = int(max_steps),
       lr = as.numeric(lr), num_particles = int(num_particles), refine = isTRUE(refine),
       is_samples = int(is_samples), likelihood = likelihood, device = device, dtype = dtype,
       threads = int(threads), progress = isTRUE(progress), dropna = isTRUE(dropna),
       ode_rtol = as.numeric(ode_rtol), ode_atol = as.numeric(ode_atol), local = local,
       refine_steps = int(refine_steps), gear = gear, distributed = isTRUE(distributed),
       neural_steps = int(neural_steps), neural_starts = int(neural_starts),
       shards = isTRUE(shards))
}

#' Fit a nonlinear mixed-effects model with pymixnn
#'
#' R front end of Python's `pymixnn.fit()`: individual parameters
#' `psi_i = h(mu + beta * covariates + eta_i)` with Gaussian, mixture or normalizing-flow random
#' effects, continuous or discrete observations, fitted by minibatch stochastic variational
#' inference, then maximum likelihood refinement; SEs from the observed Fisher information.
#'
#' @param data A data.frame (long format), a [mixnnData()] object, or event data: a
#'   [mixnnEvents()] object or, with a compartment model, a data.frame with NONMEM columns.
#' @param model A named model, a compartment model ("pk1cpt_iv", "pk1cpt_oral", "pk2cpt_iv",
#'   "pk2cpt_oral", "pk3cpt_iv", "pk3cpt_oral", on event data), a [mixnnModel()] or a Python
#'   `pymixnn.Model`.
#' @param id,x,y Columns: individual, structural function's x (one or several), response.
#'   Taken from `data` when it is a `mixnnData` or a `mixnnEvents`. With a compartment model
#'   and a data.frame they are optional: the ID, TIME (`x`, one column) and DV columns, by
#'   default "ID", "TIME" and "DV"; name the other NONMEM columns with [mixnnEvents()].
#' @param covariates Covariate model, e.g. `list(V = "Weight")` (taken from a `mixnnModel`'s
#'   `covariate.model` when omitted).
#' @param random_effects "gaussian", "mixture", "flow", "latent_class" or a Python spec object.
#'   Latent classes (lcmm's `hlme` vocabulary in brackets) take, through `...`, `n_classes`
#'   (`ng`; an integer or "auto": K = 1..`max_classes` chosen by `criterion`, "icl" by default,
#'   or "bic"), `on` (`mixture`: the parameters with class-specific fixed effects, default all
#'   with a random effect), `membership` (`classmb`: covariate columns or a one-sided formula),
#'   `shared_omega` (default `TRUE`), `n_starts`, `within` ("gaussian" or "flow": one normalizing
#'   flow shared by the classes) and `flow_penalty`. The fit then has `classes` (lcmm's `pprob`:
#'   `prob.1` ... `prob.K` and `class` per individual), `n_classes`, `class_table` (see
#'   [postprob()]) and `class_selection` (one row per K); rows `prob.k`, `<p>.class<k>` and
#'   `membership.class<k>.<term>` of `params`.
#' @param observation "gaussian", "poisson", "negative_binomial", "zero_inflated_poisson",
#'   "binomial", "bernoulli", "ordinal" or a Python spec object.
#' @param genomic Marker effects: a Python `pymixnn.Genomic`, or a list of its arguments with
#'   `markers` an R matrix (genotypes by markers, genotype ids as row names).
#' @param levels Grouping levels above or beside the individual (nlme's nested `random =`, lme4's
#'   `(1 | plot)`): a named list, column = parameters with a random effect at that level, e.g.
#'   `list(plot = "A")`, or column = `list(params = c("A", "B"), omega = "full")` for a full
#'   covariance (default diagonal). Each parameter also needs an individual-level random effect,
#'   unless the model has none (`random = character(0)`).
#'   Reported as `omega2.<level>.<p>` rows of `params`; the level effects by
#'   `ranef(fit, level = "plot")`; the log-likelihood integrates them out.
#' @param spatial A spatial random field over the individuals' coordinates:
#'   `list(params = "A", coords = c("Row", "Col"), kernel = "exponential")`, an exact Gaussian
#'   process (`kernel` "exponential", "gaussian" or "spherical", nlme's corExp, corGaus and
#'   corSpher; `range_init` its start range; rows `spatial.<p>.sd` and `spatial.<p>.range` of
#'   `params`), or `list(params = "A", coords = c("Row", "Col"), kind = "ar1xar1")`, a
#'   separable AR1 x AR1 field on a row x column grid, one individual per cell (rows
#'   `spatial.<p>.sd`, `spatial.<p>.rho_row`, `spatial.<p>.rho_col`), or
#'   `list(params = "A", coords = c("x", "y"), kind = "matern", nu = 1.5, neighbours = 15)`, a
#'   Matérn field for 10^4 to 10^6 individuals by a nearest-neighbour (Vecchia) approximation
#'   (one parameter; rows `spatial.<p>.sd`, `spatial.<p>.range`). The field at the locations
#'   (every cell of a grid) is `fit$spatial_field`, the split of each parameter's variance
#'   (field, individual, levels, spatial share) `fit$spatial_variance`.
#' @param control Estimation settings, [mixnnControl()].
#' @param random Parameters with a random effect (default: all, or the `mixnnModel`'s
#'   `covariance.model`). `character(0)` (or a zero `covariance.model`): no individual random
#'   effects, a nonlinear regression as nlme's `gnls`, or with `levels` / `spatial` carrying the
#'   random variation (`gls` with a spatial correlation and a nugget: the residual error is the
#'   nugget when each location has one observation).
#' @param ... Further arguments of `pymixnn.fit()`: `n_components`, `context`, `trials`,
#'   the latent-class arguments above,
#'   `censoring`, `genotype`, `error`, `omega`, `transforms`, `init`.
#' @return An object of class `mixnnFit`: the estimates as R data.frames, vectors and matrices,
#'   and the Python results in `$py` (used by `predict()` on new data and `plot()`). Among them
#'   `converged` (`TRUE` only when every convergence check passed) and `diagnostics` (a
#'   data.frame, one row per check: `value`, `limit`, `ok`, `message`), shown by `print()` and
#'   `summary()`; `residuals`, the per-observation table, has the data's row names. With
#'   `mixnnControl(local = "amortized")`, `amortization` (one row per individual: `elbo_encoder`,
#'   `elbo_individual`, `gap`, with `refine_steps` `elbo_refined`, `gap_refined`, then `ess`, the
#'   encoder's effective sample size as an importance-sampling proposal, and `flagged`).
#' @section Rows, messages and warnings: The data's row names travel with the rows: Python's
#'   messages name R's rows (`row 6` is R's row 6, or the row's name), and `predict()`,
#'   `fitted()` and `residuals()` return vectors named by the row names, in the data's row
#'   order, whatever the order of the individuals. Every Python warning raised during the fit
#'   (rows dropped by `dropna`, a fit that did not converge, ...) is an R warning of class
#'   `pymixnn_warning` (and e.g. `pymixnn_ConvergenceWarning`); Python errors are R errors of
#'   class `pymixnn_error`, their hints in R syntax.
#' @section Neural terms: A Python model with neural terms (`pymixnn_module()$NeuralTerm(...)`,
#'   e.g. an `ODEModel` whose right-hand side takes `neural`) is fitted in stages (mechanistic
#'   parameters, then the networks, then everything, then the networks frozen and the model
#'   refitted); `fit$neural_terms` holds each learned function on a grid of its inputs
#'   (population, and per individual with random inputs or weights), `fit$neural_share` the share
#'   of the fitted dynamics the networks carry, `plot(fit, type = "neural_terms")` draws them;
#'   the SEs are conditional on the trained networks, and AIC/BIC count their weights.
#'   `mixnnControl(neural_starts = k)` runs the staged fit k times and keeps the highest
#'   log-likelihood; `fit$neural_starts` lists the starts (no rows for one start).
#' @section Event data: A compartment model is fitted to NONMEM-style records (doses and
#'   observations in one table, see [mixnnEvents()]); its parameters (e.g. CL and V of
#'   "pk1cpt_iv") take initial values from `init = list(CL = , V = )` or a [mixnnModel()]'s
#'   `psi0`. [mixnnSolve()] gives the model's predictions at given parameter values.
#' @section Factors: A factor id (or genotype) is read through its labels. A factor response of
#'   an `observation = "ordinal"` fit gives the ordered levels, in R's level order. A factor
#'   covariate is categorical, its first level the reference. A factor in a numeric role (`x`,
#'   `y` of other fits, trials, censoring) is an error naming the column: convert it with
#'   `as.numeric(as.character(...))` when its labels are numbers.
#' @examples
#' if (pymixnn_available()) {
#'   theo <- pymixnn_dataset("theo")
#'   fit <- mixnn(theo, "onecpt_oral", id = "Id", x = c("Dose", "Time"), y = "Concentration",
#'                covariates = list(V = "Weight"), control = mixnnControl(seed = 1))
#'   summary(fit)
#' }
#' @export
mixnn <- function(data, model, id, x, y, covariates = NULL, random_effects = "gaussian",
                  observation = "gaussian", genomic = NULL, control = mixnnControl(),
                  random = NULL, levels = NULL, spatial = NULL, ...) {
  pm <- pymixnn_module()
  extra <- list(...)
  if (!is.null(random)) extra$random <- as.list(random)
  if (identical(random_effects, "latent_class")) {
    random_effects <- .latent_class(pm, extra)
    extra[intersect(names(extra), .LATENT_CLASS_ARGS)] <- NULL
    extra$membership_columns <- NULL
  }
  cov_names <- NULL
  if (inherits(data, "mixnnData")) {
    cov_names <- data$covariates
    if (missing(id)) id <- data$id
    if (missing(x)) x <- data$x
    if (missing(y)) y <- data$y
    for (k in c("censoring", "trials", "genotype"))
      if (is.null(extra[[k]])) extra[[k]] <- data[[k]]
    data <- data$data
  }
  if (inherits(model, "mixnnModel")) {
    spec <- .python_model(pm, model, cov_names)
    model <- spec$model
    if (is.null(covariates)) covariates <- spec$covariates
  }
  if (inherits(data, "mixnnEvents") || (is.data.frame(data) && .is_dynamic(pm, model))) {
    # event data (NONMEM columns): read by pymixnn.Data.from_nonmem; x is the time column
    if (is.data.frame(data)) {
      if (!missing(x) && length(x) != 1)
        stop("with event data x is the time column (one), e.g. x = \"TIME\"", call. = FALSE)
      data <- mixnnEvents(data, id = if (missing(id)) "ID" else id,
                          time = if (missing(x)) "TIME" else x, dv = if (missing(y)) "DV" else y)
    }
    membership <- if (.py_isinstance(random_effects, pm$LatentClass)) unlist(random_effects$membership)
    data <- .events_data(pm, data, c(unlist(covariates), unlist(extra$context), membership),
                         extra$censoring)
    id <- x <- y <- NULL
  }
  if (is.list(covariates)) covariates <- lapply(covariates, as.list)
  if (is.list(genomic) && !inherits(genomic, "python.builtin.object")) {
    m <- genomic$markers
    if (is.matrix(m)) genomic$markers <- reticulate::tuple(m, rownames(m), colnames(m))
    genomic <- .py_do(pm$Genomic, genomic)
  }
  if (!is.null(extra$n_components) && is.numeric(extra$n_components))
    extra$n_components <- as.integer(extra$n_components)
  if (!is.null(spatial) && !inherits(spatial, "python.builtin.object")) {
    if (!is.list(spatial) || is.null(spatial$params) || is.null(spatial$coords))
      stop("spatial is a list(params = ..., coords = c(...)), e.g. spatial = list(params = \"A\", ",
           "coords = c(\"Row\", \"Col\"))", call. = FALSE)
    spatial <- .py_do(pm$Spatial, list(params = as.list(spatial$params), coords = as.list(spatial$coords),
                                       kind = if (is.null(spatial$kind)) "gp" else spatial$kind,
                                       kernel = if (is.null(spatial$kernel)) "exponential" else spatial$kernel,
                                       nu = if (is.null(spatial$nu)) 1.5 else as.numeric(spatial$nu),
                                       neighbours = if (is.null(spatial$neighbours)) 15L
                                                    else as.integer(spatial$neighbours),
                                       range_init = if (is.null(spatial$range_init)) NULL
                                                    else as.numeric(spatial$range_init)))
  }
  if (!is.null(spatial)) extra$spatial <- spatial
  if (!is.null(levels)) {
    extra$levels <- .py_levels(pm, levels)
    if (is.data.frame(data)) for (col in intersect(names(levels), names(data)))
      if (is.factor(data[[col]])) data[[col]] <- as.character(data[[col]])  # groups by label
  }
  if (is.data.frame(data)) {
    data <- .factor_columns(data, id = id, x = x, y = y, roles = extra, observation = observation)
    if (identical(observation, "ordinal") && is.factor(data[[y]]))
      observation <- pm$Ordinal(levels = as.list(levels(data[[y]])))
    data <- .py_frame(data)
  }
  if (is.character(x)) x <- as.list(x)
  settings <- control[setdiff(names(control), "dropna")]
  if (!is.null(control$dropna)) extra$dropna <- control$dropna
  args <- c(list(data, model, id = id, x = x, y = y, covariates = covariates,
                 random_effects = random_effects, observation = observation,
                 genomic = genomic, control = .py_do(pm$Control, settings)), extra)
  res <- .py_do(pm$fit, args)
  new_mixnnFit(res, match.call())
}

# the classification table with a class column (1..K) and plain row names
.class_table <- function(t) {
  t <- .df(t, rownames = FALSE)
  t$n <- as.integer(t$n)
  cbind(class = seq_len(nrow(t)), t)
}

.LATENT_CLASS_ARGS <- c("n_classes", "on", "mixture", "membership", "classmb", "shared_omega",
                        "n_starts", "max_classes", "criterion", "within", "flow_penalty")

# random_effects = "latent_class" with n_classes, on (or lcmm's mixture), membership (or lcmm's
# classmb, a one-sided formula), shared_omega, n_starts, max_classes, criterion: a
# pymixnn.LatentClass
.latent_class <- function(pm, extra) {
  k <- extra$n_classes %||% 2L
  if (is.numeric(k)) k <- as.integer(k)
  on <- extra$on %||% extra$mixture
  mb <- extra$membership %||% extra$classmb
  if (inherits(on, "formula")) on <- all.vars(on)
  if (inherits(mb, "formula")) mb <- all.vars(mb)
  args <- list(n_classes = k)
  if (!is.null(on)) args$on <- as.list(on)
  if (!is.null(mb)) args$membership <- as.list(mb)
  if (!is.null(extra$shared_omega)) args$shared_omega <- isTRUE(extra$shared_omega)
  if (!is.null(extra$n_starts)) args$n_starts <- as.integer(extra$n_starts)
  if (!is.null(extra$max_classes)) args$max_classes <- as.integer(extra$max_classes)
  if (!is.null(extra$criterion)) args$criterion <- extra$criterion
  if (!is.null(extra$within)) args$within <- extra$within
  if (!is.null(extra$flow_penalty)) args$flow_penalty <- as.numeric(extra$flow_penalty)
  .py_do(pm$LatentClass, args)
}

# levels = list(plot = "A", genotype = list(params = c("A", "B"), omega = "full")) as a list of
# pymixnn.Level (a Python list of them passes through)
.py_levels <- function(pm, levels) {
  if (inherits(levels, "python.builtin.object")) return(levels)
  if (!is.list(levels) || is.null(names(levels)) || any(names(levels) == ""))
    stop("levels is a named list, column = parameters: e.g. levels = list(plot = \"A\")",
         call. = FALSE)
  unname(Map(function(column, spec) {
    if (is.list(spec)) {
      args <- list(column, params = as.list(spec$params))
      if (!is.null(spec$omega)) args$omega <- spec$omega
      .py_do(pm$Level, args)
    } else {
      .py_do(pm$Level, list(column, params = as.list(spec)))
    }
  }, names(levels), levels))
}

# R factors, explicitly: an id or genotype factor becomes its labels; a factor y of an ordinal fit
# stays a factor (mixnn() passes its levels, in R's order, as pymixnn.Ordinal(levels = ...)); a
# factor in a numeric role (x, y, trials, censoring) is an error naming the column. Factor
# covariates are categorical, their first level the reference (Python reads R's level order).
.factor_columns <- function(data, id, x, y, roles, observation) {
  labels <- intersect(c(id, roles$genotype), names(data))
  for (col in labels) if (is.factor(data[[col]])) data[[col]] <- as.character(data[[col]])
  numeric <- c(x, if (!identical(observation, "ordinal")) y, roles$trials, roles$censoring)
  for (col in intersect(numeric, names(data))) {
    if (!is.factor(data[[col]])) next
    lv <- levels(data[[col]])
    hint <- if (!anyNA(suppressWarnings(as.numeric(lv))))
      sprintf("convert with as.numeric(as.character(data$%s))", col)
    else if (identical(col, y)) "code it as numbers, or fit it with observation = \"ordinal\""
    else "code it as numbers"
    shown <- paste(sQuote(utils::head(lv, 5), FALSE), collapse = ", ")
    stop(sprintf("column '%s' is a factor (levels %s%s): %s", col, shown,
                 if (length(lv) > 5) ", ..." else "", hint), call. = FALSE)
  }
  data
}

# a mixnnModel as a Python pymixnn.Model (and the covariate model as a list)
.python_model <- function(pm, m, cov_names) {
  base <- if (is.character(m$model)) .py_call(pm$named, m$model)
          else if (.py_isinstance(m$model, pm$Model)) m$model
          else if (is.null(m$name.modpar))
            stop("a Python function model needs its parameter names: psi0 or name.modpar",
                 call. = FALSE)
          else .py_call(pm$Model, m$model, as.list(m$name.modpar))
  par <- unlist(base$parameters)
  named_along <- function(v) {
    if (is.null(v)) return(NULL)
    if (is.null(names(v))) names(v) <- par[seq_along(v)]
    as.list(v)
  }
  ch <- list(init = named_along(m$psi0), error = m$error.model)
  if (!is.null(m$transform.par)) {
    tp <- named_along(m$transform.par)
    ch$transforms <- lapply(tp, function(t) if (is.numeric(t)) as.integer(t) else t)
  }
  if (!is.null(m$covariance.model)) {
    cm <- as.matrix(m$covariance.model)
    if (!identical(dim(cm), rep(length(par), 2L)))
      stop(sprintf("covariance.model is %d x %d but the model has %d parameters (%s)", nrow(cm),
                   ncol(cm), length(par), paste(par, collapse = ", ")), call. = FALSE)
    dimnames(cm) <- list(par, par)
    r <- par[diag(cm) != 0]
    sub <- cm[r, r, drop = FALSE]
    ch$random <- as.list(r)
    ch$omega <- if (any(sub[upper.tri(sub)] != 0 | t(sub)[upper.tri(sub)] != 0)) "full"
                else "diagonal"
  }
  if (!is.null(m$error.init)) {
    ei <- m$error.init
    if (is.null(names(ei))) names(ei) <- c("a", "b")[seq_along(ei)]
    err <- m$error.model %||% base$error
    keep <- list(constant = "a", exponential = "a", proportional = "b", combined = c("a", "b"))
    ch$error_init <- as.list(ei[intersect(names(ei), keep[[err]])])
  }
  ch <- ch[!vapply(ch, is.null, logical(1))]
  covariates <- NULL
  if (!is.null(m$covariate.model)) {
    cv <- as.matrix(m$covariate.model)
    if (is.null(colnames(cv))) colnames(cv) <- par
    if (is.null(rownames(cv))) {
      if (length(cov_names) != nrow(cv))
        stop("covariate.model has ", nrow(cv), " rows but ", length(cov_names), " covariates ",
             "were named in mixnnData(name.covariates = ...); or give it row names", call. = FALSE)
      rownames(cv) <- cov_names
    }
    covariates <- lapply(stats::setNames(colnames(cv), colnames(cv)),
                         function(p) rownames(cv)[cv[, p] != 0])
    covariates <- covariates[lengths(covariates) > 0]
  }
  list(model = .py_do(base$replace, ch), covariates = covariates)
}

#' A data set bundled with pymixnn
#'
#' @param name "theo", "orange", "soybean", "oxboys", "rapi", "epil", "toenail", "knee",
#'   "grav2", "wheat2"; see the Python package's `pymixnn.datasets`.
#' @return A data.frame.
#' @export
pymixnn_dataset <- function(name) {
  .df(.py_call(pymixnn_module()$datasets$load, name), rownames = FALSE)
}

#' This process's individuals of a long table on disk (a data-parallel fit from shards)
#'
#' Reads a CSV or Parquet file batch by batch and keeps only the rows of this process's
#' individuals (Python's `pymixnn.read_shard`), so that no process holds the whole table; fit
#' the result in every process with `mixnnControl(distributed = TRUE, shards = TRUE)`.
#'
#' @param file A `.csv` (or `.csv.gz`) or `.parquet` file, one row per observation.
#' @param id The individual column.
#' @param rank,world This process and the number of processes (default: torchrun's `RANK`
#'   and `WORLD_SIZE` environment variables).
#' @param by `"range"` (contiguous blocks of the sorted ids; the fit then equals the whole
#'   table's) or `"hash"` (crc32 of the id modulo `world`).
#' @return A data.frame of this process's rows in the file's order; row names are the rows'
#'   numbers in the file (0-based).
#' @export
mixnnReadShard <- function(file, id, rank = NULL, world = NULL, by = "range") {
  int <- function(v) if (is.null(v)) NULL else as.integer(v)
  .df(.py_call(pymixnn_module()$read_shard, file, id, rank = int(rank), world = int(world), by = by))
}

# isinstance(x, cls) in Python (a Python object of that class), FALSE for R values
.py_isinstance <- function(x, cls) {
  inherits(x, "python.builtin.object") && reticulate::import_builtins()$isinstance(x, cls)
}

# pandas -> R helpers (reticulate converts; these drop the pandas index attribute)
.df <- function(x, rownames = TRUE) {
  attr(x, "pandas.index") <- NULL
  if (!rownames) rownames(x) <- NULL
  x
}
.vec <- function(x) stats::setNames(as.numeric(x), names(x))
.mat <- function(x) as.matrix(.df(x))

new_mixnnFit <- function(py, call = NULL) {
  d <- py$data
  law <- py$random_effects_law$name
  genomic <- isTRUE(py$is_genomic)
  classes <- isTRUE(py$is_latent_class)
  structure(list(
    call = call, py = py,
    model = list(name = py$model$name, parameters = unlist(py$model$parameters),
                 random = unlist(py$model$random), transforms = unlist(py$model$transforms),
                 error = py$model$error),
    observation = py$observation$name, random_effects = law,
    data = list(id = d$id_col, x = unlist(d$x_cols), y = d$y_col,
                covariates = unlist(d$covariate_cols), ids = as.vector(d$ids)),
    params = .df(py$params), fixef = .vec(py$fixed_effects), omega = .mat(py$omega),
    sigma = .vec(py$sigma), cov_params = .mat(py$cov_params()),
    loglik = py$loglik, loglik_se = py$loglik_se, loglik_method = py$loglik_method,
    aic = py$aic, bic = py$bic, df = py$df_modelwc, nobs = py$nobs,
    n_individuals = py$n_individuals,
    ranef = list(map = .df(py$random_effects("map")), mean = .df(py$random_effects("mean"))),
    coef = list(map = .df(py$individual_params("map")),
                mean = .df(py$individual_params("mean"))),
    shrinkage = .vec(py$shrinkage), residuals = .df(py$residuals()),
    converged = if (reticulate::py_has_attr(py, "converged")) isTRUE(py$converged) else NA,
    diagnostics = if (reticulate::py_has_attr(py, "diagnostics")) .df(py$diagnostics),
    summary_text = py$summary()$text,
    marker_effects = if (genomic) .df(py$marker_effects, rownames = FALSE),
    genetic_values = if (genomic) .df(py$genetic_values, rownames = FALSE),
    amortization = if (isTRUE(py$is_amortized)) .df(py$amortization),
    spatial_field = if (!is.null(py$settings$spatial)) .df(py$spatial_field(), rownames = FALSE),
    spatial_variance = if (!is.null(py$settings$spatial)) .df(py$spatial_variance()),
    classes = if (classes) .df(py$classes()),
    n_classes = if (classes) py$n_classes,
    class_table = if (classes) .class_table(py$class_table()),
    class_selection = if (classes) .df(py$class_selection()),
    level_effects = stats::setNames(lapply(py$level_names, function(l) .df(py$level_effects(l))),
                                    unlist(py$level_names)),
    neural_terms = if (!is.null(py$hybrid)) .df(py$neural_terms, rownames = FALSE),
    neural_share = if (!is.null(py$hybrid)) py$hybrid$share,
    neural_starts = if (!is.null(py$hybrid)) .df(py$neural_starts, rownames = FALSE),
    info = py$info), class = "mixnnFit")
}
