"""A ``ufd-detect`` run: records in batches (here, or from a running service), written as they come.

Two sources give the same records: :func:`local_batches` (the bundle, in this
process) and :func:`server_batches` (``ufd-detect --server``: a running
``ufd-serve`` over HTTP or its Unix socket, which scores with its bundle).
:func:`write_records` writes each batch as it comes (flushed, so ``--resume``
can continue a killed run), stops at the first failure with ``strict``, and
counts. The service path imports neither numpy nor onnxruntime: a caller that
runs once per image pays only for the request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ufd.runtime.faults import faults
from ufd.runtime.io.inputs import InputItem
from ufd.runtime.io.policy import EMPTY_FILE, unreadable
from ufd.runtime.records import Record

if TYPE_CHECKING:
    from ufd.runtime.video.run import VideoRun

SERVER_CHUNK = 16
"""Images per request to a service (its --max-images must be at least this; the default is 64)."""
BUSY_RETRIES = 20


@dataclass
class RunCounts:
    """How a run went."""

    scored: int = 0
    failed: int = 0
    stopped_at: Record | None = None


def local_batches(
    detector: Any,
    items: list[InputItem],
    methods: tuple[str, ...],
    options: Any,
    batch_size: int | None = None,
    video: VideoRun | None = None,
) -> Iterator[list[Record]]:
    """Each encoder batch's records, from a :class:`~ufd.runtime.detector.Detector`.

    With ``video``, each video among the items gives its frames' records (with
    ``video.frames``) and then its own (:mod:`ufd.runtime.video`); images between
    videos are batched as before.
    """
    yield from detector.planned_batches(items, methods, options, batch_size, video)


def server_batches(
    client: Any,
    items: list[InputItem],
    method: str,
    k: int | None = None,
    chunk: int = SERVER_CHUNK,
    sleep: Callable[[float], None] = time.sleep,
    views: int = 0,
) -> Iterator[list[Record]]:
    """Records from a service (:class:`ufd.client.Client`), ``chunk`` images per request.

    Inputs that name nothing, and files that cannot be read here, get the error
    record a local run gives them; everything else is sent as bytes. A full
    service (503) is asked again, a little later each time.

    The service's records say which fields the run has (:func:`server_fields`); a
    client-side error record carries none. So batches are held back until one holds
    a service's record (or the inputs end): the first batch a writer sees always
    shows the run's fields, whatever failed here first.

    Raises:
        ServiceError: the service cannot be reached or refused the request.
    """
    held: list[list[Record]] = []
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        read = [_read(item) for item in part]
        sendable = [
            (item.path, data)
            for item, data in zip(part, read, strict=True)
            if isinstance(data, bytes) and data
        ]

        answered = iter(_ask(client, sendable, method, k, views, sleep) if sendable else [])
        held.append(
            [
                next(answered) if isinstance(data, bytes) and data else _error(item, data)
                for item, data in zip(part, read, strict=True)
            ]
        )
        if sendable:
            yield from held
            held = []
    yield from held


def _read(item: InputItem) -> bytes | str:
    """The file's bytes, or the error a local run reports for it (:mod:`~ufd.runtime.io.policy`)."""
    if item.error is not None:
        return item.error
    try:
        return Path(item.path).read_bytes() or b""
    except OSError as e:
        return unreadable(e)


def _error(item: InputItem, reason: bytes | str) -> Record:
    return Record(item.path, error=reason if isinstance(reason, str) else EMPTY_FILE)


def _ask(
    client: Any,
    images: list[tuple[str, bytes]],
    method: str,
    k: int | None,
    views: int,
    sleep: Callable[[float], None],
) -> list[Record]:
    from ufd.client import ServiceError

    names, data = [name for name, _ in images], [blob for _, blob in images]
    for attempt in range(BUSY_RETRIES):
        try:
            records: list[Record] = client.detect(
                data, names=names, method=method, k=k, views=views or None
            )
            return records
        except ServiceError as e:
            if e.status != 503 or attempt == BUSY_RETRIES - 1:
                raise
            sleep(min(0.1 * 2**attempt, 2.0))
    raise AssertionError("unreachable")  # pragma: no cover


def server_fields(records: list[Record]) -> tuple[str, ...]:
    """The record fields a service answered with, in its order.

    Read from the first record the service made (client-side error records carry
    no fields); a batch of client-side errors only has ``path`` and ``error``.
    """
    answered = next((r for r in records if r.values), None)
    return ("path", *(answered.values if answered else ()), "error")


def write_records(
    batches: Iterable[list[Record]],
    writer_for: Callable[[list[Record]], Any],
    counts: RunCounts,
    strict: bool = False,
    on_batch: Callable[[int], None] = lambda n: None,
) -> RunCounts:
    """Write each batch as it comes; the writer is made from the first batch (its fields).

    ``counts`` is updated as batches are written (an interrupted run still knows how
    far it got). With ``strict``, the run stops after the first record that failed.
    """
    writer = None

    for records in batches:
        if strict and not all(r.ok for r in records):
            first_bad = next(i for i, r in enumerate(records) if not r.ok)
            records = records[: first_bad + 1]
            counts.stopped_at = records[-1]
        writer = writer or writer_for(records)
        writer.write(records)
        ok = sum(r.ok for r in records)
        counts.scored += ok
        counts.failed += len(records) - ok
        on_batch(len(records))
        faults().after_batch()

        if counts.stopped_at is not None:
            break
    return counts
