"""Architecture-sized models (random weights, real graphs): ViT-B-16 and ViT-L-14.

Marked slow (minutes on 2 cores); ``make test`` runs them, ``make test-fast`` does not.
"""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import torch
from helpers import official_logit

from ufd.export.graph.build import ExportOptions, export_bundle
from ufd.runtime import Detector
from ufd.runtime.bundle.manifest import Manifest

pytestmark = pytest.mark.slow

# Awkward forms of the sample photos (small, strip, CMYK, RGBA, palette) plus originals.
KINDS = ("_small_120x90.jpg", "_strip_1x400.png", "_cmyk.jpg", "_rgba.png", "_palette.gif")


def pick_photos(sample_dir: Path, count: int) -> list[Path]:
    files = sorted(sample_dir.iterdir())
    awkward = [p for p in files if p.name.endswith(KINDS)]
    originals = [p for p in files if "_" not in p.stem and p.suffix != ".tif"]
    return (originals[:3] + awkward)[:count]


def _export_and_compare(
    model_name: str, head: Path | None, folder: Path, precisions, photos: list[Path]
) -> Manifest:
    torch.manual_seed(0)
    model = open_clip.create_model(model_name).eval()
    checkpoint = folder / "ckpt.pt"
    torch.save(model.state_dict(), checkpoint)
    dim = model.visual.output_dim
    if head is None:  # a random head in the official format, for non-768-d models
        head = folder / "head.pth"
        torch.save({"weight": torch.randn(1, dim) * 0.05, "bias": torch.zeros(1)}, head)
    fc = torch.nn.Linear(dim, 1)
    fc.load_state_dict(torch.load(head, map_location="cpu", weights_only=True))
    manifest = export_bundle(
        ExportOptions(
            out=folder / "bundle",
            model=model_name,
            pretrained=str(checkpoint),
            head=str(head),
            precisions=precisions,
            n_probes=3,
        )
    )
    detector = Detector.open(folder / "bundle", precision="fp32", provider="cpu")
    for record in detector.score(photos, batch_size=4):
        assert record.ok, record.error
        expected = official_logit(model, fc.eval(), Path(record.path))
        assert abs(record.logit - expected) <= 1e-4, record.path
    return manifest


def test_vit_b16_fp32_and_int8(tmp_path: Path, sample_dir: Path) -> None:
    manifest = _export_and_compare(
        "ViT-B-16", None, tmp_path, ("fp32", "int8"), pick_photos(sample_dir, 8)
    )
    assert manifest.model.feature_dim == 512
    assert manifest.parity["fp32"].max_abs_logit_error <= 1e-4
    assert (
        manifest.parity["int8"].min_feature_cosine > 0.97
    )  # int8 u8s8 saturates on CPUs without VNNI: 0.977-0.988 there, 0.9999 with VNNI


def test_vit_l14_with_a_head_in_the_official_format(
    tmp_path: Path, sample_dir: Path, head_file: Path
) -> None:
    manifest = _export_and_compare(
        "ViT-L-14", head_file, tmp_path, ("fp32",), pick_photos(sample_dir, 4)
    )
    assert manifest.model.feature_dim == 768
    assert manifest.files["encoder.fp32.onnx"].size > 1_000_000_000
    assert manifest.parity["fp32"].max_abs_logit_error <= 1e-4
