"""Posterior class probabilities of new individuals (``Results.classify``): their posterior modes
at the fitted parameters, then importance sampling of P(class k | y_i, x_i) (the inference
layer's sampler, as for the fitted individuals)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pymixnn.validation import InputError

__all__ = ["classify_new"]

# Newton steps of each path to a new individual's posterior mode (the fit's own local updates
# use 50 from a warm start; these start cold at a class mean)
MODE_STEPS = 100


def classify_new(res, newdata: pd.DataFrame, *, n_samples: int | None = None, seed: int = 0):
    """(P (n, K), ids) for the individuals of ``newdata``; see ``Results.classify``."""
    import torch

    from pymixnn.inference.importance import ImportanceSampler
    from pymixnn.inference.laplace import LocalPosteriors
    from pymixnn.model.covariates import membership_matrix
    from pymixnn.results.amortized import encode_individuals, new_individuals_data, new_program

    spec = res.random_effects_law
    data = new_individuals_data(res, newdata)
    ids = pd.Index(data.ids, name=data.id_col)
    if spec.name != "latent_class":  # one class chosen by n_classes="auto"
        return np.ones((data.n_individuals, 1)), ids
    context = None
    if spec.membership:
        missing = [c for c in spec.membership if c not in data.covariates.columns]
        if missing:
            raise InputError(f"newdata lacks the membership covariate column(s) {missing}")
        context, _ = membership_matrix(
            res.data.covariates, list(spec.membership), res.model, new_covariates=data.covariates
        )
    program, theta = new_program(res, data, context)
    law, lay = program.law, program.layout
    n, d = data.n_individuals, lay.n_random
    with torch.no_grad():
        L = program.omega_tril(theta)
        _, delta, rest = law.split(theta[lay.law])
        means, trils = law.means(delta), law.trils(L, rest)
    if getattr(res.estimation, "amortized", None) is not None:  # the encoder's forward pass
        _, eta, cov = encode_individuals(res, newdata)
        shift = np.asarray(res.law.get("shift", np.zeros(d)))
        loc = torch.as_tensor(eta + shift)
        tril = torch.linalg.cholesky(torch.as_tensor(cov))
    else:  # the best of the Newton paths started at each class mean
        loc, tril, best = None, None, None
        for k in range(law.K):
            local = LocalPosteriors(program, trils[k])
            local.loc = means[k].expand(n, d).clone()
            local.visited[:] = True
            local.refresh(theta, None, max_iter=MODE_STEPS, vi_iter=0)
            with torch.no_grad():
                value = program.log_joint(theta, local.loc, None)
            if best is None:
                loc, tril, best = local.loc.clone(), local.scale_tril.clone(), value
            else:
                better = value > best
                loc = torch.where(better.unsqueeze(-1), local.loc, loc)
                tril = torch.where(better.view(-1, 1, 1), local.scale_tril, tril)
                best = torch.maximum(best, value)
    K = int(n_samples or res.estimation.is_samples)
    sampler = ImportanceSampler(program, loc, tril, n_samples=K, seed=int(seed))
    result = sampler.evaluate(theta)
    return result.class_prob.to(torch.float64).numpy(), ids
