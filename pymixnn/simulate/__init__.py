"""Simulate nonlinear mixed-effects data with known truth (tests, benchmarks, vignettes).

The model is the one pymixnn fits: for individual i = 1..N and observation j,

    phi_i = h^{-1}(mu) + eta_i,   eta_i ~ N(0, diag(omega2)),   psi_i = h(phi_i)
    y_ij  = f(psi_i, x_j) + sqrt(a^2 + b^2 f(psi_i, x_j)^2) * e_ij,   e_ij ~ N(0, 1)

with h the parameter transform (saemix's ``transform.par``: identity, log, probit, logit), ``mu``
the fixed effects on the natural scale, and a constant (``b = 0``) or combined residual error.
Everyone shares the same design ``x``. This module needs only NumPy and pandas.

The random numbers are drawn in a fixed order from ``numpy.random.default_rng(seed)``: first all
random effects (an (N, P) array of standard normals), then all residuals (an (N, T) array), so the
same seed gives the same frame.

The simulators live in :mod:`pymixnn.simulate.nlme` (the Gaussian model above, logistic growth),
:mod:`pymixnn.simulate.discrete` (binomial counts, censored concentrations),
:mod:`pymixnn.simulate.classes` (latent classes of growth curves),
:mod:`pymixnn.simulate.genomic` (markers and marker-driven growth curves) and
:mod:`pymixnn.simulate.laws` (non-Gaussian laws of one random effect), :mod:`pymixnn.simulate.fields`
(Matérn random fields at fixed locations, and exactly at 10^4-10^6 random sites) and
:mod:`pymixnn.simulate.pkpd`
(PK/PD event records: a dose, a concentration and a response endpoint) and
:mod:`pymixnn.simulate.hybrid` (an exposure-response link to learn, a pendulum observed through its
angle); all are importable from here.

>>> from pymixnn.simulate import simulate_logistic
>>> df = simulate_logistic(n_individuals=3, n_obs=4, seed=1)
>>> df.shape
(12, 3)
>>> df.attrs["truth"]["A"]
100.0
>>> list(df.attrs["psi"].columns)
['A', 'B', 'C']
"""

from __future__ import annotations

from pymixnn.simulate.classes import CLASS_TRUTH, simulate_latent_classes
from pymixnn.simulate.discrete import simulate_censored_pk, simulate_senescence
from pymixnn.simulate.fields import simulate_field_growth, simulate_matern, simulate_matern_sites
from pymixnn.simulate.genomic import simulate_genomic, simulate_markers
from pymixnn.simulate.hybrid import PENDULUM_TRUTH, emax_link, simulate_emax_link, simulate_pendulum
from pymixnn.simulate.laws import NormalMixture1D, RandomEffectLaw1D, SkewNormal1D
from pymixnn.simulate.nlme import (
    logistic,
    onecpt_oral,
    simulate_dose_groups,
    simulate_logistic,
    simulate_nlme,
)
from pymixnn.simulate.pkpd import PKPD_TRUTH, simulate_pkpd

__all__ = [
    "simulate_nlme",
    "simulate_emax_link",
    "simulate_pendulum",
    "emax_link",
    "PENDULUM_TRUTH",
    "simulate_matern",
    "simulate_matern_sites",
    "simulate_field_growth",
    "simulate_pkpd",
    "PKPD_TRUTH",
    "simulate_logistic",
    "simulate_dose_groups",
    "simulate_senescence",
    "simulate_latent_classes",
    "CLASS_TRUTH",
    "simulate_censored_pk",
    "simulate_markers",
    "simulate_genomic",
    "logistic",
    "onecpt_oral",
    "RandomEffectLaw1D",
    "NormalMixture1D",
    "SkewNormal1D",
]
