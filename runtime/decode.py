"""Step 1 of the flow: an image file becomes an RGB ``PIL.Image``.

Policy (the official UnivFD test pipeline unless noted):

* ``Image.open(path).convert("RGB")``: grayscale, palette (with or without
  transparency), RGBA (alpha dropped), CMYK and the rest convert as Pillow does.
* 16-bit images are scaled to 8 bits (``value >> 8``); Pillow's ``convert``
  would clip them to white. 8-bit images are unchanged.
* Animated files (GIF, WebP, APNG): the first frame.
* EXIF orientation is **not** applied (the official pipeline ignores it);
  ``exif_transpose=True`` applies it.
* The pixel count is checked on the header, before any pixel is decoded, so a
  decompression bomb is refused without using its memory.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ufd.runtime.errors import ImageError

DEFAULT_MAX_PIXELS = 64_000_000
"""Default cap on decoded pixels (about 8000 x 8000); 192 MB as RGB."""

_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def decode_image(
    path: str | Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    exif_transpose: bool = False,
) -> Image.Image:
    """Open ``path`` and return its first frame as an RGB image.

    Args:
        path: image file.
        max_pixels: refuse images with more pixels than this (checked on the
            header, before decoding).
        exif_transpose: rotate by the EXIF orientation tag (off in the
            official pipeline).

    Raises:
        ImageError: with a short, specific reason.
    """
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size == 0:
            raise ImageError("empty file (0 bytes)")
        if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
            Image.MAX_IMAGE_PIXELS = max_pixels  # the caller's cap is the authority
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bomb warnings, palette transparency notes
            with Image.open(path) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageError(
                        f"image is {width}x{height} = {width * height:,} pixels, over the "
                        f"cap of {max_pixels:,} (raise it with --max-pixels)"
                    )
                img.seek(0)
                frame = ImageOps.exif_transpose(img) if exif_transpose else img
                return to_rgb(frame)
    except ImageError:
        raise
    except IsADirectoryError as e:
        raise ImageError("is a directory, not an image file") from e
    except FileNotFoundError as e:
        raise ImageError("file not found") from e
    except PermissionError as e:
        raise ImageError("permission denied") from e
    except UnidentifiedImageError as e:
        raise ImageError("not a recognised image format (corrupt or not an image)") from e
    except Image.DecompressionBombError as e:
        raise ImageError(f"refused as a decompression bomb: {e}") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow reports truncated or damaged data as OSError/SyntaxError/ValueError.
        raise ImageError(f"damaged image data: {e}") from e
    except Exception as e:
        raise ImageError(f"cannot decode image ({type(e).__name__}: {e})") from e


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB version of a decoded frame (16-bit scaled to 8-bit, not clipped)."""
    if image.mode in _SIXTEEN_BIT:
        pixels = np.asarray(image, dtype=np.int64)
        scaled = np.clip(pixels >> 8, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, "L").convert("RGB")
    if image.mode == "RGB":
        image.load()
        return image
    return image.convert("RGB")
