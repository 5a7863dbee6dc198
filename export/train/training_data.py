"""Gather training and validation features for ``ufd-train``.

Images are encoded with the bundle's encoder: training images through the
paper's augmentation (``views`` augmented copies each, every view cached under
its own variant), validation images with the bundle's test preprocessing.
Precomputed ``.npy`` features join as they are. Without validation folders a
seeded ``val_fraction`` of each class is held out (by image).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ufd.export.train.augment import PaperAugmentation, make_augmentation
from ufd.runtime.detector import Detector
from ufd.runtime.errors import UsageError
from ufd.runtime.features.cache import (
    FeatureCache,
    cache_key,
    cached_features,
    encoded_batches,
)
from ufd.runtime.io.decode import decode_image
from ufd.runtime.io.inputs import InputItem, expand_inputs

Skip = Callable[[str, str], None]


@dataclass
class Sources:
    """Where one class's training data comes from."""

    folders: list[Path] = field(default_factory=list)
    feature_files: list[np.ndarray] = field(default_factory=list)
    val_folders: list[Path] = field(default_factory=list)


@dataclass
class FeatureSets:
    """Features and labels (1 = fake) for training and validation."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray


class FeatureGatherer:
    """Encodes images (cached) the way training needs them."""

    def __init__(
        self,
        detector: Detector,
        cache_root: Path | None,
        batch_size: int | None = None,
        on_skip: Skip = lambda path, why: None,
    ) -> None:
        self.detector = detector
        self.cache_root = cache_root
        self.batch_size = batch_size
        self.on_skip = on_skip
        manifest = detector.bundle.manifest
        self.encoder_sha = manifest.files[manifest.encoder(detector.precision).file].sha256
        self.dim = manifest.model.feature_dim

    def _cache(self, variant: str) -> FeatureCache | None:
        if self.cache_root is None:
            return None
        key = cache_key(self.encoder_sha, self.detector.preprocess_config, variant)
        return FeatureCache(self.cache_root, key)

    def clean(self, paths: list[str]) -> np.ndarray:
        """Features with the bundle's own preprocessing."""
        return self._encode(paths, "clean", None)

    def augmented(self, paths: list[str], augmentation: PaperAugmentation, view: int):
        """Features of one augmented view of each image."""

        def prepare(path: str) -> np.ndarray:
            image = decode_image(path, self.detector.max_pixels)
            return augmentation(image, augmentation.rng(path, view))

        return self._encode(paths, augmentation.variant(view), prepare)

    def _encode(self, paths: list[str], variant: str, prepare) -> np.ndarray:
        items = [InputItem(p) for p in paths]

        def encode(missing: list[InputItem]):
            return encoded_batches(self.detector, missing, self.batch_size, prepare)

        _, features = cached_features(items, self._cache(variant), encode, self.on_skip)
        return features if len(features) else np.zeros((0, self.dim), np.float32)


def check_both_classes(data: FeatureSets) -> None:
    """Refuse features that cannot train or select a head: each set needs both classes.

    Raises:
        UsageError: a class has no training or no validation features (every image
            of it was skipped, or the split left none).
    """
    for name, labels, fix in (
        ("training", data.train_y, "see the skipped images above"),
        ("validation", data.val_y, "raise --val-split or pass --val-real/--val-fake"),
    ):
        missing = [c for v, c in ((0, "real"), (1, "fake")) if not np.any(labels == v)]
        if missing:
            raise UsageError(f"{name} has no {' and no '.join(missing)} features: {fix}")


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded (train, val) split of ``range(n)``."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(n * val_fraction)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def gather(
    gatherer: FeatureGatherer,
    real: Sources,
    fake: Sources,
    val_fraction: float,
    augment: str,
    views: int,
    seed: int,
) -> FeatureSets:
    """Training and validation features of both classes."""
    augmentation = make_augmentation(augment, seed, gatherer.detector.preprocess_config)
    parts = {"train_x": [], "train_y": [], "val_x": [], "val_y": []}
    for label, sources in ((0, real), (1, fake)):
        paths = [i.path for i in expand_inputs(sources.folders) if i.error is None]
        files = np.concatenate(sources.feature_files) if sources.feature_files else None
        if sources.val_folders:
            val_paths = [i.path for i in expand_inputs(sources.val_folders) if i.error is None]
            train_paths, file_train, file_val = paths, files, None
        else:
            train_idx, val_idx = split_indices(len(paths), val_fraction, seed + label)
            train_paths = [paths[i] for i in train_idx]
            val_paths = [paths[i] for i in val_idx]
            file_train = file_val = None
            if files is not None:
                f_train, f_val = split_indices(len(files), val_fraction, seed + 10 + label)
                file_train, file_val = files[f_train], files[f_val]
        if augmentation is None:
            train = [gatherer.clean(train_paths)]
        else:
            train = [gatherer.augmented(train_paths, augmentation, v) for v in range(views)]
        val = [gatherer.clean(val_paths)]
        train += [file_train] if file_train is not None else []
        val += [file_val] if file_val is not None else []
        for name, chunks in (("train", train), ("val", val)):
            x = np.concatenate(chunks) if chunks else np.zeros((0, gatherer.dim), np.float32)
            parts[f"{name}_x"].append(x)
            parts[f"{name}_y"].append(np.full(len(x), label, np.float32))
    return FeatureSets(**{k: np.concatenate(v) for k, v in parts.items()})
