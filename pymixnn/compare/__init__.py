"""Cross-checks with the methods users trust: the same data and model fitted by saemix (SAEM) and
nlme (Lindstrom-Bates linearisation) in R, through rpy2, returned as a :class:`pymixnn.Results`.

>>> import pymixnn
>>> theo = pymixnn.datasets.load("theo")
>>> kw = dict(id="Id", x=["Dose", "Time"], y="Concentration", covariates={"V": ["Weight"]})
>>> ours = pymixnn.fit(theo, "onecpt_oral", **kw, seed=1)                 # doctest: +SKIP
>>> ref = pymixnn.compare.saemix(theo, "onecpt_oral", **kw, seed=632545)  # doctest: +SKIP
>>> pymixnn.compare_fits(ours, ref, names=["pymixnn", "saemix"])        # doctest: +SKIP

Both bridges build the problem with :class:`pymixnn.NLME` (the same checks as ``pymixnn.fit``) and
return another program's estimates as a :class:`pymixnn.compare.ExternalFit`, held by the Results
as ``res.external``. What is translated: the named models (each has an R twin of its structural
function in the named-model registry, checked against the torch one in the tests; a custom model
passes ``r_function="function(psi, x) ..."``,
psi an individuals x parameters matrix on the natural scale and x the matrix of x columns; that
text is evaluated as R code, so never pass text from an untrusted source), the
parameter transforms (saemix ``transform.par``; in nlme the model is written in the transformed
parameters), the covariate model (numeric covariates, and categorical ones as the indicators
pymixnn uses), which parameters have random effects, a diagonal or full omega, and the error
model (saemix: constant, proportional, combined, exponential; nlme: constant, proportional by
``varPower(fixed = 1)``, exponential by fitting log y). saemix also gets the Poisson and
bernoulli families (``modeltype = "likelihood"``).

The R side runs inside this Python process (rpy2's embedded R), in a fresh R environment (R's
global environment is left alone); the data go to R as a CSV and the results come back as JSON.
Apart from ``r_function``, nothing the user passes is pasted into R code: values (the CSV's path,
parameter names, ``options``/``control`` settings) go to R as R objects; setting names are checked
against the arguments of ``saemixControl()`` / ``nlmeControl()`` and parameter names that saemix
uses as column names against R's rule for syntactic names. ``import pymixnn`` never needs R: these
functions raise one error saying what to install when rpy2, R, saemix or nlme is missing.
"""

from __future__ import annotations

from pymixnn.compare.common import (
    R_TWINS,
    ExternalFit,
    check_r_name,
    load_robjects,
    r_available,
    r_package_available,
    require_package,
)
from pymixnn.compare.nlme import nlme
from pymixnn.compare.saemix import saemix

__all__ = ["saemix", "nlme", "R_TWINS", "ExternalFit", "r_available", "r_package_available"]

# the R entry points the bridges look up here at call time (replaceable, e.g. to test without R);
# the former private names of pymixnn/compare.py
_robjects = load_robjects
_require = require_package
_check_r_name = check_r_name
