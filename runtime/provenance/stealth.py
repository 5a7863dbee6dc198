"""AUTOMATIC1111's "stealth" PNG info: generation parameters hidden in the alpha channel's low bits.

The stealth-pnginfo extension writes, in the least significant bit of each alpha
value, column by column (top to bottom, then the next column), most significant
bit first: a 15-byte signature (``stealth_pnginfo`` plain, ``stealth_pngcomp``
gzip-compressed), the payload's length in bits (32-bit big-endian), and the
payload: the same text as the ``parameters`` PNG chunk. Such images survive
tools that strip metadata chunks.

Bounded: read only in images of at most :data:`MAX_PIXELS` (the alpha channel is
decoded whole, since the bits run down columns; generators write far smaller
images), at most :data:`MAX_PAYLOAD` bytes, decompressed to at most
:data:`MAX_TEXT` bytes.
"""

from __future__ import annotations

import zlib

import numpy as np
from PIL import Image

SIGNATURES = {b"stealth_pnginfo": False, b"stealth_pngcomp": True}
SIGNATURE_BYTES = 15
MAX_PAYLOAD = 1 << 20
MAX_TEXT = 1 << 20
MAX_PIXELS = 4096 * 4096


def read_stealth(image: Image.Image) -> str | None:
    """The hidden parameters text of an RGBA image, or ``None`` (no signature: nothing hidden).

    Raises:
        ValueError: a signature followed by a length or payload that does not fit.
    """
    pixels = image.width * image.height
    if image.mode != "RGBA" or not 8 * (SIGNATURE_BYTES + 4) <= pixels <= MAX_PIXELS:
        return None
    alpha = np.asarray(image.getchannel("A"))
    head = _bytes(alpha, 0, SIGNATURE_BYTES + 4)
    signature, size = head[:SIGNATURE_BYTES], int.from_bytes(head[SIGNATURE_BYTES:], "big")
    if signature not in SIGNATURES:
        return None
    count = size // 8
    available = alpha.size // 8 - (SIGNATURE_BYTES + 4)
    if not 0 < count <= min(MAX_PAYLOAD, available):
        raise ValueError(f"stealth info of {count} bytes does not fit the image")
    payload = _bytes(alpha, SIGNATURE_BYTES + 4, count)
    if SIGNATURES[signature]:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip
        payload = inflater.decompress(payload, MAX_TEXT)
    return payload.decode("utf-8", "replace")


def _bytes(alpha: np.ndarray, start: int, count: int) -> bytes:
    """``count`` bytes from byte ``start`` of the column-major low-bit stream."""
    height = alpha.shape[0]
    first_bit, last_bit = 8 * start, 8 * (start + count)
    columns = alpha[:, first_bit // height : -(-last_bit // height)]
    bits = columns.T.reshape(-1) & 1
    offset = first_bit - (first_bit // height) * height
    return np.packbits(bits[offset : offset + 8 * count]).tobytes()
