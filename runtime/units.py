"""Images that become several encoder inputs, or one of their own size: the "units".

A bundle whose ``preprocess.mode`` is one of :data:`UNIT_MODES` (schema 9) gives
the encoder more than one fixed crop per image (:class:`~ufd.runtime.bundle.PreprocessConfig`):

* ``whole`` (AlignedForensics): the whole image, any size; one over
  ``max_input_pixels`` is centre-cropped to it, keeping its aspect, and the record
  says so (cropped, not resized: a resize would erase the traces these detectors read);
* ``five_crops`` (B-Free): five ``crop_size`` crops on a ``grid``-pixel grid: the
  centre, then the top-left, bottom-left, bottom-right and top-right corners. The
  image is first cut to whole grid cells (as a stride-``grid`` patch embedding
  drops the rest) and, when a side has fewer cells than a crop, tiled around itself
  and cut to one crop: exactly what B-Free's wrapper does on its patch embeddings;
* ``tiles`` (SPAI): the image mirrored up to ``crop_size`` where smaller, then
  ``crop_size`` tiles every ``tile_stride`` pixels, row by row (``Tensor.unfold``),
  or torchvision's five crops (corners, then centre) when that gives fewer than
  ``min_tiles``.

:class:`Units` carries an image's units (and each re-upload view's): ``parts[0]``
is the image's own, (K, H, W, 3) uint8 before normalising, (K, 3, H, W) float32
after. How the encoder's K features become the image's one is the detector's
(:mod:`ufd.runtime.detector`): their mean, the bundle's aggregator graph, or the
only one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from ufd.runtime.bundle import PreprocessConfig
from ufd.runtime.errors import ImageError

UNIT_MODES = ("whole", "five_crops", "tiles")


@dataclass(frozen=True)
class Units:
    """The encoder inputs of one image, then of each of its views (``--views``)."""

    parts: tuple[np.ndarray, ...]
    note: str | None = None
    """What was done to the image to fit the encoder (``whole``'s input cap), if anything."""

    @property
    def rows(self) -> int:
        """Encoder inputs in all parts."""
        return sum(len(part) for part in self.parts)


def _box_offset(size: int, crop: int) -> int:
    """Torchvision's centre-crop offset (``int(round((size - crop) / 2))``)."""
    return int(round((size - crop) / 2.0))  # noqa: RUF046 - torchvision's exact formula


class WholeImage:
    """``whole``: the image as it is, centre-cropped to ``max_input_pixels`` if larger."""

    def __init__(self, config: PreprocessConfig) -> None:
        self.cap = config.max_input_pixels

    def units(self, image: Image.Image) -> tuple[np.ndarray, str | None]:
        """(1, H, W, 3) uint8, and a note when the cap cropped it."""
        width, height = image.size
        note = None
        if self.cap is not None and width * height > self.cap:
            scale = math.sqrt(self.cap / (width * height))
            new_w, new_h = max(1, int(width * scale)), max(1, int(height * scale))
            left, top = _box_offset(width, new_w), _box_offset(height, new_h)
            image = image.crop((left, top, left + new_w, top + new_h))
            note = (
                f"centre {new_w}x{new_h} of {width}x{height} (this detector's input cap: "
                f"{self.cap:,} pixels)"
            )
        return np.asarray(image, dtype=np.uint8)[None], note


class FiveGridCrops:
    """``five_crops``: centre and corners on the ``grid``, of the image wrap-tiled if small."""

    def __init__(self, config: PreprocessConfig) -> None:
        self.grid, self.cells = config.grid, config.crop_size // config.grid

    def units(self, image: Image.Image) -> tuple[np.ndarray, str | None]:
        """(5, S, S, 3) uint8: centre, top-left, bottom-left, bottom-right, top-right."""
        pixels = np.asarray(image, dtype=np.uint8)
        g, p = self.grid, self.cells
        rows, cols = pixels.shape[0] // g, pixels.shape[1] // g
        if rows == 0 or cols == 0:
            raise ImageError(
                f"image is {pixels.shape[1]}x{pixels.shape[0]}, smaller than one {g}-pixel cell"
            )
        pixels = pixels[: rows * g, : cols * g]
        if rows < p or cols < p:  # tiled around itself, then cut to exactly one crop
            reps = (max(math.ceil(p / rows), 1), max(math.ceil(p / cols), 1), 1)
            pixels = np.tile(pixels, reps)[: p * g, : p * g]
            rows = cols = p
        top, left = max((rows - p) // 2, 0) * g, max((cols - p) // 2, 0) * g
        s, bottom, right = p * g, rows * g, cols * g
        corners = [(top, left), (0, 0), (bottom - s, 0), (bottom - s, right - s), (0, right - s)]
        return np.stack([pixels[y : y + s, x : x + s] for y, x in corners]), None


class Tiles:
    """``tiles``: every ``stride`` pixels a ``size`` tile, or five crops when too few.

    A side shorter than a tile is first mirrored up to it (reflect-101, centred: the
    ``PadIfNeeded`` of SPAI's test transform).
    """

    def __init__(self, config: PreprocessConfig) -> None:
        self.size = config.crop_size
        self.stride = config.tile_stride or config.crop_size
        self.min_tiles = config.min_tiles

    def units(self, image: Image.Image) -> tuple[np.ndarray, str | None]:
        """(L, S, S, 3) uint8, row by row; torchvision's ``five_crop`` when L < min_tiles."""
        pixels = mirror_pad(np.asarray(image, dtype=np.uint8), self.size)
        height, width = pixels.shape[:2]
        s, d = self.size, self.stride
        tiles = [
            pixels[y : y + s, x : x + s]
            for y in range(0, height - s + 1, d)
            for x in range(0, width - s + 1, d)
        ]
        if len(tiles) < self.min_tiles:
            return five_crop(pixels, s), None
        return np.stack(tiles), None


def mirror_pad(pixels: np.ndarray, size: int) -> np.ndarray:
    """``pixels`` (H, W, 3) mirrored (reflect-101) up to ``size`` on each short side, centred."""
    pads = []
    for side in pixels.shape[:2]:
        missing = max(size - side, 0)
        pads.append((missing // 2, missing - missing // 2))
    if not any(before or after for before, after in pads):
        return pixels
    return np.pad(pixels, (*pads, (0, 0)), mode="reflect")


def five_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    """Torchvision's ``five_crop`` of (H, W, 3) pixels at least ``size`` on each side.

    Top-left, top-right, bottom-left, bottom-right, then the centre (torchvision's
    ``center_crop`` offsets).
    """
    height, width = pixels.shape[:2]
    top, left = _box_offset(height, size), _box_offset(width, size)
    corners = [
        (0, 0),
        (0, width - size),
        (height - size, 0),
        (height - size, width - size),
        (top, left),
    ]
    return np.stack([pixels[y : y + size, x : x + size] for y, x in corners])


class UnitPreprocessor(Protocol):
    """Turns an RGB image into its encoder inputs, (K, H, W, 3) uint8, and a note."""

    def units(self, image: Image.Image) -> tuple[np.ndarray, str | None]:
        """The image's units, and what was done to it to fit the encoder (or ``None``)."""
        ...


UNIT_PREPROCESSORS: dict[str, Callable[[PreprocessConfig], UnitPreprocessor]] = {
    "whole": WholeImage,
    "five_crops": FiveGridCrops,
    "tiles": Tiles,
}
