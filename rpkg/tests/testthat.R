library(testthat)
library(pymixnn)

test_check("pymixnn")
