"""Bank vectors on disk as a ``.npy`` of fp32 rows, read by row without mapping the file.

The int8 usearch graph finds candidates; their exact distances come from these
rows, so an int8 bank ranks exactly as fp32 search does. Rows are read with
``os.pread`` (not ``mmap``): the pages they sit on stay in the kernel's page
cache and never count against the process, and a device with little memory just
reads from storage more often.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ufd.runtime.errors import BundleError

_BLOCK_ROWS = 65_536


def write_vectors(path: Path, vectors: np.ndarray) -> None:
    """Save unit ``vectors`` as fp32 rows (``.npy``)."""
    np.save(path, np.asarray(vectors, dtype=np.float32), allow_pickle=False)


class VectorFile:
    """Random and sequential access to the fp32 (or fp16) rows of a ``.npy`` file."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as fh:
            try:
                version = np.lib.format.read_magic(fh)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(fh)
            except ValueError as e:
                raise BundleError(f"{path.name} is not a .npy array: {e}") from e
            self.offset = fh.tell()
        if dtype not in (np.float32, np.float16) or fortran or len(shape) != 2:
            raise BundleError(f"{path.name} holds {dtype} {shape}; expected C-order float rows")
        self.path = path
        self.shape = shape
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.row_bytes = shape[1] * self.dtype.itemsize
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` (any order) as float32."""
        out = np.empty((len(ids), self.shape[1]), self.dtype)
        for i, row in enumerate(np.asarray(ids, np.int64)):
            data = os.pread(self._fd, self.row_bytes, self.offset + int(row) * self.row_bytes)
            out[i] = np.frombuffer(data, self.dtype)
        return out.astype(np.float32)

    def blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(rows as float32, their ids) in blocks, reading the file in order."""
        for start in range(0, len(self), _BLOCK_ROWS):
            stop = min(start + _BLOCK_ROWS, len(self))
            count = (stop - start) * self.row_bytes
            data = os.pread(self._fd, count, self.offset + start * self.row_bytes)
            block = np.frombuffer(data, self.dtype).reshape(stop - start, self.shape[1])
            yield block.astype(np.float32), np.arange(start, stop)

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
