# mixnnControl() maps one to one onto Python's pymixnn.Control (same names), dropna aside: it is a
# setting of the data (pymixnn.NLME(dropna = )), passed by mixnn() as such.
test_that("mixnnControl() has the fields of pymixnn.Control, and dropna", {
  skip_if_no_pymixnn()
  pm <- pymixnn_module()
  dataclasses <- reticulate::import("dataclasses")
  fields <- vapply(dataclasses$fields(pm$Control), function(f) f$name, character(1))
  expect_setequal(setdiff(names(mixnnControl()), "dropna"), fields)
  expect_true("dropna" %in% names(mixnnControl()))
  # the defaults agree (progress aside: interactive() in R)
  ctrl <- mixnnControl()
  py_default <- pm$Control()
  for (f in setdiff(fields, "progress")) expect_identical(ctrl[[f]], py_default[[f]], info = f)
  # mixnnControl()'s values build a valid Control, and a bad one is the Python check's error
  settings <- ctrl[setdiff(names(ctrl), "dropna")]
  built <- do.call(pm$Control, settings)
  expect_identical(built$max_steps, 4000L)
  expect_error(mixnn(pymixnn_dataset("orange"), "logistic", id = "Tree", x = "age",
                     y = "circumference", control = mixnnControl(lr = -1, progress = FALSE)),
               "lr must be a finite number > 0", class = "pymixnn_error")
})

test_that("mixnnControl(gear = ) reaches the fit, and the fit says which gear ran", {
  skip_if_no_pymixnn()
  args <- list(pymixnn_dataset("theo"), "onecpt_oral", id = "Id", x = c("Dose", "Time"),
               y = "Concentration")
  fit <- do.call(mixnn, c(args, list(control = mixnnControl(progress = FALSE))))
  # "auto": Gaussian random effects and a closed-form model take the Newton gear, no SVI step
  expect_identical(fit$info$gear, "newton")
  expect_equal(fit$info$steps, 0)
  expect_error(do.call(mixnn, c(args, list(control = mixnnControl(gear = "fast", progress = FALSE)))),
               "gear must be one of", class = "pymixnn_error")
})
