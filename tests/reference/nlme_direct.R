# nlme called directly (the textbook formulas with SSlogis), to check pymixnn.compare.nlme.
#
# What it fits (method = "ML", nlmeControl(maxIter = 200, msMaxIter = 200, pnlsMaxIter = 20)):
#   orange:  circumference ~ SSlogis(age, Asym, xmid, scal), random = Asym ~ 1 (Pinheiro & Bates
#            2000, section 8.2), start Asym = 170, xmid = 700, scal = 350;
#   soybean: weight ~ SSlogis(Time, Asym, xmid, scal), fixed = list(Asym ~ Variety, xmid ~ 1,
#            scal ~ 1), random = pdDiag(Asym + xmid + scal ~ 1), groups = ~ Plot, start
#            Asym = 19, Variety = 0, xmid = 55, scal = 8.
# The data are the CSVs shipped in pymixnn/datasets (nlme's Orange and Soybean).
#
# How to run it (from the repository root):
#     Rscript tests/reference/nlme_direct.R OUT.json
# Needs nlme and jsonlite (Debian r-cran-nlme, r-cran-jsonlite). tests/test_compare.py runs it.
suppressPackageStartupMessages({ library(nlme); library(jsonlite) })
args <- commandArgs(trailingOnly = TRUE)
file_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
here <- dirname(normalizePath(sub("^--file=", "", file_arg[1])))
ds <- file.path(here, "..", "..", "pymixnn", "datasets")
ctrl <- nlmeControl(maxIter = 200, msMaxIter = 200, pnlsMaxIter = 20)
summarise <- function(fit) {
  vc <- as.matrix(pdMatrix(fit$modelStruct$reStruct[[1]])) * fit$sigma^2
  list(fixef = as.list(fixef(fit)), se = as.list(sqrt(diag(vcov(fit)))),
       omega2 = as.list(diag(vc)), sigma = fit$sigma, logLik = as.numeric(logLik(fit)),
       ranef = as.list(as.data.frame(ranef(fit))))
}
orange <- read.csv(file.path(ds, "orange.csv"))
orange$Tree <- factor(orange$Tree, levels = unique(orange$Tree))
fo <- nlme(circumference ~ SSlogis(age, Asym, xmid, scal), data = orange,
           fixed = Asym + xmid + scal ~ 1, random = Asym ~ 1, groups = ~ Tree,
           start = c(Asym = 170, xmid = 700, scal = 350), method = "ML", control = ctrl)
soy <- read.csv(file.path(ds, "soybean.csv"))
soy$Plot <- factor(soy$Plot, levels = unique(soy$Plot))
soy$VarietyP <- as.numeric(soy$Variety == "P")
fs <- nlme(weight ~ SSlogis(Time, Asym, xmid, scal), data = soy,
           fixed = list(Asym ~ VarietyP, xmid ~ 1, scal ~ 1),
           random = pdDiag(Asym + xmid + scal ~ 1), groups = ~ Plot,
           start = c(19, 0, 55, 8), method = "ML", control = ctrl)
out <- list(nlme_version = as.character(packageVersion("nlme")),
            orange = summarise(fo), soybean = summarise(fs))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), args[1])
