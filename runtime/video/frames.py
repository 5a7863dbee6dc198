"""Frames sampled from a video with PyAV (extra ``ufd[video]``), bounded and streaming.

Sampling (:class:`VideoOptions`): ``fps`` frames per second of video (default 1),
at most ``max_frames`` (default 32), spread evenly over the whole video when the
rate would give more; ``keyframes`` decodes key frames only (the decoder skips
the rest: fast) and takes the first at or after each sampling time. Frames are
decoded one at a time and only the sampled ones are kept, so a two-hour video
never sits in memory; far targets are reached by seeking to the key frame
before them.

Bounds: the frame size is checked on the stream header against the image pixel
cap; only the first ``max_seconds`` of a video are sampled; decoding stops after
``timeout`` seconds of wall time per file (the frames so far are kept). As for
images, no rotation is applied (display-matrix rotation is metadata, as EXIF
orientation is).
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ufd.runtime.errors import ImageError, stable_text
from ufd.runtime.io.policy import DEFAULT_MAX_PIXELS

VIDEO_HINT = "pip install 'ufd[video]' to score videos (PyAV)"
SEEK_GAP = 4.0
"""Seconds between sampled frames beyond which the reader seeks instead of decoding through."""


class VideoError(ImageError):
    """A video that cannot be sampled at all (its record is an error)."""


@dataclass(frozen=True)
class VideoOptions:
    """How frames are sampled and bounded (``--fps``, ``--max-frames``, ``--keyframes``...)."""

    fps: float = 1.0
    max_frames: int = 32
    keyframes: bool = False
    max_seconds: float = 6 * 3600.0
    timeout: float = 600.0
    max_pixels: int = DEFAULT_MAX_PIXELS

    def targets(self, duration: float | None) -> list[float] | None:
        """The time stamps to sample (s), or ``None`` when the duration is unknown."""
        if duration is None or duration <= 0:
            return None
        span = min(duration, self.max_seconds)
        count = max(1, math.ceil(span * self.fps - 1e-9))
        if count <= self.max_frames:
            return [i / self.fps for i in range(count)]
        return [i * span / self.max_frames for i in range(self.max_frames)]


@dataclass(frozen=True)
class Frame:
    """One sampled frame: its time stamp and image, or why there is none."""

    time: float
    image: Image.Image | None = None
    error: str | None = None


def _av() -> Any:
    try:
        import av
    except ImportError as e:
        raise VideoError(f"a video: {VIDEO_HINT}") from e
    return av


def _open_target(source: Any) -> Any:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return source


class VideoReader:
    """An open video: its stream, duration, and :meth:`frames`. Close it (or use ``with``)."""

    def __init__(self, source: Any, options: VideoOptions) -> None:
        """Open ``source`` and check its video stream.

        Raises:
            VideoError: not readable as a video, no video stream, or frames over the cap.
        """
        av = _av()
        self.av, self.options = av, options
        try:
            self.container = av.open(_open_target(source), mode="r")
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise VideoError(f"damaged or unsupported video: {stable_text(e)}") from e
        try:
            self.stream = self._video_stream()
        except VideoError:
            self.container.close()
            raise

    def _video_stream(self) -> Any:
        streams = self.container.streams.video
        if not streams:
            raise VideoError("no video stream (audio only?)")
        stream = streams[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > self.options.max_pixels:
            raise VideoError(
                f"frames are {width}x{height} = {width * height:,} pixels, over the cap of "
                f"{self.options.max_pixels:,} (raise it with --max-pixels)"
            )
        stream.thread_type = "AUTO"
        if self.options.keyframes:
            stream.codec_context.skip_frame = "NONKEY"
        return stream

    @property
    def duration(self) -> float | None:
        """Seconds, from the stream or the container; ``None`` when neither says."""
        stream = self.stream
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if self.container.duration is not None:
            return float(self.container.duration / self.av.time_base)
        return None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file and the decoder."""
        self.container.close()

    def frames(self) -> Iterator[Frame]:
        """The sampled frames in time order; a failure ends them with an error frame."""
        deadline = time.monotonic() + self.options.timeout
        targets = self.options.targets(self.duration)
        try:
            yield from self._sample(targets, deadline)
        except self.av.error.FFmpegError as e:
            yield Frame(-1.0, error=f"damaged video data: {stable_text(e)}")
        except _Timeout as e:
            yield Frame(-1.0, error=str(e))

    def _sample(self, targets: list[float] | None, deadline: float) -> Iterator[Frame]:
        step = 1.0 / self.options.fps
        taken, next_time, index = 0, 0.0, 0
        decoded = self.container.decode(self.stream)
        last, sought = -math.inf, -math.inf
        while taken < self.options.max_frames:
            goal = targets[index] if targets is not None else next_time
            if goal > self.options.max_seconds:
                return
            if goal - last > SEEK_GAP and last > -math.inf and sought != goal:
                decoded, sought = self._seek(goal), goal
            frame = next(decoded, None)
            if frame is None:
                return
            if time.monotonic() > deadline:
                raise _Timeout(
                    f"decoding stopped after {self.options.timeout:g} s (--video-timeout); "
                    f"{taken} frames kept"
                )
            stamp = self._time(frame, last)
            last = stamp
            if stamp + 1e-6 < goal:
                continue
            yield Frame(round(stamp, 3), frame.to_image())
            taken += 1
            if targets is not None:
                while index < len(targets) and targets[index] <= stamp + 1e-6:
                    index += 1
                if index == len(targets):
                    return
            else:
                next_time = max(next_time + step, stamp + step - 1e-6)

    def _seek(self, goal: float) -> Any:
        stream = self.stream
        self.container.seek(int(goal / stream.time_base), stream=stream, backward=True)
        return self.container.decode(stream)

    def _time(self, frame: Any, last: float) -> float:
        if frame.time is not None:
            return float(frame.time)
        rate = self.stream.average_rate
        return last + (1.0 / float(rate) if rate else 0.04) if last > -math.inf else 0.0


class _Timeout(Exception):
    """The wall-clock cap of one video."""
