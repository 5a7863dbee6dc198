"""Faithfulness: with the same weights, ufd scores real photos exactly as the official
UnivFD pipeline does.

The reference is built independently of ufd's export code: PIL
``open().convert("RGB")`` -> torchvision CenterCrop/ToTensor/Normalize ->
open_clip ``encode_image`` -> ``nn.Linear`` loaded from the head file (a random
head in the official format; the official head itself where it is available).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import official_logit
from PIL import Image

from ufd.runtime import Detector


def _linear(head: Path) -> torch.nn.Linear:
    fc = torch.nn.Linear(768, 1)
    fc.load_state_dict(torch.load(head, map_location="cpu", weights_only=True))
    return fc.eval()


@pytest.fixture(scope="module")
def reference_setup(checkpoint_bundle, head_file: Path):
    bundle, model = checkpoint_bundle
    return bundle, model.eval(), _linear(head_file)


def test_fp32_logits_equal_official_pipeline_on_real_photos(reference_setup, sample_dir: Path):
    bundle, model, fc = reference_setup
    detector = Detector.open(bundle, precision="fp32", provider="cpu")
    records = list(detector.score([sample_dir], batch_size=3))
    scored = [r for r in records if r.ok]
    assert len(scored) >= 40, [r.error for r in records if not r.ok]
    modes = set()
    for record in scored:
        with Image.open(record.path) as img:
            modes.add(img.mode)
        expected = official_logit(model, fc, Path(record.path))
        assert abs(record.logit - expected) <= 1e-4, record.path
    assert {"RGB", "L", "RGBA", "P", "CMYK"} <= modes  # many modes really were covered


def test_int8_decisions_mostly_agree_with_fp32(reference_setup, sample_dir: Path) -> None:
    bundle, _, _ = reference_setup
    fp32 = list(Detector.open(bundle, precision="fp32", provider="cpu").score([sample_dir]))
    int8 = list(Detector.open(bundle, precision="int8", provider="cpu").score([sample_dir]))
    pairs = [(a, b) for a, b in zip(fp32, int8, strict=True) if a.ok]
    agree = sum(a.label == b.label for a, b in pairs) / len(pairs)
    assert agree >= 0.9
    assert max(abs(a.logit - b.logit) for a, b in pairs) < 0.5


def test_official_head_scores_as_the_official_pipeline(
    official_head: Path, checkpoint_bundle, sample_dir: Path, tmp_path: Path
) -> None:
    from ufd.export.graph.build import ExportOptions, export_bundle

    _, model = checkpoint_bundle
    checkpoint = next(checkpoint_bundle[0].parent.glob("*.pt"))
    export_bundle(
        ExportOptions(
            out=tmp_path / "b",
            model="ufd-tiny-vit",
            pretrained=str(checkpoint),
            head=str(official_head),
            precisions=("fp32",),
        )
    )
    fc = _linear(official_head)
    photos = sorted(p for p in sample_dir.iterdir() if p.suffix in (".png", ".jpg"))[:8]
    records = Detector.open(tmp_path / "b", precision="fp32", provider="cpu").score_images(photos)
    for record in records:
        assert abs(record.logit - official_logit(model, fc, Path(record.path))) <= 1e-4
