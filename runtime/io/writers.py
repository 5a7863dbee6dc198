"""Record writers (table, JSONL, CSV), registered by format name, and ``--resume`` support.

Writers stream: each batch is written and flushed as it comes, so an
interrupted run keeps every record it produced. A new format is one class
here (or in its own module) and one :func:`register_format` call.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Protocol

from ufd.runtime.errors import UsageError
from ufd.runtime.records import Record
from ufd.runtime.registry import add_unique, fields_for, table_columns


class RecordWriter(Protocol):
    """Streams records to a text file."""

    def write(self, records: Iterable[Record]) -> None:
        """Write and flush a batch of records."""


WriterFactory = Callable[[IO[str], tuple[str, ...], bool], RecordWriter]
FORMATS: dict[str, WriterFactory] = {}
RESUMABLE = ("jsonl", "csv")


def register_format(name: str, factory: WriterFactory) -> None:
    """Make ``--format name`` write with ``factory(stream, fields, appending)``.

    Raises:
        DuplicateName: ``name`` is a format already.
    """
    add_unique(FORMATS, name, factory, "output format")


class JsonlWriter:
    """One JSON object per line, with the methods' fields."""

    def __init__(self, stream: IO[str], fields: tuple[str, ...], appending: bool = False) -> None:
        self.stream = stream
        self.fields = fields

    def write(self, records: Iterable[Record]) -> None:
        """Write one line per record, then flush."""
        for record in records:
            self.stream.write(json.dumps(record.to_dict(self.fields), ensure_ascii=False) + "\n")
        self.stream.flush()


class CsvWriter:
    """CSV with a header row (not when appending); empty cells for missing values."""

    def __init__(self, stream: IO[str], fields: tuple[str, ...], appending: bool = False) -> None:
        self.stream = stream
        self.fields = fields
        self.writer = csv.writer(stream, lineterminator="\n")
        if not appending:
            self.writer.writerow(fields)

    def write(self, records: Iterable[Record]) -> None:
        """Write one row per record, then flush."""
        for r in records:
            self.writer.writerow([_cell(r.get(name), 6) for name in self.fields])
        self.stream.flush()


class TableWriter:
    """Fixed-width columns for people; the path comes last so long paths stay readable."""

    def __init__(self, stream: IO[str], fields: tuple[str, ...], appending: bool = False) -> None:
        self.stream = stream
        self.layout = {name: col for name, col in table_columns().items() if name in fields}
        self.provenance = "provenance" in fields
        header = " ".join(_pad(*col) for col in self.layout.values())
        self.stream.write(f"{header}  path\n")

    def write(self, records: Iterable[Record]) -> None:
        """Write one line per record, then flush."""
        for r in records:
            if r.error is not None:
                cells = ["ERROR"] + ["-"] * (len(self.layout) - 1)
                tail = f"{r.path}  ({r.error})"
            else:
                cells = [_cell(r.get(name), 4) or "-" for name in self.layout]
                tail = r.path
            if self.provenance and r.get("provenance"):
                tail += f"  [file says: {r.get('provenance').get('says') or 'see provenance'}]"
            widths = [width for _, width in self.layout.values()]
            line = " ".join(_pad(cell, w) for cell, w in zip(cells, widths, strict=True))
            self.stream.write(f"{line}  {tail}\n")
        self.stream.flush()


register_format("table", TableWriter)
register_format("jsonl", JsonlWriter)
register_format("csv", CsvWriter)


def _pad(text: str, width: int) -> str:
    return text.ljust(width) if width <= 6 else text.rjust(width)


def _cell(value: object, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # as JSON writes it
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, (dict, list)):  # nn_source_share, a video's timeline
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def make_writer(
    fmt: str,
    stream: IO[str],
    methods: str | tuple[str, ...] = "linear",
    appending: bool = False,
    provenance: bool = False,
    fields: tuple[str, ...] | None = None,
) -> RecordWriter:
    """The writer for ``fmt`` over ``stream``, with the fields of ``methods``.

    ``appending`` (``--resume`` onto a non-empty file) skips the CSV header;
    ``provenance`` adds that field; ``fields`` (records from a service, or a run's
    own :meth:`~ufd.runtime.detector.Detector.fields`) replaces both.

    Raises:
        UsageError: unknown format or method.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return FORMATS[fmt](stream, fields or fields_for(methods, provenance), appending)


def format_from_suffix(output: Path | None) -> str:
    """``jsonl`` / ``csv`` from an output file's suffix, else ``table``."""
    suffix = output.suffix.lower().lstrip(".") if output is not None else ""
    return suffix if suffix in FORMATS and suffix != "table" else "table"


def done_paths(output: Path, fmt: str) -> set[str]:
    """Paths already recorded in ``output`` (JSONL or CSV), for ``--resume``.

    A run killed mid-write can leave a partial last line: it is cut off here,
    so appending starts on a clean line and that record is redone.

    Raises:
        UsageError: ``fmt`` cannot be resumed (``table``).
    """
    if fmt not in RESUMABLE:
        raise UsageError("--resume needs --format jsonl or csv (a table cannot be parsed back)")
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
