"""A normalizing-flow law: eta = L T(u), u ~ N(0, I).

T is a composition of ``pyro.distributions.transforms`` layers (element-wise spline, then coupling
or autoregressive layers separated by order reversals). ``raw`` is the flat vector of all the
layers' parameters, evaluated with ``torch.func.functional_call`` so that theta stays one vector
(SVI, refinement and the Fisher information treat every law alike). Pyro's transforms cache their
last input/output pair; the caches are cleared before every evaluation because the same eta tensor
is evaluated at many parameter values. The flow is initialized exactly at the identity map (last
layers of the conditioner networks zero, spline derivatives 1), so the start is the Gaussian model;
it is then fitted on cached importance draws of the Gaussian fit with its ridge weight chosen by
cross-validation (deconvolution.py), and refined by L-BFGS over its many parameters.
"""

from __future__ import annotations

import math
import types
from typing import Any

import torch
from torch.func import functional_call

from pymixnn.inference.laws.base import LOG_2PI, LawPlugin
from pymixnn.inference.rows import Rows, omega_values
from pymixnn.model.random_effects import Flow

__all__ = ["FlowLaw", "FLOW_START_ROWS", "FLOW_DRAWS"]

CPU = torch.device("cpu")

# pyro's rational spline adds min_derivative = 1e-3 to softplus(raw): raw = softplus^-1(0.999) gives
# knot derivatives 1 (the boundary knots are fixed at 0.999 by pyro, so the identity holds to ~1e-4)
_SOFTPLUS_INV_1 = math.log(math.expm1(0.999))
# individuals (at most) whose cached draws fit the flow's start; a fit with no more individuals
# than this, all in one SVI batch, skips the flow's SVI stage (the start already used every one)
FLOW_START_ROWS = 2000
# draws per individual in the flow's refinement and Fisher information (second derivatives through
# the flow are costly; the proposals follow the posterior mode, so 64 suffice)
FLOW_DRAWS = 64


def _affine_inverse(self, y: torch.Tensor) -> torch.Tensor:
    """pyro's ``AffineAutoregressive._inverse`` with its work tensors in y's dtype (pyro allocates
    them in the default dtype, which a float64 flow would otherwise have to switch process-wide)."""
    from pyro.distributions.transforms.utils import clamp_preserve_gradients

    x = [torch.zeros(y.size()[:-1], dtype=y.dtype, device=y.device)] * y.size(-1)
    for idx in self.arn.permutation:
        mean, log_scale = self.arn(torch.stack(x, dim=-1))
        inverse_scale = torch.exp(
            -clamp_preserve_gradients(
                log_scale[..., idx], min=self.log_scale_min_clip, max=self.log_scale_max_clip
            )
        )
        x[idx] = (y[..., idx] - mean[..., idx]) * inverse_scale
    x = torch.stack(x, dim=-1)
    self._cached_log_scale = clamp_preserve_gradients(
        log_scale, min=self.log_scale_min_clip, max=self.log_scale_max_clip
    )
    return x


class _FlowNet(torch.nn.Module):
    """The flow T as a module: ``forward(v, context, inverse)``."""

    def __init__(self, spec: Flow, d: int, context_dim: int):
        super().__init__()
        import pyro.distributions.transforms as T  # Pyro: imported by the fits with a flow

        self.d, self.context_dim = d, context_dim
        hidden = list(spec.hidden)
        bins, bound = spec.count_bins, float(spec.bound)
        layers = []
        if context_dim:
            layers.append(
                T.conditional_spline(d, context_dim, hidden_dims=hidden, count_bins=bins, bound=bound)
            )
        else:
            layers.append(T.Spline(d, count_bins=bins, bound=bound))
        if d >= 2:
            for _ in range(spec.n_layers):
                layers.append(self._layer(spec, d, context_dim, hidden, bins, bound))
        self.layers = torch.nn.ModuleList(layers)
        self.reverse = list(range(d - 1, -1, -1))
        self._set_identity()

    @staticmethod
    def _layer(spec: Flow, d: int, context_dim: int, hidden: list, bins: int, bound: float):
        import pyro.distributions.transforms as T  # Pyro: imported by the fits with a flow

        if context_dim:
            if spec.kind == "affine_autoregressive":
                return T.conditional_affine_autoregressive(d, context_dim, hidden_dims=hidden)
            return T.conditional_spline_autoregressive(
                d, context_dim, hidden_dims=hidden, count_bins=bins, bound=bound
            )
        if spec.kind == "spline_coupling":
            return T.spline_coupling(d, hidden_dims=hidden, count_bins=bins, bound=bound)
        if spec.kind == "spline_autoregressive":
            return T.spline_autoregressive(d, hidden_dims=hidden, count_bins=bins, bound=bound)
        return T.affine_autoregressive(d, hidden_dims=hidden)

    # -- identity initialization -----------------------------------------------------------------
    def _set_identity(self) -> None:
        import pyro.distributions.transforms as T  # Pyro: imported by the fits with a flow

        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, T.Spline):
                    module.unnormalized_widths.zero_()
                    module.unnormalized_heights.zero_()
                    module.unnormalized_derivatives.fill_(_SOFTPLUS_INV_1)
                    if getattr(module, "unnormalized_lambdas", None) is not None:
                        module.unnormalized_lambdas.zero_()
            for layer in self.layers:
                net = getattr(layer, "nn", None) or getattr(layer, "arn", None)
                if net is None and hasattr(layer, "upper_spline"):
                    net = layer.upper_spline.nn
                if net is not None:
                    self._identity_net(
                        net,
                        spline=not isinstance(
                            layer, (T.AffineAutoregressive, T.ConditionalAffineAutoregressive)
                        ),
                    )

    def _identity_net(self, net: torch.nn.Module, spline: bool) -> None:
        last = net.layers[-1]
        last.weight.zero_()
        if not spline:
            last.bias.zero_()
            return
        # which output entries are the spline derivatives: probe with bias = 0, 1, 2, ...
        last.bias.copy_(torch.arange(last.bias.numel(), dtype=last.bias.dtype))
        x = torch.zeros(1, net.input_dim, dtype=last.bias.dtype)
        if getattr(net, "context_dim", 0) and hasattr(net, "masks"):
            out = net(x, context=torch.zeros(1, net.context_dim, dtype=x.dtype))
        else:
            out = net(x)
        derivative_entries = out[2].detach().round().long().flatten()
        last.bias.zero_()
        last.bias[derivative_entries] = _SOFTPLUS_INV_1

    # -- evaluation ------------------------------------------------------------------------------
    def _clear_caches(self) -> None:
        for module in self.modules():
            if hasattr(module, "_cached_x_y"):
                module._cached_x_y = None, None

    def _transforms(self, context):
        import pyro.distributions.transforms as T  # Pyro: imported by the fits with a flow

        out = []
        for k, layer in enumerate(self.layers):
            t = layer.condition(context) if context is not None else layer
            if isinstance(t, T.AffineAutoregressive) and not t.stable:
                t._inverse = types.MethodType(_affine_inverse, t)
            out.append(t)
            if k >= 1 and k < len(self.layers) - 1:
                out.append("reverse")  # the next layer conditions on the other coordinates
        if out.count("reverse") % 2:
            out.append("reverse")  # restore the order: the identity-initialized flow is the identity
        return out

    def forward(self, v: torch.Tensor, context: torch.Tensor | None = None, inverse: bool = True):
        """inverse=True: (u = T^-1(v), log|det dT/du|); inverse=False: T(v)."""
        self._clear_caches()
        if context is not None:
            context = context.expand(v.shape[:-1] + context.shape[-1:])
        transforms = self._transforms(context)
        if not inverse:
            x = v
            for t in transforms:
                x = x[..., self.reverse] if t == "reverse" else t(x)
            return x
        y, log_det = v, torch.zeros(v.shape[:-1], dtype=v.dtype, device=v.device)
        for t in reversed(transforms):
            if t == "reverse":
                y = y[..., self.reverse]  # the reversal is its own inverse
                continue
            x = t._inv_call(y)
            ld = t.log_abs_det_jacobian(x, y)
            if ld.dim() == x.dim():
                ld = ld.sum(-1)
            log_det = log_det + ld
            y = x
        return y, log_det


class FlowLaw(LawPlugin):
    """eta = L T(u); ``raw`` holds T's parameters (flattened, in ``named_parameters`` order)."""

    refiner = "lbfgs"
    se_note = "; the flow's own parameters held fixed (SEs conditional on the shape of the fitted law)"
    # its start is fitted on draws of the Gaussian fit's local posteriors, wherever they come
    # from (bimodal benchmark, N = 500: ll -13716.30 after the Newton gear, -13716.44 after SVI)
    newton_gear = True

    def __init__(self, spec: Flow, d: int, context_dim: int, *, dtype, device, seed: int):
        self.spec, self.d, self.context_dim = spec, d, context_dim
        self.conditional = context_dim > 0
        self.penalty_weight = float(spec.penalty) if spec.penalty != "cv" else 1.0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # hidden-layer initial weights and autoregressive orders
            self.net = _FlowNet(spec, d, context_dim).to(dtype=dtype, device=device)
        self.names = [n for n, _ in self.net.named_parameters()]
        self.shapes = [p.shape for _, p in self.net.named_parameters()]
        self.sizes = [p.numel() for _, p in self.net.named_parameters()]
        self.n_params = sum(self.sizes)
        self._identity = torch.cat([p.detach().flatten() for p in self.net.parameters()])
        for p in self.net.parameters():
            p.requires_grad_(False)

    @classmethod
    def build(
        cls,
        spec,
        d: int,
        full_omega: bool,
        *,
        context_dim: int = 0,
        dtype=torch.float64,
        device=CPU,
        seed: int = 0,
    ) -> FlowLaw:
        return cls(spec, d, context_dim, dtype=dtype, device=device, seed=seed)

    def initial_raw(self, dtype, device) -> torch.Tensor:
        return self._identity.to(dtype=dtype, device=device).clone()

    def set_penalty(self, weight: float) -> None:
        """The ridge weight used from now on (the spec's, or the one chosen by cross-validation)."""
        self.penalty_weight = float(weight)

    def penalty(self, raw: torch.Tensor, weight: float | None = None) -> torch.Tensor:
        """0.5 * weight * ||raw - identity||^2 (the ridge towards the Gaussian model); ``weight``
        defaults to ``penalty_weight``."""
        weight = self.penalty_weight if weight is None else weight
        return 0.5 * weight * ((raw - self._identity.to(raw)) ** 2).sum()

    def _params(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        out, start = {}, 0
        for name, shape, size in zip(self.names, self.shapes, self.sizes):
            out[name] = raw[start : start + size].view(shape)
            start += size
        return out

    def inverse(self, raw, v, context=None):
        return functional_call(self.net, self._params(raw), (v, context), {"inverse": True})

    def transform(self, raw, u, context=None):
        return functional_call(self.net, self._params(raw), (u, context), {"inverse": False})

    def log_prob(self, L, raw, eta, context=None):
        v = torch.linalg.solve_triangular(L, eta.unsqueeze(-1), upper=False).squeeze(-1)
        u, log_det = self.inverse(raw, v, context)
        return -0.5 * (u**2).sum(-1) - 0.5 * self.d * LOG_2PI - log_det - torch.log(torch.diagonal(L)).sum()

    def sample(self, L, raw, n: int, generator: torch.Generator, context=None) -> torch.Tensor:
        u = torch.randn(n, self.d, generator=generator, dtype=L.dtype).to(L.device)
        return self.transform(raw, u, context) @ L.T

    # ---- stages ------------------------------------------------------------------------------
    def start(
        self,
        program: Any,
        theta: torch.Tensor,
        local: Any,
        *,
        generator: torch.Generator,
        seed: int,
        fallbacks: Any,
    ) -> tuple[torch.Tensor, dict]:
        """Fitted on cached importance draws of the Gaussian fit (deconvolution.py), from the
        identity, with its ridge weight chosen by cross-validation over individuals unless given;
        the local posteriors move with the fitted shift."""
        from pymixnn.inference import deconvolution as dc

        theta, _ = super().start(program, theta, local, generator=generator, seed=seed, fallbacks=fallbacks)
        device = theta.device
        if self.spec.penalty == "cv":
            best, table, x = dc.choose_penalty(
                program,
                theta,
                local,
                grid=self.spec.penalty_grid,
                folds=self.spec.cv_folds,
                seed=seed,
                max_individuals=FLOW_START_ROWS,
                fallbacks=fallbacks,
            )
            self.set_penalty(best)
            info = dict(penalty=best, penalty_cv=table)
        else:
            gen = torch.Generator().manual_seed(seed)
            rows = torch.randperm(program.n_individuals, generator=gen)[:FLOW_START_ROWS].sort().values
            cache = dc.cache_draws(program, theta, local, n_samples=100, seed=seed, rows=rows.to(device))
            x = dc.fit_law(
                program,
                dc.pack(program, theta),
                cache,
                torch.arange(rows.shape[0], device=device),
                float(self.spec.penalty),
                fallbacks=fallbacks,
            )
            info = dict(penalty=float(self.spec.penalty))
        return dc.apply_law_fit(program, theta, local, x), info

    def skip_svi(self, n_individuals: int, batch_size: int, after_svi: bool = False) -> bool:
        """A flow already fitted on the cached draws of every individual skips SVI when the whole
        data set fits in one batch: the importance-weighted refinement then finishes the job."""
        return n_individuals <= FLOW_START_ROWS and batch_size >= n_individuals

    def refine_draws(self, k_opt: int) -> int:
        return min(k_opt, FLOW_DRAWS)

    # ---- moments and reported parameters -----------------------------------------------------
    def moments(self, L, raw, *, n: int, seed: int, context=None):
        """A fixed Monte Carlo sample of n antithetic base draws (a conditional flow at the
        contexts of randomly chosen individuals), differentiable in L and raw."""
        gen = torch.Generator().manual_seed(seed)
        u = torch.randn(n // 2, self.d, generator=gen, dtype=L.dtype).to(L.device)
        u = torch.cat([u, -u])
        ctx = None
        if self.conditional:
            rows = torch.randint(context.shape[0], (u.shape[0],), generator=gen).to(L.device)
            ctx = context[rows]
        eta = self.transform(raw, u, ctx) @ L.T
        mean = eta.mean(0)
        centred = eta - mean
        return mean, centred.T @ centred / (eta.shape[0] - 1)

    def law_rows(self, rows: Rows, program: Any) -> None:
        """The covariance of eta under the fitted law (a flow couples every pair)."""
        rows.omega([program.params[p] for p in program.random_index], True)

    def law_values(self, program: Any, theta: torch.Tensor, cov: torch.Tensor) -> list:
        return omega_values(cov, True)

    # ---- Fisher information --------------------------------------------------------------------
    def fisher_index(self, layout: Any) -> list[int] | None:
        """mu, beta, omega and error only: the flow's own parameters (hundreds) are held fixed."""
        return list(range(layout.core.stop))

    def fisher_draws(self, k_opt: int, n_individuals: int = 0) -> int:
        return min(k_opt, FLOW_DRAWS)
