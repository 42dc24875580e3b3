"""The offsets of grouping levels or a spatial field in a model without individual random effects
(``random=[]``, regression.py): each individual's log-likelihood ll_i(phi) is exact, so

- its pseudo data about the offset (LevelBlock.pseudo) are the Laplace working response
  z_i = o_i + Lam_i^-1 g_i with precision Lam_i = -d2 ll_i / d phi2 and score g_i = d ll_i / d phi at
  the current offsets, in the level parameters' coordinates (exact for a model linear in phi with
  Gaussian observations: Wheat2's gls);
- the expectation of ll_i over the offsets' posterior N(o_i, V_i), which the refinement
  maximizes, is taken by the unscented rule: the 2c points o_i +- sqrt(c) L_i e_j (L_i L_i' = V_i),
  exact for a ll_i polynomial of degree 3 in phi (a Gaussian linear model: E[(y - f)^2] gets its
  variance term, without which the residual variance would come out too small);
- with Gaussian observations and a constant error a, the levels' ML moves log a with them
  (residual_moments): the field and the residual variance trade off (the nugget against the
  sill), which alternating them resolves slowly and, on a multimodal likelihood, towards another
  maximum."""

from __future__ import annotations

import math

import torch

from pymixnn.inference.autodiff import batched_grad
from pymixnn.inference.fields import field_raw_start

# a dense gp's candidate start ranges without a range_init, in median distances between its
# locations (start_ranges): a spherical kernel's likelihood has several maxima in the range (Wheat2:
# from a third of the median, range 14.2 and ll -627.89; from the best candidate 34.1 and -623.79;
# nlme's best, 27.2 and -623.67, from range_init=28)
START_RANGES = (1 / 8, 1 / 4, 1 / 3, 1 / 2, 1.0, 2.0)

__all__ = [
    "phi_loglik",
    "offset_score",
    "direct_pseudo",
    "offset_expectation",
    "residual_slice",
    "residual_moments",
    "start_ranges",
    "START_RANGES",
]


def phi_loglik(program, theta: torch.Tensor, delta: torch.Tensor, coords: list[int], idx) -> torch.Tensor:
    """ll_i at phi_i + delta_i, (..., B), for ``delta`` (..., B, c) in the coordinates ``coords``
    (phi with the current offsets: Program.phi_population)."""
    phi = program.phi_population(theta, idx)
    shift = torch.zeros(delta.shape[:-1] + phi.shape[-1:], dtype=phi.dtype, device=phi.device)
    shift[..., coords] = delta.to(phi.dtype)
    f = program.prediction(program.psi(program.record_phi(theta, phi + shift, idx)), idx)
    return program.cell_log_prob(theta, f, idx).sum(-1)


def offset_score(program, theta: torch.Tensor, coords: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Score g (N, c) and precision Lam = -Hessian (N, c, c) of each ll_i in phi's coordinates
    ``coords`` at the current offsets (float64; Lam's negative eigenvalues, where ll_i is not
    concave, set to 0: that direction carries no information, and g is kept in the others)."""
    theta = theta.detach()
    n, c = program.n_individuals, len(coords)
    with torch.enable_grad():
        delta = torch.zeros(n, c, dtype=program.dtype, device=program.device, requires_grad=True)
        ll = phi_loglik(program, theta, delta, coords, None).sum()
        (g,) = torch.autograd.grad(ll, delta, create_graph=True)
        basis = torch.eye(c, dtype=g.dtype, device=g.device).unsqueeze(1).expand(c, n, c).contiguous()
        rows = batched_grad(g, delta, basis)
        if rows is None:
            rows = torch.stack(
                [torch.autograd.grad(g[:, j].sum(), delta, retain_graph=True)[0] for j in range(c)]
            )
    H = rows.detach().permute(1, 0, 2).to(torch.float64)  # (N, c, c)
    vals, vecs = torch.linalg.eigh(-0.5 * (H + H.transpose(-1, -2)))
    keep = vals > 0
    Lam = (vecs * vals.clamp_min(0).unsqueeze(-2)) @ vecs.transpose(-1, -2)
    g64 = g.detach().to(torch.float64)
    g_in = (vecs * keep.to(g64.dtype).unsqueeze(-2)) @ (vecs.transpose(-1, -2) @ g64.unsqueeze(-1))
    return g_in.squeeze(-1), Lam


def offset_expectation(program, theta: torch.Tensor, idx) -> torch.Tensor:
    """E ll_i(o) - ll_i(o_i) over the offsets' posterior (B,), by the unscented rule (module
    docstring); Program.offset_var (N, c, c) in the coordinates Program.offset_coords."""
    coords = program.offset_coords
    V = program.offset_var if idx is None else program.offset_var[idx]
    c = V.shape[-1]
    eye = torch.eye(c, dtype=V.dtype, device=V.device)
    L = torch.linalg.cholesky(0.5 * (V + V.transpose(-1, -2)) + 1e-12 * eye)
    cols = math.sqrt(c) * L.permute(2, 0, 1)  # (c, B, c): column j of each L_i
    points = torch.cat([cols, -cols])  # (2c, B, c)
    zero = torch.zeros_like(points[:1])
    ll = phi_loglik(program, theta, torch.cat([zero, points]), coords, idx)  # (1 + 2c, B)
    return ll[1:].mean(0) - ll[0]


def direct_pseudo(block, theta: torch.Tensor) -> dict:
    """LevelBlock.pseudo without individual random effects: the working response from each ll_i's
    score and curvature in the offset at the block's coordinates (W unused)."""
    g, Lam = offset_score(block.program, theta, block.coords)
    base = torch.zeros_like(g)
    if block.offset is not None:
        base = block.offset.to(torch.float64)[:, block.coords]
    fixed_now = theta.detach().to(torch.float64)[block.fixed_index]
    return dict(w=base + block.X @ fixed_now, Ldes=g, Lam=Lam, W=None, mu=fixed_now)


def residual_slice(program) -> slice | None:
    """theta's entry log a of a Gaussian constant error (the levels fit it with them in a model
    without individual random effects); None for another observation or error model."""
    gaussian = program.family.name == "gaussian" and "censored" not in program.aux
    return program.layout.error if gaussian and program.model.error == "constant" else None


def residual_moments(block, theta: torch.Tensor):
    """joint_moments (levels_report.py) without individual random effects: the pseudo data's
    statistics as a function of log a', and minus twice the rest of the log-likelihood,
    -2 sum_i ll_i(o_i; a') = 2 n log a' + RSS / a'^2 (+ const): with ll_i quadratic in phi,
    Lam_i and g_i scale by (a / a')^2 with the pseudo-observations fixed, and the pseudo data's
    likelihood (LevelBlock._solve) plus sum_i ll_i(o_i) is the marginal likelihood. Returns that
    function and theta's log a (empty, the statistics fixed, for another observation model)."""
    program, f64 = block.program, torch.float64
    mom = block._moments(block.pseudo(theta, None))
    zero = torch.zeros((), dtype=f64, device=program.device)
    if block.joint_slice is None:
        return (lambda raw: (mom, zero)), torch.zeros(0, dtype=f64, device=program.device)
    raw0 = theta.detach().to(f64)[block.joint_slice]
    with torch.no_grad():
        ll = float(
            phi_loglik(program, theta.detach(), torch.zeros(program.n_individuals, 1), [0], None).sum()
        )
    n = float(program.mask.sum())
    a0 = float(raw0.exp()[0])
    rss = -2 * a0**2 * (ll + n * math.log(a0) + 0.5 * n * math.log(2 * math.pi))

    def moments_at(raw: torch.Tensor):
        scale = torch.exp(2 * (raw0[0] - raw[0]))  # (a / a')^2
        scaled = {k: v * scale for k, v in mom.items()}
        return scaled, 2 * n * raw[0] + rss * torch.exp(-2 * raw[0])

    return moments_at, raw0


def start_ranges(block, mom: dict, joint) -> list[torch.Tensor]:
    """The level block's start raw parameters with each dense gp's range (one without a
    range_init) the START_RANGES candidate of highest likelihood at the start (the pseudo data's,
    with ``joint``'s residual term at theta's log a)."""
    raw = list(block.raw)
    extra, mom_j = torch.zeros((), dtype=torch.float64), mom
    if joint is not None:
        mom_j, extra = joint[0](joint[1])
    for k, kind in enumerate(block.kinds):
        if kind != "gp" or block.range_init[k] is not None:
            continue
        median = float(block.dist[k][block.dist[k] > 0].median())
        best = None
        for factor in START_RANGES:
            trial = (
                raw[:k]
                + [field_raw_start(kind, raw[k][0], block.dist[k], None, median * factor)]
                + raw[k + 1 :]
            )
            with torch.no_grad():
                value = float(block._solve(block._priors(trial), mom_j, None)["ll"] - 0.5 * extra)
            if best is None or value > best[0]:
                best = (value, trial[k])
        raw[k] = best[1]
    return raw
