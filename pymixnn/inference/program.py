"""The NLME log-density in torch: population parameters, random effects, structural model, error model.

Everything the Pyro program, the Laplace updates and importance sampling share lives here, so the
three compute the same density. The population parameters are one unconstrained vector ``theta``:

    mu (P, transformed scale) | beta (covariate effects) | omega (log-Cholesky of Omega, or log sd
    when diagonal) | observation-model parameters (log a, log b of the Gaussian error model; a
    negative binomial's log alpha, the ordinal thresholds' log gaps, ...) | law (parameters of a
    non-Gaussian random-effect law: mixture weights, means and covariances, or the flow's
    parameters; see laws/)

Shapes: individuals are padded to the longest series (``mask`` marks real observations); random
effects ``eta`` have shape ``(..., B, d)`` for a batch of B individuals and any leading sample axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pymixnn.data.table import Data
from pymixnn.inference.collective import Serial
from pymixnn.inference.laws import build_law, tril_from_raw
from pymixnn.inference.watch import (
    FunctionWatch,
    StructuralFunctionError,
    current_watch,
    first_line,
    function_name,
    watch_structural_function,
)
from pymixnn.model import transforms as tr
from pymixnn.model.covariates import CovariateDesign, record_deviations
from pymixnn.model.named import Model
from pymixnn.model.observation import Normal, Observation, bind
from pymixnn.model.random_effects import Gaussian

__all__ = [
    "Layout",
    "Program",
    "StructuralFunctionError",
    "FunctionWatch",
    "watch_structural_function",
    "integrates",
]


def integrates(model) -> bool:
    """Whether the model's predictions come from an adaptive ODE solver (an ODEModel: its values
    are exact to the solver's tolerance only and each evaluation is a whole solve) or from a loop
    over the events (``System.stepwise``: as costly per evaluation); the fit then counts passes."""
    system = model.dynamics
    return bool(getattr(system, "integrates", False) or getattr(system, "stepwise", False))


@dataclass(frozen=True)
class Layout:
    """Positions of each block of the unconstrained population vector ``theta``."""

    n_params: int
    n_beta: int
    n_random: int
    full_omega: bool
    error_names: tuple[str, ...]
    n_law: int = 0

    @property
    def mu(self) -> slice:
        return slice(0, self.n_params)

    @property
    def beta(self) -> slice:
        return slice(self.n_params, self.n_params + self.n_beta)

    @property
    def n_omega(self) -> int:
        d = self.n_random
        return d * (d + 1) // 2 if self.full_omega else d

    @property
    def omega(self) -> slice:
        start = self.beta.stop
        return slice(start, start + self.n_omega)

    @property
    def error(self) -> slice:
        return slice(self.omega.stop, self.omega.stop + len(self.error_names))

    @property
    def law(self) -> slice:
        return slice(self.error.stop, self.error.stop + self.n_law)

    @property
    def core(self) -> slice:
        """Everything but the law block: mu, beta, omega (base scale) and error."""
        return slice(0, self.error.stop)

    @property
    def size(self) -> int:
        return self.law.stop


class Program:
    """Tensors of one fit and the log-densities evaluated on them."""

    def __init__(
        self,
        model: Model,
        data: Data,
        design: CovariateDesign,
        *,
        device: torch.device,
        dtype: torch.dtype,
        law=None,
        context: np.ndarray | None = None,
        seed: int = 0,
        observation: Observation | None = None,
        comm: Serial | None = None,
    ):
        self.model, self.ids = model, data.ids  # ids: for messages about one individual
        self.watch = current_watch()
        self.family = bind(observation if observation is not None else Normal(), model)
        self.device, self.dtype = device, dtype
        x_pad, y_pad, mask = data.padded()
        as_t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
        self.x, self.mask = as_t(x_pad), torch.as_tensor(mask, device=device)
        self.mask_all = bool(self.mask.all())  # no padding: cell_log_prob skips the mask
        self.n_individuals, self.n_obs = data.n_individuals, data.n_obs
        self.params = tuple(model.parameters)
        self.transforms = [model.transforms[p] for p in self.params]
        self.random_index = [self.params.index(p) for p in model.random]
        self.law_spec = law if law is not None else Gaussian()
        context_dim = 0 if context is None else int(context.shape[1])
        self.context = None if context is None else as_t(context)
        self.law = build_law(
            self.law_spec,
            len(self.random_index),
            model.omega == "full",
            context_dim=context_dim,
            dtype=dtype,
            device=device,
            seed=seed,
        )
        self.layout = Layout(
            len(self.params),
            design.n_effects,
            len(self.random_index),
            model.omega == "full",
            tuple(self.family.parameter_names(model)),
            self.law.n_params,
        )
        # covariates are centred internally (mu is then the typical value at the mean covariate,
        # which decorrelates mu and beta); reported fixed effects are mapped back to saemix's
        # uncentred definition by ``mu_uncentred``
        self.z_center = as_t(design.matrix.mean(axis=0) if design.n_effects else np.zeros(0))
        self.Z = as_t(design.matrix) - self.z_center
        s = np.zeros((design.n_effects, len(self.params)))
        for j, p in enumerate(design.parameters):
            s[j, self.params.index(p)] = 1.0
        self.S = as_t(s)
        # effects on time-varying covariates (event data): each effect's covariate change since the
        # individual's first record, (N, K, E); psi then has one row per record (record_phi)
        dev = record_deviations(design, getattr(data, "events", None), data.ids)
        self.D = None if dev is None else as_t(dev)
        a = np.zeros((len(self.random_index), len(self.params)))
        a[np.arange(len(self.random_index)), self.random_index] = 1.0
        self.A = as_t(a)
        self.a_identity = np.array_equal(a, np.eye(len(self.params)))  # eta @ A = eta: 4-7% of a pass
        # padding cells hold a harmless y (log y is taken for the exponential error model) so that
        # no NaN reaches a gradient through the masked terms
        self.y = as_t(np.where(mask, y_pad, self.family.pad_value(model)))
        self.aux = {
            role: as_t(data.padded_aux(role, fill=1.0 if role == "trials" else 0.0)) for role in data.aux_cols
        }
        # genotype-level offsets on the transformed scale, (N, P): the posterior mean of the
        # marker and genotype-residual effects of a genomic fit (genomic.py); None otherwise
        self.offset: torch.Tensor | None = None
        # and the offsets' posterior uncertainty seen by each eta_i, (N, d, d): C_i = W_i Var(a) W_i'
        # (genomic.py); adds -tr(Omega^-1 C_i) / 2 to log p(eta_i), the term the plug-in of the
        # offsets' mean leaves out of the variational EM's Omega update
        self.offset_cov: torch.Tensor | None = None
        # grouping levels (levels.py): the offsets' posterior covariance in the random coordinates (N, d, d;
        # without: phi's ``offset_coords``); the likelihood adds E over it of each ll_i (offset_curvature)
        self.offset_var: torch.Tensor | None = None
        self.offset_coords: list[int] | None = None
        # a data-parallel fit (collective.py): this process keeps the rows of its own individuals;
        # n_individuals and n_obs stay global (they choose sample sizes, K, the chunks' draws)
        # data read as shards (pymixnn.read_shard): ``data`` holds this process's individuals only
        # (its n_individuals and n_obs are the global ones, fitting.GlobalSizes); the covariate
        # design is every individual's
        self.comm = comm if comm is not None else Serial()
        self.shard = self.comm.shard(self.n_individuals, local=int(self.x.shape[0]))
        self.n_local = self.shard.n_local
        self.sharded = not self.shard.whole and self.x.shape[0] == self.n_local
        if not self.shard.whole:
            self._keep_rows(slice(self.shard.lo, self.shard.hi), held=self.sharded)

    def _keep_rows(self, rows: slice, held: bool = False) -> None:
        """Keep the per-individual tensors of ``rows`` only (this process's shard); ``held``: the
        data's tensors hold those rows already (read as shards), the design's are sliced."""
        if not held:
            self.ids = self.ids[rows]
            self.x, self.mask, self.y = self.x[rows], self.mask[rows], self.y[rows]
            self.aux = {k: v[rows] for k, v in self.aux.items()}
        self.Z = self.Z[rows]
        self.D = None if self.D is None else self.D[rows]
        self.context = None if self.context is None else self.context[rows]

    # ---- population parameters ---------------------------------------------------------------
    def omega_tril(self, theta: torch.Tensor) -> torch.Tensor:
        """Cholesky factor L of Omega (d x d), diagonal positive."""
        return tril_from_raw(theta[self.layout.omega], self.layout.n_random, self.layout.full_omega)

    def error_params(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Observation-model parameters on their natural scale (the family's own names)."""
        return self.family.natural(theta[self.layout.error], self.model)

    def phi_population(self, theta: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        """mu + covariate effects (+ genotype offsets of a genomic fit), (B, P)."""
        lay = self.layout
        mu = theta[lay.mu]
        if lay.n_beta == 0:
            n = self.n_local if idx is None else idx.shape[0]
            phi = mu.expand(n, -1)
        else:
            Z = self.Z if idx is None else self.Z[idx]
            phi = mu + (Z * theta[lay.beta]) @ self.S
        if self.offset is not None:
            phi = phi + (self.offset if idx is None else self.offset[idx])
        return phi

    def mu_uncentred(self, theta: torch.Tensor) -> torch.Tensor:
        """Fixed effects on the transformed scale at covariate value 0 (saemix's mu)."""
        lay = self.layout
        if lay.n_beta == 0:
            return theta[lay.mu]
        return theta[lay.mu] - (theta[lay.beta] * self.z_center) @ self.S

    def record_phi(self, theta: torch.Tensor, phi: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        """phi (..., B, P) as the structural function takes it: (..., B, 1, P), or with effects on
        time-varying covariates one row per record, (..., B, K, P)."""
        if self.D is None:
            return phi.unsqueeze(-2)
        D = self.D if idx is None else self.D[idx]
        return phi.unsqueeze(-2) + (D * theta[self.layout.beta]) @ self.S

    def psi(self, phi: torch.Tensor) -> torch.Tensor:
        cols = [tr.forward(t, phi[..., p]) for p, t in enumerate(self.transforms)]
        return torch.stack(cols, dim=-1)

    def individual_phi(self, theta: torch.Tensor, eta: torch.Tensor, idx: torch.Tensor | None):
        return self.phi_population(theta, idx) + (eta if self.a_identity else eta @ self.A)

    # ---- observations ------------------------------------------------------------------------
    def prediction(self, psi: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        """f(psi_i, x_ij) on the padded grid, (..., B, T), for psi (..., B, 1 or K, P) (see
        :meth:`record_phi`). An exception raised by the user's function becomes a
        StructuralFunctionError naming the individual and psi; the first NaN at an observed cell
        for finite psi is recorded in ``self.watch`` (see FunctionWatch)."""
        x = self.x if idx is None else self.x[idx]
        try:
            f = self.model.function(psi, x)
        except Exception as err:  # the user's code: say whose, and where
            raise self._raised(psi[..., 0, :], x, idx, err) from err
        psi = psi[..., 0, :]  # the messages name the first record's parameters
        # one sum per evaluation (7 us for 20 x 512 x 5 values, where isfinite().all() takes 200
        # us), none once a NaN has been recorded; only a non-finite sum looks at the cells,
        # padding (x = 0, where a function may legitimately be non-finite) masked out
        if self.watch.first is None and not math.isfinite(float(f.detach().sum())):
            self._record_nan(psi, x, idx, f, self.mask if idx is None else self.mask[idx])
        return f

    def _individual(self, b: int, idx: torch.Tensor | None) -> Any:
        i = b if idx is None else int(idx[b])
        value = self.ids[i]
        return value.item() if isinstance(value, np.generic) else value

    def _psi_text(self, row: torch.Tensor) -> str:
        return "{" + ", ".join(f"{p}: {float(v):.6g}" for p, v in zip(self.params, row)) + "}"

    def _record_nan(self, psi, x, idx, f, mask) -> None:
        psi = psi.detach().expand(*f.shape[:-1], psi.shape[-1])
        bad = torch.isnan(f.detach()) & mask & torch.isfinite(psi).all(-1, keepdim=True)
        if not bool(bad.any()):
            return  # +-inf only: an overflow far in a tail, not the function's NaN
        where = tuple(int(k) for k in torch.nonzero(bad)[0])
        b, t = where[-2], where[-1]
        self.watch.first = dict(
            function=function_name(self.model),
            id=self._individual(b, idx),
            psi=self._psi_text(psi[where[:-1]]),
            x=[float(v) for v in x[b, t]],
        )

    def _raised(self, psi, x, idx, err: Exception) -> StructuralFunctionError:
        """The first individual (of at most 200) on which the function alone raises as well."""
        rows = psi.detach().reshape(-1, *psi.shape[-2:])[0]  # (B, P): the first draw
        where = ""
        with torch.no_grad():
            for b in range(min(rows.shape[0], 200)):
                try:
                    self.model.function(rows[b : b + 1].unsqueeze(-2), x[b : b + 1])
                except Exception:  # noqa: BLE001 - the same failure, for one individual
                    where = f" for individual {self._individual(b, idx)!r} at psi {self._psi_text(rows[b])}"
                    break
        if not where:
            where = f" on psi of shape {tuple(psi.unsqueeze(-2).shape)} and x of shape {tuple(x.shape)}"
        return StructuralFunctionError(
            f"the structural function {function_name(self.model)} raised {first_line(err)}{where}"
        )

    def log_likelihood(self, theta: torch.Tensor, eta: torch.Tensor, idx: torch.Tensor | None):
        """log p(y_i | eta_i, theta), (..., B): the family's log-density summed over observations."""
        f = self.prediction(self.psi(self.record_phi(theta, self.individual_phi(theta, eta, idx), idx)), idx)
        return self.cell_log_prob(theta, f, idx).sum(-1)

    def cell_log_prob(self, theta: torch.Tensor, f: torch.Tensor, idx: torch.Tensor | None):
        """The family's log-density of each observation given the predictions f (..., B, T),
        0 on padding: each cell depends on its own prediction only."""
        y = self.y if idx is None else self.y[idx]
        mask = self.mask if idx is None else self.mask[idx]
        aux = self.aux if idx is None else {k: v[idx] for k, v in self.aux.items()}
        terms = self.family.log_prob(y, f, self.error_params(theta), aux)
        return terms if self.mask_all else torch.where(mask, terms, torch.zeros_like(terms))

    def log_prior(
        self, theta: torch.Tensor, eta: torch.Tensor, idx: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log p(eta_i | law), (..., B): N(0, Omega) for the Gaussian law (laws/ for the others)."""
        L = self.omega_tril(theta)
        context = None
        if self.law.conditional:
            context = self.context if idx is None else self.context[idx]
        value = self.law.log_prob(L, theta[self.layout.law], eta, context)
        if self.offset_cov is not None:
            value = value + self.offset_penalty(theta, idx)
        return value

    def offset_penalty(self, theta: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """-tr(Omega^-1 C_i) / 2 per individual, (B,): the expected change of log N(eta_i; 0,
        Omega) over the posterior uncertainty of a genomic fit's offsets (0 without)."""
        if self.offset_cov is None:
            n = self.n_local if idx is None else idx.shape[0]
            return torch.zeros(n, dtype=theta.dtype, device=theta.device)
        C = self.offset_cov if idx is None else self.offset_cov[idx]
        Linv = torch.linalg.inv(self.omega_tril(theta))
        return -0.5 * torch.einsum("ab,nbc,ac->n", Linv, C, Linv)

    def law_penalty(self, theta: torch.Tensor) -> torch.Tensor:
        """Penalty on the law's parameters (a flow's ridge towards the identity); 0 otherwise."""
        return self.law.penalty(theta[self.layout.law])

    def set_offsets(
        self,
        offset: torch.Tensor | None,
        offset_cov: torch.Tensor | None,
        offset_var: torch.Tensor | None = None,
        coords: list[int] | None = None,
    ) -> None:
        """A genomic fit's offsets (N, P) and their uncertainty term (N, d, d) (GenomicBlock; None:
        without), or grouping levels' offsets and posterior covariance ``offset_var`` (LevelBlock;
        over phi's ``coords`` without random effects)."""
        self.offset, self.offset_cov = offset, offset_cov
        self.offset_var, self.offset_coords = offset_var, coords

    def offset_curvature(self, theta: torch.Tensor, log_w: torch.Tensor, eta: torch.Tensor, idx):
        """tr(H_i Var(o_i)) / 2 per individual (B,): E[ll_i(o)] - ll_i(o_i) to second order over
        the offsets' posterior N(o_i, Var(o_i)) of a fit with grouping levels (0 without), with
        H_i = Omega^-1 Cov(eta_i | y_i) Omega^-1 - Omega^-1 the Hessian of ll_i in the offset,
        Cov(eta_i | y_i) from the weights ``log_w`` (K, B) of the draws ``eta`` (K, B, d)."""
        if self.offset_var is None:
            return torch.zeros(log_w.shape[-1], dtype=theta.dtype, device=theta.device)
        w = torch.softmax(log_w, 0).unsqueeze(-1)  # (K, B, 1)
        dev = eta - (w * eta).sum(0)
        cov = torch.einsum("kbi,kbj->bij", w * dev, dev)
        L = self.omega_tril(theta)  # a Newton trial step may underflow a diagonal: inf, rejected
        Linv = torch.linalg.solve_triangular(L, torch.eye(L.shape[0], dtype=L.dtype), upper=False)
        omega_inv = Linv.T @ Linv
        V = self.offset_var if idx is None else self.offset_var[idx]
        H = omega_inv @ cov @ omega_inv - omega_inv
        return 0.5 * torch.einsum("bij,bji->b", H, V)

    def log_joint(self, theta: torch.Tensor, eta: torch.Tensor, idx: torch.Tensor | None):
        return self.log_likelihood(theta, eta, idx) + self.log_prior(theta, eta, idx)
