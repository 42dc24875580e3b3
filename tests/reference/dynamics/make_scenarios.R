# Writes scenarios.csv and parameters.csv (the inputs of desolve_reference.R).
# Rerun from the repository root:  Rscript tests/reference/dynamics/make_scenarios.R
# Records are listed in the order given here (rows are then stably sorted by TIME, so an
# observation written before a dose record at the same TIME stays before it).
out_dir <- "tests/reference/dynamics"
recs <- list(); pars <- list()

D <- function(t, amt, cmt = 1, rate = 0, ii = 0, addl = 0, ss = 0, evid = 1, wt = 70)
  data.frame(TIME = t, AMT = amt, EVID = evid, CMT = cmt, RATE = rate, II = ii, ADDL = addl,
             SS = ss, MDV = 1, WT = wt)
O <- function(t, wt = 70) data.frame(TIME = t, AMT = 0, EVID = 0, CMT = 0, RATE = 0, II = 0, ADDL = 0,
                                     SS = 0, MDV = 0, WT = wt)
R3 <- function(t, wt = 70) transform(D(t, 0, wt = wt), EVID = 3, CMT = 0)
E2 <- function(t, wt) transform(D(t, 0, wt = wt), EVID = 2, CMT = 0)

# Base parameter sets; each scenario gets slightly different values (scenario counter i).
base <- list(
  pk1cpt_iv   = list(CL = 3.2, V = 25, ka = NA, Q = NA, V2 = NA),
  pk1cpt_oral = list(CL = 2.6, V = 32, ka = 1.1, Q = NA, V2 = NA),
  pk2cpt_iv   = list(CL = 4.1, V = 22, ka = NA, Q = 5.2, V2 = 55),
  pk2cpt_oral = list(CL = 3.5, V = 28, ka = 0.9, Q = 3.8, V2 = 70))
i <- 0
add <- function(name, model, rows, desc, tlag = 0, F = 1, rate = NA, duration = NA, wt_exponent = 0) {
  i <<- i + 1
  b <- base[[model]]; s <- 0.9 + 0.005 * i                  # distinct values per scenario
  r <- do.call(rbind, rows)
  r <- r[order(r$TIME, method = "radix"), ]                  # stable: ties keep the order above
  r$CMT[r$EVID == 0] <- if (grepl("oral", model)) 2 else 1   # observations name the central compartment
  desc <- gsub(",", ";", desc)                                # no quoting needed in the CSV
  recs[[name]] <<- cbind(scenario = name, ID = 1, r[, c("TIME", "AMT", "EVID", "CMT", "RATE", "II",
                         "ADDL", "SS")], DV = 0, r[, c("MDV", "WT")])
  pars[[name]] <<- data.frame(scenario = name, model = model, CL = round(b$CL * s, 4),
    V = round(b$V * s, 4), ka = round(b$ka / s, 4), Q = round(b$Q * s, 4), V2 = round(b$V2 / s, 4),
    tlag = tlag, F = F, rate = rate, duration = duration, wt_exponent = wt_exponent,
    description = desc)
}
oral <- function(n) if (n == 1) "pk1cpt_oral" else "pk2cpt_oral"
iv <- function(n) if (n == 1) "pk1cpt_iv" else "pk2cpt_iv"

for (n in 1:2) {
  sfx <- paste0("_", n, "cpt")
  add(paste0("bolus_addl", sfx), iv(n), list(O(0), D(0, 100, ii = 12, addl = 3), O(0),
      O(c(0.5, 1, 2, 4, 8, 11.99, 12.01, 13, 18, 23.99, 24.01, 30, 36.01, 40, 47.9)), O(48),
      D(48, 50), O(48), O(c(49, 60, 72))),
      "IV bolus 100 with ADDL 3 II 12; then a record bolus 50 at 48 (obs listed before and after it)")
  add(paste0("oral_addl", sfx), oral(n), list(O(0), D(0, 200, ii = 8, addl = 4),
      O(c(0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8, 8.5, 10, 16, 16.5, 24, 24.5, 32, 33, 36, 40, 48, 60))),
      "oral 200 into depot with ADDL 4 II 8")
  add(paste0("oral_lag_f", sfx), oral(n), list(O(0), D(0, 300, ii = 12, addl = 2), O(0),
      O(c(0.25, 0.5, 0.6, 1, 2, 4, 8, 12, 12.3, 12.5, 12.7, 14, 20, 24, 24.5, 25, 28, 36, 48))),
      "oral 300 with tlag 0.5 and F 0.7, ADDL 2 II 12 (obs at the lagged dose times)", tlag = 0.5, F = 0.7)
  add(paste0("infusion_f", sfx), iv(n), list(D(0, 200, rate = 50, ii = 12, addl = 1),
      O(c(0, 0.5, 1, 2, 3, 3.2, 3.5, 4, 6, 8, 12, 12.5, 14, 15.2, 16, 20, 24, 30, 36))),
      "IV infusion AMT 200 RATE 50 with F 0.8 (duration F*AMT/RATE = 3.2), ADDL 1 II 12", F = 0.8)
  add(paste0("modeled_duration", sfx), iv(n), list(D(0, 150, rate = -2, ii = 8, addl = 2),
      O(c(0, 0.5, 1, 2, 2.5, 3, 4, 6, 8, 9, 10.5, 12, 16, 17, 18.5, 20, 24, 30))),
      "RATE -2: modeled duration 2.5, F 0.9 (rate F*AMT/duration), AMT 150 ADDL 2 II 8",
      F = 0.9, duration = 2.5)
  add(paste0("modeled_rate", sfx), iv(n), list(D(0, 180, rate = -1, ii = 12, addl = 1),
      O(c(0, 0.5, 1, 2, 2.55, 3, 4, 6, 10, 12, 13, 14.55, 15, 18, 24, 30, 36))),
      "RATE -1: modeled rate 60, F 0.85 (duration F*AMT/rate = 2.55), AMT 180 ADDL 1 II 12",
      F = 0.85, rate = 60)
  add(paste0("infusion_addl_lag", sfx), iv(n), list(D(0, 120, rate = 40, ii = 8, addl = 3),
      O(c(0, 0.3, 0.6, 0.8, 1.5, 3, 3.3, 3.5, 5, 8, 8.6, 9, 11.3, 12, 16.6, 18, 24.6, 26, 28, 32, 40, 48))),
      "IV infusion AMT 120 RATE 40 with tlag 0.6 and F 0.9 (duration 2.7), ADDL 3 II 8",
      tlag = 0.6, F = 0.9)
  add(paste0("ss_bolus_iv", sfx), iv(n), list(D(0, 300), O(c(1, 6, 12, 20)), O(24),
      D(24, 100, ii = 12, addl = 2, ss = 1), O(24),
      O(c(24.5, 25, 26, 28, 30, 35.9, 36.1, 40, 47.9, 48.1, 54, 60, 72))),
      "IV bolus 300 at 0, then SS=1 bolus 100 II 12 at 24 (reset; obs before/after) with ADDL 2")
  add(paste0("ss_bolus_oral", sfx), oral(n), list(O(0), D(0, 250, ii = 12, addl = 1, ss = 1), O(0),
      O(c(0.25, 0.5, 1, 2, 3, 4, 6, 8, 11, 12, 12.5, 13, 14, 18, 24, 25, 30, 36, 48))),
      "oral SS=1 250 II 12 with F 0.85, ADDL 1", F = 0.85)
  add(paste0("ss_infusion", sfx), iv(n), list(O(0), D(0, 150, rate = 50, ii = 12, addl = 1, ss = 1),
      O(c(0, 0.5, 1, 2, 3, 3.5, 6, 9, 11.9, 12, 13, 15, 16, 20, 24, 27, 30, 36))),
      "IV SS=1 infusion AMT 150 RATE 50 (duration 3 < II 12), ADDL 1")
  add(paste0("ss_infusion_long", sfx), iv(n), list(O(0), D(0, 200, rate = 20, ii = 6, addl = 3, ss = 1),
      O(c(0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 34, 40))),
      "IV SS=1 infusion AMT 200 RATE 20 (duration 10 > II 6: one series infusion still running), ADDL 3")
  add(paste0("ss_infusion_vlong", sfx), iv(n), list(O(0), D(0, 140, rate = -2, ii = 6, addl = 2, ss = 1),
      O(c(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 34, 40))),
      "IV SS=1, RATE -2 modeled duration 14 > 2*II (II 6; two series infusions running at s), ADDL 2",
      duration = 14)
  add(paste0("ss2_add", sfx), iv(n), list(D(0, 200, ii = 12, addl = 1), O(c(1, 6, 12.5, 18)), O(20),
      D(20, 100, rate = 10, ii = 8, ss = 2), O(20),
      O(c(20.5, 21, 22, 23, 26, 28, 30, 31, 34, 40, 48))),
      "IV bolus 200 ADDL 1 II 12, then SS=2 infusion AMT 100 RATE 10 (duration 10 > II 8) at 20 added")
  add(paste0("reset_evid3", sfx), iv(n), list(D(0, 300, rate = 30), O(c(1, 3)), D(4, 50),
      O(c(5, 7)), O(8), R3(8), O(8), O(c(9, 10, 12)), O(14), D(14, 80), O(14),
      O(c(15, 18, 23)), D(24, 80, rate = 40), O(c(24.5, 25, 26, 27, 30, 36))),
      "IV infusion RATE 30 0-10 + bolus at 4; EVID 3 at 8 stops it; bolus at 14, infusion at 24")
  add(paste0("reset_evid4", sfx), oral(n), list(D(0, 200, ii = 12, addl = 1),
      O(c(0.2, 0.4, 1, 3, 6, 12, 12.6, 14, 20, 26)), O(30), D(30, 150, evid = 4), O(30),
      O(c(30.2, 30.4, 30.5, 31, 32, 34, 40, 48))),
      "oral 200 ADDL 1 II 12 (tlag 0.4 F 0.8); EVID 4 dose 150 at 30 (obs before/after)",
      tlag = 0.4, F = 0.8)
  add(paste0("depot_then_central", sfx), oral(n), list(O(0), D(0, 200),
      O(c(0.25, 0.5, 0.75, 1, 2, 4, 5.9, 6)), D(6, 120, cmt = 2, rate = 60),
      O(c(6.5, 7, 8, 8.5, 10)), O(12), D(12, 50, cmt = 2), O(12), O(c(12.5, 14, 18, 24, 36))),
      "depot bolus 200 (tlag 0.5 F 0.75); central infusion 120 RATE 60 at 6 and central bolus 50 at 12 (no lag/F)",
      tlag = 0.5, F = 0.75)
  add(paste0("overlap_infusions", sfx), iv(n), list(D(0, 180, rate = 30), O(c(0.5, 1, 2)),
      D(2, 100, rate = 50), O(c(2.5, 3, 4, 4.5, 5, 6, 6.5, 8, 10, 12, 16, 24))),
      "two overlapping IV infusions: AMT 180 RATE 30 at 0 (6 h) + AMT 100 RATE 50 at 2 (2 h)")
  add(paste0("wt_tv", sfx), iv(n), list(D(0, 100, ii = 12, addl = 3, wt = 65), O(c(1, 2, 4), wt = 65),
      E2(5, 80), O(c(6, 8), wt = 80), O(10, wt = 90), O(c(12.5, 14), wt = 90), E2(15, 60),
      O(c(18, 23.9, 24.1, 28), wt = 60), O(30, wt = 55), O(c(33, 36.1), wt = 55), E2(40, 100),
      O(c(41, 44, 47.9), wt = 100), D(48, 50, wt = 75), O(c(48.5, 54, 60, 72), wt = 75)),
      "IV bolus 100 ADDL 3 II 12; WT (LOCF; exponent 0.75 on CL) changes on EVID 2 and observation records",
      wt_exponent = 0.75)
  add(paste0("ss_lag", sfx), oral(n), list(O(0), D(0, 200, ii = 12, addl = 1, ss = 1), O(0),
      O(c(0.35, 0.7, 1, 1.5, 2, 4, 8, 11, 12, 12.7, 13, 14, 16, 20, 24, 24.7, 26, 30, 36))),
      "oral SS=1 200 II 12 with tlag 0.7 and F 0.8, ADDL 1", tlag = 0.7, F = 0.8)
  add(paste0("ss_infusion_lag", sfx), iv(n), list(O(0), D(0, 120, rate = 40, ii = 8, addl = 1, ss = 1),
      O(c(0, 0.25, 0.5, 1, 2, 3.2, 4, 6, 8, 8.5, 9, 11.2, 12, 16, 20, 24))),
      "IV SS=1 infusion AMT 120 RATE 40 with tlag 0.5 and F 0.9 (duration 2.7) II 8, ADDL 1",
      tlag = 0.5, F = 0.9)
}
sc <- do.call(rbind, recs); pa <- do.call(rbind, pars)
write.csv(sc, file.path(out_dir, "scenarios.csv"), row.names = FALSE, quote = FALSE)
write.csv(pa, file.path(out_dir, "parameters.csv"), row.names = FALSE, quote = FALSE, na = "NA")
cat(nrow(pa), "scenarios,", sum(sc$EVID == 0), "observations\n")
print(table(sc$scenario[sc$EVID == 0]))
