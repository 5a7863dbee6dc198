"""``commfor``: Community Forensics (Park & Owens, CVPR 2025; JeongsooP/Community-Forensics, MIT).

Official semantics (``models.py``, ``dataloader.py`` there): ``ViTClassifier``
wraps a timm ViT (``vit_small_patch16_{224,384}.augreg_in21k_ft_in1k``; a tiny
variant exists) whose ``head`` is replaced by ``Linear(D, 1)``, the whole model
tuned; its output is the logit. Test transform: Resize(256 for 224 input, 440
for 384; shorter side, bilinear), CenterCrop(224 or 384), ToTensor,
Normalize(ImageNet mean and std). Checkpoints: a ``.pth`` holding
``{'model': state_dict}`` (keys ``vit.*``, maybe ``_orig_mod.``-prefixed) or
the ``model.safetensors`` of its Hugging Face model pages.

The architecture is read from the weights (width, depth, patch and input size,
MLP ratio; 64-d attention heads as in every timm ViT-Ti/S/B); the encoder ends
at timm's pre-logits (the class token after the final norm), the head is the
tuned ``Linear``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ufd.export.detectors.base import (
    BuiltDetector,
    Detector,
    DetectorRequest,
    load_exactly,
    read_state_dict,
    require_keys,
)
from ufd.export.detectors.registry import register
from ufd.export.heads import HeadInfo
from ufd.runtime.bundle import sha256_file
from ufd.runtime.bundle.manifest import ModelInfo, PreprocessConfig
from ufd.runtime.errors import ModelLoadError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE = {224: 256, 384: 440}
"""Official ``determine_resize_crop_sizes``: input size -> the shorter side before the crop."""
HEAD_WIDTH = 64


def vit_state(raw: dict) -> dict[str, torch.Tensor]:
    """The timm ViT's tensors of a checkpoint (``{'model': ...}``, ``_orig_mod.``, ``vit.``)."""
    state = raw.get("model", raw) if isinstance(raw.get("model"), dict) else raw
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}
    return {k.removeprefix("vit."): v.float() for k, v in state.items() if k.startswith("vit.")}


def build_vit(state: dict[str, torch.Tensor]) -> tuple[VisionTransformer, int]:
    """A timm ViT shaped as the weights say, without a head: (model, input size)."""
    width = state["cls_token"].shape[-1]
    patch = state["patch_embed.proj.weight"].shape[-1]
    grid = math.isqrt(state["pos_embed"].shape[1] - 1)
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    with torch.random.fork_rng():
        model = VisionTransformer(
            img_size=grid * patch,
            patch_size=patch,
            embed_dim=width,
            depth=depth,
            num_heads=max(1, width // HEAD_WIDTH),
            mlp_ratio=hidden / width,
            num_classes=0,
        )
    return model, grid * patch


@register
class CommunityForensics(Detector):
    """A small ViT tuned end to end on thousands of generators."""

    name = "commfor"
    summary = "Community Forensics (CVPR 2025): ViT-S/16 tuned on 4,803 generators"
    backbone = "timm ViT-S/16 (or ViT-Ti/16), tuned end to end"
    input_size = "224 or 384, read from the weights; resize 256 / 440 (bilinear), centre crop"
    weights = (
        "--pretrained the official checkpoint: a .pth {'model': state dict with vit.* keys} "
        "or model.safetensors of OwensLab/commfor-model-224 or -384"
    )
    licence = "MIT (JeongsooP/Community-Forensics)"

    def build(self, request: DetectorRequest) -> BuiltDetector:
        """The tuned ViT up to its pre-logits, and its ``Linear`` head."""
        path = request.pretrained
        if not path or path == "none":
            raise ModelLoadError(
                "commfor needs its checkpoint: --pretrained model.safetensors (Hugging Face "
                "OwensLab/commfor-model-384 or -224) or the .pth of its DropBox release"
            )
        state = vit_state(read_state_dict(path, "Community Forensics checkpoint"))
        needed = ["cls_token", "pos_embed", "patch_embed.proj.weight", "norm.weight", "head.weight"]
        require_keys(state, needed, "Community Forensics checkpoint (vit.* keys)", path)
        model, image_size = build_vit(state)
        head = nn.Linear(state["head.weight"].shape[1], 1)
        head_state = {"weight": state.pop("head.weight"), "bias": state.pop("head.bias")}
        load_exactly(model, state, "Community Forensics checkpoint", path)
        load_exactly(head, head_state, "Community Forensics head", path)
        if image_size not in RESIZE:
            raise ModelLoadError(
                f"{Path(path).name} is for {image_size}-px input; Community Forensics "
                "publishes 224 and 384 (the official resize is known for those only)"
            )
        digest = sha256_file(Path(path))
        size = {192: "tiny", 384: "small", 768: "base"}.get(model.embed_dim, f"{model.embed_dim}d")
        info = ModelInfo(
            name=f"vit_{size}_patch{model.patch_embed.patch_size[0]}_{image_size}",
            pretrained=Path(path).name,
            feature_dim=model.embed_dim,
            image_size=image_size,
            quick_gelu=False,
            checkpoint_sha256=digest,
            detector=self.name,
        )
        preprocess = PreprocessConfig(
            mode="resize_center_crop",
            crop_size=image_size,
            resize_size=RESIZE[image_size],
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        )
        return BuiltDetector(
            encoder=model.eval(),
            head=head.eval(),
            info=info,
            preprocess=preprocess,
            head_info=HeadInfo(kind="commfor", source=Path(path).name, sha256=digest),
        )
