"""Random-effect laws in torch: log-density and sampling of eta, with all parameters in one flat vector.

Each law reads the Cholesky factor ``L`` of the model's omega block of theta and its own block
``raw`` of theta (empty for the Gaussian law):

* ``GaussianLaw``: eta ~ N(0, L L^T).
* ``MixtureLaw``: eta ~ sum_k w_k N(m_k, L_k L_k^T). ``raw`` = logits of w_2..w_K (w_1's logit is
  0) | offsets r_2..r_K (r_1 = 0) | log-Cholesky of L_2..L_K (L_1 = L; absent when the covariance is
  shared). Means are centred, m_k = r_k - sum_j w_j r_j, so E[eta] = 0 and mu stays the mean of phi.
* ``FlowLaw``: eta = L T(u), u ~ N(0, I), T a composition of ``pyro.distributions.transforms``
  layers (element-wise spline, then coupling or autoregressive layers separated by order
  reversals). ``raw`` is the flat vector of all the layers' parameters, evaluated with
  ``torch.func.functional_call`` so that theta stays one vector (SVI, refinement and the Fisher
  information treat every law alike). Pyro's transforms cache their last input/output pair; the
  caches are cleared before every evaluation because the same eta tensor is evaluated at many
  parameter values. The flow is initialized exactly at the identity map (last layers of the
  conditioner networks zero, spline derivatives 1), so the start is the Gaussian model.

``log_prob(L, raw, eta, context)`` takes eta of shape (..., B, d) and returns (..., B); context,
when the flow is conditional, is (B, c).
"""
from __future__ import annotations

import math

import numpy as np
import pyro.distributions.transforms as T
import torch
from torch.func import functional_call

from pymixnn.model.random_effects import Flow, Gaussian, Mixture

__all__ = ["GaussianLaw", "MixtureLaw", "FlowLaw", "build_law", "tril_from_raw", "raw_from_tril",
           "fit_gaussian_mixture", "fitted_law", "sample_fitted_law", "log_density_fitted_law"]

_LOG_2PI = math.log(2 * math.pi)
# pyro's rational spline adds min_derivative = 1e-3 to softplus(raw): raw = softplus^-1(0.999) gives
# knot derivatives 1 (the boundary knots are fixed at 0.999 by pyro, so the identity holds to ~1e-4)
_SOFTPLUS_INV_1 = math.log(math.expm1(0.999))


def tril_from_raw(raw: torch.Tensor, d: int, full: bool) -> torch.Tensor:
    """Cholesky factor from its log-Cholesky vector (full) or log standard deviations (diagonal)."""
    if not full:
        return torch.diag_embed(torch.exp(raw))
    rows, cols = torch.tril_indices(d, d, device=raw.device)
    L = torch.zeros(d, d, dtype=raw.dtype, device=raw.device).index_put((rows, cols), raw)
    diag = torch.diagonal(L)
    return L - torch.diag_embed(diag) + torch.diag_embed(torch.exp(diag))


def raw_from_tril(L: torch.Tensor, full: bool) -> torch.Tensor:
    d = L.shape[-1]
    if not full:
        return torch.log(torch.diagonal(L))
    rows, cols = torch.tril_indices(d, d, device=L.device)
    raw = L[rows, cols].clone()
    raw[rows == cols] = torch.log(raw[rows == cols])
    return raw


def _gaussian_log_prob(L: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    z = torch.linalg.solve_triangular(L, eta.unsqueeze(-1), upper=False).squeeze(-1)
    d = L.shape[-1]
    return -0.5 * (z**2).sum(-1) - torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1) - 0.5 * d * _LOG_2PI


class GaussianLaw:
    n_params = 0
    conditional = False

    def __init__(self, d: int):
        self.d = d

    def initial_raw(self, dtype, device) -> torch.Tensor:
        return torch.zeros(0, dtype=dtype, device=device)

    def log_prob(self, L, raw, eta, context=None):
        return _gaussian_log_prob(L, eta)

    def sample(self, L, raw, n: int, generator: torch.Generator, context=None) -> torch.Tensor:
        z = torch.randn(n, self.d, generator=generator, dtype=L.dtype).to(L.device)
        return z @ L.T


class MixtureLaw:
    conditional = False

    def __init__(self, spec: Mixture, d: int, full_omega: bool):
        self.spec, self.d, self.full = spec, d, full_omega
        self.K = int(spec.n_components)
        self.n_omega = d * (d + 1) // 2 if full_omega else d
        K = self.K
        self.n_params = (K - 1) + (K - 1) * d + (0 if spec.shared_omega else (K - 1) * self.n_omega)

    def split(self, raw: torch.Tensor):
        K, d = self.K, self.d
        logits = torch.cat([torch.zeros(1, dtype=raw.dtype, device=raw.device), raw[:K - 1]])
        offsets = torch.cat([torch.zeros(1, d, dtype=raw.dtype, device=raw.device),
                             raw[K - 1:(K - 1) * (1 + d)].reshape(K - 1, d)])
        rest = raw[(K - 1) * (1 + d):]
        return logits, offsets, rest

    def components(self, L: torch.Tensor, raw: torch.Tensor):
        """Weights (K,), centred means (K, d), Cholesky factors (K, d, d)."""
        logits, offsets, rest = self.split(raw)
        w = torch.softmax(logits, 0)
        means = offsets - (w.unsqueeze(-1) * offsets).sum(0)
        if self.spec.shared_omega:
            trils = L.expand(self.K, self.d, self.d)
        else:
            others = [tril_from_raw(rest[k * self.n_omega:(k + 1) * self.n_omega], self.d, self.full)
                      for k in range(self.K - 1)]
            trils = torch.stack([L, *others])
        return w, means, trils

    def initial_raw_from(self, L: torch.Tensor, weights, means, covariances) -> torch.Tensor:
        """raw from component weights/means/covariances (e.g. an EM fit), component 1 = base."""
        w = torch.as_tensor(weights, dtype=L.dtype, device=L.device)
        m = torch.as_tensor(means, dtype=L.dtype, device=L.device)
        parts = [torch.log(w[1:] / w[0]), (m[1:] - m[0]).flatten()]
        if not self.spec.shared_omega:
            for k in range(1, self.K):
                C = torch.as_tensor(covariances[k], dtype=L.dtype, device=L.device)
                if not self.full:
                    C = torch.diag(torch.diagonal(C))
                parts.append(raw_from_tril(torch.linalg.cholesky(C), self.full))
        return torch.cat(parts)

    def log_prob(self, L, raw, eta, context=None):
        w, means, trils = self.components(L, raw)
        terms = [torch.log(w[k]) + _gaussian_log_prob(trils[k], eta - means[k]) for k in range(self.K)]
        return torch.logsumexp(torch.stack(terms), 0)

    def responsibilities(self, L, raw, eta) -> torch.Tensor:
        w, means, trils = self.components(L, raw)
        terms = torch.stack([torch.log(w[k]) + _gaussian_log_prob(trils[k], eta - means[k])
                             for k in range(self.K)], -1)
        return torch.softmax(terms, -1)

    def sample(self, L, raw, n: int, generator: torch.Generator, context=None) -> torch.Tensor:
        w, means, trils = self.components(L, raw)
        k = torch.multinomial(w.detach().cpu(), n, replacement=True, generator=generator).to(L.device)
        z = torch.randn(n, self.d, generator=generator, dtype=L.dtype).to(L.device)
        return means[k] + (trils[k] @ z.unsqueeze(-1)).squeeze(-1)


class _FlowNet(torch.nn.Module):
    """The flow T as a module: ``forward(v, context, inverse)``."""

    def __init__(self, spec: Flow, d: int, context_dim: int):
        super().__init__()
        self.d, self.context_dim = d, context_dim
        hidden = list(spec.hidden)
        bins, bound = spec.count_bins, float(spec.bound)
        layers = []
        if context_dim:
            layers.append(T.conditional_spline(d, context_dim, hidden_dims=hidden, count_bins=bins,
                                               bound=bound))
        else:
            layers.append(T.Spline(d, count_bins=bins, bound=bound))
        if d >= 2:
            for _ in range(spec.n_layers):
                if context_dim:
                    if spec.kind == "affine_autoregressive":
                        layers.append(T.conditional_affine_autoregressive(d, context_dim, hidden_dims=hidden))
                    else:
                        layers.append(T.conditional_spline_autoregressive(
                            d, context_dim, hidden_dims=hidden, count_bins=bins, bound=bound))
                elif spec.kind == "spline_coupling":
                    layers.append(T.spline_coupling(d, hidden_dims=hidden, count_bins=bins, bound=bound))
                elif spec.kind == "spline_autoregressive":
                    layers.append(T.spline_autoregressive(d, hidden_dims=hidden, count_bins=bins,
                                                          bound=bound))
                else:
                    layers.append(T.affine_autoregressive(d, hidden_dims=hidden))
        self.layers = torch.nn.ModuleList(layers)
        self.reverse = list(range(d - 1, -1, -1))
        self._set_identity()

    # -- identity initialization -----------------------------------------------------------------
    def _set_identity(self) -> None:
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
                    self._identity_net(net, spline=not isinstance(
                        layer, (T.AffineAutoregressive, T.ConditionalAffineAutoregressive)))

    def _identity_net(self, net: torch.nn.Module, spline: bool) -> None:
        last = net.layers[-1]
        last.weight.zero_()
        if not spline:
            last.bias.zero_()
            return
        # which output entries are the spline derivatives: probe with bias = 0, 1, 2, ...
        last.bias.copy_(torch.arange(last.bias.numel(), dtype=last.bias.dtype))
        x = torch.zeros(1, getattr(net, "input_dim"), dtype=last.bias.dtype)
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
        out = []
        for k, layer in enumerate(self.layers):
            out.append(layer.condition(context) if context is not None else layer)
            if k >= 1 and k < len(self.layers) - 1:
                out.append("reverse")  # the next layer conditions on the other coordinates
        if out.count("reverse") % 2:
            out.append("reverse")  # restore the order: the identity-initialized flow is the identity
        return out

    def forward(self, v: torch.Tensor, context: torch.Tensor | None = None, inverse: bool = True):
        """inverse=True: (u = T^-1(v), log|det dT/du|); inverse=False: T(v)."""
        # pyro's affine autoregressive inverse allocates its work tensors in the default dtype
        before = torch.get_default_dtype()
        torch.set_default_dtype(v.dtype)
        try:
            return self._evaluate(v, context, inverse)
        finally:
            torch.set_default_dtype(before)

    def _evaluate(self, v, context, inverse):
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


class FlowLaw:
    """eta = L T(u); ``raw`` holds T's parameters (flattened, in ``named_parameters`` order)."""

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

    def initial_raw(self, dtype, device) -> torch.Tensor:
        return self._identity.to(dtype=dtype, device=device).clone()

    def penalty(self, raw: torch.Tensor) -> torch.Tensor:
        """0.5 * penalty * ||raw - identity||^2 (the ridge towards the Gaussian model); the weight
        is the spec's, or the one chosen by cross-validation (``penalty_weight``)."""
        return 0.5 * self.penalty_weight * ((raw - self._identity.to(raw)) ** 2).sum()

    def _params(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        out, start = {}, 0
        for name, shape, size in zip(self.names, self.shapes, self.sizes):
            out[name] = raw[start:start + size].view(shape)
            start += size
        return out

    def inverse(self, raw, v, context=None):
        return functional_call(self.net, self._params(raw), (v, context), {"inverse": True})

    def transform(self, raw, u, context=None):
        return functional_call(self.net, self._params(raw), (u, context), {"inverse": False})

    def log_prob(self, L, raw, eta, context=None):
        v = torch.linalg.solve_triangular(L, eta.unsqueeze(-1), upper=False).squeeze(-1)
        u, log_det = self.inverse(raw, v, context)
        return (-0.5 * (u**2).sum(-1) - 0.5 * self.d * _LOG_2PI - log_det
                - torch.log(torch.diagonal(L)).sum())

    def sample(self, L, raw, n: int, generator: torch.Generator, context=None) -> torch.Tensor:
        u = torch.randn(n, self.d, generator=generator, dtype=L.dtype).to(L.device)
        return self.transform(raw, u, context) @ L.T


def build_law(spec, d: int, full_omega: bool, *, context_dim: int = 0, dtype=torch.float64,
              device=torch.device("cpu"), seed: int = 0):
    if isinstance(spec, Gaussian):
        return GaussianLaw(d)
    if isinstance(spec, Mixture):
        return MixtureLaw(spec, d, full_omega)
    if isinstance(spec, Flow):
        return FlowLaw(spec, d, context_dim, dtype=dtype, device=device, seed=seed)
    raise TypeError(f"unknown random-effects law {spec!r}")


def fit_gaussian_mixture(x: torch.Tensor, K: int, generator: torch.Generator, *, shared: bool = False,
                         n_starts: int = 5, iters: int = 200):
    """EM for a K-component Gaussian mixture on points x (n, d); the best of ``n_starts`` k-means++
    starts. Returns weights (K,), means (K, d), covariances (K, d, d); used to start a mixture law
    from draws of the Gaussian fit's local posteriors."""
    n, d = x.shape
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    scale = x.var(0).mean().clamp_min(1e-12)
    best, best_ll = None, -math.inf
    for _ in range(n_starts):
        centres = [x[torch.randint(n, (1,), generator=generator).item()]]
        for _ in range(1, K):  # k-means++ seeding
            dist2 = torch.stack([((x - c) ** 2).sum(-1) for c in centres]).amin(0)
            pick = torch.multinomial((dist2 / dist2.sum()).cpu(), 1, generator=generator).item()
            centres.append(x[pick])
        means = torch.stack(centres)
        cov = (x.T.cov() + 1e-6 * scale * eye).expand(K, d, d).clone()
        w = torch.full((K,), 1.0 / K, dtype=x.dtype, device=x.device)
        ll_old = -math.inf
        for _ in range(iters):
            log_r = torch.stack([torch.log(w[k]) + _gaussian_log_prob(torch.linalg.cholesky(cov[k]),
                                                                       x - means[k]) for k in range(K)], -1)
            ll = float(torch.logsumexp(log_r, -1).sum())
            r = torch.softmax(log_r, -1)
            nk = r.sum(0).clamp_min(1e-10)
            w = nk / n
            means = (r.T @ x) / nk.unsqueeze(-1)
            cov = torch.stack([((r[:, k:k + 1] * (x - means[k])).T @ (x - means[k])) / nk[k]
                               for k in range(K)]) + 1e-6 * scale * eye
            if shared:
                cov = (w.view(K, 1, 1) * cov).sum(0).expand(K, d, d).clone()
            if ll - ll_old < 1e-8 * abs(ll):
                break
            ll_old = ll
        if ll > best_ll:
            best_ll, best = ll, (w, means, cov)
    return best


def fitted_law(record: dict, theta, *, dtype=torch.float64):
    """Rebuild a fitted law from ``Estimation.law`` and theta: (law, L, raw) in torch."""
    from pymixnn.model.random_effects import from_dict

    spec = from_dict(record.get("spec"))
    theta = torch.as_tensor(theta, dtype=dtype)
    o0, o1 = record["omega_slice"]
    l0, l1 = record["law_slice"]
    full = bool(record["full_omega"])
    raw_omega = theta[o0:o1]
    d = int(round((math.sqrt(8 * raw_omega.numel() + 1) - 1) / 2)) if full else raw_omega.numel()
    context = record.get("context")
    context_dim = 0 if not context else len(context[0])
    law = build_law(spec, d, full, context_dim=context_dim, dtype=dtype, seed=int(record.get("seed", 0)))
    return law, tril_from_raw(raw_omega, d, full), theta[l0:l1]


def sample_fitted_law(record: dict, theta, n: int, seed: int):
    """n draws of eta from the fitted law, centred (E[eta] of the fit subtracted), numpy (n, d).
    A conditional flow is sampled at the contexts of randomly chosen fitted individuals."""
    law, L, raw = fitted_law(record, theta)
    gen = torch.Generator().manual_seed(int(seed))
    context = None
    if getattr(law, "conditional", False):
        ctx = torch.as_tensor(record["context"], dtype=L.dtype)
        context = ctx[torch.randint(ctx.shape[0], (n,), generator=gen)]
    with torch.no_grad():
        eta = law.sample(L, raw, n, gen, context)
    return eta.numpy() - np.asarray(record.get("shift", np.zeros(eta.shape[1])))


def log_density_fitted_law(record: dict, theta, eta_centred):
    """Joint log-density of centred eta points (numpy (n, d)) under the fitted law (not for
    conditional flows, whose density depends on the covariates)."""
    law, L, raw = fitted_law(record, theta)
    if getattr(law, "conditional", False):
        raise ValueError("the law of a conditional flow depends on its context covariates")
    shift = torch.as_tensor(record.get("shift", np.zeros(L.shape[0])), dtype=L.dtype)
    points = torch.as_tensor(np.asarray(eta_centred, float), dtype=L.dtype) + shift
    with torch.no_grad():
        return law.log_prob(L, raw, points).numpy()
