"""`amortize()`: train a neural estimator of a whole data set's population parameters on data sets
simulated from a model and a prior over one design.

>>> import pymixnn
>>> from pymixnn.simulate import simulate_logistic
>>> design = simulate_logistic(n_individuals=200, n_obs=10, seed=0)[["id", "t"]]
>>> est = pymixnn.amortize("logistic", design, {"A": ("uniform", 80, 120), "B": ("uniform", 4, 6),
...     "C": ("uniform", 1.2, 1.8), "omega2.A": ("loguniform", 0.02, 0.08),
...     "omega2.B": ("loguniform", 0.02, 0.08), "omega2.C": ("loguniform", 0.02, 0.08),
...     "a": ("uniform", 1, 3)}, n_simulations=480_000, x="t", progress=False)  # doctest: +SKIP
>>> est.estimate(new_df).params  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from pymixnn.data.padded import pad_records
from pymixnn.model.named import Model, resolve
from pymixnn.model.prior import Prior
from pymixnn.validation import InputError
from pymixnn.validation.errors import is_integer

__all__ = ["amortize", "NEURAL_SIMULATIONS"]

# default training budget: 15,000 Adam steps of 32 data sets (logistic design of the benchmark, 200
# individuals x 10 records: 478 s on one CPU thread; 13,000 steps took 445 s but left two
# SBC rank histograms non-uniform, KS p 0.015 and 0.029, against >= 0.24 after 15,000)
NEURAL_SIMULATIONS = 480_000


def amortize(
    model: Model | str,
    design: pd.DataFrame,
    prior: Mapping[str, object],
    n_simulations: int = NEURAL_SIMULATIONS,
    *,
    id: str = "id",
    x: str | Sequence[str] | None = None,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
):
    """Train a neural estimator (neural posterior estimation) for data sets of ``design``.

    Parameters
    ----------
    model : Model or str
        A :class:`pymixnn.Model` or a named model ("logistic", ...) with a closed-form structural
        function and a continuous residual error model (constant, proportional, combined,
        exponential); a diagonal omega.
    design : pandas.DataFrame
        Long table of the individuals and their records (``id`` and the x columns; a y column, if
        any, is ignored). Records are read in table order within an individual.
    prior : dict
        A law per population parameter, named as in ``Results.params`` (fixed effects on the
        natural scale, ``omega2.<p>``, the residual error parameters): ``("uniform", lo, hi)``,
        ``("loguniform", lo, hi)``, ``("normal", mean, sd)``, ``("lognormal", meanlog, sdlog)``
        or a number (held fixed); see :mod:`pymixnn.model.prior`.
    n_simulations : int, default 480000
        Simulated data sets seen in training (``n_simulations // batch_size`` Adam steps).
    id : str, default "id"
        The individual column of ``design``.
    x : str or list of str, optional
        The x columns of ``design`` (default: the model's ``x_names``, else every column but
        ``id`` and ``y``).
    batch_size : int, default 32
        Simulated data sets per Adam step.
    lr : float, default 0.002
        Adam's step size, decaying on a cosine to ``lr / 100``.
    seed : int, default 0
        Seed of the weights' initialization, the prior draws and the simulations.
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    NeuralEstimator
        The trained estimator: ``.estimate(df)`` for a new data set of the design (one forward
        pass), ``.sbc()`` for simulation-based calibration, ``.save(path)``.
    """
    model = resolve(model) if isinstance(model, str) else model
    if not isinstance(model, Model):
        raise InputError(f"model must be a Model or a named model, got {type(model).__name__}")
    if model.dynamics is not None:
        raise InputError(
            "the neural estimator needs a closed-form structural model; dynamic models are not supported"
        )
    try:
        prior = Prior.of(model, prior)
    except (TypeError, ValueError) as err:
        raise InputError(str(err)) from None
    if not prior.free:
        raise InputError("every parameter of the prior is fixed: there is nothing to estimate")
    if x is None:
        x = list(model.x_names) if model.x_names else [c for c in design.columns if c not in (id, "y")]
    x = [x] if isinstance(x, str) else list(x)
    for name, value, low in (("n_simulations", n_simulations, 1), ("batch_size", batch_size, 1)):
        if not is_integer(value) or value < low:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if n_simulations < batch_size:
        raise InputError(f"n_simulations={n_simulations} is below batch_size={batch_size}")
    if not lr > 0:
        raise InputError(f"lr must be positive, got {lr!r}")
    if not is_integer(seed):
        raise InputError(f"seed must be an integer, got {seed!r}")
    rec = pad_records(design, id=id, x=x, y=None)

    import torch

    from pymixnn.inference.neural import train_estimator
    from pymixnn.results.neural import NeuralEstimator

    state = train_estimator(
        model,
        prior,
        torch.as_tensor(rec.x, dtype=torch.float32),
        torch.as_tensor(rec.mask),
        n_simulations=int(n_simulations),
        batch_size=int(batch_size),
        seed=int(seed),
        lr=float(lr),
        progress=progress,
    )
    info = dict(
        n_simulations=state["n_simulations"],
        steps=state["steps"],
        batch_size=state["batch_size"],
        seconds=state["seconds"],
        seed=int(seed),
        lr=float(lr),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
    )
    return NeuralEstimator(model, prior, rec, x, state, info)
