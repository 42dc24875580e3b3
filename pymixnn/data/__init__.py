"""The data layer: the validated long table (:class:`Data`, :mod:`pymixnn.data.table`, with its checks
in :mod:`pymixnn.data.checks` and date conversion in :mod:`pymixnn.data.dates`) and marker matrices
(:mod:`pymixnn.data.markers`, reading in :mod:`pymixnn.data.markers_io`). Plain numpy/pandas;
nothing here imports torch."""

from pymixnn.data.table import Data

__all__ = ["Data"]
