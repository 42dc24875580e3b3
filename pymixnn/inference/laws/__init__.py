"""Random-effect laws in torch, as plug-ins: log-density and sampling of eta with all parameters in
one flat vector theta, and every law-specific step of the estimation (base.py: the interface).

* ``GaussianLaw`` (gaussian.py): eta ~ N(0, L L^T).
* ``MixtureLaw`` (mixture.py): eta ~ sum_k w_k N(m_k, L_k L_k^T), E[eta] = 0 by construction.
* ``FlowLaw`` (flow.py): eta = L T(u), u ~ N(0, I), T a normalizing flow started at the identity.
* ``LatentClassLaw`` (latent_class.py): latent classes with class-specific fixed effects and a
  multinomial-logit membership model (its EM start: class_em.py).

registry.py maps each spec class of pymixnn.model.random_effects to its plug-in; fitted.py rebuilds
a fitted law from its record. ``log_prob(L, raw, eta, context)`` takes eta of shape (..., B, d) and
returns (..., B); context, when the flow is conditional, is (B, c).
"""

from pymixnn.inference.laws.base import LawPlugin, gaussian_log_prob, raw_from_tril, tril_from_raw
from pymixnn.inference.laws.fitted import fitted_law, log_density_fitted_law, sample_fitted_law
from pymixnn.inference.laws.flow import FlowLaw
from pymixnn.inference.laws.gaussian import GaussianLaw
from pymixnn.inference.laws.latent_class import LatentClassLaw, class_selection_row
from pymixnn.inference.laws.mixture import MixtureLaw, fit_gaussian_mixture
from pymixnn.inference.laws.registry import REGISTRY, build_law, plugin

__all__ = [
    "GaussianLaw",
    "MixtureLaw",
    "FlowLaw",
    "LatentClassLaw",
    "class_selection_row",
    "LawPlugin",
    "REGISTRY",
    "plugin",
    "build_law",
    "tril_from_raw",
    "raw_from_tril",
    "gaussian_log_prob",
    "fit_gaussian_mixture",
    "fitted_law",
    "sample_fitted_law",
    "log_density_fitted_law",
]
