"""UnivFD's nearest-neighbour method: one labelled bank of features, k-NN vote.

Features are L2-normalised and compared by cosine distance ``d = 1 - cos``.
The bank holds real and fake features with a label each (0 real, 1 fake) in
one hnswlib index. A query fetches its ``K = max(k, 16)`` nearest neighbours:

* **k = 1** (the paper's rule): fake when the nearest fake is closer than the
  nearest real, i.e. when the nearest neighbour is fake.
  ``nn_score = d_real / (d_real + d_fake)``: above 0.5 exactly when the
  nearest fake is closer (0.5 when both are 0).
* **k > 1**: the k nearest vote; fake when fakes are the majority; a tie (even
  k) goes to the class whose voters have the smaller mean distance.
  ``nn_score`` = share of fake voters.
* ``d_real`` / ``d_fake`` are the distances to the nearest real / fake among
  the K candidates. A class absent from them is farther than the K-th
  candidate: its distance is reported as ``None`` and, in the k = 1 score,
  bounded by the K-th distance.

Search is exact (numpy, brute force) below ``exact_below`` vectors, HNSW
above it. hnswlib saves neither its space, dim nor query ``ef``: they come from
the manifest at every load.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np

from ufd.runtime.search.hnsw_file import StoredRows, read_stored_rows

logger = logging.getLogger(__name__)

SPACE = "cosine"
CANDIDATES = 16
_EXACT_CHUNK = 256  # queries per matrix product
_EXACT_BANK_CHUNK = 131_072  # bank vectors per block of exact search
_ADD_CHUNK = 100_000
_CACHE_SHARE_OF_FREE_MEMORY = 0.25  # a vector copy for exact search may take this much
_CACHE_VECTORS_UNKNOWN_MEMORY = 200_000  # the cap where free memory cannot be read


def _free_memory_bytes() -> int | None:
    """Memory the OS can still give this process (None where it cannot be read)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


class HnswBank:
    """Unit feature vectors behind an hnswlib index (ids 0..n-1 in insertion order)."""

    def __init__(self, index: hnswlib.Index, ef: int, path: Path | None = None) -> None:
        """Wrap ``index``; ``path`` is the file it was loaded from, if unchanged since."""
        self.index = index
        self.ef = ef
        self._path = path
        self._rows: StoredRows | None = None
        self._warned_uncached = False

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
        index = hnswlib.Index(space=SPACE, dim=vectors.shape[1])
        size = max(len(vectors), 1)
        index.init_index(max_elements=size, M=m, ef_construction=ef_construction, random_seed=seed)
        bank = cls(index, ef)
        bank.add(vectors, threads)
        return bank

    @classmethod
    def load(cls, path: Path, dim: int, ef: int) -> HnswBank:
        """Load a saved index; ``dim`` and ``ef`` come from the manifest."""
        index = hnswlib.Index(space=SPACE, dim=dim)
        index.load_index(str(path))
        return cls(index, ef, path)

    def __len__(self) -> int:
        return self.index.get_current_count()

    @property
    def dim(self) -> int:
        """Feature dimension."""
        return self.index.dim

    def add(self, vectors: np.ndarray, threads: int = -1) -> None:
        """Append vectors (normalised here, in chunks), growing the index as needed."""
        start = len(self)
        needed = start + len(vectors)
        if needed > self.index.get_max_elements():
            self.index.resize_index(needed)
        for offset in range(0, len(vectors), _ADD_CHUNK):
            chunk = l2_normalise(vectors[offset : offset + _ADD_CHUNK])
            ids = np.arange(start + offset, start + offset + len(chunk))
            self.index.add_items(chunk, ids, num_threads=threads)
        self._path = None  # the file no longer holds every vector
        self._rows = None

    def save(self, path: Path) -> None:
        """Write the hnswlib index file."""
        self.index.save_index(str(path))

    def vectors(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Stored (unit) vectors ``start:stop`` in id order, copied out of hnswlib."""
        stop = len(self) if stop is None else min(stop, len(self))
        return np.asarray(self.index.get_items(np.arange(start, stop)), dtype=np.float32)

    def _exact_rows(self) -> StoredRows | None:
        """Every vector with its id, for exact search; ``None``: read blocks from hnswlib.

        Read from the index file when the bank was loaded from one (fast), else
        copied out of hnswlib (slow). Kept in memory when the copy fits in a
        quarter of the free memory; a file that does not fit is re-read from
        the page cache at every search.
        """
        if self._rows is not None:
            return self._rows
        stored = read_stored_rows(self._path, self.index) if self._path else None
        if self._copy_fits():
            if stored is None:
                stored = StoredRows(self.vectors(), np.arange(len(self), dtype=np.int64))
            self._rows = StoredRows(np.ascontiguousarray(stored.rows), stored.labels)
            return self._rows
        if stored is None and not self._warned_uncached:
            self._warned_uncached = True
            logger.warning(
                "exact search over %d vectors copies them out of hnswlib on every search "
                "(slow): a copy would not fit in memory and the bank has no index file. "
                "Drop --exact to use HNSW, or save the bank and load it again.",
                len(self),
            )
        return stored

    def _copy_fits(self) -> bool:
        free = _free_memory_bytes()
        if free is None:
            return len(self) <= _CACHE_VECTORS_UNKNOWN_MEMORY
        return len(self) * self.dim * 4 <= _CACHE_SHARE_OF_FREE_MEMORY * free

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
        self.index.set_ef(max(self.ef, k))
        ids, dist = self.index.knn_query(queries, k=k, num_threads=threads)
        return ids.astype(np.int64), dist.astype(np.float32)

    def _exact(
        self, queries: np.ndarray, k: int, invariant: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force k-NN, streaming over the bank in chunks (bounded memory)."""
        stored = self._exact_rows()
        best_ids = np.full((len(queries), 0), -1, dtype=np.int64)
        best_dist = np.full((len(queries), 0), np.inf, dtype=np.float32)
        for start in range(0, len(self), _EXACT_BANK_CHUNK):
            stop = min(start + _EXACT_BANK_CHUNK, len(self))
            if stored is None:
                block, labels = self.vectors(start, stop), np.arange(start, stop)
            else:
                block = np.ascontiguousarray(stored.rows[start:stop])
                labels = stored.labels[start:stop]
            ids, dist = _exact_knn(block, queries, min(k, len(block)), invariant)
            best_ids = np.concatenate([best_ids, labels[ids]], axis=1)
            best_dist = np.concatenate([best_dist, dist], axis=1)
            order = np.argsort(best_dist, axis=1, kind="stable")[:, :k]
            best_ids = np.take_along_axis(best_ids, order, axis=1)
            best_dist = np.take_along_axis(best_dist, order, axis=1)
        return best_ids, best_dist


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


@dataclass(frozen=True)
class Vote:
    """The NN decision for a batch of queries."""

    is_fake: np.ndarray  # (N,) bool
    score: np.ndarray  # (N,) in [0, 1], higher = more fake
    dist_real: np.ndarray  # (N,) nearest real among the candidates, nan if none
    dist_fake: np.ndarray  # (N,) nearest fake among the candidates, nan if none


def knn_vote(dist: np.ndarray, fake: np.ndarray, k: int) -> Vote:
    """Vote from candidates sorted by distance: ``dist`` (N, K) and ``fake`` (N, K) bool.

    See the module docstring for the rules; ``K >= k`` is required.
    """
    if dist.shape[1] < k:
        raise ValueError(f"need at least k={k} candidates, got {dist.shape[1]}")
    dist = dist.astype(np.float64)
    fake = fake.astype(bool)
    d_real = _first(dist, ~fake)
    d_fake = _first(dist, fake)
    if k == 1:
        bound = dist[:, -1]
        r, f = np.where(np.isnan(d_real), bound, d_real), np.where(np.isnan(d_fake), bound, d_fake)
        total = r + f
        score = np.where(total > 0, r / np.where(total > 0, total, 1.0), 0.5)
        return Vote(fake[:, 0].copy(), score, d_real, d_fake)
    top_dist, top_fake = dist[:, :k], fake[:, :k]
    n_fake = top_fake.sum(axis=1)
    n_real = k - n_fake
    mean_fake = np.where(top_fake, top_dist, 0).sum(1) / np.maximum(n_fake, 1)
    mean_real = np.where(~top_fake, top_dist, 0).sum(1) / np.maximum(n_real, 1)
    is_fake = (n_fake > n_real) | ((n_fake == n_real) & (mean_fake < mean_real))
    return Vote(is_fake, n_fake / k, d_real, d_fake)


def _first(dist: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, the first (smallest) distance where ``mask`` holds, else nan."""
    has = mask.any(axis=1)
    idx = np.argmax(mask, axis=1)
    return np.where(has, dist[np.arange(len(dist)), idx], np.nan)


class LabelledBank:
    """An :class:`HnswBank` plus one label per vector (1 fake, 0 real)."""

    def __init__(self, bank: HnswBank, labels: np.ndarray, exact_below: int) -> None:
        if len(labels) != len(bank):
            raise ValueError(f"{len(labels)} labels for {len(bank)} vectors")
        self.bank = bank
        self.labels = labels.astype(bool)
        self.exact_below = exact_below

    def vote(
        self, features: np.ndarray, k: int, exact: bool | None = None, threads: int = 1
    ) -> Vote:
        """k-NN vote for each feature row; ``exact=None`` chooses by bank size."""
        use_exact = self.use_exact(exact)
        ids, dist = self.bank.search(features, max(k, CANDIDATES), use_exact, threads)
        return knn_vote(dist, self.labels[ids], k)

    def use_exact(self, exact: bool | None) -> bool:
        """Whether a search runs exact: forced, or chosen by bank size."""
        return len(self.bank) < self.exact_below if exact is None else exact
