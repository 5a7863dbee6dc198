"""Training augmentations by name (``ufd-train --augment``), in the bundle's own geometry.

Their transformations come from :mod:`ufd.runtime.transforms`; the pixels they
end in are made as the bundle's preprocessing makes them (its sizes, its
interpolation, its mean and std, its units), so that a head is trained on the
inputs it will score:

* ``paper`` (:class:`PaperAugmentation`): UnivFD's training recipe: resize the
  shorter side to 256 (bilinear) -> blur with p = 0.5, sigma ~ U[0, 3] -> JPEG
  with p = 0.5, quality ~ U[30, 100] -> random crop 224 -> horizontal flip with
  p = 0.5 -> normalisation. 256 and 224 are those of a 224-px CLIP bundle; a
  bundle of crop S resizes to round(S x 256 / 224) (``center_crop``) or to its
  own resize size and interpolation (``resize_center_crop``), then crops S at
  random. A ``resize`` bundle (PE) squashes to S after blur and JPEG; the bundles
  whose images give several inputs (``whole``, ``five_crops``, ``tiles``) blur,
  compress and flip the whole image, then cut it into their own units.
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

from ufd.runtime.bundle import PreprocessConfig
from ufd.runtime.errors import UsageError
from ufd.runtime.pipeline import Pixels, Preparer
from ufd.runtime.preprocess import RESAMPLE
from ufd.runtime.transforms import blur, centre_crop, downscale, jpeg, webp
from ufd.runtime.units import Units

PAPER_CROP, PAPER_RESIZE = 224, 256
"""The paper's random crop and the shorter side it resizes to first (a 224-px bundle's)."""
RANDOM_CROP_MODES = ("center_crop", "resize_center_crop")


class PaperAugmentation:
    """The UnivFD training augmentation, deterministic per (seed, path, view)."""

    recipe = "paper-v1"
    """The feature-cache name of the recipe: change it when the recipe changes."""

    def __init__(self, seed: int, preprocess: PreprocessConfig | None = None) -> None:
        self.seed = seed
        self.preprocess = preprocess or PreprocessConfig()
        self.crop_size = self.preprocess.crop_size
        self.resize_size = round(self.crop_size * PAPER_RESIZE / PAPER_CROP)
        self.resample = Image.Resampling.BILINEAR
        if self.preprocess.mode == "resize_center_crop":
            self.resize_size = self.preprocess.resize_size
            self.resample = RESAMPLE[self.preprocess.resize_interpolation]
        self.preparer = Preparer(self.preprocess)

    def variant(self, view: int) -> str:
        """The feature-cache variant name of one augmented view."""
        return f"{self.recipe}-seed{self.seed}-view{view}"

    def rng(self, path: str, view: int) -> np.random.Generator:
        """A generator seeded by (seed, path, view)."""
        digest = hashlib.sha256(f"{self.seed}|{path}|{view}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Pixels:
        """Augment one RGB image into the bundle's normalised encoder input(s)."""
        return self.finish(self.degrade(self.resize(image), rng), rng)

    def resize(self, image: Image.Image) -> Image.Image:
        """Crop bundles: the shorter side to the resize size, never below the crop."""
        if self.preprocess.mode not in RANDOM_CROP_MODES:
            return image
        w, h = image.size
        scale = self.resize_size / min(w, h)
        return image.resize(
            (max(self.crop_size, round(w * scale)), max(self.crop_size, round(h * scale))),
            self.resample,
        )

    def degrade(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """Blur with p = 0.5, then JPEG with p = 0.5."""
        if rng.random() < 0.5:
            image = blur(image, float(rng.uniform(0.0, 3.0)))
        if rng.random() < 0.5:
            image = jpeg(image, int(rng.integers(30, 101)))
        return image

    def finish(self, image: Image.Image, rng: np.random.Generator) -> Pixels:
        """The bundle's geometry (crop bundles: a random crop), flip with p = 0.5, normalise."""
        mode = self.preprocess.mode
        if mode in RANDOM_CROP_MODES:
            w, h = image.size
            left = int(rng.integers(0, w - self.crop_size + 1))
            top = int(rng.integers(0, h - self.crop_size + 1))
            image = image.crop((left, top, left + self.crop_size, top + self.crop_size))
        flip = rng.random() < 0.5
        if flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.preparer.units is not None:
            own, note = self.preparer.units.units(image)
            return self.preparer.normalise(Units((own,), note))
        # crop bundles hold their random crop already; ``resize`` bundles squash here
        crop = self.preparer.preprocessor.crop
        pixels = np.asarray(image) if mode in RANDOM_CROP_MODES else crop(image)
        return self.preparer.normalizer(np.ascontiguousarray(pixels))


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


def make_augmentation(
    name: str, seed: int, preprocess: PreprocessConfig | None = None
) -> PaperAugmentation | None:
    """The augmentation called ``name`` (``None`` for ``none``), in ``preprocess``'s geometry.

    Raises:
        UsageError: an unknown name.
    """
    if name not in AUGMENTATIONS:
        raise UsageError(f"unknown --augment {name!r}; use {', '.join(AUGMENTATIONS)}")
    cls = AUGMENTATIONS[name]
    return None if cls is None else cls(seed, preprocess)
