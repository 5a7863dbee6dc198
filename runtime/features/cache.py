"""A resumable on-disk cache of encoder features.

One cache folder per *key*: the sha256 of the encoder graph, the
preprocessing settings and the augmentation/perturbation. Inside, features
are appended in chunks (``chunk-000001.npy``, written to a temporary name and
renamed) and ``entries.jsonl`` maps ``(path, size, mtime_ns)`` to a chunk row;
an entry line is written only after its chunk exists. A run killed mid-way
keeps every finished batch, and a changed file (new size or mtime) is
encoded again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ufd.runtime.bundle import PreprocessConfig
from ufd.runtime.detector import Detector
from ufd.runtime.io.decode import ImageSource
from ufd.runtime.io.inputs import InputItem
from ufd.runtime.pipeline import Pixels

logger = logging.getLogger(__name__)

FileKey = tuple[str, int, int]


def file_key(path: str | Path) -> FileKey | None:
    """(absolute path, size, mtime_ns), or ``None`` if the file cannot be stat'ed."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


def cache_key(encoder_sha256: str, preprocess: PreprocessConfig, variant: str = "clean") -> str:
    """The folder name for features of one encoder, preprocessing and variant."""
    settings = json.dumps(dataclasses.asdict(preprocess), sort_keys=True)
    return hashlib.sha256(f"{encoder_sha256}|{settings}|{variant}".encode()).hexdigest()[:24]


class FeatureCache:
    """Features of one (encoder, preprocessing, variant), keyed by file."""

    def __init__(self, root: Path, key: str) -> None:
        self.folder = Path(root) / key
        self.folder.mkdir(parents=True, exist_ok=True)
        self.entries_path = self.folder / "entries.jsonl"
        self._index: dict[FileKey, tuple[int, int]] = {}
        self._chunks: dict[int, np.ndarray] = {}
        self._next_chunk = 0
        self._load_index()

    def _load_index(self) -> None:
        if not self.entries_path.exists():
            return
        with self.entries_path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    path, size, mtime, chunk, row = json.loads(line)
                except (ValueError, TypeError):
                    continue  # a half-written last line from an interrupted run
                if (self.folder / _chunk_name(chunk)).exists():
                    self._index[(path, size, mtime)] = (chunk, row)
                    self._next_chunk = max(self._next_chunk, chunk + 1)

    def __len__(self) -> int:
        return len(self._index)

    def get(self, key: FileKey | None) -> np.ndarray | None:
        """The cached feature of a file, or ``None``."""
        where = self._index.get(key) if key is not None else None
        if where is None:
            return None
        chunk, row = where
        if chunk not in self._chunks:
            self._chunks[chunk] = np.load(self.folder / _chunk_name(chunk), allow_pickle=False)
        return np.asarray(self._chunks[chunk][row])

    def put(self, keys: list[FileKey], features: np.ndarray) -> None:
        """Store one batch: the chunk first, then its entry lines."""
        if not keys:
            return
        chunk = self._next_chunk
        self._next_chunk += 1
        tmp = self.folder / f".{_chunk_name(chunk)}.tmp"
        with tmp.open("wb") as fh:
            np.save(fh, np.asarray(features, np.float32), allow_pickle=False)
        os.replace(tmp, self.folder / _chunk_name(chunk))
        with self.entries_path.open("a", encoding="utf-8") as fh:
            for row, key in enumerate(keys):
                fh.write(json.dumps([*key, chunk, row]) + "\n")
                self._index[key] = (chunk, row)


def _chunk_name(chunk: int) -> str:
    return f"chunk-{chunk:06d}.npy"


EncodedBatch = tuple[list[InputItem], np.ndarray, list[tuple[str, str]]]
"""Items encoded, their features (one row each), and (path, why) of those skipped."""


def encoded_batches(
    detector: Detector,
    items: list[InputItem],
    batch_size: int | None = None,
    prepare: Callable[[ImageSource], Pixels] | None = None,
) -> Iterator[EncodedBatch]:
    """The detector's encoded batches in the form :func:`cached_features` takes.

    Yields:
        (encoded items, their features, skipped (path, reason)) per batch.
    """
    for batch, features, failure in detector.feature_batches(items, batch_size, prepare):
        done = [p.item for p in batch if p.pixels is not None and failure is None]
        skipped = [
            (p.item.path, p.error or failure or "unknown error")
            for p in batch
            if p.pixels is None or failure is not None
        ]
        if features is None or failure is not None:
            features = np.zeros((0, 0), np.float32)
        yield done, features, skipped


def cached_features(
    items: Iterable[InputItem],
    cache: FeatureCache | None,
    encode: Callable[[list[InputItem]], Iterable[tuple[list[InputItem], np.ndarray, list[Any]]]],
    on_skip: Callable[[str, str], None] = lambda path, reason: None,
) -> tuple[list[str], np.ndarray]:
    """Features for ``items``, from the cache where possible, encoding the rest.

    Args:
        items: inputs, in order.
        cache: the cache, or ``None`` to encode everything.
        encode: turns missing items into ``(encoded items, features, skipped
            (path, reason) pairs)`` batches, storing nothing itself.
        on_skip: told about each input that could not be encoded.

    Returns:
        (paths, features) of the encoded inputs, in input order.
    """
    items = list(items)
    found: dict[str, np.ndarray] = {}
    missing = []
    for item in items:
        hit = cache.get(file_key(item.path)) if cache is not None and item.error is None else None
        if hit is not None:
            found[item.path] = hit
        else:
            missing.append(item)
    for done, features, skipped in encode(missing):
        for path, reason in skipped:
            on_skip(path, reason)
        keys = [file_key(item.path) for item in done]
        if cache is not None and all(k is not None for k in keys):
            cache.put(keys, features)  # type: ignore[arg-type]
        found.update({item.path: f for item, f in zip(done, features, strict=True)})
    paths = [item.path for item in items if item.path in found]
    dim = next(iter(found.values())).shape[-1] if found else 0
    stacked = np.stack([found[p] for p in paths]) if paths else np.zeros((0, dim), np.float32)
    return paths, stacked
