"""The last step of the flow: one :class:`Record` per input, and writers for them.

Writers stream: each batch is written and flushed as it comes, so an
interrupted run keeps every record it produced.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

FORMATS = ("table", "jsonl", "csv")


METHODS = ("linear", "nn", "traces", "realonly", "fused")
"""Scoring methods; ``all`` on the command line means every one the bundle has."""
METHOD_FIELDS = {
    "linear": ("logit", "prob", "label"),
    "nn": ("nn_score", "nn_label", "nn_dist_real", "nn_dist_fake"),
    "traces": ("traces_logit", "traces_prob", "traces_label"),
    "realonly": ("realonly_score", "realonly_label"),
    "fused": ("fused_prob", "fused_label"),
}


@dataclass(frozen=True)
class Record:
    """The result for one input: scores, or the reason there are none.

    Attributes:
        path: the input as expanded (file path, or ``FILE.npy#ROW`` for features).
        logit: the linear head's logit (``--method linear``).
        prob: ``sigmoid(logit)`` = p(fake).
        label: ``"fake"`` when ``prob > threshold``, else ``"real"``.
        nn_score: nearest-neighbour score in [0, 1] (``--method nn``); see
            :mod:`ufd.runtime.neighbours`.
        nn_label: the k-NN vote, ``"fake"`` or ``"real"``.
        nn_dist_real: cosine distance to the nearest real feature of the bank.
        nn_dist_fake: cosine distance to the nearest fake feature of the bank.
        traces_logit: the natural-trace head's logit (``--method traces``).
        traces_prob: its p(fake).
        traces_label: fake when ``traces_prob`` exceeds the traces threshold.
        realonly_score: mean cosine distance to the k nearest reals (``--method realonly``).
        realonly_label: fake when the score exceeds the calibrated threshold.
        fused_prob: p(fake) of the fitted combination of methods (``--method fused``).
        fused_label: fake when ``fused_prob`` exceeds its threshold.
        error: ``None``, or a short reason the input could not be scored.
    """

    path: str
    logit: float | None = None
    prob: float | None = None
    label: str | None = None
    nn_score: float | None = None
    nn_label: str | None = None
    nn_dist_real: float | None = None
    nn_dist_fake: float | None = None
    traces_logit: float | None = None
    traces_prob: float | None = None
    traces_label: str | None = None
    realonly_score: float | None = None
    realonly_label: str | None = None
    fused_prob: float | None = None
    fused_label: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the input was scored."""
        return self.error is None


def fields_for(methods: str | tuple[str, ...]) -> tuple[str, ...]:
    """The record fields some methods report, in output order."""
    methods = (methods,) if isinstance(methods, str) else methods
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method {unknown}; use {', '.join(METHODS)} or all")
    chosen = [f for m in METHODS if m in methods for f in METHOD_FIELDS[m]]
    return ("path", *chosen, "error")


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


class JsonlWriter:
    """One JSON object per line, with the method's fields."""

    def __init__(self, stream: IO[str], fields: tuple[str, ...]) -> None:
        self.stream = stream
        self.fields = fields

    def write(self, records: Iterable[Record]) -> None:
        """Write one line per record, then flush."""
        for record in records:
            row = {name: getattr(record, name) for name in self.fields}
            self.stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.stream.flush()


class CsvWriter:
    """CSV with a header row; empty cells for missing values."""

    def __init__(self, stream: IO[str], fields: tuple[str, ...], header: bool = True) -> None:
        self.stream = stream
        self.fields = fields
        self.writer = csv.writer(stream, lineterminator="\n")
        if header:
            self.writer.writerow(fields)

    def write(self, records: Iterable[Record]) -> None:
        """Write one row per record, then flush."""
        for r in records:
            self.writer.writerow([_cell(getattr(r, name), 6) for name in self.fields])
        self.stream.flush()


_TABLE_COLUMNS = {
    "label": ("label", 6),
    "prob": ("p(fake)", 8),
    "logit": ("logit", 9),
    "nn_label": ("nn", 6),
    "nn_score": ("nn_score", 8),
    "nn_dist_real": ("d_real", 7),
    "nn_dist_fake": ("d_fake", 7),
    "traces_label": ("traces", 6),
    "traces_prob": ("p_traces", 8),
    "realonly_label": ("ronly", 6),
    "realonly_score": ("d_reals", 8),
    "fused_label": ("fused", 6),
    "fused_prob": ("p_fused", 8),
}


class TableWriter:
    """Fixed-width columns for people; the path comes last so long paths stay readable."""

    def __init__(self, stream: IO[str], fields: tuple[str, ...]) -> None:
        self.stream = stream
        self.columns = [name for name in _TABLE_COLUMNS if name in fields]
        header = " ".join(_pad(*_TABLE_COLUMNS[name]) for name in self.columns)
        self.stream.write(f"{header}  path\n")

    def write(self, records: Iterable[Record]) -> None:
        """Write one line per record, then flush."""
        for r in records:
            if r.error is not None:
                cells = ["ERROR"] + ["-"] * (len(self.columns) - 1)
                tail = f"{r.path}  ({r.error})"
            else:
                cells = [_cell(getattr(r, name), 4) or "-" for name in self.columns]
                tail = r.path
            line = " ".join(
                _pad(cell, _TABLE_COLUMNS[name][1])
                for cell, name in zip(cells, self.columns, strict=True)
            )
            self.stream.write(f"{line}  {tail}\n")
        self.stream.flush()


def _pad(text: str, width: int) -> str:
    return text.ljust(width) if width <= 6 else text.rjust(width)


def _cell(value: object, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def make_writer(
    fmt: str,
    stream: IO[str],
    method: str | tuple[str, ...] = "linear",
    appending: bool = False,
) -> RecordWriter:
    """The writer for ``fmt`` (one of :data:`FORMATS`) over ``stream``.

    ``appending`` (``--resume`` onto a non-empty file) skips the CSV header.
    """
    fields = fields_for(method)
    if fmt == "csv":
        return CsvWriter(stream, fields, header=not appending)
    writers = {"table": TableWriter, "jsonl": JsonlWriter}
    if fmt not in writers:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return writers[fmt](stream, fields)


def done_paths(output: Path, fmt: str) -> set[str]:
    """Paths already recorded in ``output`` (JSONL or CSV), for ``--resume``.

    A run killed mid-write can leave a partial last line: it is cut off here,
    so appending starts on a clean line and that record is redone.

    Raises:
        ValueError: ``fmt`` cannot be resumed (``table``).
    """
    if fmt not in ("jsonl", "csv"):
        raise ValueError("--resume needs --format jsonl or csv (a table cannot be parsed back)")
    if not output.exists():
        return set()
    data = output.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with output.open("r+b") as fh:
            fh.truncate(len(complete))
    text = complete.decode("utf-8")
    if fmt == "jsonl":
        paths = set()
        for line in text.splitlines():
            with contextlib.suppress(json.JSONDecodeError, TypeError, KeyError):
                paths.add(json.loads(line)["path"])
        return paths
    return {row["path"] for row in csv.DictReader(io.StringIO(text)) if row.get("path")}
