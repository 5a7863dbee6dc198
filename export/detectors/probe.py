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
POOLS = ("token", "avg")
DINOV3_POOL = "token"
"""DINOv3's image feature is its class token (timm builds it with mean pooling)."""
POOL_WORDS = {
    "token": "the class token",
    "tok": "the class token",
    "avg": "the mean of the patch tokens",
    "map": "attention pooling (a learned query)",
}
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


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


def _timm_backbone(
    name: str, pretrained: str, pool: str | None
) -> tuple[nn.Module, PreprocessConfig, str | None]:
    """A timm model without its head, its eval preprocessing, and the weights' sha256."""
    import timm

    pool = pool or (DINOV3_POOL if "dinov3" in name else None)
    options: dict[str, object] = {"num_classes": 0}
    if pool:
        options["global_pool"] = pool
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = timm.create_model(name, pretrained=False, **options)
    except Exception as e:  # unknown model names raise RuntimeError
        raise ModelLoadError(f"timm cannot build {name!r}: {e}; see timm.list_models()") from e
    digest = None
    if pretrained.lower() not in RANDOM_INIT:
        state = read_state_dict(pretrained, "timm weights")
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        load_exactly(model, state, "timm weights", pretrained)
        digest = sha256_file(Path(pretrained))
    return model.float().eval(), timm_preprocess(model.pretrained_cfg), digest


def timm_preprocess(cfg: dict) -> PreprocessConfig:
    """Timm's evaluation transform (``transforms_imagenet_eval``) as a bundle describes it."""
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop_pct = float(cfg.get("crop_pct", 0.875))
    crop_mode = cfg.get("crop_mode", "center")
    interpolation = cfg.get("interpolation", "bicubic")
    common = {
        "crop_size": size,
        "resize_interpolation": interpolation
        if interpolation in ("bilinear", "bicubic")
        else "bicubic",
        "mean": tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        "std": tuple(cfg.get("std", (0.229, 0.224, 0.225))),
    }
    if crop_mode == "squash" and crop_pct == 1.0:
        return PreprocessConfig(mode="resize", **common)
    if crop_mode == "center":
        resize = math.floor(size / crop_pct)
        return PreprocessConfig(mode="resize_center_crop", resize_size=resize, **common)
    raise ModelLoadError(
        f"timm's crop_mode {crop_mode!r} at crop_pct {crop_pct} is not a transform a bundle "
        "describes (center, or squash at crop_pct 1.0)"
    )


def open_clip_preprocess(name: str, pretrained: str, visual: nn.Module) -> PreprocessConfig:
    """open_clip's evaluation transform: the tag's, or the one every tag of the model shares.

    Random or local weights get the published tags' transform when they all agree
    (PE-Core: bilinear squash to the input size, mean and std 0.5), else open_clip's default.
    """
    import open_clip

    cfg = dict(getattr(visual, "preprocess_cfg", {}) or {})
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        published = {
            tuple((k, str(c[k])) for k in PREPROCESS_KEYS if k in c)
            for c in (open_clip.get_pretrained_cfg(name, tag) for tag in tags)
        }
        if len(published) == 1:
            tag = open_clip.get_pretrained_cfg(name, tags[0])
            cfg.update({k: tag[k] for k in PREPROCESS_KEYS if k in tag})
    size = visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mode = {"squash": "resize", "shortest": "resize_center_crop"}.get(
        cfg.get("resize_mode", "shortest")
    )
    if mode is None:
        raise ModelLoadError(f"open_clip resize_mode {cfg['resize_mode']!r}: not supported")
    return PreprocessConfig(
        mode=mode,
        crop_size=size,
        resize_size=size,
        resize_interpolation=cfg.get("interpolation", "bicubic"),
        mean=tuple(cfg.get("mean", PreprocessConfig().mean)),
        std=tuple(cfg.get("std", PreprocessConfig().std)),
    )


def pooling(backbone: nn.Module) -> str:
    """What the backbone's image feature is made of, in words (manifest notes, --list)."""
    trunk = getattr(backbone, "trunk", backbone)
    pool = getattr(trunk, "global_pool", None)
    if isinstance(pool, str):
        words = POOL_WORDS.get(pool, pool)
        text = f"{words} (timm global_pool={pool!r})"
    elif pool is not None:
        text = f"timm's {type(pool).__name__} over the feature map"
    else:
        kind = getattr(backbone, "pool_type", "tok")
        text = f"{POOL_WORDS.get(kind, kind)} after ln_post (open_clip pool_type={kind!r})"
    head = getattr(trunk, "head", None)
    projected = isinstance(head, nn.Module) and any(True for _ in head.parameters())
    projected = projected or getattr(backbone, "proj", None) is not None
    return text + (", then the tower's projection" if projected else "")


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
        DetectorOption(
            "pool",
            "timm backbones: token (the class token) or avg (the mean of the patch tokens). "
            "Default: the model's own pooling; the class token for DINOv3.",
            choices=POOLS,
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
            backbone, preprocess, digest = _timm_backbone(name, pretrained, request.setting("pool"))
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
            if request.setting("pool"):
                raise UsageError("--pool is for timm backbones (--model timm:NAME)")
            loaded = load_visual(request.model, pretrained, request.setting("quick_gelu"))
            backbone, info = loaded.visual, loaded.info
            preprocess = open_clip_preprocess(request.model, pretrained, backbone)
            trunk = getattr(backbone, "trunk", None)  # a timm tower (PE-Core)
            width = trunk.num_features if trunk is not None else int(backbone.conv1.out_channels)
            norm = "norm2" if trunk is not None else "ln_2"
        encoder = backbone
        pooled = pooling(backbone)
        if features == "blocks":
            pooled = "every block's class token, concatenated"
            encoder = BlockTokens(backbone, norm).eval()
            blocks = len([n for n, _ in backbone.named_modules() if n.endswith(norm)])
            info = dataclasses.replace(info, feature_dim=blocks * width)
        return BuiltDetector(
            encoder=encoder,
            head=None,
            info=dataclasses.replace(info, detector=self.name),
            preprocess=preprocess,
            head_info=HeadInfo(kind="none", source="none (ufd-train fits one)"),
            notes=[f"probe features: {features}", f"probe pools: {pooled}"],
        )
