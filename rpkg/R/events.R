#' Describe NONMEM-style event data, for mixnn() and mixnnSolve()
#'
#' Dose, observation and other records in one table, as NONMEM (and nlmixr2, mrgsolve) read
#' them, for the compartment models ("pk1cpt_iv", "pk1cpt_oral", "pk2cpt_iv", "pk2cpt_oral",
#' "pk3cpt_iv", "pk3cpt_oral") and Python ODE models. Each argument names the column of one
#' NONMEM item; names are matched case-insensitively and an absent optional column takes
#' NONMEM's default (AMT 0, EVID 1 where AMT is non-zero else 0, CMT 1, RATE 0, II 0, ADDL 0,
#' SS 0, MDV 1 off observations, one endpoint without DVID). The observations are the records
#' with EVID 0, MDV 0 and a DV. The table is read by Python's `pymixnn.Data.from_nonmem()` when
#' the fit starts, its checks naming R's rows.
#'
#' @param data A data.frame, or a CSV file.
#' @param id,time,dv Columns of the individual, the time and the observation (DV).
#' @param amt,evid,cmt,rate,ii,addl,ss,mdv,dvid Columns of the dose amount, event type (0
#'   observation, 1 dose, 2 other, 3 reset, 4 reset and dose), compartment, infusion rate (-1 /
#'   -2: rate / duration from the model's parameters), dosing interval, additional doses,
#'   steady state (0, 1, 2), missing-DV flag and endpoint.
#' @param covariates Individual-level covariate columns to keep (those of the fit's covariate
#'   model are added by [mixnn()]).
#' @param time_varying Covariate columns carried forward from record to record (an ODE model's
#'   `covariates`, or a covariate model's time-varying column; [mixnn()] also treats a covariate
#'   of its covariate model whose values change within an individual as time-varying).
#' @return An object of class `mixnnEvents`, for [mixnn()] and [mixnnSolve()].
#' @examples
#' # nlme's Phenobarb: doses and concentrations of 59 newborns, one record each
#' pheno <- as.data.frame(nlme::Phenobarb)
#' pheno$dose[is.na(pheno$dose)] <- 0
#' ev <- mixnnEvents(pheno, id = "Subject", time = "time", dv = "conc", amt = "dose")
#' if (pymixnn_available()) {
#'   fit <- mixnn(ev, "pk1cpt_iv", init = list(CL = 0.005, V = 1),
#'                control = mixnnControl(seed = 1, max_steps = 200, progress = FALSE))
#'   fixef(fit)
#' }
#' @export
mixnnEvents <- function(data, id = "ID", time = "TIME", dv = "DV", amt = "AMT", evid = "EVID",
                        cmt = "CMT", rate = "RATE", ii = "II", addl = "ADDL", ss = "SS",
                        mdv = "MDV", dvid = "DVID", covariates = NULL, time_varying = NULL) {
  if (is.character(data) && length(data) == 1) data <- utils::read.csv(data)
  if (!is.data.frame(data)) stop("data must be a data.frame or a CSV file", call. = FALSE)
  columns <- list(id = id, time = time, dv = dv, amt = amt, evid = evid, cmt = cmt, rate = rate,
                  ii = ii, addl = addl, ss = ss, mdv = mdv, dvid = dvid)
  for (role in names(columns)) {
    v <- columns[[role]]
    if (!is.character(v) || length(v) != 1 || is.na(v))
      stop(sprintf("%s must be one column name, e.g. %s = \"%s\"", role, role, toupper(role)),
           call. = FALSE)
  }
  # id and time are required; a column named by the caller must be there too (case-insensitive)
  given <- intersect(names(columns), c("id", "time", names(match.call())[-1]))
  absent <- given[!tolower(unlist(columns[given])) %in% tolower(names(data))]
  if (length(absent))
    stop(sprintf("column(s) %s not found in the data (case-insensitive); available columns: %s",
                 paste(sprintf("'%s' (%s)", unlist(columns[absent]), absent), collapse = ", "),
                 paste(names(data), collapse = ", ")), call. = FALSE)
  for (col in c(covariates, time_varying))
    if (!col %in% names(data))
      stop(sprintf("covariate column '%s' not found in the data; available columns: %s", col,
                   paste(names(data), collapse = ", ")), call. = FALSE)
  structure(list(data = data, columns = columns, covariates = covariates,
                 time_varying = time_varying), class = "mixnnEvents")
}

# the Python pymixnn.Data of a mixnnEvents, with the covariate columns `extra` (of the fit's
# covariate model: a column whose values change within an individual is carried forward as a
# time-varying one) and the column flagging censored observations (`censoring`, 1 = below the LOQ)
.events_data <- function(pm, ev, extra = NULL, censoring = NULL) {
  cols <- ev$columns
  data <- ev$data
  numeric <- unlist(cols[setdiff(names(cols), c("id", "dv"))])
  data <- .factor_columns(data, id = cols$id, x = numeric, y = cols$dv, roles = list(),
                          observation = "gaussian")
  covariates <- unique(c(ev$covariates, unlist(extra)))
  id_col <- names(data)[match(tolower(cols$id), tolower(names(data)))]
  changes <- vapply(covariates, function(col) col %in% names(data) && any(tapply(
    data[[col]], data[[id_col]], function(v) length(unique(v[!is.na(v)])) > 1)), logical(1))
  time_varying <- unique(c(ev$time_varying, covariates[changes]))
  covariates <- setdiff(covariates, time_varying)
  args <- c(list(.py_frame(data)), cols,
            list(covariates = if (length(covariates)) as.list(covariates),
                 time_varying = if (length(time_varying)) as.list(time_varying)),
            if (!is.null(censoring)) list(censoring = censoring))
  .py_do(pm$Data$from_nonmem, args)
}

# is `model` (a name or a Python pymixnn.Model) a compartment or ODE model, fitted to event data?
.is_dynamic <- function(pm, model) {
  if (is.character(model) && length(model) == 1) model <- .py_call(pm$named, model)
  .py_isinstance(model, pm$Model) && !is.null(model$dynamics)
}

#' Predictions of a compartment or ODE model at given parameter values
#'
#' R front end of Python's `pymixnn.solve()`: the model solved on event data at given
#' parameter values (natural scale), without fitting.
#'
#' @param model A compartment model name ("pk1cpt_iv", "pk1cpt_oral", "pk2cpt_iv",
#'   "pk2cpt_oral", "pk3cpt_iv", "pk3cpt_oral"), a [mixnnModel()] of one, or a Python
#'   `pymixnn.Model` (e.g. `pymixnn_module()$ODEModel(...)`).
#' @param data A data.frame with NONMEM columns (ID, TIME, DV, AMT, EVID, ...; see
#'   [mixnnEvents()]) or a [mixnnEvents()] object.
#' @param params Parameter values: a named vector or list (one value for everyone, or one per
#'   individual in the order of their sorted ids), or a data.frame with the id column and one
#'   column per parameter.
#' @param times Times at which to predict every individual (for every endpoint); `NULL`: at the
#'   observation records.
#' @return A data.frame: id, `time`, `endpoint` (the model's output) and `prediction`.
#' @examples
#' if (pymixnn_available()) {
#'   doses <- data.frame(ID = 1, TIME = c(0, 1, 2), AMT = c(100, 0, 0), DV = c(0, 4.5, 4.1))
#'   mixnnSolve("pk1cpt_iv", doses, c(CL = 2, V = 20), times = c(0.5, 1, 4))
#' }
#' @export
mixnnSolve <- function(model, data, params, times = NULL) {
  pm <- pymixnn_module()
  if (inherits(model, "mixnnModel")) model <- .python_model(pm, model, NULL)$model
  if (is.data.frame(data)) data <- mixnnEvents(data)
  if (!inherits(data, "mixnnEvents"))
    stop("data must be a data.frame with NONMEM columns or a mixnnEvents() object", call. = FALSE)
  id <- data$columns$id
  py_data <- .events_data(pm, data)
  if (is.data.frame(params)) {
    hit <- names(params)[tolower(names(params)) == tolower(id)]
    if (length(hit) != 1)
      stop(sprintf("params: a data.frame of parameters needs the id column '%s'", id), call. = FALSE)
    ids <- params[[hit]]
    params[[hit]] <- if (is.numeric(data$data[[py_data$id_col]])) as.numeric(as.character(ids))
                     else as.character(ids)
    params <- reticulate::r_to_py(params)$set_index(hit)
  } else {
    if (is.null(names(params)) || any(names(params) == ""))
      stop("params must be named, e.g. c(CL = 2, V = 20)", call. = FALSE)
    params <- as.list(params)
  }
  if (!is.null(times)) times <- as.list(as.numeric(times))
  .df(.py_call(pm$solve, model, py_data, params, times = times), rownames = FALSE)
}
