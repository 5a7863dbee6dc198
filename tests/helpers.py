"""Constants and small utilities shared by the tests (imported as ``helpers``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_HEAD = REPO.parent / "shared" / "reference" / "univfd" / "fc_weights.pth"
TINY_MODEL = "ufd-tiny-vit"
FIXTURES = Path(__file__).with_name("fixtures")


def random_head(path: Path, dim: int = 768, seed: int = 0) -> Path:
    """A seeded random head in the official file format: ``{'weight': [1, D], 'bias': [1]}``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(1, dim, generator=generator) * 0.05
    torch.save({"weight": weight, "bias": torch.tensor([-0.5])}, path)
    return path


def random_image(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Path:
    """Save a random image of ``size`` (width, height) and ``mode`` at ``path``."""
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").convert(mode).save(path)
    return path


def official_logit(model, fc, path: Path) -> float:
    """The official UnivFD test pipeline, built without ufd code.

    ``PIL.Image.open(path).convert("RGB")`` -> torchvision ``CenterCrop(224)``,
    ``ToTensor``, ``Normalize(CLIP)`` -> CLIP ``encode_image`` -> linear head.
    """
    import torch
    from torchvision import transforms

    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    official = transforms.Compose(
        [transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )
    x = official(Image.open(path).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        return float(fc(model.encode_image(x)).item())
