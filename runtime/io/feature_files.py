"""Precomputed features: ``.npy`` arrays, or the ``feature`` column of a ``ufd-scan`` dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ufd.runtime.errors import UfdError


def load_feature_file(path: Path, dim: int) -> np.ndarray:
    """Precomputed features, one row per image, checked for shape and values.

    ``path`` is a ``.npy`` array, or a ``ufd-scan --features`` dataset (its folder
    or one of its ``.parquet`` shards): the ``feature`` of every row scored.

    Raises:
        UfdError: unreadable, pickled, wrong shape or non-finite values.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".parquet":
        features = _scan_features(path, dim)
    else:
        try:
            features = np.load(path, allow_pickle=False, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise UfdError(f"cannot read features {path}: {e} (need a plain .npy array)") from e
    if features.ndim != 2 or features.shape[1] != dim:
        raise UfdError(
            f"{path} holds an array of shape {features.shape}; expected (N, {dim}): one row "
            f"per image, the bundle's {dim}-d features"
        )
    features = np.asarray(features, dtype=np.float32)
    if not np.isfinite(features).all():
        raise UfdError(f"{path} holds NaN or infinite values")
    return features


def _scan_features(path: Path, dim: int) -> np.ndarray:
    """The ``feature`` column of a ``ufd-scan --features`` dataset (rows with one)."""
    try:
        import pyarrow.compute as pc
        import pyarrow.dataset as ds
    except ModuleNotFoundError as e:
        raise UfdError(f"reading {path} needs pyarrow: pip install 'ufd[scale]'") from e
    try:
        column = ds.dataset(path, format="parquet").to_table(columns=["feature"]).column(0)
    except (OSError, ValueError, KeyError) as e:
        raise UfdError(f"{path} is not a ufd-scan --features dataset ({e})") from e
    column = pc.drop_null(column).combine_chunks() if column.num_chunks else column
    if len(column) == 0:
        return np.zeros((0, dim), np.float32)
    values = column.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(values, np.float32).reshape(len(column), -1)
