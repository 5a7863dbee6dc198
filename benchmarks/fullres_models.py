"""Architecture-sized random-init models of today's detectors, in their official file formats.

For ``benchmarks/detectors_speed.py``: DDA (DINOv2 ViT-L/14 + LoRA, one 336 crop),
AlignedForensics (``res50nodown``, the whole image), B-Free (ViT-B/14 with
registers, five 504 crops) and SPAI (MFM ViT-B/16 on 224 tiles, 12 projectors,
the attention aggregator). The torch side is the independent rebuild of each
official pipeline the tests hold ufd against (tests/official_*.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from official_aligned import ALIGNED_TRANSFORM, OfficialNoDownResNet
from official_dinov2 import (
    BFREE_TRANSFORM,
    DDA_TRANSFORM,
    OfficialBFree,
    OfficialDDA,
)
from official_spai import OfficialSpai, spai_transform

Runner = Callable[[Path], Callable[[], object]]
"""image -> a closure that runs the official pipeline on it once (decode included)."""

FULL_RES = ("aligned", "bfree", "spai")
"""The detectors whose cost grows with the image (or that read all of it)."""


def _spread(module: torch.nn.Module, std: float = 0.02) -> torch.nn.Module:
    """Seeded random weights whose activations neither vanish nor explode: norm scales
    (LayerNorm, BatchNorm) 1, biases 0, convolutions He-initialised, the rest N(0, std)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if not parameter.is_floating_point():
                continue
            if parameter.ndim == 1 and name.endswith("weight"):
                parameter.fill_(1.0)
            elif name.endswith("bias"):
                parameter.zero_()
            elif parameter.ndim == 4:
                torch.nn.init.kaiming_normal_(parameter, nonlinearity="relu")
            else:
                parameter.normal_(0.0, std)
    return module.eval()


def _calibrated_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Batch-norm statistics measured on a few images, as training leaves them (random
    ones make a deep ResNet's activations, and its logits, grow without bound)."""
    from skimage import data

    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the batches below
    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255
    crops = torch.stack([photo[:, y : y + 128, x : x + 128] for y in (0, 200) for x in (0, 300)])
    model.train()
    with torch.no_grad():
        model(ALIGNED_TRANSFORM.transforms[-1](crops))
    return model.eval()


def _tensor_runner(model: torch.nn.Module, transform) -> Runner:
    def runner(image: Path) -> Callable[[], object]:
        def run() -> object:
            with Image.open(image) as img, torch.no_grad():
                return model(transform(img.convert("RGB"))[None])

        return run

    return runner


def _spai_runner(model: OfficialSpai) -> Runner:
    def runner(image: Path) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return model([spai_transform(image)])

        return run

    return runner


def official_models(work: Path) -> dict[str, tuple[Runner, dict]]:
    """name -> (official pipeline runner, ``ExportOptions`` fields of its files)."""
    models: dict[str, tuple[Runner, dict]] = {}
    dda = _spread(OfficialDDA(dim=1024, depth=24, heads=16))
    dda_file = work / "dda_ckpt.pth"
    if not dda_file.exists():
        torch.save({"model": dda.state_dict()}, dda_file)
    models["dda"] = (_tensor_runner(dda, DDA_TRANSFORM), {"pretrained": str(dda_file)})

    aligned = _calibrated_batch_norms(_spread(OfficialNoDownResNet()))
    aligned_file = work / "aligned_weights.pth"
    if not aligned_file.exists():
        torch.save({"model": aligned.state_dict()}, aligned_file)
    models["aligned"] = (
        _tensor_runner(aligned, ALIGNED_TRANSFORM),
        {"pretrained": str(aligned_file)},
    )

    bfree = _spread(OfficialBFree(width=768, depth=12))
    folder = work / "BFREE_dino2reg4"
    folder.mkdir(exist_ok=True)
    if not (folder / "model_epoch_best.pth").exists():
        torch.save({"model": bfree.timm_state()}, folder / "model_epoch_best.pth")
        (folder / "config.yaml").write_text(
            "arch: timm_c5i504_vit_base_patch14_reg4_dinov2\nnorm_type: resnet\n"
            "weights_file: model_epoch_best.pth\n"
        )
    models["bfree"] = (_tensor_runner(bfree, BFREE_TRANSFORM), {"pretrained": str(folder)})

    spai = OfficialSpai(dim=768, depth=12, proj_dim=1024, attn_dim=1536, attn_heads=12)
    mask = spai.mfvit.frequencies_mask.detach().clone()
    with torch.no_grad():
        spai.mfvit.frequencies_mask.data = torch.zeros(1)
        _spread(spai)
        spai.mfvit.frequencies_mask.data = mask
    spai_file = work / "spai.pth"
    if not spai_file.exists():
        torch.save({"model": spai.state_dict()}, spai_file)
    models["spai"] = (_spai_runner(spai), {"pretrained": str(spai_file)})
    return models
