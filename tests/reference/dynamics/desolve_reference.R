# Independent reference for pymixnn's dosing engine: the compartment ODEs integrated numerically by
# deSolve::lsoda (rtol 1e-11, atol 1e-13), piece by piece between event times, for every scenario of
# scenarios.csv (NONMEM-style records) with the parameters of parameters.csv.
#
# Produced with R 4.2.2 and deSolve 1.34 (Debian r-cran-desolve). Rerun from the repository root:
#     Rscript tests/reference/dynamics/desolve_reference.R
# It writes tests/reference/dynamics/desolve_reference.csv (scenario,TIME,conc: one row per EVID 0
# record, in file order) and prints the max |conc| per scenario and closed-form sanity checks.
# (scenarios.csv and parameters.csv come from make_scenarios.R.)
#
# Semantics implemented (the pymixnn event contract):
#  * Amounts in compartments (NONMEM ADVAN numbering); conc = central amount / Vc.
#    pk1cpt_iv: 1 central. pk1cpt_oral: 1 depot, 2 central. pk2cpt_iv: 1 central, 2 peripheral.
#    pk2cpt_oral: 1 depot, 2 central, 3 peripheral.  dA/dt = M(t) A + inputs, CL(t) = CL*(WT(t)/70)^wt_exponent.
#  * WT is LOCF: each record's WT holds from its TIME to the next record's TIME (observations included).
#  * tlag and F apply to doses into CMT 1 only. Bolus: F*AMT added at TIME+tlag. RATE>0: RATE during
#    F*AMT/RATE from TIME+tlag. RATE=-1: `rate` during F*AMT/rate. RATE=-2: F*AMT/duration during `duration`.
#  * ADDL n: n more identical doses (SS=0) at TIME + k*II (each then lagged by tlag).
#  * EVID 3: all compartments 0 and every running infusion stopped. EVID 4: that reset, then an EVID 1 dose.
#  * SS=1 at s: reset, then the state at s produced by the infinite series of the same dose at
#    s + tlag - n*II, n >= 1 (computed by brute force from zero; series infusions still running at s keep
#    running to their own end), then the record's own dose. SS=2: that state is added (no reset).
#  * Ties: records are handled in file order (an observation before a dose at the same TIME sees the
#    pre-dose state). Internal events (lagged/ADDL dose starts, infusion ends) due at a time t are
#    applied before the records at t; a dose with tlag 0 is given at its record's position.
#  Note: deSolve's own `events` record output at an event time BEFORE applying the event; this script
#  does not use them: between consecutive event/record times all inputs are constant and each piece is
#  one lsoda call started from the state at the piece start.
suppressPackageStartupMessages(library(deSolve))
dir <- "tests/reference/dynamics"
RTOL <- 1e-11; ATOL <- 1e-13

# ---- model ------------------------------------------------------------------------------------
layout <- function(model) switch(model,           # compartment indices: depot, central, peripheral
  pk1cpt_iv = list(n = 1, d = NA, c = 1, p = NA), pk1cpt_oral = list(n = 2, d = 1, c = 2, p = NA),
  pk2cpt_iv = list(n = 2, d = NA, c = 1, p = 2),  pk2cpt_oral = list(n = 3, d = 1, c = 2, p = 3))

rate_matrix <- function(pr, wt) {                 # M of dA/dt = M A + inputs, at covariate value wt
  L <- pr$lay; M <- matrix(0, L$n, L$n)
  k <- pr$CL * (wt / 70)^pr$wt_exponent / pr$V
  M[L$c, L$c] <- -k
  if (!is.na(L$d)) { M[L$d, L$d] <- -pr$ka; M[L$c, L$d] <- pr$ka }
  if (!is.na(L$p)) {
    M[L$c, L$c] <- M[L$c, L$c] - pr$Q / pr$V; M[L$c, L$p] <- pr$Q / pr$V2
    M[L$p, L$c] <- pr$Q / pr$V;               M[L$p, L$p] <- -pr$Q / pr$V2
  }
  M
}

# ---- simulation state: t, y (amounts), wt, run (running infusions: cmt, rate, end),
#      pend (scheduled dose starts: time, cmt, amt, rate, dur; rate 0 = bolus) ---------------------
new_state <- function(pr, t, wt) list(pr = pr, t = t, y = rep(0, pr$lay$n), wt = wt,
  run = matrix(numeric(0), 0, 3, dimnames = list(NULL, c("cmt", "rate", "end"))),
  pend = matrix(numeric(0), 0, 5, dimnames = list(NULL, c("time", "cmt", "amt", "rate", "dur"))))

integrate <- function(st, t1) {                   # constant inputs from st$t to t1, one lsoda call
  if (t1 - st$t > 1e-12 * max(1, abs(t1))) {
    M <- rate_matrix(st$pr, st$wt); inp <- rep(0, length(st$y))
    for (i in seq_len(nrow(st$run))) inp[st$run[i, "cmt"]] <- inp[st$run[i, "cmt"]] + st$run[i, "rate"]
    f <- function(t, y, p) list(as.vector(M %*% y) + inp)
    out <- lsoda(st$y, c(st$t, t1), f, NULL, rtol = RTOL, atol = ATOL, maxsteps = 1e6,
                 jacfunc = function(t, y, p) M, jactype = "fullusr")
    stopifnot(attr(out, "istate")[1] == 2)
    st$y <- unname(out[2, -1])
  }
  st$t <- max(st$t, t1); st
}

start_dose <- function(st, cmt, amt, rate, dur) { # dose effective now (F and tlag already applied)
  if (rate == 0) st$y[cmt] <- st$y[cmt] + amt
  else st$run <- rbind(st$run, c(cmt, rate, st$t + dur))
  st
}

advance <- function(st, target) {                 # integrate to target, applying internal events <= target
  repeat {
    te <- min(c(st$run[, "end"], st$pend[, "time"], Inf))
    if (te > target) break
    st <- integrate(st, te)
    st$run <- st$run[st$run[, "end"] > te, , drop = FALSE]          # infusions ending at te
    due <- st$pend[, "time"] <= te
    now <- st$pend[due, , drop = FALSE]; st$pend <- st$pend[!due, , drop = FALSE]
    for (i in seq_len(nrow(now))) st <- start_dose(st, now[i, "cmt"], now[i, "amt"], now[i, "rate"], now[i, "dur"])
  }
  integrate(st, target)
}

# Effective dose of a record: list(cmt, amt (F*AMT), rate (0 = bolus), dur, lag)
dose_of <- function(pr, r) {
  f <- if (r$CMT == 1) pr$F else 1; lag <- if (r$CMT == 1) pr$tlag else 0
  amt <- f * r$AMT
  if (r$RATE == 0) return(list(cmt = r$CMT, amt = amt, rate = 0, dur = 0, lag = lag))
  if (r$RATE > 0) { rate <- r$RATE; dur <- amt / rate }
  else if (r$RATE == -1) { rate <- pr$rate; dur <- amt / rate }
  else if (r$RATE == -2) { dur <- pr$duration; rate <- amt / dur }
  else stop("bad RATE")
  list(cmt = r$CMT, amt = amt, rate = rate, dur = dur, lag = lag)
}

schedule <- function(st, d, t) {                  # dose d whose (lagged) start is at time t
  if (t <= st$t) return(start_dose(st, d$cmt, d$amt, d$rate, d$dur))
  st$pend <- rbind(st$pend, c(t, d$cmt, d$amt, d$rate, d$dur)); st
}

# Steady state at s of the series of dose d every tau (starts at s + lag - n*tau, n = 1..N), by brute
# force from zero. N makes exp(-lambda_min * N * tau) < exp(-40) ~ 4e-18 (lambda_min: slowest rate).
steady_state <- function(pr, d, s, tau, wt) {
  lam <- min(abs(eigen(rate_matrix(pr, wt), only.values = TRUE)$values))
  N <- min(2000, ceiling(40 / (lam * tau)) + ceiling(d$dur / tau))
  starts <- s + d$lag - (N:1) * tau
  stopifnot(all(starts <= s))                      # requires tlag <= II
  st <- new_state(pr, starts[1], wt)
  for (t in starts) st <- schedule(st, d, t)
  st <- advance(st, s)
  list(y = st$y, run = st$run, N = N)
}

# ---- one scenario -------------------------------------------------------------------------------
simulate <- function(pr, rec) {
  stopifnot(!is.unsorted(rec$TIME), all(rec$ID == 1))
  st <- new_state(pr, rec$TIME[1], rec$WT[1]); conc <- c()
  for (j in seq_len(nrow(rec))) {
    r <- rec[j, ]
    st <- advance(st, r$TIME)                      # with the previous record's WT (LOCF)
    st$wt <- r$WT
    if (r$EVID == 0) { conc <- c(conc, st$y[pr$lay$c] / pr$V); next }
    if (r$EVID == 2) next
    if (r$EVID %in% c(3, 4)) { st$y[] <- 0; st$run <- st$run[0, , drop = FALSE] }
    if (r$EVID == 3) next
    stopifnot(r$EVID %in% c(1, 4))
    d <- dose_of(pr, r)
    if (r$SS %in% c(1, 2)) {
      ss <- steady_state(pr, d, r$TIME, r$II, r$WT)
      if (r$SS == 1) { st$y <- ss$y; st$run <- ss$run }
      else { st$y <- st$y + ss$y; st$run <- rbind(st$run, ss$run) }
    }
    st <- schedule(st, d, r$TIME + d$lag)
    for (k in seq_len(r$ADDL)) st <- schedule(st, d, r$TIME + k * r$II + d$lag)
  }
  conc
}

params_of <- function(row) {
  pr <- as.list(row); pr$lay <- layout(row$model)
  for (nm in c("CL", "V", "ka", "Q", "V2", "tlag", "F", "rate", "duration", "wt_exponent"))
    pr[[nm]] <- as.numeric(pr[[nm]])
  pr
}

# ---- run all scenarios --------------------------------------------------------------------------
t_start <- proc.time()[["elapsed"]]
sc <- read.csv(file.path(dir, "scenarios.csv"), stringsAsFactors = FALSE)
pa <- read.csv(file.path(dir, "parameters.csv"), stringsAsFactors = FALSE)
stopifnot(identical(names(sc), c("scenario", "ID", "TIME", "AMT", "EVID", "CMT", "RATE", "II", "ADDL",
                                 "SS", "DV", "MDV", "WT")), !anyDuplicated(pa$scenario))
res <- list()
for (name in unique(sc$scenario)) {
  pr <- params_of(pa[pa$scenario == name, ])
  rec <- sc[sc$scenario == name, ]
  conc <- simulate(pr, rec)
  res[[name]] <- data.frame(scenario = name, TIME = rec$TIME[rec$EVID == 0], conc = conc)
  cat(sprintf("%-26s %-12s obs %3d  max|conc| %10.6f\n", name, pr$model, length(conc), max(abs(conc))))
}
out <- do.call(rbind, res)
out$TIME <- format(out$TIME, digits = 15, trim = TRUE, scientific = FALSE, drop0trailing = TRUE)
out$conc <- sprintf("%.15e", out$conc)
write.csv(out, file.path(dir, "desolve_reference.csv"), row.names = FALSE, quote = FALSE)
cat(sprintf("%d observation rows written; %.1f s\n", nrow(out), proc.time()[["elapsed"]] - t_start))

# ---- sanity checks against closed forms (1-cpt IV, constant WT) ----------------------------------
relerr <- function(a, b) max(abs(a - b) / pmax(abs(b), 1e-300))
bolus1 <- function(t, t0, amt, k, V) ifelse(t >= t0, amt / V * exp(-k * (t - t0)), 0)
inf1 <- function(t, t0, dur, rate, k, V) {        # conc of a zero-order input of `rate` on [t0, t0+dur]
  te <- pmin(pmax(t - t0, 0), dur)
  rate / (k * V) * (1 - exp(-k * te)) * exp(-k * (pmax(t - t0, 0) - te))
}
# (1) plain single bolus: C = D/V exp(-CL/V t)
pr <- params_of(pa[pa$scenario == "bolus_addl_1cpt", ]); k <- pr$CL / pr$V; tt <- c(0, 0.5, 3, 12, 48, 100)
rec <- data.frame(ID = 1, TIME = c(0, tt), AMT = c(100, 0 * tt), EVID = c(1, 0 * tt), CMT = 1, RATE = 0,
                  II = 0, ADDL = 0, SS = 0, WT = 70)
cat(sprintf("check single bolus vs closed form: max rel err %.2e\n", relerr(simulate(pr, rec), bolus1(tt, 0, 100, k, pr$V))))
# (2) bolus_addl_1cpt: doses 100 at 0,12,24,36 and 50 at 48 (the obs at 0 and at 48 listed before the
#     dose records see the pre-dose state)
o <- res[["bolus_addl_1cpt"]]; tt <- o$TIME
cf <- rowSums(sapply(c(0, 12, 24, 36), function(t0) bolus1(tt, t0, 100, k, pr$V))) + bolus1(tt, 48, 50, k, pr$V)
cf[which(tt == 0)[1]] <- 0; cf[which(tt == 48)[1]] <- cf[which(tt == 48)[1]] - 50 / pr$V
cat(sprintf("check bolus_addl_1cpt vs superposition: max rel err %.2e\n", relerr(o$conc, cf)))
# (3) ss_bolus_iv_1cpt after the SS=1 record at 24: series sum D/V e^{-k(t-24)} e^{-k tau}/(1-e^{-k tau})
pr <- params_of(pa[pa$scenario == "ss_bolus_iv_1cpt", ]); k <- pr$CL / pr$V; o <- res[["ss_bolus_iv_1cpt"]]
i <- which(o$TIME >= 24)[-1]; tt <- o$TIME[i]
cf <- 100 / pr$V * exp(-k * (tt - 24)) * exp(-k * 12) / (1 - exp(-k * 12)) +
  rowSums(sapply(c(24, 36, 48), function(t0) bolus1(tt, t0, 100, k, pr$V)))
cat(sprintf("check ss_bolus_iv_1cpt vs closed-form SS series: max rel err %.2e\n", relerr(o$conc[i], cf)))
# (4) ss_infusion_vlong_1cpt: series of 140 over 14 h every 6 h (closed form summed over 3000 past doses)
pr <- params_of(pa[pa$scenario == "ss_infusion_vlong_1cpt", ]); k <- pr$CL / pr$V; o <- res[["ss_infusion_vlong_1cpt"]]
o <- o[-1, ]                                       # the first obs at 0 precedes the SS record: 0
cf <- rowSums(sapply(c(-(3000:1) * 6, 0, 6, 12), function(t0) inf1(o$TIME, t0, 14, 10, k, pr$V)))
cat(sprintf("check ss_infusion_vlong_1cpt vs closed-form superposition: max rel err %.2e\n", relerr(o$conc, cf)))
