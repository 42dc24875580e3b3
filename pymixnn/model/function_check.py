"""The user's structural function evaluated once at the start values, before the fit: a wrong
output shape, an exception or a non-finite prediction is a one-line error."""

from __future__ import annotations

from collections.abc import Mapping

from pymixnn.validation.errors import InputError, show_value

__all__ = ["check_function"]


def check_function(model, data, values: Mapping[str, float]) -> None:
    """Evaluate ``model``'s structural function (torch) at ``values`` on the first individual of
    ``data``: a wrong output shape, an exception or a non-finite prediction is a one-line error."""
    import torch

    psi = torch.tensor([[values[p] for p in model.parameters]], dtype=torch.float64).unsqueeze(-2)
    x_pad, _, mask = data.padded()
    x = torch.as_tensor(x_pad[:1], dtype=torch.float64)
    try:
        out = model.function(psi, x)
    except Exception as err:  # the user's function: report it with the shapes it was given
        raise InputError(
            f"the structural function failed on psi of shape {tuple(psi.shape)} "
            f"and x of shape {tuple(x.shape)}: {err}"
        ) from err
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(x.shape[:-1]):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(
            f"the structural function must return a tensor of shape "
            f"{tuple(x.shape[:-1])} for psi {tuple(psi.shape)} and x {tuple(x.shape)}; "
            f"got {shape}"
        )
    if not bool(torch.isfinite(out[0][torch.as_tensor(mask[0])]).all()):
        raise InputError(
            f"the structural function gives non-finite predictions at the initial "
            f"values {dict(values)} for individual {show_value(data.ids[0])}; change init"
        )
