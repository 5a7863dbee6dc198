"""Videos in a run: each video's frames scored in batches, then its record.

:class:`VideoRun` holds a run's video settings. :meth:`VideoRun.claims` says
whether an input is a video (by content); :meth:`VideoRun.batches` samples its
frames (:mod:`.frames`), sends them through the detector's own decode ->
preprocess -> encoder -> methods steps as images named ``PATH#t=SECONDS``, and
ends with the video's record (:mod:`.records`). With ``frames`` the frame
records come first, in time order, then the video's.
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ufd.runtime.io.containers import looks_like_video
from ufd.runtime.io.inputs import InputItem
from ufd.runtime.records import Record
from ufd.runtime.registry import PROVENANCE
from ufd.runtime.video.frames import Frame, VideoError, VideoOptions, VideoReader
from ufd.runtime.video.records import FRAME_MARK, VIDEO_RULES, video_record


@dataclass
class VideoRun:
    """How a run treats videos: sampling, the deciding rule, frame records or not."""

    options: VideoOptions = field(default_factory=VideoOptions)
    rule: str = "mean"
    frames: bool = False
    gifs: bool = False
    """``--gif-as-video``: GIFs are videos (all their frames' timing), not first frames."""
    _seen: dict[str, bool] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.rule not in VIDEO_RULES:
            from ufd.runtime.errors import UsageError

            raise UsageError(f"unknown video rule {self.rule!r}; use {', '.join(VIDEO_RULES)}")

    def claims(self, item: InputItem) -> bool:
        """Whether ``item`` is a video (read by content once per path)."""
        if item.error is not None:
            return False
        if item.data is not None:
            return looks_like_video(item.data, self.gifs)
        if item.path not in self._seen:
            self._seen[item.path] = looks_like_video(item.path, self.gifs)
        return self._seen[item.path]

    def batches(
        self,
        item: InputItem,
        score: Callable[[Iterable[InputItem]], Iterator[list[Record]]],
        methods: list[Any],
        provenance: bool = False,
    ) -> Iterator[list[Record]]:
        """The records of one video: its frames' (with ``frames``), then its own.

        ``score`` turns frame items into record batches (the run's own image path);
        ``methods`` are the loaded methods the records hold; with ``provenance`` the
        video's record says what the file says about itself (its C2PA manifest).
        """
        try:
            reader = VideoReader(item.source, self.options)
        except VideoError as e:
            yield [with_provenance(Record(item.path, error=str(e)), item, provenance)]
            return
        failed: list[str] = []
        frame_records: list[Record] = []
        frames = self._frame_items(item.path, reader, failed)
        with reader:
            try:
                for batch in score(frames):
                    frame_records += batch
                    if self.frames:
                        yield batch
            finally:
                frames.close()  # the decoding thread stops before the reader closes
        record = video_record(item.path, frame_records, methods, self.rule, failed)
        yield [with_provenance(record, item, provenance)]

    def sample(self, item: InputItem) -> tuple[list[InputItem], list[str]]:
        """All sampled frames of a video as items, and why frames failed (blocking).

        For callers that score frames elsewhere (the service's engine); at most
        ``options.max_frames`` frames are held.

        Raises:
            VideoError: the video cannot be read at all.
        """
        failed: list[str] = []
        with VideoReader(item.source, self.options) as reader:
            return list(self._frame_items(item.path, reader, failed)), failed

    @staticmethod
    def _frame_items(
        path: str, reader: VideoReader, failed: list[str]
    ) -> Generator[InputItem, None, None]:
        ahead = decoded_ahead(reader.frames())
        try:
            for frame in ahead:
                if frame.image is None:
                    failed.append(frame.error or "frame not decoded")
                    continue
                yield InputItem(f"{path}{FRAME_MARK}{frame.time:g}", data=frame.image)
        finally:
            ahead.close()  # joins the decoding thread


def with_videos(
    items: Iterable[InputItem],
    video: VideoRun,
    score: Callable[[Iterable[InputItem]], Iterator[list[Record]]],
    methods: list[Any],
    provenance: bool = False,
) -> Iterator[list[Record]]:
    """Record batches for ``items``: images through ``score``, videos their own way.

    Runs of images go through ``score`` as they are; each video through
    :meth:`VideoRun.batches` (its frames through ``score`` too).
    """
    for is_video, group in itertools.groupby(items, key=video.claims):
        if not is_video:
            yield from score(group)
            continue
        for item in group:
            yield from video.batches(item, score, methods, provenance)


def with_provenance(record: Record, item: InputItem, provenance: bool) -> Record:
    """``record`` with the video file's ``provenance`` field when it is read."""
    if not provenance:
        return record
    from ufd.runtime.provenance import read_provenance

    return dataclasses.replace(
        record, values={**record.values, PROVENANCE: read_provenance(item.source)}
    )


AHEAD = 4
"""Frames decoded ahead of the encoder (PyAV decodes without the GIL)."""


def decoded_ahead(frames: Iterator[Frame], depth: int = AHEAD) -> Generator[Frame, None, None]:
    """``frames`` decoded in a thread, at most ``depth`` ahead of the consumer.

    The thread has stopped when this generator ends or is closed, so the caller
    may close the video right after.
    """
    ready: queue.Queue[Frame | None] = queue.Queue(depth)
    stop = threading.Event()

    def offer(item: Frame | None) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for frame in frames:
                if not offer(frame):
                    return
        except Exception as e:  # noqa: BLE001 - one video's failure is its error frame
            offer(Frame(-1.0, error=f"decoding failed ({type(e).__name__}: {e})"))
        offer(None)

    thread = threading.Thread(target=pump, name="ufd-video-decode", daemon=True)
    thread.start()
    try:
        while (frame := ready.get()) is not None:
            yield frame
    finally:
        stop.set()
        thread.join()
