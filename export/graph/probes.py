"""Probe images for export-time validation: synthetic by default, or a folder.

Synthetic probes cover the cases the preprocessing must get right: images
larger and smaller than the crop (zero padding), odd sizes, thin strips, and
grayscale / RGBA / palette modes. They are deterministic (seeded).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from ufd.runtime.errors import ImageError
from ufd.runtime.io.decode import decode_image
from ufd.runtime.io.inputs import expand_inputs

logger = logging.getLogger(__name__)

# (width, height, mode): larger, exact, smaller than 224, odd, strips.
PROBE_SHAPES = (
    (320, 256, "RGB"),
    (224, 224, "RGB"),
    (301, 227, "RGB"),
    (150, 199, "RGB"),
    (640, 97, "RGB"),
    (257, 260, "L"),
    (233, 240, "RGBA"),
    (260, 300, "P"),
    (1, 300, "RGB"),
    (500, 375, "RGB"),
)


def synthetic_probes(count: int = len(PROBE_SHAPES), seed: int = 0) -> list[Image.Image]:
    """``count`` deterministic RGB probe images (smooth structure plus noise)."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        width, height, mode = PROBE_SHAPES[i % len(PROBE_SHAPES)]
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        phase = rng.uniform(0, 2 * np.pi, size=3)
        freq = rng.uniform(0.01, 0.08, size=3)
        channels = [
            127.5 + 100 * np.sin(freq[c] * xx + phase[c]) * np.cos(freq[c] * 0.7 * yy)
            for c in range(3)
        ]
        pixels = np.stack(channels, axis=-1) + rng.normal(0, 12, size=(height, width, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
        if mode == "RGBA":
            alpha = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8), "L")
            image.putalpha(alpha)
        elif mode != "RGB":
            image = image.convert(mode)
        images.append(image.convert("RGB"))
    return images


def folder_probes(folder: Path, limit: int = 32) -> list[Image.Image]:
    """Up to ``limit`` decodable images from ``folder`` (recursive), as RGB.

    Raises:
        ImageError: the folder holds no decodable image.
    """
    images = []
    for item in expand_inputs([folder]):
        if item.error is not None:
            continue
        try:
            images.append(decode_image(item.path))
        except ImageError as e:
            logger.warning("probe %s skipped: %s", item.path, e)
        if len(images) >= limit:
            break
    if not images:
        raise ImageError(f"--probe-dir {folder} holds no decodable image")
    return images
