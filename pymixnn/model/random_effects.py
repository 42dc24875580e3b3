"""Laws of the random effects: Gaussian, finite Gaussian mixture, normalizing flow (plain specs, no Pyro).

Individual parameters are ``phi_i = mu + Z_i beta + eta_i`` (transformed scale) and ``psi_i = h(phi_i)``.
The law of ``eta_i`` is one of:

* :class:`Gaussian` -- ``eta ~ N(0, Omega)`` (saemix, nlme, Monolix);
* :class:`Mixture` -- ``eta ~ sum_k w_k N(m_k, Omega_k)`` with ``sum_k w_k m_k = 0``: K subpopulations
  (saemix/Monolix mixtures of distributions, NONMEM's $MIX);
* :class:`LatentClass` -- latent classes of individuals (lcmm's ``hlme``): class-specific fixed
  effects on chosen parameters, class probabilities from a multinomial-logit membership model on
  individual covariates, ``eta | class k ~ N(m_k, Omega_k)``;
* :class:`Flow` -- ``eta = L T(u)``, ``u ~ N(0, I)``: a learned Gaussian base (the Cholesky factor ``L``
  of Omega) pushed through a normalizing flow ``T`` (rational-quadratic spline coupling, spline or affine
  autoregressive layers from ``pyro.distributions.transforms``), initialized at the identity, so an
  untrained flow *is* the Gaussian model. With ``context=`` the flow is conditional on low-dimensional
  individual covariates (water scenario, sex): the shape of the law may change with them.

How fixed effects are defined under a non-Gaussian law: ``mu`` is the **mean** of ``phi`` over the
law (at covariate value 0, as saemix's fixed effects), so the reported fixed effect ``h(mu)`` is the
typical value ``h(E[phi])`` for every law and is comparable across laws; for a Gaussian law this is
the usual definition. The mixture keeps ``E[eta] = 0`` by construction; for a flow, ``E[eta]`` is
computed after fitting (100,000 base draws) and moved into ``mu``. The median, sd, skewness and the
number of modes of each psi under the fitted law are in :meth:`pymixnn.Results.re_summary`.

>>> from pymixnn.model.random_effects import Flow, resolve
>>> resolve("flow").kind
'spline_coupling'
>>> resolve("mixture", n_components=3).n_components
3
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

__all__ = [
    "Gaussian",
    "Mixture",
    "Flow",
    "LatentClass",
    "RandomEffectsLaw",
    "resolve",
    "FLOW_KINDS",
    "from_dict",
]

FLOW_KINDS = ("spline_coupling", "spline_autoregressive", "affine_autoregressive")


@dataclass(frozen=True)
class Gaussian:
    """Gaussian random effects, eta ~ N(0, Omega): the default law (saemix, nlme, lme4).

    Takes no argument: the covariance structure is the model's ``omega`` ("diagonal" or "full").

    Returns
    -------
    Gaussian
        The law spec for ``pymixnn.fit(..., random_effects=pymixnn.Gaussian())`` (the same as
        ``random_effects="gaussian"``).
    """

    name: str = field(default="gaussian", init=False)

    @property
    def context_columns(self) -> tuple[str, ...]:
        """Covariate columns the law is conditioned on (none)."""
        return ()

    def describe(self) -> str:
        return "Gaussian random effects"


@dataclass(frozen=True)
class Mixture:
    """A K-component Gaussian mixture for eta.

    Parameters
    ----------
    n_components : int or "auto", default 2
        K (>= 2), or "auto": fit K = 1 .. ``max_components`` (K = 1 is the Gaussian model) and keep
        the best by ``criterion``, computed from the importance-sampling log-likelihood of each
        fit; the table of all candidates is in ``Results.info``.
    shared_omega : bool, default False
        One covariance for all components (components differ in mean and weight only) or, by
        default, one covariance per component (structure from the model's ``omega``).
    max_components : int, default 4
        Upper bound when ``n_components="auto"``.
    criterion : {"bic", "aic"}, default "bic"
        The criterion of ``n_components="auto"`` (BIC as mclust).

    Returns
    -------
    Mixture
        The law spec, eta ~ sum_k w_k N(m_k, Omega_k), for ``fit(..., random_effects=...)``; the
        fit reports each weight, component mean and variance with SEs.
    """

    n_components: int | str = 2
    shared_omega: bool = False
    max_components: int = 4
    criterion: str = "bic"
    name: str = field(default="mixture", init=False)

    @property
    def context_columns(self) -> tuple[str, ...]:
        """Covariate columns the law is conditioned on (none)."""
        return ()

    def __post_init__(self) -> None:
        k = self.n_components
        if k != "auto" and not (isinstance(k, int) and not isinstance(k, bool) and k >= 2):
            raise ValueError(f"Mixture n_components must be an integer >= 2 or 'auto', got {k!r}")
        if not (isinstance(self.max_components, int) and self.max_components >= 2):
            raise ValueError(f"Mixture max_components must be an integer >= 2, got {self.max_components!r}")
        if self.criterion not in ("bic", "aic"):
            raise ValueError(f"Mixture criterion must be 'bic' or 'aic', got {self.criterion!r}")

    def describe(self) -> str:
        cov = "shared" if self.shared_omega else "component-specific"
        return f"Gaussian mixture random effects, {self.n_components} components ({cov} omega)"


@dataclass(frozen=True)
class Flow:
    """A normalizing flow for eta: ``eta = L T(u)``, ``u ~ N(0, I)``, T initialized at the identity.

    Parameters
    ----------
    kind : {"spline_coupling", "spline_autoregressive", "affine_autoregressive"}
        Neural spline coupling layers with permutations (the default; Durkan et al. 2019), or
        masked autoregressive layers. Every kind starts with an element-wise monotone spline on
        each coordinate (the marginal shapes: skewness, modes); with one random effect only that
        element-wise spline is used.
    n_layers : int, default 1
        Depth: number of coupling/autoregressive layers after the element-wise spline.
    hidden : sequence of int, default (8,)
        Width: hidden units of each layer's conditioner network (one entry per hidden layer).
    count_bins : int, default 8
        Spline segments.
    bound : float, default 5.0
        The spline acts on [-bound, bound] of the standardized scale (identity outside); 5 covers
        a Gaussian base to 1 in 3.5 million.
    context : list of str, optional
        Low-dimensional individual covariates the law is conditioned on (a conditional flow:
        element-wise spline and autoregressive layers whose parameters are functions of the
        covariates); categorical covariates are one-hot coded.
    penalty : float or "cv", default "cv"
        Weight of a Gaussian penalty ``0.5 * penalty * ||lambda - lambda_identity||^2`` on the flow
        parameters lambda (a ridge towards the Gaussian model), or "cv": chosen among
        ``penalty_grid`` by ``cv_folds``-fold cross-validation of the importance-sampling
        log-likelihood over individuals. Without it a flexible law fits the sampling noise of the
        individuals' random effects (the nonparametric maximum-likelihood law is discrete): on 500
        simulated individuals with a Gaussian truth an unpenalized flow gained 58 log-likelihood
        units over the true model. 0 gives plain maximum likelihood.
    penalty_grid : sequence of float, default (1, 10, 100, 1000, 10000)
        Candidates for ``penalty="cv"``.
    cv_folds : int, default 3
        Folds for ``penalty="cv"``.

    Returns
    -------
    Flow
        The law spec for ``fit(..., random_effects=...)``; the untrained flow is the Gaussian model.
    """

    kind: str = "spline_coupling"
    n_layers: int = 1
    hidden: Sequence[int] = (8,)
    count_bins: int = 8
    bound: float = 5.0
    context: Sequence[str] | None = None
    penalty: float | str = "cv"
    penalty_grid: Sequence[float] = (1.0, 10.0, 100.0, 1000.0, 10000.0)
    cv_folds: int = 3
    name: str = field(default="flow", init=False)

    def __post_init__(self) -> None:
        if self.kind not in FLOW_KINDS:
            raise ValueError(f"Flow kind must be one of {list(FLOW_KINDS)}, got {self.kind!r}")
        if not (isinstance(self.n_layers, int) and self.n_layers >= 0):
            raise ValueError(f"Flow n_layers must be a non-negative integer, got {self.n_layers!r}")
        hidden = (self.hidden,) if isinstance(self.hidden, int) else tuple(self.hidden)
        if not hidden or not all(isinstance(h, int) and h >= 1 for h in hidden):
            raise ValueError(f"Flow hidden must be positive integers, got {self.hidden!r}")
        object.__setattr__(self, "hidden", hidden)
        if not (isinstance(self.count_bins, int) and self.count_bins >= 2):
            raise ValueError(f"Flow count_bins must be an integer >= 2, got {self.count_bins!r}")
        if not self.bound > 0:
            raise ValueError(f"Flow bound must be positive, got {self.bound!r}")
        if self.penalty != "cv" and not (isinstance(self.penalty, (int, float)) and self.penalty >= 0):
            raise ValueError(f"Flow penalty must be 'cv' or a number >= 0, got {self.penalty!r}")
        grid = tuple(float(g) for g in self.penalty_grid)
        if not grid or any(g < 0 for g in grid):
            raise ValueError(f"Flow penalty_grid must be non-negative numbers, got {self.penalty_grid!r}")
        object.__setattr__(self, "penalty_grid", grid)
        if not (isinstance(self.cv_folds, int) and self.cv_folds >= 2):
            raise ValueError(f"Flow cv_folds must be an integer >= 2, got {self.cv_folds!r}")
        if self.context is not None:
            ctx = (self.context,) if isinstance(self.context, str) else tuple(self.context)
            if not ctx:
                raise ValueError("Flow context must name at least one covariate column, or be None")
            object.__setattr__(self, "context", ctx)

    @property
    def context_columns(self) -> tuple[str, ...]:
        """Covariate columns of a conditional flow (its ``context``; empty without)."""
        return tuple(self.context or ())

    def describe(self) -> str:
        ctx = f", conditional on {list(self.context)}" if self.context else ""
        layers = f"{self.n_layers} layer" + ("" if self.n_layers == 1 else "s")
        return (
            f"normalizing-flow random effects ({self.kind}, {layers}, hidden "
            f"{list(self.hidden)}, {self.count_bins} bins{ctx})"
        )


CLASS_CRITERIA = ("icl", "bic", "aic")


@dataclass(frozen=True)
class LatentClass:
    """Latent classes of individuals (lcmm's ``hlme``/``lcmm``, flexmix): individual i belongs to
    class k with probability ``w_k(x_i) = softmax_k(gamma_k0 + gamma_k' x_i)`` (class 1 the
    reference, gamma_1 = 0), and ``phi_i = mu + delta_k + Z_i beta + eta_i`` with class-specific
    fixed effects ``delta_k`` (delta_1 = 0) on the parameters in ``on``, ``eta_i | k ~ N(0, Omega_k)``.
    The class is summed out exactly in the likelihood; the posterior class probabilities of each
    individual are ``Results.classes()``.

    Parameters
    ----------
    n_classes : int or "auto", default 2
        K (>= 2), or "auto": fit K = 1 (the Gaussian model) .. ``max_classes`` and keep the best by
        ``criterion``; the table of every K (log-likelihood, BIC, ICL, entropy, smallest class) is
        ``Results.class_selection()``.
    on : list of str, optional
        Parameters with class-specific fixed effects (lcmm's ``mixture=``); each needs an
        individual random effect. Default: every parameter with a random effect.
    membership : list of str, optional
        Individual covariate columns of the membership model (lcmm's ``classmb=``); categorical
        ones are coded as indicators of their non-reference levels, numeric ones enter as they are.
    within : {"gaussian", "flow"}, default "gaussian"
        The law within a class; "flow": eta | k = m_k + L T(u), u ~ N(0, I), one normalizing flow T
        (pymixnn.Flow's default spline coupling, started at the identity) shared by the classes,
        which differ in location; needs ``shared_omega=True``.
    shared_omega : bool, default True
        One Omega for all classes (lcmm's ``nwg=FALSE``) or one per class.
    n_starts : int, default 10
        Starts of the EM that begins each fit (k-means++ seeds on draws of the Gaussian fit's
        individual posteriors); the best is refined. A start whose class empties is re-seeded.
    max_classes : int, default 4
        Upper bound for ``n_classes="auto"``.
    criterion : {"icl", "bic", "aic"}, default "icl"
        ICL: BIC + 2 x the entropy of the posterior classification, which prefers well-separated
        classes (Biernacki et al. 2000).
    flow_penalty : float, default 100.0
        The ridge weight of the flow within the classes towards the Gaussian (pymixnn.Flow's
        ``penalty``; fixed here, not cross-validated).
    membership_terms, random_names : sequence of str, default ()
        Set by the problem from the model and data, not by the user: the membership model's coded
        column names and the parameters with a random effect (the order of eta).

    Returns
    -------
    LatentClass
        The law spec for ``fit(..., random_effects=...)``; the fit then has ``classes()``,
        ``class_table()``, ``classify(newdata)`` and ``plot_classes()``.
    """

    n_classes: int | str = 2
    on: Sequence[str] | None = None
    membership: Sequence[str] | None = None
    within: str = "gaussian"
    shared_omega: bool = True
    n_starts: int = 10
    max_classes: int = 4
    criterion: str = "icl"
    flow_penalty: float = 100.0
    # set by the problem from the model and data (not arguments): the membership model's coded
    # column names, and the names of the parameters with a random effect (the order of eta)
    membership_terms: Sequence[str] = ()
    random_names: Sequence[str] = ()
    name: str = field(default="latent_class", init=False)

    def __post_init__(self) -> None:
        k = self.n_classes
        if k != "auto" and not (isinstance(k, int) and not isinstance(k, bool) and k >= 2):
            raise ValueError(f"LatentClass n_classes must be an integer >= 2 or 'auto', got {k!r}")
        if not (isinstance(self.max_classes, int) and self.max_classes >= 2):
            raise ValueError(f"LatentClass max_classes must be an integer >= 2, got {self.max_classes!r}")
        if self.criterion not in CLASS_CRITERIA:
            raise ValueError(
                f"LatentClass criterion must be one of {list(CLASS_CRITERIA)}, got {self.criterion!r}"
            )
        if self.within not in ("gaussian", "flow"):
            raise ValueError(f"LatentClass within must be 'gaussian' or 'flow', got {self.within!r}")
        if self.within == "flow" and not self.shared_omega:
            raise ValueError(
                "LatentClass(within='flow') shares one flow between the classes (they differ in "
                "location): use shared_omega=True"
            )
        if not (isinstance(self.flow_penalty, (int, float)) and self.flow_penalty >= 0):
            raise ValueError(f"LatentClass flow_penalty must be a number >= 0, got {self.flow_penalty!r}")
        if not (isinstance(self.n_starts, int) and self.n_starts >= 1):
            raise ValueError(f"LatentClass n_starts must be an integer >= 1, got {self.n_starts!r}")
        for attr in ("on", "membership"):
            value = getattr(self, attr)
            if value is not None:
                value = (value,) if isinstance(value, str) else tuple(value)
                if not all(isinstance(v, str) and v for v in value):
                    raise ValueError(f"LatentClass {attr} must be column/parameter names, got {value!r}")
                object.__setattr__(self, attr, value or None)
        object.__setattr__(self, "membership_terms", tuple(self.membership_terms))
        object.__setattr__(self, "random_names", tuple(self.random_names))

    @property
    def context_columns(self) -> tuple[str, ...]:
        """Covariate columns of the membership model."""
        return tuple(self.membership or ())

    def describe(self) -> str:
        k = self.n_classes if self.n_classes != "auto" else f"auto (1-{self.max_classes}, {self.criterion})"
        on = f" on {list(self.on)}" if self.on else ""
        mb = f", membership ~ {' + '.join(self.membership)}" if self.membership else ""
        cov = "shared" if self.shared_omega else "class-specific"
        within = ", a normalizing flow within the classes" if self.within == "flow" else ""
        return f"latent classes: {k} classes{on}{mb} ({cov} omega{within})"


RandomEffectsLaw = Gaussian | Mixture | Flow | LatentClass


def resolve(
    value: str | RandomEffectsLaw | None,
    *,
    n_components: int | str | None = None,
    context: Sequence[str] | str | None = None,
) -> RandomEffectsLaw:
    """The law spec from ``fit(random_effects=..., n_components=..., context=...)``."""
    if value is None:
        value = "gaussian"
    if isinstance(value, str):
        key = value.lower()
        if key in ("gaussian", "normal"):
            if n_components is not None or context is not None:
                raise ValueError("n_components and context apply to random_effects='mixture' / 'flow'")
            return Gaussian()
        if key == "mixture":
            if context is not None:
                raise ValueError("context= applies to random_effects='flow' (conditional flows)")
            return Mixture(n_components=2 if n_components is None else n_components)
        if key in ("latent_class", "latentclass", "latent_classes"):
            if context is not None:
                raise ValueError("context= applies to random_effects='flow'; use LatentClass(membership=...)")
            return LatentClass(n_classes=2 if n_components is None else n_components)
        if key == "flow":
            if n_components is not None:
                raise ValueError("n_components= applies to random_effects='mixture'")
            return Flow(context=context)
        raise ValueError(
            f"random_effects must be 'gaussian', 'mixture', 'flow', 'latent_class' or a spec object "
            f"(pymixnn.Gaussian/Mixture/Flow/LatentClass), got {value!r}"
        )
    if isinstance(value, (Gaussian, Mixture, Flow, LatentClass)):
        if n_components is not None or context is not None:
            raise ValueError("with a spec object, set n_components/context on the object itself")
        return value
    raise TypeError(
        f"random_effects must be a string or a pymixnn.Gaussian/Mixture/Flow/LatentClass, "
        f"got {type(value).__name__}"
    )


def to_dict(law: RandomEffectsLaw) -> dict:
    return asdict(law)


def from_dict(record: dict | None) -> RandomEffectsLaw:
    if not record:
        return Gaussian()
    record = dict(record)
    name = record.pop("name", "gaussian")
    if name == "gaussian":
        return Gaussian()
    if name == "mixture":
        return Mixture(**record)
    if name == "latent_class":
        return LatentClass(**record)
    return Flow(**record)
