"""Synthetic CLIP-like features for testing generalisation to unseen generators.

Reals share structure: clusters (image content) in a low-dimensional "natural"
subspace plus small isotropic noise. Each generator adds an artefact along its
own direction. Every artefact direction is orthogonal to the natural subspace
and to the other generators', so a generator held out of training lies in a
direction no training generator used: a head that learned the training
directions cannot see it, while a good model of the real distribution should.
Features are L2-normalised, as CLIP features compared by cosine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SyntheticWorld:
    """Fixed structure: natural subspace, cluster centres, generator directions."""

    dim: int = 768
    natural_dim: int = 24
    clusters: int = 32
    generators: int = 5
    artefact: float = 1.2
    noise: float = 0.03
    seed: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        basis, _ = np.linalg.qr(rng.normal(size=(self.dim, self.natural_dim + self.generators)))
        self.natural = basis[:, : self.natural_dim].T  # (natural_dim, dim), orthonormal
        self.directions = basis[:, self.natural_dim :].T  # (generators, dim), orthonormal
        self.centres = rng.normal(0, 1.0, (self.clusters, self.natural_dim)) * 2.0

    def reals(self, n: int, seed: int) -> np.ndarray:
        """``n`` real features."""
        rng = np.random.default_rng(seed)
        coords = self.centres[rng.integers(0, self.clusters, n)] + rng.normal(
            0, 0.6, (n, self.natural_dim)
        )
        x = coords @ self.natural + rng.normal(0, self.noise, (n, self.dim))
        return _unit(x)

    def fakes(self, n: int, generator: int, seed: int) -> np.ndarray:
        """``n`` features of ``generator`` (0..generators-1): a real plus its artefact."""
        rng = np.random.default_rng(seed + 7919 * (generator + 1))
        coords = self.centres[rng.integers(0, self.clusters, n)] + rng.normal(
            0, 0.6, (n, self.natural_dim)
        )
        strength = self.artefact * (1 + 0.2 * rng.normal(size=(n, 1)))
        base = coords @ self.natural
        scale = np.linalg.norm(base, axis=1, keepdims=True)
        x = base + strength * scale / 4 * self.directions[generator]
        return _unit(x + rng.normal(0, self.noise, (n, self.dim)))


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
