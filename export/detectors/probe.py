"""``probe``: a frozen foundation-model backbone whose features a linear probe (or k-NN) judges.

Any open_clip image tower (``--model ViT-L-14``, ``--pretrained`` a tag, a local
checkpoint or ``none``) or any timm model (``--model timm:NAME``, e.g.
``timm:vit_large_patch14_reg4_dinov2.lvd142m``, ``--pretrained`` a local
``.safetensors``/``.pth`` of timm's layout, or ``none``). ``--features``:

* ``cls``: the backbone's own image feature (open_clip: the projected
  embedding; timm: the pre-logits, i.e. the pooled class token after the norm);
* ``blocks``: every block's class token as RINE takes them (the output of each
  block's second norm, ``ln_2`` / ``norm2``), concatenated: (N, blocks x width).

There is no head at export: ``ufd-train`` fits one (``linear``, ``traces``)
and ``ufd-index`` builds the banks (``nn``, ``realonly``), as for univfd.
Preprocessing is the backbone's own evaluation transform (open_clip's
``preprocess_cfg``; timm's ``pretrained_cfg``: resize to size / crop_pct,
centre crop, its mean and std).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from torch import nn

from ufd.export.detectors.base import (
    QUICK_GELU,
    BuiltDetector,
    Detector,
    DetectorOption,
    DetectorRequest,
    load_exactly,
    read_state_dict,
)
from ufd.export.detectors.registry import register
from ufd.export.heads import HeadInfo
from ufd.export.models import RANDOM_INIT, load_visual
from ufd.runtime.bundle import sha256_file
from ufd.runtime.bundle.manifest import ModelInfo, PreprocessConfig
from ufd.runtime.errors import ModelLoadError, UsageError

TIMM = "timm:"
FEATURES = ("cls", "blocks")


class BlockTokens(nn.Module):
    """pixels -> (N, blocks x width): token 0 of every named norm's output, concatenated."""

    def __init__(self, backbone: nn.Module, suffix: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.suffix = suffix

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Run the backbone once, keeping each block norm's class token."""
        tokens: list[torch.Tensor] = []
        norms = [m for n, m in self.backbone.named_modules() if n.endswith(self.suffix)]
        handles = [
            norm.register_forward_hook(lambda module, args, out: tokens.append(out[:, 0]))
            for norm in norms
        ]
        try:
            self.backbone(pixels)
        finally:
            for handle in handles:
                handle.remove()
        return torch.cat(tokens, dim=1)


def _timm_backbone(name: str, pretrained: str) -> tuple[nn.Module, PreprocessConfig, str | None]:
    """A timm model without its head, its eval preprocessing, and the weights' sha256."""
    import timm

    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = timm.create_model(name, pretrained=False, num_classes=0)
    except Exception as e:  # unknown model names raise RuntimeError
        raise ModelLoadError(f"timm cannot build {name!r}: {e}; see timm.list_models()") from e
    digest = None
    if pretrained.lower() not in RANDOM_INIT:
        state = read_state_dict(pretrained, "timm weights")
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        load_exactly(model, state, "timm weights", pretrained)
        digest = sha256_file(Path(pretrained))
    cfg = model.pretrained_cfg
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    interpolation = cfg.get("interpolation", "bicubic")
    preprocess = PreprocessConfig(
        mode="resize_center_crop",
        crop_size=size,
        resize_size=math.floor(size / cfg.get("crop_pct", 0.875)),
        resize_interpolation=interpolation
        if interpolation in ("bilinear", "bicubic")
        else "bicubic",
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
    )
    return model.float().eval(), preprocess, digest


@register
class Probe(Detector):
    """Features of any frozen backbone; the head comes from ufd-train."""

    name = "probe"
    summary = "frozen-backbone probe: any open_clip tower or timm model, head from ufd-train"
    backbone = "--model: an open_clip name, or timm:NAME (DINOv2/v3, SigLIP 2, PE, ...)"
    input_size = "the backbone's; its own evaluation transform"
    weights = "--pretrained: an open_clip tag or local checkpoint, a local timm file, or none"
    licence = "that of the backbone's weights"
    options = (
        DetectorOption(
            "features",
            "cls (the backbone's own image feature) or blocks (every block's class token, "
            "as RINE takes them).",
            choices=FEATURES,
            default="cls",
        ),
        QUICK_GELU,
    )

    def build(self, request: DetectorRequest) -> BuiltDetector:
        """The backbone, its features (``cls`` or ``blocks``), no head."""
        if not request.model:
            raise UsageError("probe needs --model: an open_clip name or timm:NAME")
        features = request.setting("features")
        pretrained = request.pretrained or "none"
        if request.model.startswith(TIMM):
            name = request.model.removeprefix(TIMM)
            backbone, preprocess, digest = _timm_backbone(name, pretrained)
            width, norm = backbone.num_features, "norm2"
            info = ModelInfo(
                name=request.model,
                pretrained=Path(pretrained).name,
                feature_dim=width,
                image_size=preprocess.crop_size,
                quick_gelu=False,
                checkpoint_sha256=digest,
            )
        else:
            loaded = load_visual(request.model, pretrained, request.setting("quick_gelu"))
            backbone, info, norm = loaded.visual, loaded.info, "ln_2"
            width = int(backbone.conv1.out_channels)
            cfg = getattr(backbone, "preprocess_cfg", {}) or {}
            preprocess = PreprocessConfig(
                mode="resize_center_crop",
                crop_size=info.image_size,
                resize_size=info.image_size,
                resize_interpolation=cfg.get("interpolation", "bicubic"),
                mean=tuple(cfg.get("mean", PreprocessConfig().mean)),
                std=tuple(cfg.get("std", PreprocessConfig().std)),
            )
        encoder = backbone
        if features == "blocks":
            encoder = BlockTokens(backbone, norm).eval()
            blocks = len([n for n, _ in backbone.named_modules() if n.endswith(norm)])
            info = dataclasses.replace(info, feature_dim=blocks * width)
        return BuiltDetector(
            encoder=encoder,
            head=None,
            info=dataclasses.replace(info, detector=self.name),
            preprocess=preprocess,
            head_info=HeadInfo(kind="none", source="none (ufd-train fits one)"),
            notes=[f"probe features: {features}"],
        )
