"""The last step of the flow: one :class:`Record` per input.

A record holds the input's name (``path``), the fields of every method that
scored it (see :mod:`ufd.runtime.methods`), and ``error`` when it could not be
scored. Fields read as attributes (``record.prob``, ``record.nn_label``): a
field of a method that did not run is ``None``; a field the record carries reads
even when this process knows no method that makes it (records from a service).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ufd.runtime.registry import all_fields


@dataclass(frozen=True)
class Record:
    """The result for one input: scores, or the reason there are none.

    Attributes:
        path: the input's name: the file as expanded, the uploaded name, or
            ``FILE.npy#ROW`` for precomputed features.
        values: method fields (``logit``, ``prob``, ``label``, ``nn_score``...).
        error: ``None``, or a short reason the input could not be scored.
    """

    path: str
    values: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_") and (name in self.values or name in all_fields()):
            return self.values.get(name)
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    @property
    def ok(self) -> bool:
        """True when the input was scored."""
        return self.error is None

    def get(self, name: str) -> Any:
        """Any field by name (``path``, ``error`` or a method field); ``None`` if unset."""
        if name == "path":
            return self.path
        if name == "error":
            return self.error
        return self.values.get(name)

    def to_dict(self, fields: tuple[str, ...]) -> dict[str, Any]:
        """The record as a JSON-ready dict with exactly ``fields``, in that order."""
        return {name: self.get(name) for name in fields}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Record:
        """The record a :meth:`to_dict` row (a JSONL line) describes."""
        values = {k: v for k, v in row.items() if k not in ("path", "error")}
        return cls(str(row["path"]), values, row.get("error"))


def records_from_columns(
    paths: Sequence[str], errors: Sequence[str | None], columns: dict[str, list[Any]]
) -> list[Record]:
    """Records for a batch: errors where given, else the next row of every column."""
    records, row = [], 0
    for path, error in zip(paths, errors, strict=True):
        if error is not None:
            records.append(Record(path, error=error))
            continue
        records.append(Record(path, {name: values[row] for name, values in columns.items()}))
        row += 1
    return records
