"""Image perturbations for robustness evaluation: Gaussian blur, then JPEG re-compression.

Blur first, as in the paper's robustness study. Blur uses Pillow's
``GaussianBlur`` (the official code used scipy's per-channel
``gaussian_filter``; both are Gaussian kernels of the same sigma).
"""

from __future__ import annotations

import io

from PIL import Image, ImageFilter


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
