"""Linear 1-, 2- and 3-compartment PK models (IV bolus, zero-order infusion, first-order
absorption), solved exactly: matrix exponentials between events, geometric sums for steady state.

Compartments follow NONMEM's ADVAN numbering: IV models dose into CMT 1 (central); oral models
have CMT 1 depot, CMT 2 central; peripherals follow. The output ``cp`` is the central amount over
the central volume (V for one compartment, V1 otherwise).

>>> from pymixnn.model.dynamics.compartments import compartment_system
>>> s = compartment_system("pk2cpt_oral")
>>> s.parameters, s.states
(('ka', 'CL', 'V1', 'Q', 'V2'), ('depot', 'central', 'peripheral'))
>>> dict(s.dose_to)
{1: 'depot', 2: 'central', 3: 'peripheral'}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pymixnn.model.dynamics import linear
from pymixnn.model.dynamics.system import Dosing, System

__all__ = ["COMPARTMENT_MODELS", "Compartmental", "compartment_system", "start_compartmental"]

# name -> (parameters, oral, number of compartments)
COMPARTMENT_MODELS: dict[str, tuple[tuple[str, ...], bool, int]] = {
    "pk1cpt_iv": (("CL", "V"), False, 1),
    "pk1cpt_oral": (("ka", "CL", "V"), True, 1),
    "pk2cpt_iv": (("CL", "V1", "Q", "V2"), False, 2),
    "pk2cpt_oral": (("ka", "CL", "V1", "Q", "V2"), True, 2),
    "pk3cpt_iv": (("CL", "V1", "Q", "V2", "Q3", "V3"), False, 3),
    "pk3cpt_oral": (("ka", "CL", "V1", "Q", "V2", "Q3", "V3"), True, 3),
}

DOSING_NAMES = {"tlag": "tlag", "F": "F", "rate": "rate", "duration": "duration"}


@dataclass(frozen=True)
class Compartmental(System):
    """A mammillary compartment model: dx/dt = A(psi) x + inputs, cp = central / Vc."""

    oral: bool = False
    n_compartments: int = 1
    # further endpoints: (name, fn(cp, psi)), e.g. a direct-effect PD response of the concentration
    extra_outputs: tuple = ()
    linear = True

    def _p(self, psi: torch.Tensor, name: str) -> torch.Tensor:
        return psi[..., self.parameters.index(name)]

    def generator(self, psi: torch.Tensor, covariates=None) -> torch.Tensor:
        S, o = self.n_states, int(self.oral)
        vc = self._p(psi, "V" if self.n_compartments == 1 else "V1")
        A = psi.new_zeros(*psi.shape[:-1], S, S)
        k10 = self._p(psi, "CL") / vc
        A[..., o, o] = -k10
        if self.oral:
            ka = self._p(psi, "ka")
            A[..., 0, 0] = -ka
            A[..., 1, 0] = ka
        for j, (q, v) in enumerate((("Q", "V2"), ("Q3", "V3"))[: self.n_compartments - 1]):
            p = o + 1 + j
            qq, vp = self._p(psi, q), self._p(psi, v)
            A[..., o, o] = A[..., o, o] - qq / vc
            A[..., p, o] = qq / vc
            A[..., o, p] = qq / vp
            A[..., p, p] = -qq / vp
        return A

    def advance(self, gen, x, h, r, t0, psi, covariates):
        return linear.advance(gen, x, h, r)

    def steady_state(self, gen, psi, covariates, bolus, rate, duration, tau, lag, running):
        return linear.steady_state(gen, None, bolus, rate, duration, tau, lag, running)

    def modes(self, psi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lambda, V, V^-1) with A = V diag(lambda) V^-1. The disposition block is symmetric
        after scaling by the volumes (D^-1/2 A D^1/2, D = diag(volumes)), so its eigenvectors come
        from ``eigh``; the depot of oral models adds the mode -ka with eigenvector
        (1, -ka (A_d + ka I)^-1 e_central)."""
        A = self.generator(psi)
        o = int(self.oral)
        Ad = A[..., o:, o:]
        n = Ad.shape[-1]
        if n == 1:
            lam_d = Ad[..., 0]
            Vd = torch.ones_like(Ad)
            Vd_inv = torch.ones_like(Ad)
        else:
            names = ("V1", "V2", "V3")[:n]
            sq = torch.stack([self._p(psi, v) for v in names], -1).sqrt()  # (..., n)
            H = Ad * sq.unsqueeze(-2) / sq.unsqueeze(-1)
            lam_d, Q = torch.linalg.eigh((H + H.transpose(-1, -2)) / 2)
            Vd = Q * sq.unsqueeze(-1)
            Vd_inv = Q.transpose(-1, -2) / sq.unsqueeze(-2)
        if not self.oral:
            return lam_d, Vd, Vd_inv
        ka = self._p(psi, "ka")
        if n == 1:  # one compartment: closed form, no linear algebra
            z = -ka / (Ad[..., 0, 0] + ka)
            one, zero = torch.ones_like(ka), torch.zeros_like(ka)
            V = torch.stack([torch.stack([one, zero], -1), torch.stack([z, one], -1)], -2)
            Vinv = torch.stack([torch.stack([one, zero], -1), torch.stack([-z, one], -1)], -2)
            return torch.stack([-ka, Ad[..., 0, 0]], -1), V, Vinv
        eye = torch.eye(n, dtype=psi.dtype, device=psi.device)
        e = torch.zeros(n, dtype=psi.dtype, device=psi.device)
        e[0] = 1.0
        z = -ka.unsqueeze(-1) * torch.linalg.solve(Ad + ka[..., None, None] * eye, e.expand(*Ad.shape[:-1]))
        S = n + 1
        V = psi.new_zeros(*psi.shape[:-1], S, S)
        V[..., 0, 0] = 1.0
        V[..., 1:, 0] = z
        V[..., 1:, 1:] = Vd
        Vinv = psi.new_zeros(*psi.shape[:-1], S, S)
        Vinv[..., 0, 0] = 1.0
        Vinv[..., 1:, 0] = -(Vd_inv @ z.unsqueeze(-1)).squeeze(-1)
        Vinv[..., 1:, 1:] = Vd_inv
        return torch.cat([-ka.unsqueeze(-1), lam_d], -1), V, Vinv

    def output_modes(self, psi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(lambda (..., S), G (..., S, S)): cp after a unit bolus into state s is
        sum_m G[m, s] e^{lambda_m u} (G = (e_central' V / Vc) * V^-1, per mode)."""
        if self.oral and self.n_compartments == 1:  # the classic closed form, fewest operations
            ka, cl, v = self._p(psi, "ka"), self._p(psi, "CL"), self._p(psi, "V")
            k = cl / v
            w = ka / ((ka - k) * v)
            zero = torch.zeros_like(w)
            G = torch.stack([torch.stack([-w, zero], -1), torch.stack([w, 1.0 / v], -1)], -2)
            return torch.stack([-ka, -k], -1), G
        lam, V, Vinv = self.modes(psi)
        vc = self._p(psi, "V" if self.n_compartments == 1 else "V1")
        c = V[..., int(self.oral), :] / vc.unsqueeze(-1)
        return lam, c.unsqueeze(-1) * Vinv

    def outputs(self, state: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        vc = self._p(psi, "V" if self.n_compartments == 1 else "V1")
        cp = state[..., int(self.oral)] / vc
        return torch.stack([cp, *(fn(cp, psi) for _, fn in self.extra_outputs)], -1)


def compartment_system(
    name: str,
    tlag: bool | str = False,
    F: bool | str = False,
    rate: bool | str = False,
    duration: bool | str = False,
    endpoint: str = "cp",
    parameters: tuple[str, ...] = (),
    outputs: dict | None = None,
) -> Compartmental:
    """The system of a named compartment model; ``tlag``, ``F``, ``rate``, ``duration`` add the
    dosing parameter (True: named "tlag", "F", "rate", "duration"; a string: that name) acting on
    doses into CMT 1 (the depot of oral models, the central compartment of IV ones);
    ``parameters`` adds parameters read by ``outputs``, further endpoints {name: fn(cp, psi)}
    (psi in the order of the system's parameters)."""
    params, oral, n = COMPARTMENT_MODELS[name]
    states = (("depot",) if oral else ()) + ("central",) + ("peripheral", "peripheral2")[: n - 1]
    extra = {}
    for key, value in dict(tlag=tlag, F=F, rate=rate, duration=duration).items():
        if value:
            extra[key] = DOSING_NAMES[key] if value is True else str(value)
    dose_to = {k + 1: s for k, s in enumerate(states)}
    outputs = dict(outputs or {})
    return Compartmental(
        states=states,
        parameters=params + tuple(extra.values()) + tuple(parameters),
        dose_to=dose_to,
        dosing={1: Dosing(**extra)} if extra else {},
        endpoints=(endpoint, *outputs),
        oral=oral,
        n_compartments=n,
        extra_outputs=tuple(outputs.items()),
    )


def start_compartmental(
    system: Compartmental, events, obs_time: np.ndarray, y: np.ndarray, obs_individual: np.ndarray
) -> dict[str, float]:
    """Rough data-based start values: CL from dose rate over mean concentration per individual,
    V from the first dose over the largest early concentration, ka = 3 CL / V, peripheral
    volumes 2 V, Q = CL; tlag 0.5, F 0.8 (inside the logit's support), the median dose as rate,
    duration 1 (each under its own name)."""
    ok = np.isfinite(y) & (y > 0)
    cl_i, v_i = [], []
    for i in np.unique(obs_individual[ok]):
        sel = ok & (obs_individual == i)
        doses = events.is_dose & (events.individual == i)
        if not doses.any():
            continue
        t_first = events.time[doses].min()
        span = max(obs_time[sel].max() - t_first, 1e-8)
        given = events.amt[doses & (events.time <= obs_time[sel].max())].sum()
        cl_i.append(given / (y[sel].mean() * span))
        v_i.append(events.amt[doses][0] / y[sel].max())
    cl = float(np.median(cl_i)) if cl_i else 1.0
    v = float(np.median(v_i)) if v_i else 10.0
    if not (np.isfinite(cl) and cl > 0):
        cl = 1.0
    if not (np.isfinite(v) and v > 0):
        v = 10.0
    values = {"CL": cl, "V": v, "V1": v, "ka": 3 * cl / v, "Q": cl, "V2": 2 * v, "Q3": cl / 2, "V3": 4 * v}
    roles = {
        "tlag": 0.5,
        "F": 0.8,
        "rate": float(np.median(events.amt[events.is_dose]) if events.has_doses else 1.0),
        "duration": 1.0,
    }
    for dosing in system.dosing.values():  # the dosing parameters under their own names
        for role, default in roles.items():
            name = getattr(dosing, role)
            if name is not None:
                values[name] = default
    return {p: values[p] for p in system.parameters if p in values}
