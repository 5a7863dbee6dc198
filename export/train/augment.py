"""The paper's training augmentation (perturbations: :mod:`ufd.runtime.tools.perturb`).

* :class:`PaperAugmentation`: UnivFD's training recipe: resize the shorter side
  to 256 (bilinear) -> blur with p = 0.5, sigma ~ U[0, 3] -> JPEG with p = 0.5,
  quality ~ U[30, 100] -> random crop 224 -> horizontal flip with p = 0.5 ->
  CLIP normalisation. Seeded: the same (seed, path, view) gives the same image.

Blur uses Pillow's ``GaussianBlur`` (the official code used scipy's
per-channel ``gaussian_filter``; both are Gaussian kernels of the same sigma).
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from ufd.runtime.preprocess import Normalizer
from ufd.runtime.tools.perturb import blur, jpeg

PAPER_RECIPE = "paper-v1"


class PaperAugmentation:
    """The UnivFD training augmentation, deterministic per (seed, path, view)."""

    def __init__(self, seed: int, crop_size: int = 224, resize_size: int = 256) -> None:
        self.seed = seed
        self.crop_size = crop_size
        self.resize_size = resize_size
        self.normalizer = Normalizer(
            (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
        )

    def variant(self, view: int) -> str:
        """The feature-cache variant name of one augmented view."""
        return f"{PAPER_RECIPE}-seed{self.seed}-view{view}"

    def rng(self, path: str, view: int) -> np.random.Generator:
        """A generator seeded by (seed, path, view)."""
        digest = hashlib.sha256(f"{self.seed}|{path}|{view}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
        """Augment one RGB image into a normalised (3, crop, crop) float32 array."""
        w, h = image.size
        scale = self.resize_size / min(w, h)
        image = image.resize(
            (max(self.crop_size, round(w * scale)), max(self.crop_size, round(h * scale))),
            Image.Resampling.BILINEAR,
        )
        if rng.random() < 0.5:
            image = blur(image, float(rng.uniform(0.0, 3.0)))
        if rng.random() < 0.5:
            image = jpeg(image, int(rng.integers(30, 101)))
        w, h = image.size
        left = int(rng.integers(0, w - self.crop_size + 1))
        top = int(rng.integers(0, h - self.crop_size + 1))
        pixels = np.asarray(image.crop((left, top, left + self.crop_size, top + self.crop_size)))
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        return self.normalizer(np.ascontiguousarray(pixels))
