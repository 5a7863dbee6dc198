"""What each fuzz target feeds untrusted bytes to, and what counts as a crash.

Shared by ``benchmarks/fuzz.py`` (atheris, coverage-guided) and
``tests/test_fuzz_regressions.py`` (every seed and every finding, replayed).
A target returns normally or raises :class:`Refused` (the input was rejected
the way ufd rejects bad input: an error record, a 4xx, a BundleError); any
other exception is a finding.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
from collections.abc import Callable
from pathlib import Path

MAX_PIXELS = 4_000_000  # keeps each input fast; the cap itself is what decoding must honour
CORPUS = Path(__file__).with_name("fixtures") / "fuzz"


class Refused(Exception):
    """The input was refused as ufd refuses bad input (not a finding)."""


def decode(data: bytes) -> None:
    """Image decoding: an RGB image within the pixel cap, or an ImageError."""
    from ufd.runtime.errors import ImageError
    from ufd.runtime.io.decode import decode_image

    try:
        image = decode_image(data, MAX_PIXELS)
    except ImageError as e:
        raise Refused(str(e)) from e
    if image.mode != "RGB" or image.width * image.height > MAX_PIXELS:
        raise AssertionError(f"decode gave {image.mode} {image.size}")


def provenance(data: bytes) -> None:
    """Every provenance reader on a whole file: a dict or None, never an exception."""
    from ufd.runtime.provenance import read_provenance

    found = read_provenance(data)
    if found is not None:
        json.dumps(found)  # what reaches a record must be JSON
        if "0x" in str(found.get("errors", "")):
            raise AssertionError(f"run-dependent error text: {found['errors']}")


def _image_with(**info) -> object:
    from PIL import Image

    image = Image.new("RGB", (8, 8))
    image.info.update(info)
    return image


def xmp(data: bytes) -> None:
    """The XMP reader on a packet (bytes, as Pillow hands JPEG/WebP packets over)."""
    from ufd.runtime.provenance.metadata import read_metadata

    json.dumps(read_metadata(_image_with(xmp=data)))


def png_text(data: bytes) -> None:
    """The PNG text readers (AUTOMATIC1111 parameters, ComfyUI prompt/workflow)."""
    from ufd.runtime.provenance.metadata import read_metadata

    text = data.decode("utf-8", "replace")
    key = ("parameters", "prompt", "workflow")[len(data) % 3]
    json.dumps(read_metadata(_image_with(**{key: text})))


def exif(data: bytes) -> None:
    """EXIF blocks: a JPEG whose APP1 segment holds the input, read as a file is."""
    from ufd.runtime.provenance import read_provenance

    payload = b"Exif\x00\x00" + data[:65000]
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    jpeg = _tiny_jpeg()
    found = read_provenance(jpeg[:2] + segment + jpeg[2:])
    if found is not None:
        json.dumps(found)


def c2pa(data: bytes) -> None:
    """The C2PA reader on a JPEG or PNG claimed to carry a manifest."""
    from ufd.runtime.provenance.content_credentials import read_c2pa

    found = read_c2pa(data, "PNG" if data[:4] == b"\x89PNG" else "JPEG")
    if found is not None:
        json.dumps(found)


def _limits():
    from ufd.runtime.serve.config import ServeConfig

    return ServeConfig(
        bundle=Path("."), max_image_bytes=1 << 16, max_request_bytes=1 << 18, max_images=8
    )


async def _chunks(data: bytes, size: int):
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _request(content_type: str, data: bytes) -> None:
    from ufd.runtime.serve.uploads import RequestError, read_detect_request

    try:
        request = asyncio.run(
            read_detect_request(content_type, str(len(data)), _chunks(data, 997), _limits())
        )
    except RequestError as e:
        if not 400 <= e.status < 500:
            raise AssertionError(f"a malformed request got {e.status}") from e
        raise Refused(e.message) from e
    limits = _limits()
    if not request.images or len(request.images) > limits.max_images:
        raise AssertionError(f"{len(request.images)} images passed the limits")
    if any(len(u.data) > limits.max_image_bytes for u in request.images):
        raise AssertionError("an image over the limit passed")


def multipart(data: bytes) -> None:
    """The multipart body parser (boundary ``ufdfuzz``), with limits."""
    _request("multipart/form-data; boundary=ufdfuzz", data)


def json_body(data: bytes) -> None:
    """The JSON body parser (base64 images), with limits."""
    _request("application/json", data)


def manifest(data: bytes) -> None:
    """The manifest parser: a Manifest, or a BundleError that says what is wrong."""
    from ufd.runtime.bundle import Manifest
    from ufd.runtime.errors import BundleError
    from ufd.runtime.methods import config_types

    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise Refused("not JSON") from e
    try:
        Manifest.from_dict(document, config_types())
    except BundleError as e:
        raise Refused(str(e)) from e


TARGETS: dict[str, Callable[[bytes], None]] = {
    "decode": decode,
    "provenance": provenance,
    "xmp": xmp,
    "png-text": png_text,
    "exif": exif,
    "c2pa": c2pa,
    "multipart": multipart,
    "json": json_body,
    "manifest": manifest,
}


@functools.cache
def _tiny_jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 200)).save(buffer, "JPEG")
    return buffer.getvalue()
