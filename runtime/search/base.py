"""A bank of unit feature vectors: exact search here, approximate search in each backend.

Features are L2-normalised and compared by cosine distance ``d = 1 - cos``.
Exact search streams over the bank in blocks (bounded memory) and, by default,
computes each query on its own, so a record never depends on its batch
neighbours; approximate (HNSW) search belongs to the backend
(:mod:`ufd.runtime.search.usearch_bank`, :mod:`ufd.runtime.search.hnsw`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

_EXACT_CHUNK = 256  # queries per block of distances
_EXACT_BANK_CHUNK = 131_072  # bank vectors per block of exact search


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return np.asarray(features / np.maximum(norms, 1e-12), np.float32)


class VectorBank:
    """Unit vectors with ids ``0..n-1``; subclasses store them and search approximately."""

    ef: int
    """Query-time effort of approximate search (HNSW ef)."""

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        """Feature dimension."""
        raise NotImplementedError

    def vectors(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Stored vectors ``start:stop`` as float32 unit rows, in id order."""
        raise NotImplementedError

    def approximate(
        self, queries: np.ndarray, k: int, threads: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Approximate k-NN of unit ``queries``: (ids, distances), nearest first."""
        raise NotImplementedError

    def add(self, vectors: np.ndarray, threads: int) -> None:
        """Append unit ``vectors`` (ids continue from ``len``)."""
        raise NotImplementedError

    def save(self, path: Path, vectors_path: Path | None = None) -> None:
        """Write the index (and, where the backend keeps them apart, the fp32 rows)."""
        raise NotImplementedError

    def exact_blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(unit vectors, their ids) block by block, for exact search."""
        for start in range(0, len(self), _EXACT_BANK_CHUNK):
            stop = min(start + _EXACT_BANK_CHUNK, len(self))
            yield self.vectors(start, stop), np.arange(start, stop)

    def search(
        self, queries: np.ndarray, k: int, exact: bool, threads: int = 1, invariant: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``min(k, len)`` nearest (ids, cosine distances) per query, nearest first.

        Exact search with ``invariant`` computes each query's distances on its own
        (a matrix-vector product), so a record never depends on which queries shared
        its batch (a matrix product's rounding does: BLAS blocks by the batch's shape);
        ``invariant=False`` batches them (faster; for build-time measurements).
        """
        queries = l2_normalise(queries)
        k = min(k, len(self))
        if exact:
            return self._exact(queries, k, invariant)
        ids, dist = self.approximate(queries, k, threads)
        return ids.astype(np.int64), dist.astype(np.float32)

    def _exact(
        self, queries: np.ndarray, k: int, invariant: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force k-NN, streaming over the bank in blocks (bounded memory)."""
        best_ids = np.full((len(queries), 0), -1, dtype=np.int64)
        best_dist = np.full((len(queries), 0), np.inf, dtype=np.float32)
        for block, labels in self.exact_blocks():
            ids, dist = _exact_knn(
                np.ascontiguousarray(block), queries, min(k, len(block)), invariant
            )
            best_ids = np.concatenate([best_ids, labels[ids]], axis=1)
            best_dist = np.concatenate([best_dist, dist], axis=1)
            order = np.argsort(best_dist, axis=1, kind="stable")[:, :k]
            best_ids = np.take_along_axis(best_ids, order, axis=1)
            best_dist = np.take_along_axis(best_dist, order, axis=1)
        return best_ids, best_dist


class FloatBank(VectorBank):
    """Unit fp32 rows held in memory, searched exactly (references, build-time checks)."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def dim(self) -> int:
        """Feature dimension."""
        return int(self.rows.shape[1])

    def vectors(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop``."""
        return self.rows[start:stop]


def _exact_knn(
    bank: np.ndarray, queries: np.ndarray, k: int, invariant: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    ids_out = np.empty((len(queries), k), dtype=np.int64)
    dist_out = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), _EXACT_CHUNK):
        chunk = queries[start : start + _EXACT_CHUNK]
        products = np.stack([bank @ q for q in chunk]) if invariant else chunk @ bank.T
        dist = 1.0 - products
        if k < bank.shape[0]:
            part = np.argpartition(dist, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(bank.shape[0]), dist.shape)
        part_dist = np.take_along_axis(dist, part, axis=1)
        order = np.argsort(part_dist, axis=1, kind="stable")
        ids_out[start : start + len(dist)] = np.take_along_axis(part, order, axis=1)
        dist_out[start : start + len(dist)] = np.take_along_axis(part_dist, order, axis=1)
    return ids_out, dist_out
