"""Synthetic feature geometries for measuring generalisation to an unseen generator.

Every geometry has reals, ``generators - 1`` training ("seen") generators and one
held-out ("unseen") generator, as 768-d unit vectors (CLIP features are compared
by cosine). Reals share a low-dimensional "natural" subspace (image content)
plus small isotropic noise; seen generators always add an artefact outside it.
What differs is where the unseen generator's difference lies:

* ``orthogonal``: along a direction orthogonal to everything seen (outside the
  reals' span).
* ``fingerprint``: the seen generators share a noise fingerprint (a common
  direction) besides their own artefacts; the unseen one lacks it and has its
  own artefact (outside the span). A head that learned the fingerprint misses it.
* ``overdone``: the unseen generator over-does a natural attribute: it pushes
  one natural coordinate 5 standard deviations further (inside the span).
* ``curved``: the reals lie on a ring in two natural coordinates; the unseen
  generator's images fall inside the ring, between real modes (inside the span,
  off the real manifold), as an averaging generator's would.
"""

from __future__ import annotations

import numpy as np

DIM = 768


class Geometry:
    """Reals, seen generators ``0..generators-2`` and the unseen one, ``generators-1``."""

    name = "base"
    outside_span = True
    generators = 5

    def __init__(self, seed: int = 0, dim: int = DIM, natural: int = 24) -> None:
        rng = np.random.default_rng(10_000 + seed)
        basis, _ = np.linalg.qr(rng.normal(size=(dim, natural + self.generators + 1)))
        self.natural = basis[:, :natural].T
        self.directions = basis[:, natural:].T  # generators' artefacts, then one spare
        self.centres = rng.normal(0, 1, (32, natural)) * 2.0
        self.dim, self.seed = dim, seed

    def coords(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Natural coordinates of ``n`` real images."""
        return self.centres[rng.integers(0, len(self.centres), n)] + rng.normal(
            0, 0.6, (n, self.natural.shape[0])
        )

    def embed(self, coords: np.ndarray, extra: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Unit features from natural coordinates plus an artefact term."""
        x = coords @ self.natural + extra + rng.normal(0, 0.03, (len(coords), self.dim))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def reals(self, n: int, seed: int) -> np.ndarray:
        """``n`` real features."""
        rng = np.random.default_rng(seed)
        return self.embed(self.coords(n, rng), 0.0, rng)

    def fakes(self, n: int, generator: int, seed: int) -> np.ndarray:
        """``n`` features of ``generator``."""
        rng = np.random.default_rng(seed + 7919 * (generator + 1))
        coords = self.coords(n, rng)
        if generator < self.generators - 1:
            return self.embed(coords, self._artefact(coords, generator, rng), rng)
        return self.unseen(coords, rng)

    def _artefact(self, coords: np.ndarray, direction: int, rng) -> np.ndarray:
        scale = np.linalg.norm(coords @ self.natural, axis=1, keepdims=True)
        strength = 1.2 * (1 + 0.2 * rng.normal(size=(len(coords), 1)))
        return strength * scale / 4 * self.directions[direction]

    def unseen(self, coords: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The unseen generator's features (subclasses say where they lie)."""
        return self.embed(coords, self._artefact(coords, self.generators - 1, rng), rng)


class Orthogonal(Geometry):
    """The unseen artefact is orthogonal to the natural subspace and every seen one."""

    name = "orthogonal"


class Fingerprint(Geometry):
    """Seen generators share a fingerprint direction; the unseen one does not."""

    name = "fingerprint"

    def fakes(self, n: int, generator: int, seed: int) -> np.ndarray:
        """Seen: the shared fingerprint plus a weaker own artefact; unseen: its own only."""
        rng = np.random.default_rng(seed + 7919 * (generator + 1))
        coords = self.coords(n, rng)
        if generator == self.generators - 1:
            return self.unseen(coords, rng)
        shared = self._artefact(coords, self.generators, rng)  # the spare direction
        own = 0.4 * self._artefact(coords, generator, rng)
        return self.embed(coords, shared + own, rng)


class Overdone(Geometry):
    """The unseen generator pushes one natural attribute far past the reals (in span)."""

    name = "overdone"
    outside_span = False

    def unseen(self, coords: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Reals with their least varied natural attribute pushed 5 sd out."""
        real = self.coords(4000, np.random.default_rng(self.seed))
        j = int(np.argmin(real.std(axis=0)))
        pushed, side = coords.copy(), np.sign(rng.normal(size=len(coords)))
        pushed[:, j] = real[:, j].mean() + 5 * real[:, j].std() * side
        return self.embed(pushed, 0.0, rng)


class Curved(Geometry):
    """Reals on a ring in two natural coordinates; the unseen generator fills its inside."""

    name = "curved"
    outside_span = False
    radius = 6.0

    def coords(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Natural coordinates with the first two on the ring."""
        coords = super().coords(n, rng)
        angle = rng.uniform(0, 2 * np.pi, n)
        coords[:, 0] = self.radius * np.cos(angle) + rng.normal(0, 0.15, n)
        coords[:, 1] = self.radius * np.sin(angle) + rng.normal(0, 0.15, n)
        return coords

    def unseen(self, coords: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Coordinates moved inside the ring."""
        inside = coords.copy()
        radius = rng.uniform(0.0, 0.6 * self.radius, len(coords))
        angle = rng.uniform(0, 2 * np.pi, len(coords))
        inside[:, 0], inside[:, 1] = radius * np.cos(angle), radius * np.sin(angle)
        return self.embed(inside, 0.0, rng)


GEOMETRIES = {cls.name: cls for cls in (Orthogonal, Fingerprint, Overdone, Curved)}
