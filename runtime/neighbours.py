"""UnivFD's nearest-neighbour method: banks of real and fake features, k-NN vote.

Features are L2-normalised and compared by cosine distance ``d = 1 - cos``.
Each class has its own bank (an hnswlib index), so a query gets, per class,
its k nearest distances. From those two sorted lists:

* **k = 1** (the paper's rule): fake when the nearest fake is closer than the
  nearest real. ``nn_score = d_real / (d_real + d_fake)``: above 0.5 exactly
  when the nearest fake is closer (0.5 when both distances are 0).
* **k > 1**: the k nearest of the union (exact: the union's top k lies within
  the two per-class top k) vote; fake when fakes are the majority; a tie (even
  k) goes to the class whose neighbours have the smaller mean distance.
  ``nn_score`` = share of fake neighbours.

Search is exact (numpy, brute force) below ``exact_below`` vectors per bank,
HNSW above it; ``hnswlib`` does not store its query ``ef``, so it is set after
every load from the manifest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np

logger = logging.getLogger(__name__)

SPACE = "cosine"
_EXACT_CHUNK = 256


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


class HnswBank:
    """One class's bank of unit feature vectors behind an hnswlib index."""

    def __init__(self, index: hnswlib.Index, ef: int) -> None:
        self.index = index
        self.ef = ef
        self._vectors: np.ndarray | None = None

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        m: int = 16,
        ef_construction: int = 200,
        ef: int = 128,
        seed: int = 100,
        threads: int = -1,
    ) -> HnswBank:
        """Index ``vectors`` (rows) in cosine space."""
        vectors = l2_normalise(vectors)
        index = hnswlib.Index(space=SPACE, dim=vectors.shape[1])
        size = max(len(vectors), 1)
        index.init_index(max_elements=size, M=m, ef_construction=ef_construction, random_seed=seed)
        bank = cls(index, ef)
        bank.add(vectors, threads)
        return bank

    @classmethod
    def load(cls, path: Path, dim: int, ef: int) -> HnswBank:
        """Load a saved index; ``dim`` and ``ef`` come from the manifest (hnswlib keeps neither)."""
        index = hnswlib.Index(space=SPACE, dim=dim)
        index.load_index(str(path))
        return cls(index, ef)

    def __len__(self) -> int:
        return self.index.get_current_count()

    @property
    def dim(self) -> int:
        """Feature dimension."""
        return self.index.dim

    def add(self, vectors: np.ndarray, threads: int = -1) -> None:
        """Append vectors (normalised here), growing the index as needed."""
        vectors = l2_normalise(vectors)
        start = len(self)
        needed = start + len(vectors)
        if needed > self.index.get_max_elements():
            self.index.resize_index(needed)
        self.index.add_items(vectors, np.arange(start, needed), num_threads=threads)
        self._vectors = None

    def save(self, path: Path) -> None:
        """Write the hnswlib index file."""
        self.index.save_index(str(path))

    def vectors(self) -> np.ndarray:
        """All stored (unit) vectors in id order, for exact search."""
        if self._vectors is None:
            ids = np.arange(len(self))
            self._vectors = np.asarray(self.index.get_items(ids), dtype=np.float32)
        return self._vectors

    def search(
        self, queries: np.ndarray, k: int, exact: bool, threads: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest (ids, cosine distances) per query, nearest first.

        Banks smaller than ``k`` pad with id -1 and distance ``inf``.
        """
        queries = l2_normalise(queries)
        k_eff = min(k, len(self))
        if exact:
            ids, dist = _exact_knn(self.vectors(), queries, k_eff)
        else:
            self.index.set_ef(max(self.ef, k_eff))
            ids, dist = self.index.knn_query(queries, k=k_eff, num_threads=threads)
            ids, dist = ids.astype(np.int64), dist.astype(np.float32)
        if k_eff < k:
            pad = k - k_eff
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            dist = np.pad(dist, ((0, 0), (0, pad)), constant_values=np.inf)
        return ids, dist


def _exact_knn(bank: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids_out = np.empty((len(queries), k), dtype=np.int64)
    dist_out = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), _EXACT_CHUNK):
        dist = 1.0 - queries[start : start + _EXACT_CHUNK] @ bank.T
        part = np.argpartition(dist, k - 1, axis=1)[:, :k] if k < bank.shape[0] else None
        if part is None:
            part = np.broadcast_to(np.arange(bank.shape[0]), dist.shape)
        part_dist = np.take_along_axis(dist, part, axis=1)
        order = np.argsort(part_dist, axis=1, kind="stable")
        ids_out[start : start + len(dist)] = np.take_along_axis(part, order, axis=1)
        dist_out[start : start + len(dist)] = np.take_along_axis(part_dist, order, axis=1)
    return ids_out, dist_out


@dataclass(frozen=True)
class Vote:
    """The NN decision for a batch of queries."""

    is_fake: np.ndarray  # (N,) bool
    score: np.ndarray  # (N,) float in [0, 1], higher = more fake
    dist_real: np.ndarray  # (N,) distance to the nearest real
    dist_fake: np.ndarray  # (N,) distance to the nearest fake


def knn_vote(dist_real: np.ndarray, dist_fake: np.ndarray, k: int) -> Vote:
    """Vote from per-class sorted neighbour distances (N, >=k) each; see the module doc."""
    d_real, d_fake = dist_real[:, 0].astype(np.float64), dist_fake[:, 0].astype(np.float64)
    if k == 1:
        total = d_real + d_fake
        score = np.where(total > 0, d_real / np.where(total > 0, total, 1.0), 0.5)
        return Vote(d_fake < d_real, score, d_real, d_fake)
    dist = np.concatenate([dist_real[:, :k], dist_fake[:, :k]], axis=1).astype(np.float64)
    fake_flag = np.concatenate([np.zeros_like(dist_real[:, :k]), np.ones_like(dist_fake[:, :k])], 1)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    top_dist = np.take_along_axis(dist, order, axis=1)
    top_fake = np.take_along_axis(fake_flag, order, axis=1).astype(bool)
    n_fake = top_fake.sum(axis=1)
    n_real = k - n_fake
    mean_fake = np.where(top_fake, top_dist, 0).sum(1) / np.maximum(n_fake, 1)
    mean_real = np.where(~top_fake, top_dist, 0).sum(1) / np.maximum(n_real, 1)
    tie_to_fake = (n_fake == n_real) & (mean_fake < mean_real)
    is_fake = (n_fake > n_real) | tie_to_fake
    return Vote(is_fake, n_fake / k, d_real, d_fake)
