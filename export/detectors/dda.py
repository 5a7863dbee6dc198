"""``dda``: Dual Data Alignment (Chen et al., NeurIPS 2025; roy-ch/Dual-Data-Alignment, Apache-2.0).

Official semantics (``Inference/inference.py``, ``Inference/models/`` there):
``DINOv2ModelWithLoRA("dinov2_vitl14", lora_rank=8, lora_alpha=1)``: torch.hub's
DINOv2 ViT-L/14 (trained at 518, ``interpolate_offset`` 0.1, bicubic position
embedding resampling without antialias) with a ``LoRALinear`` around every
``attn.qkv``, ``attn.proj``, ``mlp.fc1`` and ``mlp.fc2`` (output = W x + b +
(alpha / rank) B A x), and ``fc = Linear(1024, 1)`` on ``x_norm_clstoken``. Test
transform: ``CenterCrop(336)`` (no resize: zero padding below 336), ``ToTensor``,
``Normalize`` with CLIP's mean and std. The checkpoint is ``{'model': state}``
with ``base_model.model.*`` (the DINOv2 weights, LoRA unmerged:
``...qkv.original_layer.weight``, ``...qkv.lora.lora_A``/``lora_B``) and
``base_model.fc.*``.

Here the LoRA is merged into each weight (W + (alpha / rank) B A) and the 37 x 37
position embedding is resampled to 24 x 24 once, exactly as DINOv2 does at run
time for a 336 input; the result is a plain timm ViT at 336, one fixed graph.
The architecture is read from the weights (width, depth, MLP ratio; 64-d heads
as in every DINOv2).
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
    DetectorOption,
    DetectorRequest,
    load_exactly,
    read_state_dict,
    require_keys,
)
from ufd.export.detectors.registry import register
from ufd.export.heads import HeadInfo
from ufd.runtime.bundle import sha256_file
from ufd.runtime.bundle.manifest import CLIP_MEAN, CLIP_STD, ModelInfo, PreprocessConfig
from ufd.runtime.errors import ModelLoadError

CROP = 336
PATCH = 14
HEAD_WIDTH = 64
INTERPOLATE_OFFSET = 0.1
LORA_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
BACKBONE, HEAD = "base_model.model.", "base_model.fc."


def merge_lora(state: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """DINOv2 weights with every ``LoRALinear`` folded into a plain ``Linear``.

    ``X.original_layer.{weight,bias}`` and ``X.lora.lora_A`` (r, in), ``lora_B`` (out, r)
    become ``X.weight = W + (alpha / r) B A`` and ``X.bias`` (in float64, then float32).

    Raises:
        ModelLoadError: a wrapped layer lacks its LoRA matrices.
    """
    layers = [
        k.removesuffix(".original_layer.weight")
        for k in state
        if k.endswith(".original_layer.weight")
    ]
    missing = [
        f"{layer}.lora.{m}"
        for layer in layers
        for m in ("lora_A", "lora_B")
        if f"{layer}.lora.{m}" not in state
    ]
    if missing:
        raise ModelLoadError(
            f"the DDA checkpoint lacks {', '.join(missing[:4])}; is it the right file?"
        )
    merged: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".lora." in key:
            continue
        if ".original_layer." not in key:
            merged[key] = value.float()
            continue
        layer, _, kind = key.rpartition(".original_layer.")
        if kind == "bias":
            merged[f"{layer}.bias"] = value.float()
            continue
        a, b = state[f"{layer}.lora.lora_A"].double(), state[f"{layer}.lora.lora_B"].double()
        delta = (alpha / a.shape[0]) * (b @ a)
        merged[f"{layer}.weight"] = (value.double() + delta).float()
    return merged


def dinov2_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """DINOv2's ``interpolate_pos_encoding`` for a ``grid`` x ``grid`` patch input, once.

    Bicubic, no antialias, scale factor ``(grid + 0.1) / M`` (its "historical kludge"),
    the class token's embedding kept first.
    """
    cls, patches = pos_embed[:, :1].float(), pos_embed[:, 1:].float()
    side, dim = math.isqrt(patches.shape[1]), patches.shape[-1]
    scale = (grid + INTERPOLATE_OFFSET) / side
    resampled = nn.functional.interpolate(
        patches.reshape(1, side, side, dim).permute(0, 3, 1, 2),
        mode="bicubic",
        antialias=False,
        scale_factor=(scale, scale),
    )
    if resampled.shape[-2:] != (grid, grid):
        raise ModelLoadError(f"position embedding resampled to {tuple(resampled.shape)}")
    return torch.cat([cls, resampled.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)], dim=1)


def build_vit(state: dict[str, torch.Tensor], size: int) -> VisionTransformer:
    """A timm ViT shaped as the (merged) DINOv2 weights say, at ``size`` pixels, no head."""
    width = state["cls_token"].shape[-1]
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    with torch.random.fork_rng():
        return VisionTransformer(
            img_size=size,
            patch_size=PATCH,
            embed_dim=width,
            depth=depth,
            num_heads=max(1, width // HEAD_WIDTH),
            mlp_ratio=hidden / width,
            init_values=1.0,
            num_classes=0,
            global_pool="token",
        ).eval()


@register
class DualDataAlignment(Detector):
    """DINOv2 ViT-L/14 with merged LoRA; its class token scored by a linear head."""

    name = "dda"
    summary = "DDA (NeurIPS 2025): DINOv2 ViT-L/14 + LoRA, linear head on the class token"
    backbone = "DINOv2 ViT-L/14 (torch.hub dinov2_vitl14) with rank-8 LoRA, merged at export"
    input_size = "336; centre crop, no resize (zero padding below 336), CLIP mean and std"
    weights = (
        "--pretrained ckpt.pth of roy-ch/Dual-Data-Alignment (huggingface.co/Junwei-Xi/"
        "Dual-Data-Alignment): {'model': ...} holds the whole model"
    )
    licence = "code and weights Apache-2.0 (roy-ch/Dual-Data-Alignment); DINOv2 Apache-2.0"
    options = (
        DetectorOption(
            "lora_alpha",
            "The LoRA scale alpha (the checkpoint does not store it; the official inference "
            "uses 1).",
            kind=float,
            default=1.0,
        ),
    )

    def build(self, request: DetectorRequest) -> BuiltDetector:
        """The merged ViT at 336 and the linear head."""
        if not request.pretrained or request.pretrained.lower() in ("none", "random"):
            raise ModelLoadError(
                "dda needs its checkpoint: --pretrained ckpt.pth (from huggingface.co/"
                "Junwei-Xi/Dual-Data-Alignment)"
            )
        path = Path(request.pretrained)
        raw = read_state_dict(path, "DDA checkpoint")
        if not isinstance(raw.get("model"), dict):
            raise ModelLoadError(f"DDA checkpoint {path.name} has no 'model' entry")
        state = raw["model"]
        require_keys(state, [f"{HEAD}weight", f"{HEAD}bias", f"{BACKBONE}pos_embed"], "DDA", path)
        backbone = {k[len(BACKBONE) :]: v for k, v in state.items() if k.startswith(BACKBONE)}
        backbone.pop("mask_token", None)  # DINOv2's masked-token training parameter
        merged = merge_lora(backbone, float(request.setting("lora_alpha")))
        merged["pos_embed"] = dinov2_pos_embed(merged["pos_embed"], CROP // PATCH)
        vit = build_vit(merged, CROP)
        load_exactly(vit, merged, "DDA checkpoint", path)
        head = nn.Linear(vit.num_features, 1)
        load_exactly(
            head,
            {k[len(HEAD) :]: v.float() for k, v in state.items() if k.startswith(HEAD)},
            "DDA head",
            path,
        )
        info = ModelInfo(
            name="dinov2_vitl14+lora"
            if vit.num_features == 1024
            else f"dinov2-{vit.num_features}d+lora",
            pretrained=path.name,
            feature_dim=vit.num_features,
            image_size=CROP,
            quick_gelu=False,
            checkpoint_sha256=sha256_file(path),
            detector=self.name,
        )
        lora_layers = sum(1 for k in backbone if k.endswith(".lora.lora_A"))
        alpha = request.setting("lora_alpha")
        return BuiltDetector(
            encoder=vit,
            head=head.eval(),
            info=info,
            preprocess=PreprocessConfig(crop_size=CROP, mean=CLIP_MEAN, std=CLIP_STD),
            head_info=HeadInfo(kind="dda", source=path.name, sha256=info.checkpoint_sha256),
            notes=[f"DDA: LoRA merged into {lora_layers} layers (alpha {alpha})"],
        )
