"""ufd's numpy preprocessing must equal torchvision's official transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision import transforms

from ufd.runtime.bundle.manifest import CLIP_MEAN, CLIP_STD, PreprocessConfig
from ufd.runtime.preprocess import build_preprocessor, crop_box

OFFICIAL = transforms.Compose(
    [transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)]
)
RESIZE_OFFICIAL = transforms.Compose(
    [
        transforms.Resize(256, interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(CLIP_MEAN, CLIP_STD),
    ]
)


def _image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def _max_diff(ours: np.ndarray, official: torch.Tensor) -> float:
    assert ours.shape == tuple(official.shape)
    assert ours.dtype == np.float32
    return float(np.abs(ours - official.numpy()).max())


ODD_SIZES = [
    (224, 224),
    (225, 224),
    (224, 225),
    (223, 223),
    (1, 1),
    (1, 300),
    (300, 1),
    (100, 50),
    (150, 199),
    (301, 227),
    (640, 97),
    (97, 640),
    (512, 512),
    (1001, 333),
    (226, 229),
    (3, 224),
    (224, 3),
]


@pytest.mark.parametrize(("width", "height"), ODD_SIZES)
def test_center_crop_equals_torchvision(width: int, height: int) -> None:
    image = _image(width, height, seed=width * 1000 + height)
    ours = build_preprocessor(PreprocessConfig())(image)
    assert _max_diff(ours, OFFICIAL(image)) <= 1e-6


@pytest.mark.parametrize(("width", "height"), [(100, 50), (300, 257), (1, 300), (640, 97)])
def test_resize_mode_equals_torchvision(width: int, height: int) -> None:
    image = _image(width, height)
    ours = build_preprocessor(PreprocessConfig(mode="resize_center_crop"))(image)
    assert _max_diff(ours, RESIZE_OFFICIAL(image)) <= 1e-6


@settings(max_examples=60, deadline=None)
@given(width=st.integers(1, 700), height=st.integers(1, 700))
def test_center_crop_equals_torchvision_any_size(width: int, height: int) -> None:
    image = _image(width, height, seed=width + height)
    ours = build_preprocessor(PreprocessConfig())(image)
    assert _max_diff(ours, OFFICIAL(image)) <= 1e-6


def test_padding_is_zero_before_normalisation() -> None:
    """Pixels outside a small image become (0 - mean) / std, as torchvision pads with 0."""
    image = Image.new("RGB", (10, 10), (255, 255, 255))
    ours = build_preprocessor(PreprocessConfig())(image)
    pad_value = (0 - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    np.testing.assert_allclose(ours[:, 0, 0], pad_value, rtol=0, atol=1e-6)
    # the image sits at (224 - 10) // 2 = 107 from the top-left
    white = (1 - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    np.testing.assert_allclose(ours[:, 107, 107], white, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours[:, 106, 106], pad_value, rtol=0, atol=1e-6)


def test_crop_offset_rounds_half_to_even() -> None:
    # (225 - 224) / 2 = 0.5 rounds to 0; (227 - 224) / 2 = 1.5 rounds to 2.
    assert crop_box(225, 227, 224)[:2] == (0, 2)
    # padding: (224 - 101) // 2 = 61 before the image
    assert crop_box(101, 224, 224)[0] == -61
