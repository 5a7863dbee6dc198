"""Training augmentations by name (``ufd-train --augment``).

Their transformations come from :mod:`ufd.runtime.transforms`.

* ``paper`` (:class:`PaperAugmentation`): UnivFD's training recipe: resize the
  shorter side to 256 (bilinear) -> blur with p = 0.5, sigma ~ U[0, 3] -> JPEG
  with p = 0.5, quality ~ U[30, 100] -> random crop 224 -> horizontal flip with
  p = 0.5 -> CLIP normalisation.
* ``reupload`` (:class:`ReuploadAugmentation`): the paper's recipe, first with
  what a platform does to an upload (the transformations ``--views`` and
  ``ufd-eval --stability`` use): a centre crop keeping U[0.8, 1] of each side
  with p = 0.5, a bicubic downscale by U[0.5, 1] with p = 0.5; and after the
  paper's JPEG step, a WebP re-encode at quality U[40, 100] with p = 0.25.

Seeded: the same (recipe, seed, path, view) gives the same image.

Blur uses Pillow's ``GaussianBlur`` (the official code used scipy's
per-channel ``gaussian_filter``; both are Gaussian kernels of the same sigma).
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from ufd.runtime.errors import UsageError
from ufd.runtime.preprocess import Normalizer
from ufd.runtime.transforms import blur, centre_crop, downscale, jpeg, webp


class PaperAugmentation:
    """The UnivFD training augmentation, deterministic per (seed, path, view)."""

    recipe = "paper-v1"
    """The feature-cache name of the recipe: change it when the recipe changes."""

    def __init__(self, seed: int, crop_size: int = 224, resize_size: int = 256) -> None:
        self.seed = seed
        self.crop_size = crop_size
        self.resize_size = resize_size
        self.normalizer = Normalizer(
            (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
        )

    def variant(self, view: int) -> str:
        """The feature-cache variant name of one augmented view."""
        return f"{self.recipe}-seed{self.seed}-view{view}"

    def rng(self, path: str, view: int) -> np.random.Generator:
        """A generator seeded by (seed, path, view)."""
        digest = hashlib.sha256(f"{self.seed}|{path}|{view}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
        """Augment one RGB image into a normalised (3, crop, crop) float32 array."""
        return self.finish(self.degrade(self.resize(image), rng), rng)

    def resize(self, image: Image.Image) -> Image.Image:
        """The shorter side to 256 (bilinear), never below the crop."""
        w, h = image.size
        scale = self.resize_size / min(w, h)
        return image.resize(
            (max(self.crop_size, round(w * scale)), max(self.crop_size, round(h * scale))),
            Image.Resampling.BILINEAR,
        )

    def degrade(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """Blur with p = 0.5, then JPEG with p = 0.5."""
        if rng.random() < 0.5:
            image = blur(image, float(rng.uniform(0.0, 3.0)))
        if rng.random() < 0.5:
            image = jpeg(image, int(rng.integers(30, 101)))
        return image

    def finish(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
        """Random crop, flip with p = 0.5, normalise."""
        w, h = image.size
        left = int(rng.integers(0, w - self.crop_size + 1))
        top = int(rng.integers(0, h - self.crop_size + 1))
        pixels = np.asarray(image.crop((left, top, left + self.crop_size, top + self.crop_size)))
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        return self.normalizer(np.ascontiguousarray(pixels))


class ReuploadAugmentation(PaperAugmentation):
    """The paper's recipe with a platform's re-upload around it (see the module docstring)."""

    recipe = "reupload-v1"

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
        """Crop and downscale as an upload might, then the paper's steps, then maybe WebP."""
        if rng.random() < 0.5:
            image = centre_crop(image, float(rng.uniform(0.8, 1.0)))
        if rng.random() < 0.5:
            image = downscale(image, float(rng.uniform(0.5, 1.0)))
        image = self.degrade(self.resize(image), rng)
        if rng.random() < 0.25:
            image = webp(image, int(rng.integers(40, 101)))
        return self.finish(image, rng)


AUGMENTATIONS: dict[str, type[PaperAugmentation] | None] = {
    "paper": PaperAugmentation,
    "reupload": ReuploadAugmentation,
    "none": None,
}
"""``ufd-train --augment`` choices (``none``: the clean images, once)."""


def make_augmentation(name: str, seed: int) -> PaperAugmentation | None:
    """The augmentation called ``name`` (``None`` for ``none``).

    Raises:
        UsageError: an unknown name.
    """
    if name not in AUGMENTATIONS:
        raise UsageError(f"unknown --augment {name!r}; use {', '.join(AUGMENTATIONS)}")
    cls = AUGMENTATIONS[name]
    return None if cls is None else cls(seed)
