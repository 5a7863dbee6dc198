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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ufd.runtime.io.policy import NO_SUCH_FILE

if TYPE_CHECKING:  # only a type: expanding inputs needs neither Pillow nor numpy
    from ufd.runtime.io.decode import ImageSource

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


NOT_AN_IMAGE = "not an image format this install reads"
DUPLICATE = "named again (scored once)"
PLUGIN_EXTENSIONS = frozenset({".heic", ".heif", ".hif", ".avci", ".jxl"})
"""Formats the ``[formats]`` extra adds (HEIC/HEIF, JPEG XL)."""


@dataclass
class Skipped:
    """Files that folders and globs held but that were not taken, with the reason.

    Not images (by extension: no decoder of this install reads them) and second
    mentions of a file already taken. The run's summary line says how many and
    why (:meth:`summary`); ``-v`` lists them (:meth:`lines`).
    """

    paths: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, path: str) -> None:
        """Record one skipped file."""
        self.paths.setdefault(reason, []).append(path)

    def __len__(self) -> int:
        return sum(len(v) for v in self.paths.values())

    def summary(self) -> str | None:
        """``"281 skipped: not an image format ... (.fli 44, .dds 37, ...)"``, or ``None``."""
        if not len(self):
            return None
        parts = []
        for reason, paths in self.paths.items():
            text = f"{len(paths)} {reason}"
            if reason == NOT_AN_IMAGE:
                counts = Counter(os.path.splitext(p)[1].lower() or "no extension" for p in paths)
                shown = ", ".join(f"{ext} {n}" for ext, n in counts.most_common(6))
                text += f" ({shown}{', ...' if len(counts) > 6 else ''})"
                if PLUGIN_EXTENSIONS & set(counts):
                    text += "; HEIC/HEIF and JPEG XL need pip install 'ufd[formats]'"
            parts.append(text)
        return f"{len(self)} skipped: " + "; ".join(parts)

    def lines(self) -> list[str]:
        """One ``skipped PATH: reason`` line per file."""
        return [f"skipped {p}: {reason}" for reason, paths in self.paths.items() for p in paths]


VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi"})
"""Extensions folders and globs take as videos when a run scores videos (a file named
on the command line is read by content whatever its name)."""


def is_video_name(name: str) -> bool:
    """True when ``name``'s extension is a video container's (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def is_image_name(name: str) -> bool:
    """True when ``name``'s extension is a format this install decodes (case-insensitive)."""
    from ufd.runtime.io.formats import image_extensions

    return os.path.splitext(name)[1].lower() in image_extensions()


def expand_inputs(
    inputs: Iterable[str | os.PathLike[str]],
    skipped: Skipped | None = None,
    videos: bool = False,
) -> Iterator[InputItem]:
    """Expand inputs in order: files as given, directories recursively, globs sorted.

    Directories and globs yield the files of every format this install decodes
    (:func:`~ufd.runtime.io.formats.image_extensions`, case-insensitive), in sorted
    order; directories follow symlinked directories once and never loop. A file
    given by name is scored whatever its extension. A file reached twice (named
    and in a folder, a folder and a glob, a link to it) is taken once. What is
    left out goes to ``skipped``, so a summary can say so. With ``videos``, folders
    and globs also take video files (:data:`VIDEO_EXTENSIONS`).
    """
    skipped = skipped if skipped is not None else Skipped()
    seen: set[str] = set()
    takes = _taker(videos)
    for item in _expand(inputs, skipped, takes):
        if item.error is None:
            key = os.path.realpath(item.path)
            if key in seen:
                skipped.add(DUPLICATE, item.path)
                continue
            seen.add(key)
        yield item


def _taker(videos: bool) -> Callable[[str], bool]:
    if not videos:
        return is_image_name
    return lambda name: is_image_name(name) or is_video_name(name)


def _expand(
    inputs: Iterable[str | os.PathLike[str]], skipped: Skipped, takes: Callable[[str], bool]
) -> Iterator[InputItem]:
    for raw in inputs:
        text = os.fspath(raw)
        path = Path(text)
        if path.is_dir():
            yield from _walk_directory(path, skipped, takes)
        elif path.exists() or path.is_symlink():
            yield InputItem(text)
        elif _GLOB_CHARS & set(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                yield InputItem(text, "glob pattern matched no files")
            for match in matches:
                if Path(match).is_dir():
                    yield from _walk_directory(Path(match), skipped, takes)
                elif takes(match):
                    yield InputItem(match)
                else:
                    skipped.add(NOT_AN_IMAGE, match)
        else:
            yield InputItem(text, NO_SUCH_FILE)


def _walk_directory(
    root: Path, skipped: Skipped, takes: Callable[[str], bool]
) -> Iterator[InputItem]:
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
            if takes(name):
                found = True
                yield InputItem(os.path.join(dirpath, name))
            else:
                skipped.add(NOT_AN_IMAGE, os.path.join(dirpath, name))
    for error in unreadable:
        yield InputItem(str(error.filename), f"cannot list directory: {error.strerror}")
    if not found and not unreadable:
        yield InputItem(str(root), "directory holds no image files (by extension)")
