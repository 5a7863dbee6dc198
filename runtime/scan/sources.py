"""What a scan reads: local files, folders and globs, URIs, or a list file; and the bytes.

Local inputs expand exactly as ``ufd-detect``'s do (same paths, same error items),
so a scan's rows equal its records. URIs (``s3://``, ``gs://``, ``hdfs://``...) go
through pyarrow's filesystems: folders and globs are listed there, and each image
is read as bytes (refused above ``max_bytes``) and decoded like an upload.
``--from-list`` entries are taken as they are (no expansion).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator
from pathlib import Path

from ufd.runtime.errors import UsageError
from ufd.runtime.io.inputs import (
    NOT_AN_IMAGE,
    InputItem,
    Skipped,
    expand_inputs,
    is_image_name,
    is_video_name,
)
from ufd.runtime.io.policy import NO_SUCH_FILE

_GLOB = frozenset("*?[")


def is_uri(path: str) -> bool:
    """Whether ``path`` names a remote (or explicit ``file://``) object."""
    return "://" in path


def expand_sources(
    inputs: Iterable[str],
    listed: Iterable[str] = (),
    skipped: Skipped | None = None,
    videos: bool = False,
) -> Iterator[InputItem]:
    """Inputs in order: local ones as ``ufd-detect`` expands them, URIs through pyarrow.

    What folders, prefixes and globs held but were not taken goes to ``skipped``,
    by the same rules as ``ufd-detect``'s; with ``videos`` they take videos too.
    """
    local: list[str] = []
    for raw in inputs:
        if is_uri(raw):
            yield from expand_inputs(local, skipped, videos)
            local = []
            yield from _expand_uri(raw, skipped, videos)
        else:
            local.append(raw)
    yield from expand_inputs(local, skipped, videos)
    for entry in listed:
        yield InputItem(entry)


def _expand_uri(
    uri: str, skipped: Skipped | None = None, videos: bool = False
) -> Iterator[InputItem]:
    from pyarrow import fs as pafs

    pattern = None
    if _GLOB & set(uri):
        cut = min(uri.index(c) for c in _GLOB if c in uri)
        base = uri[: uri.rfind("/", 0, cut)]
        pattern = uri
    else:
        base = uri
    try:
        filesystem, root = pafs.FileSystem.from_uri(base)
        info = filesystem.get_file_info(root)
        if info.type == pafs.FileType.File and pattern is None:
            yield InputItem(uri)
            return
        if info.type == pafs.FileType.NotFound:
            yield InputItem(uri, NO_SUCH_FILE)
            return
        selector = pafs.FileSelector(root, recursive=True)
        found = sorted(f.path for f in filesystem.get_file_info(selector) if f.is_file)
    except (OSError, ValueError) as e:
        yield InputItem(uri, f"cannot list: {e}")
        return
    scheme = base[: base.index("://") + 3]
    names = [scheme + p if not p.startswith(scheme) else p for p in found]
    takes = (lambda n: is_image_name(n) or is_video_name(n)) if videos else is_image_name
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    else:
        for name in names:
            if not takes(name) and skipped is not None:
                skipped.add(NOT_AN_IMAGE, name)
        names = [n for n in names if takes(n)]
    if not names:
        yield InputItem(uri, "matched no image files")
    for name in names:
        yield InputItem(name)


def read_list(path: Path) -> list[str]:
    """Entries of ``--from-list``: a text file (one per line), or CSV/Parquet with ``path``.

    Raises:
        UsageError: unreadable, or a table without a ``path`` column.
    """
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".parquet", ".pq"):
            return _table_paths(path, suffix)
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UsageError(f"cannot read --from-list {path}: {e.strerror or e}") from e
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _table_paths(path: Path, suffix: str) -> list[str]:
    if suffix == ".csv":
        from pyarrow import csv as pacsv

        table = pacsv.read_csv(path)
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    if "path" not in table.column_names:
        raise UsageError(f"{path} has columns {table.column_names}; it needs a 'path' column")
    return [str(p) for p in table.column("path").to_pylist() if p]


def read_bytes(uri: str, max_bytes: int) -> bytes:
    """The object at ``uri``, refused past ``max_bytes`` before reading it.

    Raises:
        OSError: missing, unreadable, or too large (the message is the record's error).
    """
    from pyarrow import fs as pafs

    filesystem, path = pafs.FileSystem.from_uri(uri)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(NO_SUCH_FILE)
    if info.size is not None and info.size > max_bytes:
        raise OSError(f"file is {info.size:,} bytes, over the limit of {max_bytes:,}")
    with filesystem.open_input_file(path) as fh:
        return bytes(fh.read())
