"""Shared fixtures: a tiny random-init bundle with the official head, sample images."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import OFFICIAL_HEAD, TINY_MODEL


@pytest.fixture(scope="session")
def official_head() -> Path:
    """The official UnivFD head, read from ../shared (never copied into the repo)."""
    if not OFFICIAL_HEAD.is_file():
        pytest.fail(f"the official head is expected at {OFFICIAL_HEAD} (shared/ beside the repo)")
    return OFFICIAL_HEAD


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, official_head: Path) -> Path:
    """A bundle of the tiny 768-d ViT with the official head, in fp32, fp16 and int8."""
    from ufd.export.build import ExportOptions, export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_bundle(
        ExportOptions(
            out=out,
            model=TINY_MODEL,
            pretrained="none",
            head=str(official_head),
            precisions=("fp32", "fp16", "int8"),
        )
    )
    return out


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos (scikit-image data) in many sizes, modes and formats."""
    from ufd.export.samples import write_samples

    folder = tmp_path_factory.mktemp("samples")
    write_samples(folder)
    return folder


@pytest.fixture(scope="session")
def checkpoint_bundle(tmp_path_factory: pytest.TempPathFactory, official_head: Path):
    """A seeded tiny model saved as a local checkpoint and exported with --pretrained PATH.

    Returns (bundle dir, the torch CLIP model) so tests can compare with torch.
    """
    import open_clip
    import torch

    from ufd.export.build import ExportOptions, export_bundle

    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(123)
    model = open_clip.create_model(TINY_MODEL).eval()
    checkpoint = folder / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    out = folder / "bundle"
    export_bundle(
        ExportOptions(
            out=out,
            model=TINY_MODEL,
            pretrained=str(checkpoint),
            head=str(official_head),
            precisions=("fp32", "int8"),
        )
    )
    return out, model
