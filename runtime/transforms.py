"""Image transformations, registered by kind: what a platform does to an image, and views of it.

One small registry serves three users: ``ufd-eval --jpeg/--blur`` (robustness
conditions), ``ufd-eval --stability`` and ``--views`` at detection time (the
re-uploaded views of an image), and ``ufd-train --augment reupload``. A view is a
chain of steps written ``kind`` + value, joined by ``+``: ``jpeg75``, ``down0.5``,
``crop0.9``, ``webp80``, ``blur1.5``, ``down0.5+jpeg75``. Every step is
deterministic: the same image gives the same view, bit for bit.

Adding a transformation is one function decorated with :func:`transform`.
Pillow is imported when a view is made, not with this module: the command-line
help and a service client read the registry without paying for it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ufd.runtime.errors import UsageError
from ufd.runtime.registry import add_unique

if TYPE_CHECKING:
    from PIL.Image import Image

TRANSFORMS: dict[str, Callable[[Image, float], Image]] = {}
_STEP = re.compile(r"^([a-z]+)(\d+(?:\.\d+)?)$")


Transformation = Callable[["Image", float], "Image"]


def transform(kind: str) -> Callable[[Transformation], Transformation]:
    """Register a transformation of ``kind`` (an image and one value -> an image)."""

    def register(fn: Transformation) -> Transformation:
        add_unique(TRANSFORMS, kind, fn, "transformation")
        return fn

    return register


@transform("blur")
def blur(image: Image, sigma: float) -> Image:
    """Gaussian blur with standard deviation ``sigma`` pixels (0: unchanged).

    Pillow's ``GaussianBlur`` (the official UnivFD code used scipy's per-channel
    ``gaussian_filter``; both are Gaussian kernels of the same sigma).
    """
    from PIL import ImageFilter

    return image.filter(ImageFilter.GaussianBlur(radius=sigma)) if sigma > 0 else image


def _encode(image: Image, fmt: str, quality: float) -> Image:
    from PIL import Image as PilImage

    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=int(quality))
    buffer.seek(0)
    with PilImage.open(buffer) as out:
        return out.convert("RGB")


@transform("jpeg")
def jpeg(image: Image, quality: float) -> Image:
    """Re-encode as JPEG at ``quality`` with Pillow and decode again."""
    return _encode(image, "JPEG", quality)


@transform("webp")
def webp(image: Image, quality: float) -> Image:
    """Re-encode as lossy WebP at ``quality`` and decode again."""
    return _encode(image, "WEBP", quality)


@transform("down")
def downscale(image: Image, scale: float) -> Image:
    """Resize both sides by ``scale`` (bicubic, as most image hosts do)."""
    from PIL import Image as PilImage

    width, height = image.size
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, PilImage.Resampling.BICUBIC)


@transform("crop")
def centre_crop(image: Image, fraction: float) -> Image:
    """Keep the centre ``fraction`` of each side."""
    width, height = image.size
    keep_w, keep_h = max(1, round(width * fraction)), max(1, round(height * fraction))
    left, top = (width - keep_w) // 2, (height - keep_h) // 2
    return image.crop((left, top, left + keep_w, top + keep_h))


@dataclass(frozen=True)
class View:
    """A chain of transformations, applied in order."""

    steps: tuple[tuple[str, float], ...]

    @property
    def name(self) -> str:
        """``down0.5+jpeg75`` (``clean`` when there is no step)."""
        return "+".join(f"{kind}{value:g}" for kind, value in self.steps) or "clean"

    def __call__(self, image: Image) -> Image:
        """The view of an RGB image (RGB)."""
        for kind, value in self.steps:
            image = TRANSFORMS[kind](image, value)
        return image.convert("RGB") if image.mode != "RGB" else image


def parse_view(name: str) -> View:
    """The view ``name`` names (``clean``: none).

    Raises:
        UsageError: an unknown kind or a malformed step.
    """
    if name == "clean":
        return View(())
    steps = []
    for part in name.split("+"):
        match = _STEP.match(part.strip())
        if match is None or match.group(1) not in TRANSFORMS:
            raise UsageError(
                f"cannot read the view {part!r}: write a kind and a value ({', '.join(TRANSFORMS)}"
                "), e.g. jpeg75, down0.5, crop0.9, webp80, blur1, joined by +"
            )
        steps.append((match.group(1), float(match.group(2))))
    return View(tuple(steps))


REUPLOAD_NAMES = (
    "jpeg75",
    "down0.5",
    "crop0.9",
    "webp80",
    "down0.5+jpeg75",
    "jpeg50",
    "crop0.8",
    "down0.75",
    "jpeg95",
    "jpeg40",
)
"""What a platform does to an uploaded image, in the order ``--views N`` takes them:
the first four are one of each kind, so ``--views 4`` sees JPEG, a downscale, a
crop and WebP."""

REUPLOADS = tuple(parse_view(name) for name in REUPLOAD_NAMES)


def reupload_views(count: int) -> tuple[View, ...]:
    """The first ``count`` re-upload views (``--views N``).

    Raises:
        UsageError: ``count`` is negative or larger than the registry.
    """
    if not 0 <= count <= len(REUPLOADS):
        raise UsageError(
            f"views must be between 0 and {len(REUPLOADS)} (the re-upload views: "
            f"{', '.join(REUPLOAD_NAMES)}), got {count}"
        )
    return REUPLOADS[:count]


def condition(sigma: float = 0.0, quality: int | None = None) -> View:
    """A robustness condition of ``ufd-eval --blur/--jpeg``: blur, then JPEG (as the paper).

    Its :attr:`View.name` is ``clean``, ``blur2``, ``jpeg75`` or ``blur1+jpeg50``.
    """
    steps = ([("blur", sigma)] if sigma > 0 else []) + (
        [("jpeg", float(quality))] if quality is not None else []
    )
    return View(tuple(steps))
