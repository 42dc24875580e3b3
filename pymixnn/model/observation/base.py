"""The base class of the observation families, and the row checks they share."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from pymixnn.model import transforms as tr
from pymixnn.validation.errors import show_value

__all__ = ["Observation", "row_error", "check_counts", "LOG_2PI", "BIG", "MAX_LOG_RATE"]

LOG_2PI = math.log(2 * math.pi)
BIG = 1e4  # stands for an infinite threshold (sigmoid(1e4) is 1 in float64)
MAX_LOG_RATE = 80.0


def row_error(column: str, problem: str, values: pd.Series, bad) -> ValueError:
    pos = int(np.flatnonzero(np.asarray(bad))[0])
    value = values.iloc[pos]
    value = value.item() if isinstance(value, np.generic) else value
    return ValueError(f"column {column!r} {problem}: row {show_value(values.index[pos])} has value {value!r}")


def check_counts(y: pd.Series, column: str, family: str) -> None:
    values = y.to_numpy(dtype=np.float64)
    bad = ~(values >= 0)
    if bad.any():
        raise row_error(column, f"must hold non-negative counts for observation={family!r}", y, bad)
    bad = values != np.round(values)
    if bad.any():
        raise row_error(column, f"must hold integer counts for observation={family!r}", y, bad)


@dataclass(frozen=True)
class Observation:
    """Base class of the observation models (see the module docstring)."""

    name = "observation"
    has_error_model: ClassVar[bool] = False  # the model's residual error model (error=) applies
    encodes_response: ClassVar[bool] = False  # y is coded (ordinal: 0..K-1) before the Data is built
    links: ClassVar[tuple[str, ...]] = ()
    needs: ClassVar[tuple[str, ...]] = ()  # auxiliary columns: "trials"

    # ---- parameters ----------------------------------------------------------------------------
    def parameter_names(self, model) -> tuple[str, ...]:
        return ()

    def parameter_scales(self, model) -> tuple[str, ...]:
        """Transform of each reported parameter (scale of its confidence interval)."""
        return ("log",) * len(self.parameter_names(model))

    def initial_raw(self, model, y: np.ndarray, aux: dict) -> list[float]:
        return []

    def natural(self, raw: torch.Tensor, model) -> dict[str, torch.Tensor]:
        return dict(zip(self.parameter_names(model), torch.exp(raw)))

    def reported(self, raw: torch.Tensor, model) -> list[torch.Tensor]:
        """Reported values of the parameters, in the order of ``parameter_names``."""
        return list(self.natural(raw, model).values())

    # ---- the law -------------------------------------------------------------------------------
    def inverse_link(self, f: torch.Tensor) -> torch.Tensor:
        return tr.forward(getattr(self, "link", "identity"), f)

    def log_prob(self, y, f, params, aux) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def mean(self, f, params, aux) -> torch.Tensor:
        return self.inverse_link(f)

    def variance(self, f, params, aux) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, f, params, aux, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover

    # ---- data ----------------------------------------------------------------------------------
    def validate(self, y: pd.Series, column: str, aux: Mapping[str, pd.Series]) -> None:
        """Raise a ValueError naming the column, row and value of the first impossible y."""

    def working_response(self, y: np.ndarray, aux: dict) -> np.ndarray:
        """y on the scale of the structural function, for data-based starting values."""
        return y

    def pad_value(self, model) -> float:
        return 0.0

    def resolve_response(self, y: pd.Series, column: str) -> Observation:
        """The spec completed from the response column (ordinal: its levels), its values checked."""
        return self

    def encode_response(self, y: pd.Series) -> np.ndarray:
        """The response column as the float64 values the likelihood reads (ordinal: codes 0..K-1)."""
        return y.to_numpy(dtype=np.float64)

    def decode_simulated(self, codes: np.ndarray) -> np.ndarray:
        """Simulated values as the user sees them (ordinal: the level of each category code)."""
        return codes

    def describe(self, model) -> str:
        link = getattr(self, "link", None)
        return f"{self.name} observations" + (f" ({link} link)" if link else "")

    def statistic(self) -> str:
        """What a VPC shows for this family: "mean", "proportion" or "percentiles"."""
        return "mean"
