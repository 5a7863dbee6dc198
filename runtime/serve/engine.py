"""The service's batching engine: bounded admission, decode pool, one encoder worker.

A request's images are admitted only if the engine holds fewer than
``queue_images`` images (else :class:`Overloaded` at once: the service answers
503). Each image is decoded and preprocessed in a bounded thread pool, then
queued for the encoder worker, which takes up to ``max_batch`` images (waiting
at most ``max_wait`` for more) per call; graphs that are not batch-invariant
still run one image per call inside :class:`EncoderSession`. When every image of
a request has its feature or its error, its records are made by the same
:meth:`Detector.records` the CLI uses.

Nothing fails quietly: an exception in one batch (or in a metrics hook) gives
that batch's images an error and the worker goes on; a worker that stops
anyway marks the engine failed (:attr:`Engine.failure`: ``/readyz`` answers 503
and the process exits non-zero through ``on_failure``), refuses new work and
answers every request it had accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ufd.runtime.detector import Detector
from ufd.runtime.faults import Faults
from ufd.runtime.io.inputs import InputItem
from ufd.runtime.methods import ScoreOptions
from ufd.runtime.pipeline import Pixels, Prepared, prepare_item
from ufd.runtime.records import Record
from ufd.runtime.units import Units

logger = logging.getLogger(__name__)


class Overloaded(Exception):
    """No room for more images now (or shutting down): retry later."""


@dataclass
class Job:
    """One request's images on their way through the engine."""

    items: list[InputItem]
    methods: tuple[str, ...]
    options: ScoreOptions
    done: Callable[[list[Record] | BaseException], None]
    prepared: list[Prepared | None] = field(default_factory=list)
    features: dict[int, np.ndarray] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)
    remaining: int = 0
    cancelled: bool = False
    settled: list[bool] = field(default_factory=list)
    """Per image: answered already (a late duplicate settle is ignored)."""
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class EngineStats:
    """Hooks the metrics module fills in (no-ops by default)."""

    on_batch: Callable[[int, float], None] = lambda size, seconds: None
    on_records: Callable[[list[Record]], None] = lambda records: None


class Engine:
    """Admits requests, decodes in a pool, encodes in batches on one thread."""

    def __init__(
        self,
        detector: Detector,
        max_batch: int,
        max_wait: float,
        queue_images: int,
        decode_workers: int,
        stats: EngineStats | None = None,
        on_failure: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.detector = detector
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.capacity = queue_images
        self.stats = stats or EngineStats()
        self.on_failure = on_failure
        self.failure: str | None = None
        """Why the encoder worker stopped, once it has (the engine then answers nothing new)."""
        self._admitted = 0
        self._admit_lock = threading.Condition()
        self._queue_lock = threading.Lock()  # orders queueing against the worker's death
        self._accepting = True
        self._encode_queue: queue.Queue[tuple[Job, int] | None] = queue.Queue()
        self._in_flight: list[tuple[Job, int]] = []
        self._faults = Faults()

        self._decoders = ThreadPoolExecutor(decode_workers, thread_name_prefix="ufd-serve-decode")
        self._worker = threading.Thread(target=self._run, name="ufd-serve-encoder", daemon=True)
        self._worker.start()

    @property
    def depth(self) -> int:
        """Images admitted and not yet answered."""
        return self._admitted

    @property
    def alive(self) -> bool:
        """Whether the encoder worker runs (``/readyz``)."""
        return self.failure is None and self._worker.is_alive()

    async def score(
        self, items: list[InputItem], methods: tuple[str, ...], options: ScoreOptions
    ) -> list[Record]:
        """Records for ``items``, in order (awaitable; cancelling it drops the rest).

        Raises:
            Overloaded: the engine is full, shutting down, or its worker stopped.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Record]] = loop.create_future()

        def done(result: list[Record] | BaseException) -> None:
            def settle() -> None:
                if future.done():
                    return
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

            loop.call_soon_threadsafe(settle)

        job = self.submit(items, methods, options, done)
        try:
            return await future
        finally:
            job.cancelled = not future.done() or future.cancelled()

    def submit(
        self,
        items: list[InputItem],
        methods: tuple[str, ...],
        options: ScoreOptions,
        done: Callable[[list[Record] | BaseException], None],
    ) -> Job:
        """Admit a job and start decoding it; ``done`` gets its records or an error."""
        with self._admit_lock:
            if self.failure is not None:
                raise Overloaded(self.failure)
            if not self._accepting:
                raise Overloaded("the service is shutting down")
            if self._admitted + len(items) > self.capacity:
                raise Overloaded(f"{self._admitted} images queued (room for {self.capacity})")
            self._admitted += len(items)
        job = Job(
            items,
            methods,
            options,
            done,
            [None] * len(items),
            remaining=len(items),
            settled=[False] * len(items),
        )
        for index in range(len(items)):
            self._decoders.submit(self._decode, job, index)
        return job

    def _decode(self, job: Job, index: int) -> None:
        """Prepare one image; whatever happens, the image is settled or queued, once."""
        try:
            if job.cancelled:
                self._settle(job, index, None, "cancelled")
                return
            prepared = prepare_item(job.items[index], self.detector.prepare_for(job.options))
            job.prepared[index] = prepared
            if prepared.pixels is None:
                self._settle(job, index, None, None)
                return
            with self._queue_lock:
                failure = self.failure
                if failure is None:
                    self._encode_queue.put((job, index))
            if failure is not None:
                self._settle(job, index, None, failure)
        except Exception as e:  # a decode thread must never leave an image unanswered
            logger.error("preparing image %d failed: %s", index, e, exc_info=True)
            self._settle(job, index, None, f"internal error: {type(e).__name__}")

    def _run(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._in_flight = batch
                self._faults.before_batch()
                try:
                    self._encode(batch)
                except Exception as e:  # one bad batch never stops the worker
                    logger.error("a batch of %d failed: %s", len(batch), e, exc_info=True)
                    for job, i in batch:
                        self._settle(job, i, None, f"internal error: {type(e).__name__}")
        except BaseException as e:  # the thread ends here: say so, answer, stop the service
            logger.critical("encoder worker", exc_info=True)
            self._die(f"the encoder worker stopped ({type(e).__name__}: {e})")

    def _next_batch(self) -> list[tuple[Job, int]] | None:
        """Up to ``max_batch`` queued images, waiting ``max_wait`` for more; ``None``: stop."""
        first = self._encode_queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            wait = deadline - time.monotonic()
            try:
                nxt = (
                    self._encode_queue.get(timeout=wait)
                    if wait > 0
                    else self._encode_queue.get_nowait()
                )
            except queue.Empty:
                break
            if nxt is None:
                self._encode_queue.put(None)  # stop after this batch
                break
            batch.append(nxt)
        return batch

    def _die(self, reason: str) -> None:
        """The worker stopped: refuse new work, answer everything queued, tell the service."""
        logger.critical("%s; the service stops", reason)
        with self._queue_lock:
            self.failure = reason
            waiting = []
            while True:
                try:
                    waiting.append(self._encode_queue.get_nowait())
                except queue.Empty:
                    break
        for entry in [*waiting, *self._in_flight]:  # answered ones are skipped
            if entry is not None:
                self._settle(entry[0], entry[1], None, reason)
        with self._admit_lock:
            self._admit_lock.notify_all()
        self.on_failure(reason)

    def _encode(self, batch: list[tuple[Job, int]]) -> None:
        live = [(job, i) for job, i in batch if not job.cancelled]
        for job, i in batch:
            if job.cancelled:
                self._settle(job, i, None, "cancelled")
        if not live:
            return
        started = time.perf_counter()
        features, failure = self.detector.encode_pixels([_pixels(job, i) for job, i in live])
        _call_hook(self.stats.on_batch, len(live), time.perf_counter() - started)
        for row, (job, i) in enumerate(live):
            self._settle(job, i, None if features is None else features[row], failure)

    def _settle(
        self, job: Job, index: int, feature: np.ndarray | None, failure: str | None
    ) -> None:
        with job.lock:
            if job.settled[index]:
                return
            job.settled[index] = True
            if feature is not None:
                job.features[index] = feature
                encoded = job.prepared[index]
                if encoded is not None:  # free the pixels now: its record needs the feature
                    job.prepared[index] = _without_pixels(encoded)
            elif failure is not None:
                job.failures[index] = failure
            job.remaining -= 1
            finished = job.remaining == 0
        if finished:
            self._finish(job)

    def _finish(self, job: Job) -> None:
        try:
            if not job.cancelled:
                job.done(self._records(job))
        except Exception as e:
            logger.error("scoring failed: %s", e, exc_info=True)
            with contextlib.suppress(Exception):
                job.done(e)
        finally:
            with self._admit_lock:
                self._admitted -= len(job.items)
                self._admit_lock.notify_all()

    def _records(self, job: Job) -> list[Record]:
        prepared = []
        for i, p in enumerate(job.prepared):
            if i in job.failures:
                p = Prepared(job.items[i], error=job.failures[i])
            prepared.append(p or Prepared(job.items[i], error="cancelled"))
        order = sorted(job.features)
        features = np.stack([job.features[i] for i in order]) if order else None
        records = self.detector.records(prepared, features, None, job.methods, job.options)
        _call_hook(self.stats.on_records, records)
        return records

    def stop(self, drain_timeout: float) -> bool:
        """Refuse new work, answer what was admitted (up to ``drain_timeout``), stop.

        Returns:
            Whether every admitted image was answered.
        """
        deadline = time.monotonic() + drain_timeout
        with self._admit_lock:
            self._accepting = False
            while self._admitted and (left := deadline - time.monotonic()) > 0:
                self._admit_lock.wait(left)
            drained = self._admitted == 0
        self._encode_queue.put(None)
        self._worker.join(timeout=max(0.0, deadline - time.monotonic()) + 1)
        self._decoders.shutdown(wait=False, cancel_futures=True)
        return drained


def _without_pixels(prepared: Prepared) -> Prepared:
    """``prepared`` with its pixels freed, the note of its input cap kept for its record.

    The note (``Units.note``) says what was done to the image to fit a ``whole`` encoder.
    """
    pixels = prepared.pixels
    kept = Units((), pixels.note) if isinstance(pixels, Units) and pixels.note else None
    return dataclasses.replace(prepared, pixels=kept)


def _pixels(job: Job, index: int) -> Pixels:
    """The pixels of an image queued for the encoder (only decoded images are queued)."""
    prepared = job.prepared[index]
    if prepared is None or prepared.pixels is None:
        raise RuntimeError(f"image {index} of a request was queued without pixels")
    return prepared.pixels


def _call_hook(hook: Callable[..., None], *args: Any) -> None:
    """A metrics hook: its failure is logged, never a request's."""
    try:
        hook(*args)
    except Exception as e:
        logger.error("a metrics hook failed: %s", e, exc_info=True)
