"""Step 1 of the flow: an image (a path, bytes or a file object) becomes an RGB image.

Policy (the official UnivFD test pipeline unless noted):

* ``Image.open(source).convert("RGB")``: grayscale, palette (with or without
  transparency), RGBA (alpha dropped), CMYK and the rest convert as Pillow does.
* 16-bit images are scaled to 8 bits (``value >> 8``); Pillow's ``convert``
  would clip them to white. 8-bit images are unchanged.
* Animated files (GIF, WebP, APNG): the first frame.
* EXIF orientation is **not** applied (the official pipeline ignores it);
  ``exif_transpose=True`` applies it.
* The pixel count is checked on the header, before any pixel is decoded, so a
  decompression bomb is refused without using its memory. Pillow's own guard
  (``PIL.Image.MAX_IMAGE_PIXELS`` x 2, ~179 MP by default) still applies on top:
  ufd never changes Pillow's globals, so a cap above that needs the caller to
  raise Pillow's limit too.

Safe to call from many threads at once.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ufd.runtime.errors import ImageError, stable_text
from ufd.runtime.io.formats import register_plugins
from ufd.runtime.io.policy import (
    DEFAULT_MAX_PIXELS,
    EMPTY_FILE,
    NOT_AN_IMAGE_FORMAT,
    unreadable,
)

_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
FileSource = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO
ImageSource = FileSource | Image.Image
"""A path, the file's bytes, a binary file object, or an image decoded already (a video frame)."""


def decode_image(
    source: ImageSource,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    exif_transpose: bool = False,
) -> Image.Image:
    """Decode ``source`` (a path, the file's bytes, or a binary file object) to RGB.

    Args:
        source: image file path, its bytes, or a readable binary file object.
        max_pixels: refuse images with more pixels than this (checked on the
            header, before decoding).
        exif_transpose: rotate by the EXIF orientation tag (off in the
            official pipeline).

    Raises:
        ImageError: with a short, specific reason.
    """
    if isinstance(source, Image.Image):  # decoded already (a video's frame)
        _check_pixels(*source.size, max_pixels)
        return to_rgb(source)
    register_plugins()
    try:
        with Image.open(_open_target(source)) as img:
            _check_pixels(*img.size, max_pixels)
            img.seek(0)
            frame = ImageOps.exif_transpose(img) if exif_transpose else img
            return to_rgb(frame)
    except ImageError:
        raise
    except (IsADirectoryError, FileNotFoundError, PermissionError) as e:
        raise ImageError(unreadable(e)) from e
    except UnidentifiedImageError as e:
        raise ImageError(NOT_AN_IMAGE_FORMAT) from e
    except Image.DecompressionBombError as e:
        raise ImageError(f"refused as a decompression bomb: {stable_text(e)}") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow reports truncated or damaged data as OSError/SyntaxError/ValueError.
        raise ImageError(f"damaged image data: {stable_text(e)}") from e
    except Exception as e:
        raise ImageError(f"cannot decode image ({type(e).__name__}: {stable_text(e)})") from e


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(
            f"image is {width}x{height} = {width * height:,} pixels, over the "
            f"cap of {max_pixels:,} (raise it with --max-pixels)"
        )


def _open_target(source: FileSource) -> str | BinaryIO:
    """What ``Image.open`` reads; an empty input is refused here."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError(EMPTY_FILE)
        return io.BytesIO(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_file() and path.stat().st_size == 0:
            raise ImageError(EMPTY_FILE)
        return str(path)
    if not hasattr(source, "read"):
        raise ImageError(f"cannot decode a {type(source).__name__}: give a path, bytes or a file")
    if source.seekable():
        start = source.tell()
        empty = source.seek(0, io.SEEK_END) == start
        source.seek(start)
        if empty:
            raise ImageError(EMPTY_FILE)
    return source


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB version of a decoded frame (16-bit scaled to 8-bit, not clipped)."""
    if image.mode in _SIXTEEN_BIT:
        pixels = np.asarray(image, dtype=np.int64)
        scaled = np.clip(pixels >> 8, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, "L").convert("RGB")
    if image.mode == "RGB":
        image.load()
        return image
    if image.mode == "P" and isinstance(image.info.get("transparency"), bytes):
        # Pillow warns that byte transparency "should be converted to RGBA"; RGB ignores
        # transparency either way, so drop it: same pixels, no process-wide warning.
        image.load()
        image.info.pop("transparency")
    return image.convert("RGB")
