"""Step 2 of the flow: an RGB image becomes a normalised float32 CHW array.

:class:`CenterCropPreprocessor` reproduces the official UnivFD test transform
``CenterCrop(224) -> ToTensor -> Normalize(CLIP mean, std)`` of torchvision
exactly, including its zero padding of images smaller than the crop:

* a side shorter than the crop is padded with zeros, ``(crop - n) // 2`` before
  and the rest after;
* a longer side is cropped from offset ``int(round((n - crop) / 2.0))``
  (Python's round: half to even).

Pillow's ``Image.crop`` with a box reaching outside the image fills the outside
with zeros, so one crop does both, touching only the pixels it keeps.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ufd.runtime.bundle import PreprocessConfig

RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


def crop_box(width: int, height: int, crop: int) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box torchvision's ``CenterCrop`` takes.

    Coordinates may be negative or exceed the image: those pixels are padding.
    """
    left = _offset(width, crop)
    top = _offset(height, crop)
    return left, top, left + crop, top + crop


def _offset(size: int, crop: int) -> int:
    if size < crop:
        return -((crop - size) // 2)
    return int(round((size - crop) / 2.0))  # noqa: RUF046 - torchvision's exact formula


class Normalizer:
    """``ToTensor`` + ``Normalize``: uint8 HWC -> float32 CHW, in float32 arithmetic."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Normalise ``pixels`` (H, W, 3) uint8 to (3, H, W) float32 (or a stack of them)."""
        axes = (*range(pixels.ndim - 3), pixels.ndim - 1, pixels.ndim - 3, pixels.ndim - 2)
        chw = pixels.transpose(axes).astype(np.float32) / np.float32(255.0)
        return (chw - self.mean) / self.std


class CenterCropPreprocessor:
    """The official UnivFD test transform: centre crop (zero pad), no resize."""

    def __init__(self, crop_size: int, normalizer: Normalizer) -> None:
        self.crop_size = crop_size
        self.normalizer = normalizer

    def __call__(self, image: Image.Image) -> np.ndarray:
        """Return the (3, crop, crop) float32 input of ``image`` (RGB)."""
        return self.normalizer(self.crop(image))

    def crop(self, image: Image.Image) -> np.ndarray:
        """The (crop, crop, 3) uint8 pixels the encoder input is normalised from.

        A quarter of the float input's size: what a distributed scan ships
        between its decoding tasks and its encoder actors.
        """
        box = crop_box(image.width, image.height, self.crop_size)
        return np.asarray(image.crop(box), dtype=np.uint8)


class ResizeCenterCropPreprocessor(CenterCropPreprocessor):
    """Resize the shorter side to ``resize_size`` (torchvision ``Resize``), then centre crop.

    The older UnivFD test pipeline; not the default.
    """

    def __init__(
        self, resize_size: int, crop_size: int, interpolation: str, normalizer: Normalizer
    ) -> None:
        super().__init__(crop_size, normalizer)
        self.resize_size = resize_size
        self.resample = RESAMPLE[interpolation]

    def crop(self, image: Image.Image) -> np.ndarray:
        """Resize ``image`` (RGB), then crop it."""
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        size = (new_short, new_long) if width <= height else (new_long, new_short)
        if size != (width, height):
            image = image.resize(size, self.resample)
        return super().crop(image)


class SquashResizePreprocessor(CenterCropPreprocessor):
    """``resize``: resize to ``crop_size`` x ``crop_size``, aspect not kept, no crop.

    open_clip's ``squash`` resize mode, as PE-Core's evaluation transform does.
    """

    def __init__(self, size: int, interpolation: str, normalizer: Normalizer) -> None:
        super().__init__(size, normalizer)
        self.resample = RESAMPLE[interpolation]

    def crop(self, image: Image.Image) -> np.ndarray:
        """Resize ``image`` (RGB) to the square input size."""
        size = (self.crop_size, self.crop_size)
        if image.size != size:
            image = image.resize(size, self.resample)
        return np.asarray(image, dtype=np.uint8)


def build_preprocessor(config: PreprocessConfig) -> CenterCropPreprocessor:
    """The single-crop preprocessor a bundle's :class:`PreprocessConfig` describes.

    Bundles whose images give several encoder inputs (``config.units_per_image``)
    use :mod:`ufd.runtime.units` for the crops; this one still normalises them.
    """
    normalizer = Normalizer(config.mean, config.std)
    if config.mode == "resize_center_crop":
        return ResizeCenterCropPreprocessor(
            config.resize_size, config.crop_size, config.resize_interpolation, normalizer
        )
    if config.mode == "resize":
        return SquashResizePreprocessor(config.crop_size, config.resize_interpolation, normalizer)
    return CenterCropPreprocessor(config.crop_size, normalizer)
