"""Grouping levels inside the NLME fit: random effects shared by the individuals of a group
(pymixnn.model.levels), integrated out through each individual's posterior of its own effects.

The level effects b = (b_{l,g}) enter the transformed parameters as offsets o_i = sum_l b_{l,g_l(i)}.
Each individual's data speak about its offset through the Gaussian pseudo-likelihood that its local
posterior q(eta_i) = N(m_i, S_i) (computed at the current offset o_i, prior eta ~ N(0, Omega))
implies, as in the genomic block (genomic.py):

    z_i = o_i + Omega (Omega - S_i)^-1 m_i ~ N(offset_i, V_i),   V_i^-1 = Omega^-1 (Omega - S_i) Omega^-1

exact when log p(y_i | eta) is quadratic in eta (a linear model), and a Laplace-type approximation
otherwise: nlme's LME step, with the individual's posterior in place of a first-order linearisation.
With the fixed effects mu of the level parameters added (pseudo-observations z~_i = J mu + o_i + e_i),
the pseudo data are a Gaussian linear mixed model, and everything about the levels is exact in it:

- the level covariances Omega_l by maximum likelihood of the pseudo data, mu profiled out (ML, as
  nlme's method = "ML"), by L-BFGS on their log-Cholesky factors, and their SEs from the observed
  information of that likelihood (natural-scale entries);
- mu's generalized-least-squares estimate and its covariance (X' Sigma^-1 X)^-1: the SEs of the
  level parameters' fixed effects include the level's variance (conditional on the offsets they
  would be those of a model without the level);
- the posterior of b (mean, covariance): the offsets handed to the Program, and their covariance
  Var(o_i), over which the refinement takes the expectation of each individual's log-likelihood
  (Program.offset_curvature: exact to second order, so theta's step is the variational EM's; with
  the offsets' mean plugged in, the residual and individual variances would come out too small);
- the marginal log-likelihood: the individuals' log-likelihoods at the fitted offsets (importance
  sampling, exact in eta_i), minus their Gaussian pseudo-likelihood at those offsets, plus the
  pseudo data's marginal likelihood (the levels integrated out):
  ll = sum_i [ll_i(o_i) - log N(z_i; o_i, V_i)] + log N(z~; J mu, Z Omega_b Z' + V).

All in float64: one level has a block-diagonal Q (one P x P block per group, batched: 3,000 groups
of 3 individuals, 9,000 in all, fit in 34 s on one thread); several levels a dense (n_b x n_b) one
over the n_b = sum_l n_groups_l x n_params_l level effects (at most MAX_EFFECTS). The block never
writes into the Program or theta: the caller hands the offsets over with ``Program.set_offsets``
and applies the fixed-effect shift (stages.py).
"""

from __future__ import annotations

import torch

from pymixnn.inference.fields import field_prior, field_raw_start, field_values, floor_raw
from pymixnn.inference.laws import tril_from_raw
from pymixnn.inference.levels_report import export, joint_moments, natural_to_omega
from pymixnn.inference.offsets import direct_pseudo, residual_slice, start_ranges
from pymixnn.inference.records import LevelsFit
from pymixnn.inference.vecchia import VecchiaField
from pymixnn.model.levels import MAX_EFFECTS, LevelSetup
from pymixnn.model.spatial import matern_nu

__all__ = ["LevelBlock", "MAX_EFFECTS"]

# L-BFGS iterations of the level covariances per update (warm-started from the last update)
HYPER_ITER = 100


class LevelBlock:
    """Level covariances, fixed effects of the level parameters and the posterior of the level
    effects, updated from the local posteriors."""

    def __init__(self, setup: LevelSetup, program):
        self.setup, self.program = setup, program
        dev, f64 = program.device, torch.float64
        # the block's coordinates: the random ones (positions in params), or without individual
        # random effects all parameters (their pseudo data from ll_i's score: offsets.py), so that
        # the GLS step takes every fixed effect with the levels (a slope trading off with a field's
        # trend would otherwise move by one alternation step at a time)
        self.level_params = sorted({program.params.index(q) for params in setup.params for q in params})
        self.direct = not program.random_index
        rand = list(program.random_index) or list(range(len(program.params)))
        level_params = rand if self.direct else self.level_params
        self.coords = rand
        # the entries of theta the levels' ML moves with them (joint_moments): the individual-level
        # Omega, or without random effects a Gaussian constant error's log a (offsets.py)
        self.joint_slice = program.layout.omega if not self.direct else residual_slice(program)
        self.slot_param, self.slot_rand, cols, self.sizes = [], [], [], []
        off = 0
        for params, groups, labels in zip(setup.params, setup.groups, setup.labels):
            g = torch.as_tensor(groups, dtype=torch.long, device=dev)
            n_groups, p = len(labels), len(params)  # a grid's last cells may be empty
            for k, name in enumerate(params):
                pos = program.params.index(name)
                self.slot_param.append(pos)
                self.slot_rand.append(rand.index(pos))
                cols.append(off + g * p + k)
            self.sizes.append((n_groups, p))
            off += n_groups * p
        self.n_b = off
        self.cols = torch.stack(cols, dim=1)  # (N, n_s): each individual's effect of each slot
        # one level: Q is block-diagonal, one P x P block per group (batched algebra, O(G P^3));
        # several (crossed or nested) levels: dense n_b x n_b
        self.kinds = list(setup.kinds) or ["level"] * len(setup.params)
        self.single = len(setup.params) == 1 and self.kinds[0] == "level"
        # a spatial field (fields.py): one effect per location or cell, a structured covariance
        self.reps = [g if kind == "level" else 1 for (g, _), kind in zip(self.sizes, self.kinds)]
        self.dist = [
            None if d is None else torch.as_tensor(d, dtype=f64, device=dev)
            for d in (setup.distances or [None] * len(setup.params))
        ]
        self.kernels = list(setup.kernels) or [None] * len(setup.params)
        self.grids = list(setup.grids) or [None] * len(setup.params)
        self.range_init = list(setup.range_init) or [None] * len(setup.params)
        self.group = torch.as_tensor(setup.groups[0], dtype=torch.long, device=dev)
        # a Matérn field (alone): nearest-neighbour algebra over the individuals (vecchia.py)
        self.sparse = None
        if self.kinds == ["matern"]:
            loc = torch.as_tensor(setup.labels[0], dtype=f64, device=dev)[self.group]
            sets = torch.as_tensor(setup.vecchia[0], dtype=torch.long, device=dev)
            nu = matern_nu(self.kernels[0])
            self.sparse = VecchiaField(loc, sets, nu, self.group, len(setup.labels[0]))
        # the fixed effects the block estimates with the levels (GLS): mu and the covariate effects
        # of the level parameters, entries ``fixed_index`` of theta; X_i (N, d, n_f) their design
        # in the random coordinates (phi_population is linear in them)
        lay = program.layout
        fixed = [lay.mu.start + q for q in level_params]
        if lay.n_beta:
            S = program.S.detach().cpu()
            fixed += [lay.beta.start + j for j in range(lay.n_beta) if bool(S[j, level_params].ne(0).any())]
        self.fixed_index = fixed
        theta0 = torch.zeros(lay.size, dtype=program.dtype, device=dev)
        base = program.phi_population(theta0, None)
        cols_x = []
        for k in fixed:
            e = theta0.clone()
            e[k] = 1.0
            cols_x.append((program.phi_population(e, None) - base)[:, rand])
        self.X = torch.stack(cols_x, dim=-1).to(f64)  # (N, d, n_f)
        self.raw = None  # per level: log sd (diagonal) or log-Cholesky (full) of Omega_l
        self.offset: torch.Tensor | None = None  # (N, P) transformed scale
        self.offset_var: torch.Tensor | None = None  # (N, d, d): Var(o_i) in the random coordinates
        self.E = torch.zeros(len(rand), len(self.slot_rand), dtype=f64, device=dev)  # slots -> coords
        for s, r in enumerate(self.slot_rand):
            self.E[r, s] = 1.0
        self.b = torch.zeros(self.n_b, dtype=f64, device=dev)
        self.updates, self.start_var = 0, None

    # ---- pseudo data ----------------------------------------------------------------------------
    def pseudo(self, theta: torch.Tensor, local) -> dict:
        """Pseudo-observations z~_i (N, d) of J mu + o_i, their precisions Lambda_i (N, d, d),
        the de-shrunk posterior means and W_i = I - S_i Omega^-1 (N, d, d)."""
        program = self.program
        if self.direct:
            return direct_pseudo(self, theta)  # no individual random effects: offsets.py
        L = program.omega_tril(theta.detach()).to(torch.float64)
        m = local.loc.detach().to(torch.float64)
        St = local.scale_tril.detach().to(torch.float64)
        Linv = torch.linalg.inv(L)
        Sw = Linv @ (St @ St.transpose(-1, -2)) @ Linv.T
        r, Q = torch.linalg.eigh(0.5 * (Sw + Sw.transpose(-1, -2)))
        # 1 - r: the data's share of each direction; 0 where the posterior is the prior (no
        # information: a zero precision, no division)
        keep = (1.0 - r).clamp_min(0.0)
        white = (Q.transpose(-1, -2) @ (Linv @ m.unsqueeze(-1))).squeeze(-1)  # Q' L^-1 m
        LinvQ = Linv.T @ Q  # L^-T Q
        Lam = (LinvQ * keep.unsqueeze(-2)) @ LinvQ.transpose(-1, -2)
        eye = torch.eye(L.shape[0], dtype=L.dtype, device=L.device)
        W = L @ (eye - 0.5 * (Sw + Sw.transpose(-1, -2))) @ Linv
        base = torch.zeros_like(m)
        if self.offset is not None:
            base = self.offset.to(torch.float64)[:, program.random_index]
        fixed_now = theta.detach().to(torch.float64)[self.fixed_index]
        w = base + self.X @ fixed_now  # z = w + des, des = Omega (Omega - S)^-1 m
        # Lam des = Omega^-1 m in the informed directions, computed without dividing by 1 - r
        # (as the variance of a direction tends to 0, Lam tends to the data's precision, where a
        # capped 1 - r would make the offset look far too precise)
        Ldes = (LinvQ @ ((keep > 0).to(white.dtype) * white).unsqueeze(-1)).squeeze(-1)
        return dict(w=w, Ldes=Ldes, Lam=Lam, W=W, mu=fixed_now)

    def _moments(self, ps: dict) -> dict:
        """The sufficient statistics of the pseudo data at the current Omega."""
        Lw = (ps["Lam"] @ ps["w"].unsqueeze(-1)).squeeze(-1)
        # z'Lam z less sum des'Lam des (free of the levels; it cancels in the correction)
        q = (ps["w"] * Lw).sum() + 2 * (ps["w"] * ps["Ldes"]).sum()
        return self._moments_from(ps["Lam"], Lw + ps["Ldes"], q)

    def _moments_from(self, Lam: torch.Tensor, Lz: torch.Tensor, q: torch.Tensor) -> dict:
        """sum Z'Lam Z (n_b x n_b, or per group with one level), Z'Lam X, X'Lam X, Z'Lam z,
        X'Lam z and z'Lam z (``q``) from the precisions Lam (N, d, d) and Lam z (N, d)."""
        cols, s = self.cols, self.slot_rand
        N, ns = cols.shape
        dev = Lz.device
        Lss = Lam[:, s][:, :, s]  # (N, ns, ns)
        LX = Lam @ self.X  # (N, d, n_f)
        f64 = dict(dtype=torch.float64, device=dev)
        C, g = torch.einsum("nda,ndb->ab", self.X, LX), torch.einsum("nda,nd->a", self.X, Lz)
        if self.sparse is not None:  # per individual: its precision, Lam z and Lam X at the slot
            return dict(lam=Lss[:, 0, 0], h=Lz[:, s[0]], xs=LX[:, s[0]], C=C, g=g, q=q)
        if self.single:  # per group: (G, P, P), (G, P, n_f), (G, P)
            G = self.sizes[0][0]
            A = torch.zeros(G, ns, ns, **f64).index_add_(0, self.group, Lss)
            B = torch.zeros(G, ns, self.X.shape[-1], **f64).index_add_(0, self.group, LX[:, s])
            h = torch.zeros(G, ns, **f64).index_add_(0, self.group, Lz[:, s])
        else:
            A = torch.zeros(self.n_b, self.n_b, **f64)
            rows = cols.unsqueeze(-1).expand(N, ns, ns)
            A.index_put_(
                (rows.reshape(-1), rows.transpose(-1, -2).reshape(-1)), Lss.reshape(-1), accumulate=True
            )
            B = torch.zeros(self.n_b, self.X.shape[-1], **f64)
            B.index_add_(0, cols.reshape(-1), LX[:, s].reshape(N * ns, -1))
            h = torch.zeros(self.n_b, **f64)
            h.index_add_(0, cols.reshape(-1), Lz[:, s].reshape(-1))
        return dict(A=A, B=B, C=C, h=h, g=g, q=q)

    # ---- likelihood of the pseudo data ----------------------------------------------------------
    def _priors(self, raw: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each component's prior from its raw parameters (log-Cholesky of a level's Omega_l; a
        field's, fields.py): the precision of one group's effects (a level: Omega_l^-1, the same for
        each group) or of a field's, and the log-determinant of that covariance."""
        out = []
        for k, (r, (_, p), full) in enumerate(zip(raw, self.sizes, self.setup.full)):
            if self.kinds[k] != "level":
                out.append(self._field_prior(k, self._field_values(k, r)))
            else:
                Lt = tril_from_raw(r, p, full)
                out.append((torch.cholesky_inverse(Lt), 2 * torch.log(torch.diagonal(Lt)).sum()))
        return out

    def _field_values(self, k: int, raw: torch.Tensor) -> torch.Tensor:
        return field_values(self.kinds[k], raw, self.dist[k], self.grids[k])

    def _field_prior(self, k: int, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kinds[k] == "matern":  # the nearest-neighbour algebra takes (sd, range) themselves
            return values, torch.zeros((), dtype=values.dtype, device=values.device)
        return field_prior(self.kinds[k], values, self.dist[k], self.kernels[k], self.grids[k])

    def _solve(self, priors: list[tuple], mom: dict, mu: torch.Tensor | None) -> dict:
        """Posterior precision Q (its Cholesky factor ``LQ``: dense, or per group with one level),
        the GLS fixed effects (``mu`` None) or the given ones, the level effects' posterior mean
        ``b`` and the pseudo data's log-likelihood (up to terms free of the covariances and mu)."""
        if self.sparse is not None:
            return self.sparse.solve(priors[0][0], mom, mu)
        if self.single:
            Q = mom["A"] + priors[0][0]
            LQ = torch.linalg.cholesky(0.5 * (Q + Q.transpose(-1, -2)))
            solve = lambda v: torch.cholesky_solve(v, LQ)  # noqa: E731
            QB, Qh = solve(mom["B"]), solve(mom["h"].unsqueeze(-1)).squeeze(-1)
            BtQ = lambda v: torch.einsum("gpa,gp->a", mom["B"], v)  # noqa: E731
            info = mom["C"] - torch.einsum("gpa,gpb->ab", mom["B"], QB)
            if mu is None:
                mu = torch.linalg.pinv(info, hermitian=True) @ (mom["g"] - BtQ(Qh))
            hr = mom["h"] - torch.einsum("gpa,a->gp", mom["B"], mu)
            b = solve(hr.unsqueeze(-1)).squeeze(-1)
            quad = mom["q"] - 2 * mu @ mom["g"] + mu @ mom["C"] @ mu - (hr * b).sum()
        else:
            prec = torch.block_diag(
                *[
                    pr
                    if r == 1
                    else torch.kron(torch.eye(r, dtype=pr.dtype, device=pr.device), pr.contiguous())
                    for r, (pr, _) in zip(self.reps, priors)
                ]
            )
            Q = mom["A"] + prec
            LQ = torch.linalg.cholesky(0.5 * (Q + Q.T))
            solve = lambda v: torch.cholesky_solve(v, LQ)  # noqa: E731
            QB = solve(mom["B"])
            Qh = solve(mom["h"].unsqueeze(-1)).squeeze(-1)
            info = mom["C"] - mom["B"].T @ QB  # X' Sigma^-1 X
            if mu is None:  # (a pseudo-inverse: a trial point may confound a field with mu)
                mu = torch.linalg.pinv(info, hermitian=True) @ (mom["g"] - mom["B"].T @ Qh)
            hr = mom["h"] - mom["B"] @ mu
            b = solve(hr.unsqueeze(-1)).squeeze(-1)
            quad = mom["q"] - 2 * mu @ mom["g"] + mu @ mom["C"] @ mu - hr @ b
        logdet_prior = sum(r * ld for r, (_, ld) in zip(self.reps, priors))
        logdet_q = torch.log(torch.diagonal(LQ, dim1=-2, dim2=-1)).sum()
        ll = -0.5 * quad - logdet_q - 0.5 * logdet_prior
        return dict(ll=ll, mu=mu, info=info, b=b.reshape(-1), LQ=LQ)

    def _posterior_cov(self, LQ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Var(o_i) over each individual's slots (N, n_s, n_s) and the level effects' posterior
        variances (n_b,), from the Cholesky factor of Q (a Matérn field: its variances per location)."""
        if self.sparse is not None:
            return LQ[self.group].reshape(-1, 1, 1), LQ
        if self.single:
            eye = torch.eye(LQ.shape[-1], dtype=LQ.dtype, device=LQ.device).expand_as(LQ)
            Qinv = torch.cholesky_solve(eye, LQ)  # (G, P, P)
            return Qinv[self.group], torch.diagonal(Qinv, dim1=-2, dim2=-1).reshape(-1)
        Qinv = torch.cholesky_inverse(LQ)
        return Qinv[self.cols.unsqueeze(-1), self.cols.unsqueeze(-2)], torch.diagonal(Qinv)

    def _fit_hyper(self, mom: dict, theta: torch.Tensor, joint=None) -> torch.Tensor | None:
        """The levels' covariances by ML of the pseudo data (L-BFGS, warm-started); with ``joint``
        (joint_moments' function and theta's raw Omega) the individual-level Omega with them,
        whose new raw entries it returns (they trade off: alternating them with the refinement
        converges slowly, a field against its individual variance in 30+ rounds)."""
        if self.raw is None:  # start: half the individual-level variance of each parameter
            omega = self.program.omega_tril(theta.detach()).to(torch.float64)
            var = self.start_var if self.direct else torch.diagonal(omega @ omega.T)
            self.raw = []
            start = 0
            for k, ((_, p), full) in enumerate(zip(self.sizes, self.setup.full)):
                r_idx = self.slot_rand[start : start + p]
                sd = (0.5 * var[r_idx]).sqrt().log()
                if self.kinds[k] != "level":
                    raw = field_raw_start(
                        self.kinds[k], sd[0], self.dist[k], self.grids[k], self.range_init[k]
                    )
                else:
                    raw = torch.zeros(
                        p * (p + 1) // 2 if full else p, dtype=torch.float64, device=omega.device
                    )
                    raw[:p] = sd
                self.raw.append(raw)
                start += p
            if self.direct:  # a gp's start range from several (offsets.py)
                self.raw = start_ranges(self, mom, joint)
        raw = [r.clone().requires_grad_(True) for r in self.raw]
        omega = None if joint is None else joint[1].clone().requires_grad_(True)
        opt = torch.optim.LBFGS(
            raw + ([omega] if joint is not None else []),
            max_iter=HYPER_ITER,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-9,
        )

        def closure():
            opt.zero_grad()
            if joint is None:
                loss = -self._solve(self._priors(raw), mom, None)["ll"]
            else:
                mom_o, logdet_a = joint[0](omega)
                loss = 0.5 * logdet_a - self._solve(self._priors(raw), mom_o, None)["ll"]
            loss.backward()
            return loss

        opt.step(closure)
        # a variance driven to 0 (a level without variation): floored, so that its effects stay
        # finite; a field's range kept within 1e-3 and 1e3 times its largest distance
        floored = []
        for k, (r, full) in enumerate(zip(raw, self.setup.full)):
            r = r.detach().clone()
            if self.kinds[k] != "level":
                r = floor_raw(self.kinds[k], r)
            elif not full:
                r = r.clamp_min(-12.0)
            floored.append(r)
        self.raw = floored
        return None if omega is None else omega.detach()

    # ---- update -------------------------------------------------------------------------------
    def update(self, theta: torch.Tensor, local, move_mu: bool) -> tuple[float, torch.Tensor | None]:
        """One update from the local posteriors: level covariances by ML of the pseudo data, the
        posterior of the level effects at the GLS fixed effects (``move_mu``: returns their shift
        as a theta-sized vector, for the caller to add) or at theta's (during SVI, where theta is the
        optimizer's); new offsets and their uncertainty term; local posteriors moved so that each
        phi_i is unchanged. Returns the largest change of a level effect, and the shift."""
        ps = self.pseudo(theta, local)
        mom = self._moments(ps)
        # after SVI (move_mu) the individual-level Omega moves with the levels' covariances
        joint = joint_moments(self, theta, local) if move_mu and self.joint_slice is not None else None
        if self.raw is None and self.direct:  # start: from the pseudo data's variance
            z = ps["w"] + (torch.linalg.pinv(ps["Lam"]) @ ps["Ldes"].unsqueeze(-1)).squeeze(-1)
            self.start_var = z.var(0)
        omega = self._fit_hyper(mom, theta, joint)
        with torch.no_grad():
            if omega is not None:
                mom = joint[0](omega)[0]
            sol = self._solve(self._priors(self.raw), mom, None if move_mu else ps["mu"])
        dmu = sol["mu"] - ps["mu"]
        # the level effects' change: the fixed effects' shift only re-centres them (with a
        # level variance near 0, the pseudo-likelihood's mu and the refinement's differ by the
        # approximation's error, and would alternate without end)
        change = float((sol["b"] - self.b).abs().max())
        self.b = sol["b"]
        program = self.program
        offset = self._offsets(self.b)
        shift = torch.zeros(program.layout.size, dtype=torch.float64, device=program.device)
        shift[self.fixed_index] = dmu
        if omega is not None:
            shift[self.joint_slice] = omega - joint[1]
        old = self.offset.to(torch.float64) if self.offset is not None else torch.zeros_like(offset)
        if not self.direct:
            delta = (offset - old)[:, program.random_index] + self.X @ dmu
            local.loc = local.loc - (ps["W"] @ delta.unsqueeze(-1)).squeeze(-1).to(local.loc.dtype)
        # Var(o_i) over the individual's slots: the rows of Q^-1 at its effects (offsets share
        # an effect when two slots are the same parameter at two levels: summed through W)
        V, _ = self._posterior_cov(sol["LQ"])  # (N, n_s, n_s)
        self.offset_var = (self.E @ V @ self.E.T).to(program.dtype)
        if self.direct:  # over the level parameters only (the unscented points: offsets.py)
            self.offset_var = self.offset_var[:, self.level_params][:, :, self.level_params]
        self.offset = offset.to(program.dtype)
        self.updates += 1
        return change, (shift.to(program.dtype) if move_mu else None)

    def _offsets(self, b: torch.Tensor) -> torch.Tensor:
        """(N, P) each individual's sum of its groups' effects ``b`` (float64)."""
        program = self.program
        offset = torch.zeros(program.n_individuals, len(program.params), dtype=torch.float64, device=b.device)
        bcols = b[self.cols]  # (N, n_s)
        for s, q in enumerate(self.slot_param):
            offset[:, q] = offset[:, q] + bcols[:, s]
        return offset

    def priors_from_entries(self, values: torch.Tensor, sizes: list[int]) -> list[tuple]:
        """Each component's prior (as _priors) from its reported entries (a level's variances and
        covariances, a field's), concatenated in ``values``."""
        parts, start = [], 0
        for k, (_, p) in enumerate(self.sizes):
            v = values[start : start + sizes[k]]
            if self.kinds[k] != "level":
                parts.append(self._field_prior(k, v))
            else:
                omega = natural_to_omega(v, p, self.setup.full[k])
                parts.append((torch.linalg.inv(omega), torch.logdet(omega)))
            start += sizes[k]
        return parts

    # ---- export ---------------------------------------------------------------------------------
    def export(self, theta: torch.Tensor, local, rounds: int) -> LevelsFit:
        """Numpy record at theta and the (refreshed) local posteriors (levels_report.export)."""
        return export(self, theta, local, rounds)
