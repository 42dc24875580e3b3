"""The marginal likelihood's strategy, chosen in one place: importance sampling (t proposals,
saemix's ll.is) or adaptive Gauss-Hermite quadrature (saemix's ll.gq, lme4's nAGQ).

Both strategies are served by :class:`pymixnn.inference.importance.ImportanceSampler`: they share
the moving proposal centre, the chunking, the maximization and the derivatives, and differ only in
the points and weights of each individual's integral (``ImportanceSampler.draws``: antithetic
t draws, or the Q^d nodes of the tensor-product rule); ``quadrature=Q`` selects the second.
"""

from __future__ import annotations

from pymixnn.inference.importance import ImportanceSampler
from pymixnn.inference.laplace import LocalPosteriors
from pymixnn.inference.program import Program, integrates

__all__ = [
    "QUADRATURE_NODES",
    "ODE_QUADRATURE_NODES",
    "quadrature_nodes",
    "reported_quadrature_nodes",
    "marginal_likelihood",
]

# nodes per dimension of the adaptive Gauss-Hermite rule by number of random effects
QUADRATURE_NODES = {1: 25, 2: 15, 3: 7}
# "auto" for a model solved by an adaptive ODE solver, where a node costs a whole solve (the
# nodes are centred and scaled by each individual's posterior: a 7 x 7 rule integrates the
# Gaussian-times-polynomial part to degree 13; Michaelis-Menten, 100 individuals: the same
# estimates as 15 x 15 to 1e-4 at half the refinement time, user guide "Dynamics", ODE fits)
ODE_QUADRATURE_NODES = {1: 11, 2: 7, 3: 5}
# "auto" uses quadrature up to this many nodes x observations (one pass stays cheap)
QUADRATURE_MAX_CELLS = 20_000_000


def quadrature_nodes(n_random: int, n_obs: int, likelihood: str, integrates: bool = False) -> int:
    """Nodes per dimension for adaptive quadrature, 0 for importance sampling; ``integrates``:
    the model is solved by an ODE solver (fewer nodes under "auto")."""
    if likelihood == "is" or n_random not in QUADRATURE_NODES:
        return 0
    q = (ODE_QUADRATURE_NODES if integrates and likelihood == "auto" else QUADRATURE_NODES)[n_random]
    if likelihood == "gq":
        return q
    return q if n_random <= 2 and n_obs * q**n_random <= QUADRATURE_MAX_CELLS else 0


def reported_quadrature_nodes(
    n_random: int, n_obs: int, likelihood: str, integrates: bool, n_samples: int
) -> int:
    """Nodes per dimension for the reported log-likelihood (reporting.finish) when ll.is would
    take ``n_samples`` draws per individual: as :func:`quadrature_nodes`, and under "auto" with
    three random effects also the 7^3 rule (5^3 for an ODE model) wherever its nodes are no more
    than those draws (closed form: up to ~14,500 observations), so never a larger pass.

    The rule is the more accurate by far: at the maximum of the logistic simulation (N = 100 and
    1,000) and of theophylline, the 7^3 rule is within 0.0002, 0.004 and 0.0008 units of the
    converged rules (9^3-15^3), where ll.is's 5,000 draws have Monte Carlo SEs of 0.078, 0.25
    and 0.027 (and the 500 draws that N = 1,000 gets, 0.78); it took 0.020 s against ll.is's
    0.26 s at N = 100, and 0.005 s against 0.05 s on theophylline. The refinement keeps its
    draws (a rule of 343 nodes per individual costs more than its 20-200 draws: at N = 1,000 it
    took 2.8 s instead of 0.6 s); the Fisher information takes this rule only where the
    posteriors are wide (reporting.finish: Louis' identity on draws errs there)."""
    q = quadrature_nodes(n_random, n_obs, likelihood, integrates)
    if q or likelihood != "auto" or n_random != 3:
        return q
    q = (ODE_QUADRATURE_NODES if integrates else QUADRATURE_NODES)[3]
    return q if q**3 <= n_samples and n_obs * q**3 <= QUADRATURE_MAX_CELLS else 0


def marginal_likelihood(
    program: Program,
    local: LocalPosteriors,
    n_samples: int,
    seed: int,
    likelihood: str,
    hessian_individuals: int | None = None,
    individuals=None,
    *,
    reported: bool = False,
) -> ImportanceSampler:
    """The marginal likelihood at the local posteriors: importance sampling with ``n_samples``
    draws per individual, or adaptive quadrature when ``likelihood`` asks for it; over the
    subsample ``individuals`` (a tensor of rows) when given, else over all. ``reported``: the
    reported log-likelihood's (:func:`reported_quadrature_nodes`)."""
    d, ode = program.layout.n_random, integrates(program.model)
    if reported:
        q = reported_quadrature_nodes(d, program.n_obs, likelihood, ode, n_samples)
    else:
        q = quadrature_nodes(d, program.n_obs, likelihood, ode)
    if program.layout.n_random == 0:  # nothing to integrate: one draw gives ll_i exactly
        n_samples, q = 1, 0
    return ImportanceSampler(
        program,
        local.loc,
        local.scale_tril,
        n_samples=n_samples,
        seed=seed,
        quadrature=q,
        hessian_individuals=hessian_individuals,
        individuals=individuals,
    )
