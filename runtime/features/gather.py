"""Features for the tools that build on them (``ufd-index``, ``ufd-calibrate``): one helper.

Features come from folders of images (encoded with the bundle's own encoder,
through :func:`~ufd.runtime.features.cache.encoded_batches`) and from
precomputed files (``.npy``, or ``ufd-scan --features`` datasets), grouped by
source name (``real``, ``fake``, or a generator's name for attribution).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ufd.runtime.detector import Detector
from ufd.runtime.features.cache import encoded_batches
from ufd.runtime.io.feature_files import load_feature_file
from ufd.runtime.io.inputs import expand_inputs

Skip = Callable[[str, str], None]
Named = Sequence[tuple[str, Path]]


def encode_folders(
    detector: Detector,
    folders: Sequence[Path],
    name: str,
    batch_size: int | None = None,
    on_skip: Skip = lambda path, reason: None,
    progress: bool | None = None,
) -> np.ndarray:
    """Features of every decodable image under ``folders``; each skipped one goes to ``on_skip``.

    ``progress``: a bar on stderr (``None``: when stderr is a terminal).
    """
    items = list(expand_inputs(folders))
    chunks = []
    with tqdm(
        total=len(items),
        desc=f"encoding {name}",
        unit="img",
        file=sys.stderr,
        disable=(not progress) if progress is not None else None,
        leave=False,
    ) as bar:
        for done, features, skipped in encoded_batches(detector, items, batch_size):
            for path, reason in skipped:
                on_skip(path, reason)
            if len(done):
                chunks.append(features)
            bar.update(len(done) + len(skipped))
    dim = detector.bundle.manifest.model.feature_dim
    return np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)


def gather_features(
    detector: Detector,
    folders: Named = (),
    files: Named = (),
    batch_size: int | None = None,
    on_skip: Skip = lambda path, reason: None,
    progress: bool | None = None,
) -> dict[str, np.ndarray]:
    """Features per source name, from feature files and from encoded folders.

    Args:
        detector: the bundle whose encoder makes (and whose width checks) the features.
        folders: ``(source, folder)`` pairs; a source's folders are encoded together.
        files: ``(source, file)`` pairs of precomputed features.
        batch_size: images per encoder call.
        on_skip: told about each image that could not be encoded.
        progress: a bar per source on stderr (``None``: when stderr is a terminal).

    Raises:
        UfdError: a feature file that cannot be read or has the wrong width.
    """
    dim = detector.bundle.manifest.model.feature_dim
    parts: dict[str, list[np.ndarray]] = {}
    for source, file in files:
        parts.setdefault(source, []).append(load_feature_file(file, dim))
    by_source: dict[str, list[Path]] = {}
    for source, folder in folders:
        by_source.setdefault(source, []).append(folder)
    for source, group in by_source.items():
        encoded = encode_folders(detector, group, source, batch_size, on_skip, progress)
        parts.setdefault(source, []).append(encoded)
    return {source: np.concatenate(chunks) for source, chunks in parts.items()}


def pooled(features: dict[str, np.ndarray], dim: int) -> np.ndarray:
    """Every source's features in one array (sources in order)."""
    chunks = list(features.values())
    return np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
