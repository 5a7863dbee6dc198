"""Open or build a k-NN index file by backend: ``usearch`` (default) or ``hnswlib``.

``usearch`` (wheels everywhere) stores vectors in fp32, fp16 or int8 (+ fp32 rows
on disk) and opens memory-mapped; ``hnswlib`` (optional) is how ufd 0.1 built
banks, which keep loading. What a bundle's bank is (its manifest config, its
labels) belongs to the methods that own it: :mod:`ufd.runtime.methods.banks`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ufd.runtime.errors import BundleError, UsageError
from ufd.runtime.search.base import VectorBank

INDEX_FILES = {"hnswlib": "bank.hnsw", "usearch": "bank.usearch"}
BACKENDS = tuple(INDEX_FILES)
STORAGES = ("fp32", "fp16", "int8")
"""How a bank stores its vectors (usearch: all three; hnswlib: fp32 only)."""


def check_bank_settings(backend: str | None, storage: str | None) -> None:
    """Refuse a backend or storage that does not exist, or that the backend cannot do.

    Raises:
        UsageError: with the names to choose from.
    """
    if backend not in (None, *BACKENDS):
        raise UsageError(f"unknown --backend {backend!r}; use {' or '.join(BACKENDS)}")
    if storage not in (None, *STORAGES):
        raise UsageError(f"unknown --storage {storage!r}; use {', '.join(STORAGES)}")
    if backend == "hnswlib" and storage not in (None, "fp32"):
        raise UsageError("hnswlib stores fp32 vectors only: use --backend usearch for fp16/int8")


def load_bank(
    backend: str, path: Path, dim: int, ef: int, vectors: Path | None = None
) -> VectorBank:
    """Open an index file of ``backend`` (and the fp32 rows of an int8 usearch bank).

    Raises:
        BundleError: the backend is missing or cannot read the file.
    """
    if backend == "usearch":
        from ufd.runtime.search.usearch_bank import UsearchBank

        return UsearchBank.load(path, dim, ef, vectors)
    from ufd.runtime.search.hnsw import HnswBank

    try:
        return HnswBank.load(path, dim, ef)
    except RuntimeError as e:
        raise BundleError(f"hnswlib cannot load {path.name}: {e}; rebuild the index") from e


def build_bank(
    backend: str,
    vectors: np.ndarray,
    storage: str,
    m: int,
    ef_construction: int,
    ef: int,
    seed: int,
    threads: int,
) -> VectorBank:
    """A new bank of ``backend`` holding ``vectors``."""
    if backend == "usearch":
        from ufd.runtime.search.usearch_bank import UsearchBank

        return UsearchBank.build(vectors, storage, m, ef_construction, ef, max(threads, 0))
    if storage != "fp32":
        raise UsageError("hnswlib stores fp32 vectors only: use --backend usearch for fp16/int8")
    from ufd.runtime.search.hnsw import HnswBank

    return HnswBank.build(vectors, m, ef_construction, ef, seed, threads)
