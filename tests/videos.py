"""Small real videos for the tests, encoded here with PyAV (H.264, VP9, MJPEG...)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

CODECS = {  # container -> (format, codec, pixel format)
    "mp4": ("mp4", "libx264", "yuv420p"),
    "mov": ("mov", "libx264", "yuv420p"),
    "webm": ("webm", "libvpx-vp9", "yuv420p"),
    "avi": ("avi", "mjpeg", "yuvj420p"),
    "mkv": ("matroska", "libx264", "yuv420p"),
}


def frame_pixels(i: int, size: tuple[int, int]) -> np.ndarray:
    """A frame that differs from its neighbours (a moving bar over seeded noise)."""
    width, height = size
    pixels = np.random.default_rng(i).integers(0, 255, (height, width, 3), dtype=np.uint8)
    pixels[:, (i * 3) % width] = 255
    return pixels


def make_video(
    path: Path,
    seconds: float = 5.0,
    rate: int = 10,
    size: tuple[int, int] = (64, 48),
    gop: int | None = None,
    times: list[float] | None = None,
) -> Path:
    """Encode a video at ``path`` (container from its suffix).

    ``times``: a variable frame rate: one frame at each of these time stamps (s).
    """
    import av

    fmt, codec, pix_fmt = CODECS[path.suffix.lstrip(".")]
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = *size, pix_fmt
        if gop is not None:
            stream.codec_context.gop_size = gop
            stream.codec_context.options = {"sc_threshold": "0"}
        stamps = times if times is not None else [i / rate for i in range(round(seconds * rate))]
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, stamp in enumerate(stamps):
            frame = av.VideoFrame.from_ndarray(frame_pixels(i, size), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(stamp * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_audio_only(path: Path) -> Path:
    """A WebM with one Opus audio stream and no video."""
    import av

    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libopus", rate=48000)
        samples = np.zeros((1, 960), dtype=np.float32)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            frame.sample_rate, frame.pts = 48000, i * 960
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_empty_video(path: Path) -> Path:
    """A Matroska file with a video stream's header and no frame."""
    import av

    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        container.start_encoding()
    return path
