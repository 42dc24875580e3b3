"""Zero-mean laws of one random effect on the transformed scale, for simulating non-Gaussian random
effects with known truth (:func:`pymixnn.simulate.simulate_nlme`'s ``laws``): each has ``sample``,
``logpdf`` and ``variance``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["RandomEffectLaw1D", "NormalMixture1D", "SkewNormal1D"]


class RandomEffectLaw1D:
    """A zero-mean law for one random effect (transformed scale): ``sample``, ``logpdf``, ``variance``."""

    variance: float

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        raise NotImplementedError

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class NormalMixture1D(RandomEffectLaw1D):
    """sum_k w_k N(m_k, s_k^2), recentred to mean 0 (so ``mu`` stays the mean of phi).

    >>> from pymixnn.simulate import NormalMixture1D
    >>> law = NormalMixture1D.separated(weight=0.4, separation=4.0, sd=0.1)
    >>> [round(float(m), 3) for m in law.means], round(law.variance, 4)
    ([-0.24, 0.16], 0.0484)
    """

    def __init__(self, weights: Sequence[float], means: Sequence[float], sds: Sequence[float]) -> None:
        w = np.asarray(weights, float)
        if np.any(w <= 0) or abs(w.sum() - 1) > 1e-9:
            raise ValueError(f"weights must be positive and sum to 1, got {list(weights)}")
        m, s = np.asarray(means, float), np.asarray(sds, float)
        self.weights, self.means, self.sds = w, m - (w * m).sum(), s
        self.variance = float((w * (s**2 + self.means**2)).sum())

    @classmethod
    def separated(cls, weight: float, separation: float, sd: float) -> NormalMixture1D:
        """Two components of equal sd, ``separation`` sds apart, the first with ``weight``."""
        return cls([weight, 1 - weight], [0.0, separation * sd], [sd, sd])

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.sample_with_labels(rng, n)[0]

    def sample_with_labels(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n draws and the component (0..K-1) each came from (the same draws as :meth:`sample`)."""
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        return self.means[k] + self.sds[k] * rng.standard_normal(n), k

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, float)[..., None]
        comp = (
            np.log(self.weights)
            - np.log(self.sds)
            - 0.5 * np.log(2 * np.pi)
            - 0.5 * ((x - self.means) / self.sds) ** 2
        )
        top = comp.max(-1, keepdims=True)
        return (top + np.log(np.exp(comp - top).sum(-1, keepdims=True)))[..., 0]

    def __repr__(self) -> str:
        return (
            f"NormalMixture1D(weights={self.weights.round(4).tolist()}, "
            f"means={self.means.round(4).tolist()}, sds={self.sds.round(4).tolist()})"
        )


class SkewNormal1D(RandomEffectLaw1D):
    """Azzalini's skew normal with shape ``alpha`` and scale ``omega``, recentred to mean 0."""

    def __init__(self, alpha: float, omega: float) -> None:
        from scipy import stats

        self.alpha, self.omega = float(alpha), float(omega)
        self._dist = stats.skewnorm(self.alpha, scale=self.omega)
        self._mean = float(self._dist.mean())
        self.variance = float(self._dist.var())

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        delta = self.alpha / np.sqrt(1 + self.alpha**2)
        u0, v = rng.standard_normal(n), rng.standard_normal(n)
        x = delta * np.abs(u0) + np.sqrt(1 - delta**2) * v
        return self.omega * x - self._mean

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        return self._dist.logpdf(np.asarray(x, float) + self._mean)

    def __repr__(self) -> str:
        return f"SkewNormal1D(alpha={self.alpha}, omega={self.omega})"
