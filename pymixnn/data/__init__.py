"""The data layer: the validated long table (:class:`Data`) and marker matrices
(:mod:`pymixnn.data.markers`). Plain numpy/pandas; nothing here imports torch."""
from pymixnn.data.table import Data

__all__ = ["Data"]
