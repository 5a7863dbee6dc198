"""The usearch backend: HNSW in one file, wheels for every platform, vectors in fp32/fp16/int8.

usearch (unum-cloud/usearch) ships wheels for Linux x86-64 and aarch64, macOS and
Windows, so the plain install needs no compiler. The index is opened
**memory-mapped** (``view``): a device pages in only what searches touch.
``ef`` is usearch's ``expansion_search``. Storage:

* ``fp32`` / ``fp16``: the graph holds the vectors in that type; its distances
  are the answer (fp16: cosine within ~1e-4).
* ``int8``: the graph holds int8 vectors (a quarter of fp32) and only proposes
  candidates: usearch scales unit vectors by 127, too coarse to rank close
  neighbours of 768-d features (measured: recall@1 0.48 alone), but the true
  nearest ones are among its top ``max(64, 4k)``; those are re-ranked exactly
  with their fp32 rows, read from ``vectors.npy`` by row, never held in memory
  (:mod:`vector_file`). Exact search reads the same rows, so it equals fp32.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ufd.runtime.errors import BundleError
from ufd.runtime.search.base import VectorBank, l2_normalise
from ufd.runtime.search.vector_file import VectorFile, write_vectors

DTYPES = {"fp32": "f32", "fp16": "f16", "int8": "i8"}
_ADD_CHUNK = 100_000
RERANK_MIN = 64


def _usearch_index() -> Any:
    try:
        from usearch.index import Index
    except ModuleNotFoundError as e:
        raise BundleError("the k-NN banks need usearch: pip install usearch") from e
    return Index


class UsearchBank(VectorBank):
    """Unit vectors behind a usearch index (keys 0..n-1 in insertion order)."""

    def __init__(self, index: Any, ef: int, rows: VectorFile | np.ndarray | None = None) -> None:
        """Wrap ``index``; ``rows``: the fp32 rows that re-rank an int8 graph's candidates."""
        self.index = index
        self.ef = ef
        self.rows = rows
        self.rerank = RERANK_MIN
        """int8: candidates re-ranked per query, at least (and at least 4k)."""

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        storage: str = "int8",
        m: int = 16,
        ef_construction: int = 200,
        ef: int = 128,
        threads: int = 0,
    ) -> UsearchBank:
        """Index ``vectors`` (rows) for cosine search, stored as ``storage``."""
        index = _usearch_index()(
            ndim=vectors.shape[1],
            metric="cos",
            dtype=DTYPES[storage],
            connectivity=m,
            expansion_add=ef_construction,
            expansion_search=ef,
        )
        bank = cls(
            index, ef, np.zeros((0, vectors.shape[1]), np.float32) if storage == "int8" else None
        )
        bank.add(vectors, threads)
        return bank

    @classmethod
    def load(
        cls, path: Path, dim: int, ef: int, vectors: Path | None = None, view: bool = True
    ) -> UsearchBank:
        """Open a saved index (memory-mapped with ``view``) and its fp32 rows, if any."""
        try:
            index = _usearch_index().restore(str(path), view=view)
        except (RuntimeError, ValueError) as e:
            raise BundleError(f"usearch cannot open {path.name}: {e}; rebuild the bank") from e
        if index is None or index.ndim != dim:
            found = None if index is None else index.ndim
            raise BundleError(f"{path.name} holds {found}-d vectors, not {dim}-d; rebuild it")
        index.expansion_search = ef
        rows = VectorFile(vectors) if vectors is not None else None
        if vectors is not None and rows is not None and len(rows) != len(index):
            raise BundleError(f"{vectors.name} has {len(rows)} rows for {len(index)} vectors")
        return cls(index, ef, rows)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def dim(self) -> int:
        """Feature dimension."""
        return int(self.index.ndim)

    def add(self, vectors: np.ndarray, threads: int = 0) -> None:
        """Append vectors (normalised here, in chunks); ``threads`` <= 0: every core."""
        start = len(self)
        for offset in range(0, len(vectors), _ADD_CHUNK):
            chunk = l2_normalise(vectors[offset : offset + _ADD_CHUNK])
            keys = np.arange(start + offset, start + offset + len(chunk), dtype=np.uint64)
            self.index.add(keys, chunk, threads=max(threads, 0))
            if isinstance(self.rows, np.ndarray):
                self.rows = np.concatenate([self.rows, chunk])

    def save(self, path: Path, vectors_path: Path | None = None) -> None:
        """Write the usearch index file (and an int8 bank's fp32 rows to ``vectors_path``)."""
        self.index.save(str(path))
        if self.rows is not None:
            if vectors_path is None:
                raise ValueError("an int8 bank needs a path for its fp32 rows")
            write_vectors(vectors_path, self.vectors())

    def vectors(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Stored vectors ``start:stop`` (dequantised, re-normalised), in key order."""
        stop = len(self) if stop is None else min(stop, len(self))
        return self.vectors_of(np.arange(start, stop))

    def vectors_from_index(self, ids: np.ndarray) -> np.ndarray:
        """Unit rows of ``ids`` as the index stores them (dequantised), as float32."""
        keys = np.asarray(ids, dtype=np.uint64)
        return l2_normalise(np.asarray(self.index.get(keys, dtype=np.float32), np.float32))

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """Unit rows of ``ids`` (any order), as float32."""
        if isinstance(self.rows, VectorFile):
            return self.rows.rows(ids)
        if self.rows is None:  # an fp32/fp16 bank: its index holds the vectors
            return self.vectors_from_index(ids)
        return np.asarray(self.rows[ids])

    def exact_blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Exact search reads the fp32 rows in order, when there are some."""
        if isinstance(self.rows, VectorFile):
            yield from self.rows.blocks()
            return
        yield from super().exact_blocks()

    def approximate(
        self, queries: np.ndarray, k: int, threads: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The usearch k-NN at ``ef`` (at least k); int8 graphs: candidates, re-ranked."""
        count = k if self.rows is None else min(len(self), max(self.rerank, 4 * k))
        self.index.expansion_search = max(self.ef, count)
        found = self.index.search(queries, count, threads=max(threads, 0))
        keys = np.asarray(found.keys, dtype=np.int64).reshape(len(queries), -1)
        dist = np.asarray(found.distances, dtype=np.float32).reshape(len(queries), -1)
        if self.rows is None:
            return keys, dist
        return self._rerank(queries, keys, k)

    def _rerank(
        self, queries: np.ndarray, keys: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest of each query's candidates by exact cosine on their fp32 rows."""
        ids = np.empty((len(queries), k), np.int64)
        dist = np.empty((len(queries), k), np.float32)
        for i, (query, candidates) in enumerate(zip(queries, keys, strict=True)):
            candidates = candidates[(candidates >= 0) & (candidates < len(self))]  # padding
            d = 1.0 - self.vectors_of(candidates) @ query
            order = np.argsort(d, kind="stable")[:k]
            ids[i], dist[i] = candidates[order], d[order]
        return ids, dist
