"""The last step of the flow: one :class:`Record` per input, and writers for them.

Writers stream: each batch is written and flushed as it comes, so an
interrupted run keeps every record it produced.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import IO, Protocol

FORMATS = ("table", "jsonl", "csv")


@dataclass(frozen=True)
class Record:
    """The result for one input: a score, or the reason there is none.

    Attributes:
        path: the input as expanded (file path).
        logit: the linear head's logit, ``None`` on error or without a head.
        prob: ``sigmoid(logit)`` = p(fake).
        label: ``"fake"`` when ``prob > threshold``, else ``"real"``.
        error: ``None``, or a short reason the input could not be scored.
    """

    path: str
    logit: float | None = None
    prob: float | None = None
    label: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the input was scored."""
        return self.error is None


def sigmoid(logit: float) -> float:
    """Numerically stable logistic function."""
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    z = math.exp(logit)
    return z / (1.0 + z)


def label_for(prob: float, threshold: float) -> str:
    """UnivFD's decision rule: fake when ``p(fake) > threshold``."""
    return "fake" if prob > threshold else "real"


class RecordWriter(Protocol):
    """Streams records to a text file."""

    def write(self, records: Iterable[Record]) -> None:
        """Write and flush a batch of records."""

    def close(self) -> None:
        """Finish the output (does not close the stream)."""


class JsonlWriter:
    """One JSON object per line."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, records: Iterable[Record]) -> None:
        """Write one line per record, then flush."""
        for record in records:
            self.stream.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Nothing to finish for JSON lines."""


class CsvWriter:
    """CSV with a header row; empty cells for missing values."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.writer = csv.writer(stream, lineterminator="\n")
        self.writer.writerow(["path", "logit", "prob", "label", "error"])

    def write(self, records: Iterable[Record]) -> None:
        """Write one row per record, then flush."""
        for r in records:
            self.writer.writerow(
                [r.path, _num(r.logit, 6), _num(r.prob, 6), r.label or "", r.error or ""]
            )
        self.stream.flush()

    def close(self) -> None:
        """Nothing to finish for CSV."""


class TableWriter:
    """Fixed-width columns for people; the path comes last so long paths stay readable."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.stream.write(f"{'label':<6} {'p(fake)':>8} {'logit':>9}  path\n")

    def write(self, records: Iterable[Record]) -> None:
        """Write one line per record, then flush."""
        for r in records:
            if r.error is not None:
                line = f"{'ERROR':<6} {'-':>8} {'-':>9}  {r.path}  ({r.error})"
            else:
                line = f"{r.label or '-':<6} {_num(r.prob, 4):>8} {_num(r.logit, 4):>9}  {r.path}"
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Nothing to finish for a table."""


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def make_writer(fmt: str, stream: IO[str]) -> RecordWriter:
    """The writer for ``fmt`` (one of :data:`FORMATS`) over ``stream``."""
    writers = {"table": TableWriter, "jsonl": JsonlWriter, "csv": CsvWriter}
    if fmt not in writers:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return writers[fmt](stream)
