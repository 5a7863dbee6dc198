"""Image perturbations for robustness evaluation and the paper's training augmentation.

* :func:`perturb`: Gaussian blur (sigma) then JPEG re-compression (quality),
  blur first as in the paper's robustness study.
* :class:`PaperAugmentation`: UnivFD's training recipe: resize the shorter side
  to 256 (bilinear) -> blur with p = 0.5, sigma ~ U[0, 3] -> JPEG with p = 0.5,
  quality ~ U[30, 100] -> random crop 224 -> horizontal flip with p = 0.5 ->
  CLIP normalisation. Seeded: the same (seed, path, view) gives the same image.

Blur uses Pillow's ``GaussianBlur`` (the official code used scipy's
per-channel ``gaussian_filter``; both are Gaussian kernels of the same sigma).
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image, ImageFilter

from ufd.runtime.preprocess import Normalizer

PAPER_RECIPE = "paper-v1"


def blur(image: Image.Image, sigma: float) -> Image.Image:
    """Gaussian blur with standard deviation ``sigma`` pixels (0: unchanged)."""
    return image.filter(ImageFilter.GaussianBlur(radius=sigma)) if sigma > 0 else image


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """Re-encode as JPEG at ``quality`` with Pillow and decode again."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as out:
        return out.convert("RGB")


def perturb(image: Image.Image, sigma: float = 0.0, quality: int | None = None) -> Image.Image:
    """Blur, then JPEG-compress (either step optional)."""
    image = blur(image, sigma)
    return jpeg(image, quality) if quality is not None else image


def condition_name(sigma: float = 0.0, quality: int | None = None) -> str:
    """A short name for a perturbation: ``clean``, ``blur2``, ``jpeg75``, ``blur1+jpeg50``."""
    parts = ([f"blur{sigma:g}"] if sigma > 0 else []) + (
        [f"jpeg{quality}"] if quality is not None else []
    )
    return "+".join(parts) or "clean"


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
