"""Constants and small utilities shared by the tests (imported as ``helpers``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_HEAD = REPO.parent / "shared" / "reference" / "univfd" / "fc_weights.pth"
TINY_MODEL = "ufd-tiny-vit"


def random_image(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Path:
    """Save a random image of ``size`` (width, height) and ``mode`` at ``path``."""
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").convert(mode).save(path)
    return path
