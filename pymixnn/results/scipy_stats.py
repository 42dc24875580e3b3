"""``scipy.stats``, imported when first used.

Its import takes 0.3-0.5 s, which was a third of a small fit's first call in a fresh process
(theophylline); the results layer needs it only after the fit (confidence intervals, tests,
densities, plots).

>>> from pymixnn.results.scipy_stats import stats
>>> round(float(stats.norm.ppf(0.975)), 4)
1.96
"""

from __future__ import annotations

from typing import Any

__all__ = ["stats"]


class _LazyStats:
    """Attribute access forwarded to ``scipy.stats``, imported on first access."""

    def __getattr__(self, name: str) -> Any:
        from scipy import stats as module

        return getattr(module, name)


stats = _LazyStats()
