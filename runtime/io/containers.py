"""Is this input a video, and in which container? Decided by its first bytes.

MP4/MOV (an ISO base media ``ftyp`` box whose brand is not an image brand, or
a QuickTime file starting with another atom), WebM/Matroska (EBML) and AVI
(RIFF ``AVI ``). HEIC/HEIF and AVIF share MP4's container and stay images.
Folders go by extension instead (:data:`ufd.runtime.io.inputs.VIDEO_EXTENSIONS`).
"""

from __future__ import annotations

import os
from typing import Any

_IMAGE_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}
)
_QUICKTIME_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
HEADER_BYTES = 12


def video_container(head: bytes) -> str | None:
    """``MP4``, ``MOV``, ``MATROSKA`` or ``AVI`` from a file's first bytes; ``None``: no video."""
    if len(head) < HEADER_BYTES:
        return None
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: WebM, Matroska
        return "MATROSKA"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    box = head[4:8]
    if box == b"ftyp":
        brand = head[8:12]
        if brand in _IMAGE_BRANDS:
            return None
        return "MOV" if brand == b"qt  " else "MP4"
    return "MOV" if box in _QUICKTIME_ATOMS else None


def is_gif_header(head: bytes) -> bool:
    """True for a GIF (``GIF87a``/``GIF89a``): a video only when a run says so."""
    return head[:6] in (b"GIF87a", b"GIF89a")


def is_video_header(head: bytes) -> bool:
    """True when a file's first :data:`HEADER_BYTES` bytes open a video container."""
    return video_container(head) is not None


def looks_like_video(source: Any, gifs: bool = False) -> bool:
    """Whether ``source`` (a path, bytes or a seekable file object) holds a video.

    With ``gifs``, a GIF counts as one (``--gif-as-video``). Unreadable sources are
    not videos: the image decoder then reports why.
    """
    head = _head(source)
    return is_video_header(head) or (gifs and is_gif_header(head))


def _head(source: Any) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:HEADER_BYTES])
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as f:
                return f.read(HEADER_BYTES)
        except OSError:
            return b""
    if hasattr(source, "read") and hasattr(source, "seek") and hasattr(source, "tell"):
        start = source.tell()
        head = source.read(HEADER_BYTES)
        source.seek(start)
        return head if isinstance(head, bytes) else b""
    return b""
