"""The hnswlib backend (optional: ``pip install hnswlib``; banks of ufd 0.1 use it).

hnswlib saves neither its space, its dimension nor its query ``ef``: they come
from the manifest at every load. Its exact search reads the vectors straight
from the index file (:mod:`ufd.runtime.search.hnsw_file`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ufd.runtime.errors import BundleError
from ufd.runtime.search import base
from ufd.runtime.search.base import VectorBank, l2_normalise
from ufd.runtime.search.hnsw_file import StoredRows, read_stored_rows

logger = logging.getLogger(__name__)

SPACE = "cosine"
_ADD_CHUNK = 100_000
_CACHE_SHARE_OF_FREE_MEMORY = 0.25  # a vector copy for exact search may take this much
_CACHE_VECTORS_UNKNOWN_MEMORY = 200_000  # the cap where free memory cannot be read


def _hnswlib() -> Any:
    try:
        import hnswlib
    except ModuleNotFoundError as e:
        raise BundleError(
            "this bank was built with hnswlib, which is not installed: pip install hnswlib "
            "(needs a C++ compiler), or rebuild the bank with ufd-index (usearch, wheels only)"
        ) from e
    return hnswlib


def _free_memory_bytes() -> int | None:
    """Memory the OS can still give this process (None where it cannot be read)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


class HnswBank(VectorBank):
    """Unit feature vectors behind an hnswlib index (ids 0..n-1 in insertion order)."""

    def __init__(self, index: Any, ef: int, path: Path | None = None) -> None:
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
        index = _hnswlib().Index(space=SPACE, dim=vectors.shape[1])
        size = max(len(vectors), 1)
        index.init_index(max_elements=size, M=m, ef_construction=ef_construction, random_seed=seed)
        bank = cls(index, ef)
        bank.add(vectors, threads)
        return bank

    @classmethod
    def load(cls, path: Path, dim: int, ef: int) -> HnswBank:
        """Load a saved index; ``dim`` and ``ef`` come from the manifest."""
        index = _hnswlib().Index(space=SPACE, dim=dim)
        index.load_index(str(path))
        return cls(index, ef, path)

    def __len__(self) -> int:
        return int(self.index.get_current_count())

    @property
    def dim(self) -> int:
        """Feature dimension."""
        return int(self.index.dim)

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

    def save(self, path: Path, vectors_path: Path | None = None) -> None:
        """Write the hnswlib index file (it holds the vectors: ``vectors_path`` unused)."""
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

    def approximate(
        self, queries: np.ndarray, k: int, threads: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k-NN of hnswlib at ``ef`` (at least k)."""
        self.index.set_ef(max(self.ef, k))
        ids, dist = self.index.knn_query(queries, k=k, num_threads=threads)
        return np.asarray(ids), np.asarray(dist)

    def exact_blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Blocks from the index file (or a kept copy) when there is one, else hnswlib."""
        stored = self._exact_rows()
        if stored is None:
            yield from super().exact_blocks()
            return
        for start in range(0, len(self), base._EXACT_BANK_CHUNK):
            stop = min(start + base._EXACT_BANK_CHUNK, len(self))
            yield stored.rows[start:stop], stored.labels[start:stop]
