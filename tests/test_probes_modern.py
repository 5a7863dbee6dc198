"""Probes on today's backbones: Perception Encoder (timm and open_clip) and DINOv3.

Each bundle's fp32 features must equal the library's own pipeline (its evaluation
transform, then the model) on real photos, and the manifest must say what the
probe pools. Random weights (seeded as ufd seeds them), architecture-sized.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ufd.export.graph.build import ExportOptions, export_bundle
from ufd.runtime import Detector

pytestmark = pytest.mark.slow  # architecture-sized towers: about 20 s each


def photos(sample_dir: Path) -> list[Path]:
    return sorted(p for p in sample_dir.iterdir() if p.suffix.lower() in (".png", ".jpg"))[:5]


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """Largest feature error relative to the feature's size (random towers' features are
    as short as 1e-4: PE's projection is initialised at 1/1000)."""
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def export_probe(out: Path, model: str, **settings: str):
    return export_bundle(
        ExportOptions(
            out=out,
            detector="probe",
            model=model,
            pretrained="none",
            detector_settings=settings,
            precisions=("fp32",),
        )
    )


def assert_same_features(bundle: Path, model: torch.nn.Module, transform, paths) -> None:
    detector = Detector.open(bundle, precision="fp32", provider="cpu")
    for path in paths:
        with Image.open(path) as image, torch.no_grad():
            expected = model(transform(image.convert("RGB"))[None])[0].numpy()
        got = detector.features(detector.prepare(path)[None])[0]
        assert relative_error(got, expected) <= 1e-4


@pytest.mark.parametrize(
    ("name", "pool", "words"),
    [
        ("vit_small_patch16_dinov3", "token", "the class token (timm global_pool='token')"),
        ("vit_pe_core_tiny_patch16_384", "map", "attention pooling"),
    ],
)
def test_timm_probe_equals_timm(name, pool, words, tmp_path: Path, sample_dir: Path) -> None:
    import timm

    manifest = export_probe(tmp_path / "b", f"timm:{name}")
    assert any(n.startswith("probe pools: ") and words in n for n in manifest.notes)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = timm.create_model(name, num_classes=0, global_pool=pool).eval()
    assert model.global_pool == pool
    cfg = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**cfg)
    assert_same_features(tmp_path / "b", model, transform, photos(sample_dir))


def test_dinov3_mean_pooling_on_request(tmp_path: Path) -> None:
    manifest = export_probe(tmp_path / "b", "timm:vit_small_patch16_dinov3", pool="avg")
    assert "probe pools: the mean of the patch tokens (timm global_pool='avg')" in manifest.notes


def test_open_clip_pe_core_squashes_as_published(tmp_path: Path, sample_dir: Path) -> None:
    """Random weights still get PE's published transform: bilinear squash, mean/std 0.5."""
    import open_clip

    manifest = export_probe(tmp_path / "b", "PE-Core-T-16-384")
    pre = manifest.preprocess
    assert (pre.mode, pre.resize_interpolation, pre.mean) == ("resize", "bilinear", (0.5,) * 3)
    assert any("then the tower's projection" in n for n in manifest.notes)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = open_clip.create_model("PE-Core-T-16-384", pretrained=None).visual.eval()
    transform = open_clip.image_transform(
        384,
        is_train=False,
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        resize_mode="squash",
        interpolation="bilinear",
    )
    paths = photos(sample_dir)
    assert_same_features(tmp_path / "b", model, transform, paths)
