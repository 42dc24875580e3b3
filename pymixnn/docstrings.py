"""The parameters that several public docstrings share, written once: the problem's arguments
(``pymixnn.fit``, ``pymixnn.NLME``, ``pymixnn.compare.saemix`` / ``nlme``) and the algorithm
settings (``pymixnn.fit``, ``pymixnn.Control``), as numpydoc ``Parameters`` entries.

A docstring names a block by a line holding only ``%(name)s``; :func:`fill_doc` puts the block
there at that line's indentation (scipy's ``doccer`` does the same).

>>> from pymixnn.docstrings import fill_doc
>>> @fill_doc
... def f(seed=0):
...     '''Parameters
...     ----------
...     %(seed)s
...     '''
>>> print(f.__doc__.splitlines()[3].strip())
Random seed of the fit: the same seed gives identical results, whatever the global random state.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

__all__ = ["fill_doc", "BLOCKS"]

T = TypeVar("T", bound=Callable)

PROBLEM = """\
data : pandas.DataFrame or Data
    Long-format table, one row per observation (or a validated :class:`pymixnn.Data`; event
    records from :meth:`pymixnn.Data.from_nonmem` for a compartment or ODE model).
model : Model or str
    A :class:`pymixnn.Model` or the name of a named model ("onecpt_oral", "logistic",
    "gompertz", "asymptotic", "exp_growth", "emax", "sigmoid_emax", "linear", or a compartment
    model "pk1cpt_iv", "pk1cpt_oral", ... "pk3cpt_oral").
id, x, y : str
    Columns of the individual identifier, the regressor(s) of the structural function (a list
    for several, e.g. ``["Dose", "Time"]``) and the response. With a dynamic model on a
    DataFrame of NONMEM columns they rename ID, TIME and DV.
covariates : dict of str to list of str, optional
    Covariate model on the transformed parameters, ``{"V": ["Weight"]}`` (saemix's
    covariate.model); covariates are constant within an individual (time-varying ones only with
    event data). Non-numeric ones become one indicator per non-reference level.
dropna : bool, default False
    Drop the rows with a missing y (reported) instead of raising.
time_unit : {"s", "min", "h", "d", "w"}, optional
    For x columns given as dates (datetime64 or timestamps): they become the time elapsed since
    their earliest date in this unit (stated in the summary; ``predict(newdata)`` converts new
    dates the same way). Dates without it are an error.
init : dict of str to float, optional
    Initial fixed effects on the natural scale (override the model's ``init`` and self-start).
error : str, optional
    Overrides the model's error model: "constant", "proportional", "combined" or "exponential"
    (a dict by endpoint for event data with several endpoints).
omega : {"diagonal", "full"}, optional
    Overrides the model's random-effects covariance structure.
random : list of str, optional
    Overrides the parameters with a random effect. ``random=[]``: no individual random effects,
    a nonlinear regression by maximum likelihood (nlme's gnls; exact log-likelihood,
    ``loglik_method`` "exact"), or with ``levels=`` / ``spatial=`` carrying all of the random
    variation (nlme's gls with a spatial correlation).
transforms : str or dict of str to str, optional
    Overrides the model's transforms: one for all parameters or one per parameter ("identity",
    "log", "logit", "probit").
random_effects : str or law spec, default "gaussian"
    Law of the random effects: "gaussian", "mixture" (K Gaussian components), "flow" (a
    normalizing flow: multimodal or skewed laws), "latent_class", or a spec object
    :class:`pymixnn.Gaussian`, :class:`pymixnn.Mixture`, :class:`pymixnn.Flow`,
    :class:`pymixnn.LatentClass`.
n_components : int or "auto", optional
    Number of mixture components with ``random_effects="mixture"`` ("auto": K chosen by BIC).
context : list of str, optional
    Covariate columns a flow's law is conditioned on (a conditional flow), e.g.
    ``context=["scenario"]``; constant within an individual.
observation : str or family spec, default "gaussian"
    The observation model: "gaussian" (the model's error model), "poisson",
    "negative_binomial", "zero_inflated_poisson", "binomial", "bernoulli", "ordinal", a spec
    (``pymixnn.Poisson(link="identity")``, ``pymixnn.Ordinal(levels=[...])``),
    ``pymixnn.LogLikelihood(function, parameters={...})`` or a dict by endpoint. The structural
    function gives the family's linear predictor (log rate, logit of a probability, ...).
trials : str, optional
    Column with the number of trials of each binomial observation (e.g. the plant's number of
    leaves when y counts senescent leaves).
censoring : str, optional
    Column flagging left-censored observations (1: below the limit of quantification, y holding
    that limit; 0: observed), fitted by the M3 likelihood (Gaussian observations).
genotype : str, optional
    Column with each individual's genotype (constant within an individual): the rows of the
    marker matrix of ``genomic``.
genomic : Genomic, optional
    ``pymixnn.Genomic(markers, params=[...], prior="horseshoe" | "ridge")``: marker effects on
    the named parameters; the fit then has ``marker_effects``, ``top_markers()``,
    ``plot_manhattan()``, ``variance_explained``, ``genetic_values`` and
    ``predict_genotypes()``. Minibatches are then made of whole genotypes.
levels : list of Level, optional
    Grouping levels above or beside the individual (nested or crossed), e.g.
    ``[pymixnn.Level("plot", params=["A"])]``: Gaussian effects shared by the individuals of a
    group on the transformed parameters, reported as ``omega2.<level>.<p>`` rows with SEs and by
    ``res.level_effects(level)``; the log-likelihood integrates them out. Gaussian law,
    ``local="individual"``, no ``genomic=``.
spatial : Spatial, optional
    ``pymixnn.Spatial(params=["A"], coords=["Row", "Col"], kind=...)``: a Gaussian random field
    over the individuals' coordinates on the named transformed parameters: an exact Gaussian
    process (``kind="gp"``, up to 3,000 locations), a separable AR1 x AR1 field on a grid
    (``"ar1xar1"``) or a Matérn field by nearest neighbours (``"matern"``, 10^4 to 10^6
    locations). ``res.spatial_field()`` gives the field at the locations. The same restrictions
    as ``levels``."""

CONTROL = """\
batch_size : int, default 512
    Individuals per SVI minibatch.
max_steps : int, default 4000
    SVI steps at most (the ELBO's plateau stops it earlier).
lr : float, default 0.02
    Adam's step size, decaying from ``lr`` to ``lr / 20`` over ``max_steps``.
num_particles : int, default 4
    Draws per individual in each ELBO estimate.
refine : bool, default True
    Maximize the importance-weighted ELBO after SVI by Newton steps (maximum-likelihood
    accuracy).
is_samples : int, optional
    Importance samples per individual for ll.is and the SEs (default: from the data size).
likelihood : {"auto", "is", "gq"}, default "auto"
    How the marginal likelihood (refinement, SEs, reported log-likelihood) integrates the random
    effects out: importance sampling (saemix's ll.is), adaptive Gauss-Hermite quadrature
    (saemix's ll.gq, lme4's nAGQ: 25, 15 or 7 nodes per random effect for 1, 2 or 3 of them), or
    quadrature for one or two random effects unless the nodes would cost more than 2e7
    evaluations ("auto"; with three, the reported log-likelihood, and the SEs where the
    posteriors are wide, by the 7^3 rule wherever its 343 nodes are no more than ll.is's draws,
    unless ``is_samples`` is given).
device : {"cpu", "cuda", "cuda:N", "auto"}, default "cpu"
    Where torch computes.
dtype : {"float32", "float64"}, optional
    Floating-point precision (default: float64 on CPU, float32 on CUDA).
threads : int, optional
    Torch threads during the fit (default: 1 below 200,000 observations, where more threads
    only add contention).
seed : int, default 0
    Random seed of the fit: the same seed gives identical results, whatever the global random state.
progress : bool, default True
    Show a tqdm progress bar.
ode_rtol, ode_atol : float, default 1e-6, 1e-8
    Relative and absolute tolerances of the ODE solver (dopri5) of a :func:`pymixnn.ODEModel`
    (compartment models and linear ODEs are solved exactly).
local : {"individual", "amortized"}, default "individual"
    Variational parameters per individual, updated by Newton-type steps whenever its minibatch
    comes round, or one set-encoder network mapping each individual's records and covariates to
    a Gaussian over its random effects, trained with the population parameters (amortized VI;
    ``res.amortization`` gives the amortization gap per individual).
refine_steps : int, default 0
    With ``local="amortized"``: Newton steps per individual from the encoder's output before
    the refinement (semi-amortized).
gear : {"auto", "newton", "svi"}, default "auto"
    How the population parameters are estimated after the start values. ``"newton"``: Newton
    steps on the marginal log-likelihood (importance sampling or quadrature, re-centred local
    posteriors) straight from the Laplace-EM start, as FOCE/Laplace engines do: a few passes over
    the data; a genomic block is updated between its refinements. ``"svi"``: minibatch SVI first,
    then the same Newton refinement (latent classes, grouping levels, genomic blocks with one
    individual per genotype, encoders, GPUs). ``"auto"`` takes ``"newton"`` for up to 10^6
    individuals with a Gaussian law (a mixture's or flow's Gaussian stage too), per-individual
    local posteriors, no grouping level, no genomic block unless genotypes have several
    individuals, a closed-form model and the CPU, else
    ``"svi"`` (beyond 10^6, the largest N measured, SVI's steps first); ``res.run.gear`` says which
    ran. A Newton run that does not converge falls back to SVI (counted in ``res.run.fallbacks``
    as ``newton_gear_to_svi``).
distributed : bool, default False
    Data-parallel over the processes of an initialized ``torch.distributed`` group (started by
    ``torchrun``; gloo on the CPU): each process keeps the rows of its block of individuals, and
    every sum over individuals (log-likelihood, gradients, Hessians, the start's sums) is the
    sum of the processes' parts, added in rank order, so every process returns the same
    estimates. So far the Gaussian law by the Newton gear or by minibatch SVI (each process
    draws its own minibatches, theta's gradients summed), closed-form models, a genomic block by
    the Newton gear (the marker columns split between the processes too; each reads the whole
    marker matrix).
neural_steps : int, optional
    A model with neural terms (:class:`pymixnn.NeuralTerm`): the most steps of each training
    stage (the network stage and the joint one; the mechanistic stage of an ODE model a third of
    them). Default: ``max_steps``, at most 600 for a model solved by an ODE solver, where each
    step is a whole solve; early stopping on the held-out individuals may end a stage sooner.
    ``res.hybrid.stages`` records the steps run.
neural_starts : int, default 1
    A model with neural terms: how many times the whole staged fit runs, start k (0, 1, ...) with
    seed ``seed + k`` (the networks' initial weights, the minibatches, the held-out individuals
    all differ), the fit of highest log-likelihood kept (a network's training ends in a local
    optimum that depends on its start; the likelihood, not held-out data, chooses). Costs k fits;
    ``res.hybrid.starts`` lists each start's seed and log-likelihood.
shards : bool, default False
    With ``distributed=True``: each process passes only its own individuals' rows (read by
    :func:`pymixnn.read_shard` from a CSV or Parquet file), so that no process holds the whole
    table. The covariate design, the self-start and the sample sizes are taken from every
    process's part; with ``read_shard(by="range")`` the fit equals the fit of the whole table.
    Each process's Results hold its own individuals and the common population estimates. So far
    the Gaussian law, closed-form models with random effects, no genomic block, levels or
    spatial field."""


def _entries(block: str) -> dict[str, str]:
    """The numpydoc entries of a block by parameter name (``ode_rtol, ode_atol`` under both)."""
    out: dict[str, str] = {}
    for entry in re.split(r"\n(?=\S)", block):
        for name in entry.split(" : ")[0].split(","):
            out[name.strip()] = entry
    return out


#: every block a docstring can name: the whole problem, the whole settings, or one entry
BLOCKS: dict[str, str] = {"problem_parameters": PROBLEM, "control_parameters": CONTROL}
BLOCKS.update(_entries(CONTROL))


def fill_doc(obj: T) -> T:
    """Replace each line ``%(name)s`` of ``obj``'s docstring by the block ``BLOCKS[name]``, indented
    as that line; returns ``obj`` (a decorator)."""

    def block(match: re.Match) -> str:
        indent, name = match.group(1), match.group(2)
        return "\n".join(indent + line if line else line for line in BLOCKS[name].splitlines())

    obj.__doc__ = re.sub(r"^([ \t]*)%\((\w+)\)s[ \t]*$", block, obj.__doc__ or "", flags=re.M)
    return obj
