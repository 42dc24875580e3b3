"""Start values: fixed effects and error parameters by pooled maximum likelihood from each candidate
start (random effects at zero), the best kept; then Omega and the error parameters by a few
Laplace-EM iterations on a subsample (closed-form M-steps), so SVI starts in the right region
whatever the scale of the parameters. Block maximizations use L-BFGS."""

from __future__ import annotations

import math

import torch

from pymixnn.inference.fallbacks import Fallbacks
from pymixnn.inference.laplace import LocalPosteriors
from pymixnn.inference.laws.base import raw_from_tril
from pymixnn.inference.program import Program, integrates
from pymixnn.model import transforms as tr
from pymixnn.model.named import Model
from pymixnn.model.observation.continuous import Normal

__all__ = ["initial_theta", "maximize_block", "warmup", "best_start", "pooled_start", "start_warning"]


def initial_theta(program: Program, model: Model, init: dict[str, float]) -> torch.Tensor:
    """theta with mu from ``init``, beta 0, Omega = diag(0.3^2) scaled, error from pooled fit."""
    lay = program.layout
    theta = torch.zeros(lay.size, dtype=program.dtype, device=program.device)
    for p, name in enumerate(program.params):
        theta[p] = float(tr.inverse(program.transforms[p], torch.tensor(init[name], dtype=torch.float64)))
    sd = []
    for p in program.random_index:
        mu = float(theta[p])
        sd.append(0.3 if program.transforms[p] != "identity" else max(0.3 * abs(mu), 0.1))
    L = torch.diag(torch.tensor(sd, dtype=program.dtype, device=program.device))
    theta[lay.omega] = raw_from_tril(L, lay.full_omega)
    mask = program.mask
    y = program.y[mask].detach().cpu().numpy()
    aux = {k: v[mask].detach().cpu().numpy() for k, v in program.aux.items()}
    raw = program.family.initial_raw(model, y, aux)
    if raw:
        theta[lay.error] = torch.tensor(raw, dtype=program.dtype, device=program.device)
    return theta


def maximize_block(
    program: Program,
    theta: torch.Tensor,
    block: list[int],
    eta: torch.Tensor,
    idx: torch.Tensor | None,
    *,
    prior: bool,
    max_iter: int = 100,
    fallbacks: Fallbacks | None = None,
    optimizer: str = "torch",
) -> torch.Tensor:
    """Maximize the log-density over the entries ``block`` of theta with eta fixed:
    ``torch.optim.LBFGS`` (``optimizer="torch"``, autograd gradients) or the refinement's Newton
    iteration with the block's autograd Hessian (``"newton"``); a non-finite end point keeps the
    previous values (counted as ``start_block_nonfinite``).

    Two optimizers because any torch optimizer imports torch._dynamo when first built (1.3-1.5 s
    here): the Newton gear, which builds no other, takes Newton steps (theophylline, a fresh
    process: the first fit 1.9 s with torch's L-BFGS, 1.0 s with scipy's L-BFGS-B, whose import
    took 0.28 s more than these steps; the same estimates and SEs to 5 digits); the SVI gear
    imports torch._dynamo anyway for Adam, and keeps torch's L-BFGS, whose end points its SVI
    paths were measured from (the optimizers agree to their tolerance, but SGD amplifies any
    difference: an encoder's new-individual accuracy at N = 200 moved from 99% to 91% within
    0.1 SD)."""
    if optimizer == "newton":
        return _maximize_block_newton(program, theta, block, eta, idx, prior, max_iter, fallbacks)
    free = theta[block].clone().requires_grad_(True)
    opt = torch.optim.LBFGS([free], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")
    comm = program.comm  # a data-parallel fit: values and gradients summed over the processes
    rows = eta.shape[-2] if comm.world == 1 else comm.sum_float(float(eta.shape[-2]))

    def objective():
        full = theta.index_put((torch.tensor(block, device=theta.device),), free)
        value = program.log_likelihood(full, eta, idx).sum()
        if prior:
            value = value + program.log_prior(full, eta).sum()
        return -value / rows

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        if comm.world == 1:
            return loss
        (free.grad,) = comm.sum(free.grad)
        return torch.tensor(comm.sum_float(float(loss.detach())), dtype=loss.dtype)

    with torch.enable_grad():
        opt.step(closure)
    out = theta.clone()
    if torch.isfinite(free).all():
        out[block] = free.detach()
    elif fallbacks is not None:
        fallbacks.add("start_block_nonfinite")
    return out


class _Block:
    """The log-density over the entries ``block`` of theta (eta fixed) as the objective of
    :func:`newton.newton_maximize` (the refinement's Newton iteration: values, gradients and the
    block's autograd Hessian; a handful of entries)."""

    recentre = None
    hessian_rows = None

    def __init__(self, program, theta, block, eta, idx, prior):
        self.program, self.eta, self.idx, self.prior = program, eta, idx, prior
        self.base = theta.detach()
        self.index = torch.tensor(block, device=theta.device)

    def _value(self, x: torch.Tensor) -> torch.Tensor:
        full = self.base.index_put((self.index,), x)
        value = self.program.log_likelihood(full, self.eta, self.idx).sum()
        if self.prior:
            value = value + self.program.log_prior(full, self.eta).sum()
        return value

    # values, gradients and Hessians summed over the processes of a data-parallel fit (each
    # holds its own individuals' rows of eta and idx; collective.py)
    def total(self, x: torch.Tensor) -> float:
        with torch.no_grad():
            return self.program.comm.sum_float(float(self._value(x)))

    def value_and_gradient(self, x: torch.Tensor) -> tuple[float, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            value = self._value(x)
            (grad,) = torch.autograd.grad(value, x)
        comm = self.program.comm
        return comm.sum_float(float(value.detach())), comm.sum(grad)[0]

    def _newton_hessian(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self._value(x), x, create_graph=True)
            rows = [torch.autograd.grad(grad[j], x, retain_graph=True)[0] for j in range(x.shape[0])]
        return self.program.comm.sum(torch.stack(rows).detach())[0]


def _maximize_block_newton(program, theta, block, eta, idx, prior, max_iter, fallbacks) -> torch.Tensor:
    """:func:`maximize_block` by the refinement's Newton iteration (newton.newton_maximize)."""
    from pymixnn.inference.newton import newton_maximize

    objective = _Block(program, theta, block, eta, idx, prior)
    out = theta.clone()
    try:
        end = newton_maximize(objective, theta[block].detach(), max_iter=max_iter).theta
    except FloatingPointError:  # not finite at the start: nothing to maximize from
        end = None
    if end is not None and bool(torch.isfinite(end).all()) and math.isfinite(objective.total(end)):
        out[block] = end
    elif fallbacks is not None:
        fallbacks.add("start_block_nonfinite")
    return out


def warmup(
    program: Program,
    theta: torch.Tensor,
    local: LocalPosteriors,
    idx: torch.Tensor,
    iters: int,
    fallbacks: Fallbacks | None = None,
    optimizer: str = "torch",
    vi_iter: int = 2,
) -> torch.Tensor:
    """Variational EM on a subsample: local posteriors updated (laplace.py: Newton steps to the
    modes, then ``vi_iter`` variational steps), then closed-form updates of mu, beta (parameters
    with random effects) and Omega, and the error parameters (:func:`maximize_block` with
    ``optimizer``)."""
    lay = program.layout
    Z = program.Z[idx]
    error_block = list(range(lay.error.start, lay.error.stop))
    comm = program.comm  # a data-parallel fit: ``idx`` this process's rows of the subsample
    n_sub = idx.shape[0] if not comm.distributed else int(comm.sum_float(float(idx.shape[0])))
    for _ in range(iters):
        local.refresh(theta, idx, max_iter=20, vi_iter=vi_iter)
        m, L = local.loc[idx], local.scale_tril[idx]
        phi = program.phi_population(theta, idx)[:, program.random_index] + m
        resid = torch.empty_like(phi)
        for j, p in enumerate(program.random_index):
            on_p = (program.S[:, p] > 0).nonzero().flatten()
            X = torch.cat([torch.ones_like(phi[:, :1]), Z[:, on_p]], dim=1)
            # normal equations (LAPACK's least-squares drivers are not bit-reproducible here)
            coef = torch.linalg.solve(*comm.sum(X.T @ X, X.T @ phi[:, j])).flatten()
            theta[p] = coef[0]
            if on_p.numel():
                theta[lay.beta.start + on_p] = coef[1:]
            resid[:, j] = phi[:, j] - X @ coef
        (scatter,) = comm.sum(resid.T @ resid + (L @ L.transpose(-1, -2)).sum(0))
        omega = scatter / n_sub
        chol = torch.linalg.cholesky(
            omega + 1e-10 * torch.eye(omega.shape[0], dtype=omega.dtype, device=omega.device)
        )
        if lay.full_omega:
            theta[lay.omega] = raw_from_tril(chol, True)
        else:
            theta[lay.omega] = torch.log(torch.sqrt(torch.diagonal(omega)))
        if (
            error_block
            and optimizer == "newton"
            and (raw := _constant_error(program, theta, local.loc[idx], idx)) is not None
        ):
            theta[lay.error] = raw
        elif error_block:
            theta = maximize_block(
                program,
                theta,
                error_block,
                local.loc[idx],
                idx,
                prior=False,
                max_iter=20,
                fallbacks=fallbacks,
                optimizer=optimizer,
            )
    return theta


def _constant_error(program: Program, theta: torch.Tensor, eta: torch.Tensor, idx: torch.Tensor):
    """log a at its maximum given eta for a constant-error Gaussian model without censored rows,
    in closed form (the root mean squared residual): the Newton gear's warm-up M-step (its
    Newton iteration took 10-25 ms of passes per iteration: theophylline, Phenobarb); None for
    any other observation or error model."""
    family = program.family
    if type(family) is not Normal or family.error != "constant" or "censored" in program.aux:
        return None
    with torch.no_grad():
        phi = program.record_phi(theta, program.individual_phi(theta, eta, idx), idx)
        f = program.prediction(program.psi(phi), idx)
        mask = program.mask[idx]
        squares, count = program.comm.sum(
            torch.where(mask, (program.y[idx] - f) ** 2, torch.zeros_like(f)).sum(), mask.sum()
        )
        mse = squares / count
    raw = 0.5 * torch.log(mse).reshape(1)
    return raw if bool(torch.isfinite(raw).all()) and float(mse) > 0 else None


def best_start(
    program: Program,
    model: Model,
    init,
    idx: torch.Tensor,
    fallbacks: Fallbacks | None = None,
    optimizer: str = "torch",
    trained=None,
):
    """theta after the pooled fit from each candidate start (``init``: one dict of start values,
    or a list of (label, dict), the given one first); keeps the one with the highest pooled
    log-likelihood (random effects at zero), the given one unless another beats it by more than
    0.5 (a difference of optimizer tolerance is no reason to leave the user's start). Returns
    theta and one record per start, the kept one first. ``trained``: a whole theta to start
    from instead (a hybrid fit's trained values, pymixnn/hybrid.py), no pooled fit."""
    candidates = [("given", init)] if isinstance(init, dict) else list(init)
    if trained is not None:
        theta = torch.as_tensor(trained, dtype=program.dtype, device=program.device).clone()
        return theta, [dict(start="trained", pooled_loglik=math.nan, values=dict(candidates[0][1]))]
    eta0 = torch.zeros(idx.shape[0], program.layout.n_random, dtype=program.dtype, device=program.device)
    records, thetas = [], []
    for label, values in candidates:
        theta = pooled_start(program, initial_theta(program, model, values), idx, fallbacks, optimizer)
        with torch.no_grad():
            score = program.comm.sum_float(float(program.log_likelihood(theta, eta0, idx).sum()))
        thetas.append(theta)
        records.append(
            dict(
                start=label,
                pooled_loglik=score if math.isfinite(score) else -math.inf,
                values={k: float(v) for k, v in values.items()},
            )
        )
    best = 0
    for k in range(1, len(records)):
        if records[k]["pooled_loglik"] > records[best]["pooled_loglik"] + 0.5:
            best = k
    order = [best] + [k for k in range(len(records)) if k != best]
    return thetas[best], [records[k] for k in order]


def start_warning(starts: list[dict]) -> str | None:
    """The warning when best_start kept another start than the user's (None when it kept it)."""
    given = next((r for r in starts if r["start"] == "given"), None)
    if starts[0]["start"] == "given" or given is None:  # none: a hybrid fit's trained start
        return None
    return (
        "start values: the given start reached a pooled log-likelihood of "
        f"{given['pooled_loglik']:.2f} against {starts[0]['pooled_loglik']:.2f} "
        f"from the {starts[0]['start']}; the fit started from the {starts[0]['start']}"
    )


def pooled_start(
    program: Program,
    theta: torch.Tensor,
    idx: torch.Tensor,
    fallbacks: Fallbacks | None = None,
    optimizer: str = "torch",
) -> torch.Tensor:
    """Fixed effects and residual error by pooled maximum likelihood (random effects at zero).
    For a model solved by an ODE solver the residual error only, the fixed effects kept at the
    given start, as saemix and nlmixr2 take their initial estimates: the naive pooled fit of a
    nonlinear ODE can run along a ridge to a boundary (Michaelis-Menten, 200 individuals, start at
    the truth Vmax 10, Km 2: Vmax 1e9, Km 2e7, where every later solve failed)."""
    lay = program.layout
    block = [] if integrates(program.model) else list(range(lay.mu.start, lay.mu.stop))
    block += list(range(lay.error.start, lay.error.stop))
    if not block:
        return theta
    eta0 = torch.zeros(idx.shape[0], lay.n_random, dtype=program.dtype, device=program.device)
    if optimizer == "newton" and (raw := _constant_error(program, theta, eta0, idx)) is not None:
        # the Newton iteration from the error's maximum at the start's fixed effects: from the
        # generic start (a = 1) the error's steps took most of it (Phenobarb, a = 13: 12 steps)
        theta = theta.clone()
        theta[lay.error] = raw
    return maximize_block(
        program, theta, block, eta0, idx, prior=False, fallbacks=fallbacks, optimizer=optimizer
    )
