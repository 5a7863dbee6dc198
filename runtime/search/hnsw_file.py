"""The stored vectors of a saved hnswlib index, read straight from its file.

hnswlib's ``get_items`` copies vectors out one label at a time: ~60 us per
768-d vector on the dev machine, so 23 s for a 300k bank, which made forced
exact search on big banks unusable. A saved index (hnswlib 0.8 layout) is a
96-byte header followed by ``count`` fixed-size level-0 records, each holding
the links, the vector (float32; unit length in cosine space) and the label
(uint64). :func:`read_stored_rows` maps that file and returns the vectors as a
strided view in the file's order, with the label of each row.

The layout is checked against the header, the file size and ``get_items`` on a
sample of rows; on any mismatch it returns ``None`` and the caller falls back
to ``get_items``.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# offsetLevel0, max_elements, count, size_per_element, label_offset, data_offset,
# maxlevel, enterpoint, maxM, maxM0, M, mult, ef_construction
_HEADER = struct.Struct("<6Q i I 3Q d Q")
_LABEL_BYTES = 8
_CHECKED_ROWS = 8


@dataclass(frozen=True)
class StoredRows:
    """Bank vectors in storage order and the id (hnswlib label) of each row."""

    rows: np.ndarray  # (count, dim) float32, possibly a read-only strided view
    labels: np.ndarray  # (count,) int64


def read_stored_rows(path: Path, index: Any) -> StoredRows | None:
    """Map the vectors of ``path``, the file ``index`` was loaded from.

    Returns:
        The rows and labels, or ``None`` when the file does not have the
        expected layout or disagrees with ``index``.
    """
    try:
        with open(path, "rb") as f:
            header = _HEADER.unpack(f.read(_HEADER.size))
        _, _, count, per_row, label_at, data_at = header[:6]
        vector_bytes = 4 * index.dim
        fits = (
            count == index.get_current_count()
            and data_at + vector_bytes <= per_row
            and label_at + _LABEL_BYTES <= per_row
            and path.stat().st_size >= _HEADER.size + count * per_row
        )
        if not fits or count == 0:
            logger.debug("%s: unexpected hnswlib layout %s; using get_items", path, header)
            return None
        records = np.memmap(path, np.uint8, "r", offset=_HEADER.size, shape=(count, per_row))
        rows = records[:, data_at : data_at + vector_bytes].view(np.float32)
        labels = np.ascontiguousarray(records[:, label_at : label_at + _LABEL_BYTES])
        stored = StoredRows(rows, labels.view(np.uint64).ravel().astype(np.int64))
    except (OSError, ValueError, struct.error) as e:
        logger.debug("%s: cannot map the index file (%s); using get_items", path, e)
        return None
    return stored if _agrees(stored, index) else None


def _agrees(stored: StoredRows, index: Any) -> bool:
    """Whether a spread-out sample of rows equals what hnswlib returns for their labels."""
    sample = np.unique(np.linspace(0, len(stored.labels) - 1, _CHECKED_ROWS).astype(np.int64))
    try:
        expected = np.asarray(index.get_items(stored.labels[sample]), dtype=np.float32)
    except RuntimeError:  # a label hnswlib does not know
        return False
    same = np.array_equal(expected, stored.rows[sample])
    if not same:
        logger.debug("index file rows differ from get_items; using get_items")
    return same
