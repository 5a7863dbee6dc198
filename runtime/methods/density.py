"""Real-only density scoring at run time: the PPCA model of real features and the combination.

The model and its rationale are described in :mod:`ufd.runtime.building.density`,
which fits it (``ufd-train --method realonly``); this module only scores with a
fitted model, so the method needs nothing from the tools above it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ufd.runtime.search.base import l2_normalise


@dataclass
class GaussianModel:
    """PPCA parameters of unit real features."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (k, D)
    variances: np.ndarray  # (k,)
    noise: float

    def score(self, features: np.ndarray) -> np.ndarray:
        """How atypical each row is for the reals, in standard deviations (float64)."""
        centred = l2_normalise(features).astype(np.float64) - self.mean
        projected = centred @ self.components.T
        residual = (centred**2).sum(axis=1) - (projected**2).sum(axis=1)
        k, rest = len(self.variances), len(self.mean) - len(self.variances)
        inside = (projected**2 / (self.variances + self.noise)).sum(axis=1)
        outside = residual / self.noise
        return np.asarray(
            np.maximum((inside - k) / np.sqrt(2 * k), np.abs(outside - rest) / np.sqrt(2 * rest))
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """For saving (``np.savez``)."""
        return {
            "mean": self.mean,
            "components": self.components,
            "variances": self.variances,
            "noise": np.array(self.noise),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> GaussianModel:
        """From :meth:`arrays` (a loaded ``.npz``)."""
        return cls(
            np.asarray(arrays["mean"], np.float64),
            np.asarray(arrays["components"], np.float64),
            np.asarray(arrays["variances"], np.float64),
            float(arrays["noise"]),
        )


def combined(knn: np.ndarray, gaussian: np.ndarray, z: tuple[float, ...]) -> np.ndarray:
    """The larger z-score of the two."""
    return np.maximum((knn - z[0]) / z[1], (gaussian - z[2]) / z[3])
