"""What a file says about its own origin, reported beside the pixel scores (never mixed in).

:func:`read_provenance` gathers C2PA content credentials
(:mod:`.content_credentials`, with ``ufd[provenance]``), IPTC/XMP digital
source types and generator metadata (:mod:`.metadata`), and Stable Diffusion's
invisible watermark (:mod:`.watermark`). The result is ``None`` when
the file says nothing; otherwise a dict with what each source says, ``says``
(``generated``, ``captured``, ``edited`` or ``None``: the metadata's own
verdict, to be trusted only as far as its source) and ``errors`` for broken
or hostile blocks. Reading metadata never fails a record.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from PIL import Image

from ufd.runtime.errors import stable_text
from ufd.runtime.io.containers import HEADER_BYTES, video_container
from ufd.runtime.io.formats import register_plugins
from ufd.runtime.provenance.content_credentials import read_c2pa
from ufd.runtime.provenance.metadata import GENERATED_TYPES, read_metadata
from ufd.runtime.provenance.watermark import read_watermark

MAX_FILE_BYTES = 256 << 20
CAPTURED = frozenset(
    {"digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "print"}
)


def read_provenance(source: Any, max_bytes: int = MAX_FILE_BYTES) -> dict[str, Any] | None:
    """What the image or video (a path, its bytes, or a file object) says about its origin.

    Videos (MP4, MOV, AVI) are read for their C2PA manifest only.
    """
    try:
        data = _bytes(source, max_bytes)
    except OSError as e:
        return {"errors": [f"unreadable: {stable_text(e)}"], "says": None}
    if data is None:
        return None
    found: dict[str, Any] = {}
    errors: list[str] = []
    # a video (its container's name): its C2PA manifest only, no image metadata or watermark
    container = video_container(data[:HEADER_BYTES])
    image_format = container or _image_metadata(data, found, errors)
    errors += found.pop("errors", [])
    credentials = read_c2pa(data, image_format)
    if credentials is not None:
        found["c2pa"] = credentials
        if "error" in credentials:
            errors.append(f"c2pa: {credentials['error']}")
    if not found and not errors:
        return None
    found["says"] = _verdict(found)
    if errors:
        found["errors"] = errors
    return found


def _image_metadata(data: bytes, found: dict[str, Any], errors: list[str]) -> str | None:
    """Read an image's metadata and watermark into ``found``; its Pillow format."""
    register_plugins()  # HEIC/HEIF, JPEG XL: the same formats the scores read
    try:
        with Image.open(io.BytesIO(data)) as image:
            found |= read_metadata(image)
            mark = read_watermark(image)
            if mark:
                found["watermark"] = mark
            return str(image.format) if image.format else None
    except Exception as e:  # noqa: BLE001 - a broken file is an entry, never a failure
        errors.append(f"metadata unreadable: {type(e).__name__}: {stable_text(e, 160)}")
        return None


def _bytes(source: Any, max_bytes: int) -> bytes | None:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            return None
        if path.stat().st_size > max_bytes:
            raise OSError(f"file over {max_bytes:,} bytes; metadata not read")
        return path.read_bytes()
    if hasattr(source, "read") and hasattr(source, "seek"):
        start = source.tell()
        data = source.read(max_bytes + 1)
        source.seek(start)
        if len(data) > max_bytes:
            raise OSError(f"file over {max_bytes:,} bytes; metadata not read")
        return bytes(data)
    return None


def _verdict(found: dict[str, Any]) -> str | None:
    types = []
    credentials = found.get("c2pa") or {}
    if credentials.get("intact"):
        types += [a.get("digital_source_type") for a in credentials.get("actions", [])]
    types.append((found.get("xmp") or {}).get("digital_source_type"))
    if any(t in GENERATED_TYPES for t in types) or "generator" in found or "watermark" in found:
        return "generated"
    if any(t in CAPTURED for t in types):
        return "captured"
    if any(t for t in types):
        return "edited"
    return None
