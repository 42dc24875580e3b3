"""The results layer: :class:`Results` (tables, predictions, save/load), the fitted model as
numbers (:class:`FittedModel`, ``res.evaluator``), diagnostics, plots, VPC, the random-effects
density and genomic outputs, and :class:`ExternalFit` (a fit by saemix or nlme through
:mod:`pymixnn.compare`); public values are pandas/numpy."""

__all__ = ["Results", "Summary", "compare_fits", "FittedModel", "ExternalFit"]


def __getattr__(name):  # Results imports torch: load it only when asked for
    if name in __all__:
        from pymixnn.results import results as _results

        return getattr(_results, name)
    raise AttributeError(f"module 'pymixnn.results' has no attribute {name!r}")
