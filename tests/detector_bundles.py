"""Small bundles of today's detectors, exported from random weights in each official
checkpoint format (with the official model they must equal): shared by the detector
faithfulness tests and the tests that run every command on every kind of bundle."""

from __future__ import annotations

from pathlib import Path

import torch
from official_aligned import OfficialNoDownResNet
from official_dinov2 import OfficialBFree, OfficialDDA
from official_spai import OfficialSpai

from ufd.export.graph.build import ExportOptions, export_bundle


def spread(module: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Random weights that make images score apart: norms near 1, the rest N(0, std)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if "norm" in name and name.endswith("weight"):
                parameter.copy_(1 + 0.1 * torch.randn_like(parameter))
            else:
                parameter.normal_(0.0, std)
    return module.eval()


def random_batch_norms(module: torch.nn.Module) -> torch.nn.Module:
    """Batch-norm statistics that are not the identity (a trained model's are not)."""
    with torch.no_grad():
        for bn in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.normal_(0.0, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    return module


def build_dda(folder: Path):
    """(bundle, official model): a tiny DINOv2 + LoRA in DDA's checkpoint format."""
    official = spread(OfficialDDA(), seed=21)
    with torch.no_grad():
        official.base_model.fc.weight.mul_(20)
    checkpoint = folder / "ckpt.pth"
    torch.save({"model": official.state_dict()}, checkpoint)
    bundle = folder / "bundle"
    export_bundle(
        ExportOptions(
            out=bundle, detector="dda", pretrained=str(checkpoint), precisions=("fp32", "int8")
        )
    )
    return bundle, official


def build_bfree(folder: Path):
    """(bundle, official model): a tiny ViT with registers in B-Free's folder layout."""
    folder = folder / "BFREE_tiny"
    folder.mkdir()
    official = spread(OfficialBFree(), seed=31)
    with torch.no_grad():
        official.model.head.weight.mul_(20)
    torch.save({"model": official.timm_state()}, folder / "model_epoch_best.pth")
    (folder / "config.yaml").write_text(
        "arch: timm_c5i504_vit_base_patch14_reg4_dinov2\nmodel_name: BFREE_tiny\n"
        "norm_type: resnet\nweights_file: model_epoch_best.pth\n"
    )
    bundle = folder.parent / "bundle"
    export_bundle(
        ExportOptions(
            out=bundle, detector="bfree", pretrained=str(folder), precisions=("fp32", "int8")
        )
    )
    return bundle, official


def build_aligned(folder: Path):
    """(bundle, official model, checkpoint): a tiny no-downsampling ResNet, 'module.' keys."""
    official = random_batch_norms(
        spread(
            OfficialNoDownResNet(widths=(4, 8, 8, 16), layers=(1, 2, 1, 1), stem=8),
            seed=41,
            std=0.2,
        )
    )
    checkpoint = folder / "weights.pth"
    torch.save({"model": {f"module.{k}": v for k, v in official.state_dict().items()}}, checkpoint)
    bundle = folder / "bundle"
    export_bundle(
        ExportOptions(
            out=bundle,
            detector="aligned",
            pretrained=str(checkpoint),
            precisions=("fp32", "int8"),
            detector_settings={"max_input_pixels": 300_000},
        )
    )
    return bundle, official, checkpoint


def build_spai(folder: Path):
    """(bundle, official model): a small SPAI (ViT 128-d, 3 blocks) in its checkpoint format."""
    official = OfficialSpai()
    mask = official.mfvit.frequencies_mask.detach().clone()
    official.mfvit.frequencies_mask.requires_grad_(False)
    with torch.no_grad():
        official.mfvit.frequencies_mask.data = torch.zeros(1)  # not a weight: keep it out
        spread(official, seed=51, std=0.08)
        official.mfvit.frequencies_mask.data = mask
        official.cls_head.head[-1].weight.mul_(20)
    checkpoint = folder / "spai.pth"
    torch.save({"model": official.state_dict(), "epoch": 34}, checkpoint)
    bundle = folder / "bundle"
    export_bundle(
        ExportOptions(
            out=bundle, detector="spai", pretrained=str(checkpoint), precisions=("fp32", "int8")
        )
    )
    return bundle, official
