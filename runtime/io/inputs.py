"""Inputs: what one record is about, and command-line expansion into a work list.

An :class:`InputItem` names one input and carries its bytes or file object
when the image did not come from a path (uploads, object stores). Expanding
directories and globs (:func:`expand_inputs`) is for command lines only: the
service and the Python API's ``score_images`` never expand anything.

Nothing is dropped silently: an input that names nothing becomes an item with
an error, so it still yields one record.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ufd.runtime.errors import UfdError
from ufd.runtime.io.decode import ImageSource

IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".bmp",
        ".dib",
        ".gif",
        ".webp",
        ".tif",
        ".tiff",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".tga",
        ".ico",
        ".jp2",
    }
)
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class InputItem:
    """One unit of work.

    Attributes:
        path: the input's name in its record (a file path, an upload's name).
        error: why it cannot be scored (an input that names nothing).
        data: the image itself (bytes, a binary file object, or a path read
            as one file); ``None``: read the file at ``path``.
    """

    path: str
    error: str | None = None
    data: ImageSource | None = None

    @property
    def source(self) -> ImageSource:
        """What to decode: the data when given, else the path."""
        return self.data if self.data is not None else self.path


def is_image_name(name: str) -> bool:
    """True when ``name`` has an image extension (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def expand_inputs(inputs: Iterable[str | os.PathLike[str]]) -> Iterator[InputItem]:
    """Expand inputs in order: files as given, directories recursively, globs sorted.

    Directories yield their image files (by extension, case-insensitive) in
    sorted order, follow symlinked directories once and never loop. A file
    given by name is scored whatever its extension.
    """
    for raw in inputs:
        text = os.fspath(raw)
        path = Path(text)
        if path.is_dir():
            yield from _walk_directory(path)
        elif path.exists() or path.is_symlink():
            yield InputItem(text)
        elif _GLOB_CHARS & set(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                yield InputItem(text, "glob pattern matched no files")
            for match in matches:
                if Path(match).is_dir():
                    yield from _walk_directory(Path(match))
                else:
                    yield InputItem(match)
        else:
            yield InputItem(text, "no such file or directory")


def _walk_directory(root: Path) -> Iterator[InputItem]:
    found = False
    seen: set[tuple[int, int]] = set()
    unreadable: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable.append):
        try:
            stat = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        key = (stat.st_dev, stat.st_ino)
        if key in seen:  # a symlink loop or a second link to a visited folder
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames.sort()
        for name in sorted(filenames):
            if is_image_name(name):
                found = True
                yield InputItem(os.path.join(dirpath, name))
    for error in unreadable:
        yield InputItem(str(error.filename), f"cannot list directory: {error.strerror}")
    if not found and not unreadable:
        yield InputItem(str(root), "directory holds no image files (by extension)")


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
    return values.astype(np.float32).reshape(len(column), -1)
