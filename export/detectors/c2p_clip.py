"""``c2p-clip``: C2P-CLIP (Tan et al., AAAI 2025; chuangchuangtan/C2P-CLIP-DeepfakeDetection).

Official semantics (``inference.py``, ``data.py`` there): a Hugging Face
``CLIPModel`` (``openai/clip-vit-large-patch14`` layout, its vision tower tuned),
the pooled output of ``vision_model`` through ``visual_projection``, L2
normalised, then ``fc = Linear(768, 1)``. One release file
(``C2P_CLIP_release_20240901``) holds the vision tower, the projection and
``fc``, under ``model.``. Test transform: Resize(224) (shorter side, bilinear),
CenterCrop(224), ToTensor, CLIP Normalize.

Hugging Face's CLIP vision tower computes what open_clip's does; the release's
weights are moved into an open_clip ``VisionTransformer`` (so the export's fused
attention applies) and the normalisation joins the encoder: the bundle's
feature is the unit embedding, and its head the official ``fc``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from open_clip.model import CLIPVisionCfg, _build_vision_tower
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

VISION = "vision_model."
HEAD_WIDTH = 64
"""Every CLIP ViT has 64-d attention heads (the count is not in the weights)."""


def _layer_keys(i: int) -> dict[str, str]:
    hf, oc = f"{VISION}encoder.layers.{i}.", f"transformer.resblocks.{i}."
    pairs = {
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "self_attn.out_proj": "attn.out_proj",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
    }
    return {f"{hf}{a}.{p}": f"{oc}{b}.{p}" for a, b in pairs.items() for p in ("weight", "bias")}


def open_clip_state(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face CLIP vision weights (and ``visual_projection``) in open_clip's layout."""
    layers = len({k.split(".")[3] for k in hf if k.startswith(f"{VISION}encoder.layers.")})
    state = {
        "class_embedding": hf[f"{VISION}embeddings.class_embedding"],
        "conv1.weight": hf[f"{VISION}embeddings.patch_embedding.weight"],
        "positional_embedding": hf[f"{VISION}embeddings.position_embedding.weight"],
        "proj": hf["visual_projection.weight"].t().contiguous(),
    }
    for name, target in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for p in ("weight", "bias"):
            state[f"{target}.{p}"] = hf[f"{VISION}{name}.{p}"]
    for i in range(layers):
        state |= {new: hf[old] for old, new in _layer_keys(i).items()}
        attn = f"{VISION}encoder.layers.{i}.self_attn."
        for p in ("weight", "bias"):
            parts = [hf[f"{attn}{x}_proj.{p}"] for x in ("q", "k", "v")]
            state[f"transformer.resblocks.{i}.attn.in_proj_{p}"] = torch.cat(parts)
    return {k: v.float() for k, v in state.items()}


class NormalisedEncoder(nn.Module):
    """A tower whose output is L2-normalised, as C2P-CLIP does before ``fc``."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """The unit image embedding (N, 768)."""
        features = self.visual(pixels)
        return features / features.norm(p=2, dim=-1, keepdim=True)


def build_tower(hf: dict[str, torch.Tensor]) -> tuple[nn.Module, int, int]:
    """An open_clip tower shaped as the Hugging Face weights say: (tower, image size, dim)."""
    width = hf[f"{VISION}embeddings.class_embedding"].shape[0]
    patch = hf[f"{VISION}embeddings.patch_embedding.weight"].shape[-1]
    grid = math.isqrt(hf[f"{VISION}embeddings.position_embedding.weight"].shape[0] - 1)
    layers = len({k.split(".")[3] for k in hf if k.startswith(f"{VISION}encoder.layers.")})
    embed_dim = hf["visual_projection.weight"].shape[0]
    cfg = CLIPVisionCfg(
        layers=layers, width=width, head_width=HEAD_WIDTH, patch_size=patch, image_size=grid * patch
    )
    with torch.random.fork_rng():
        tower = _build_vision_tower(embed_dim, cfg, quick_gelu=True)
    return tower, grid * patch, embed_dim


def _architecture(hf: dict[str, torch.Tensor]) -> str:
    """``ViT-L-14`` for the release; width, depth and patch for anything else."""
    width = hf[f"{VISION}embeddings.class_embedding"].shape[0]
    patch = hf[f"{VISION}embeddings.patch_embedding.weight"].shape[-1]
    layers = len({k.split(".")[3] for k in hf if k.startswith(f"{VISION}encoder.layers.")})
    if (width, layers, patch) == (1024, 24, 14):
        return "ViT-L-14"
    return f"ViT-w{width}-d{layers}-p{patch}"


@register
class C2PClip(Detector):
    """A tuned CLIP ViT-L/14, its unit embedding, a linear head."""

    name = "c2p-clip"
    summary = "C2P-CLIP (AAAI 2025): CLIP ViT-L/14 tuned with category common prompts"
    backbone = "CLIP ViT-L/14 (Hugging Face CLIPModel layout), tuned"
    input_size = "224; resize the shorter side to 224 (bilinear), centre crop"
    weights = (
        "--pretrained C2P_CLIP_release_20240901 (the official release state dict: vision "
        "tower, visual_projection and fc together; .pth, .zip or .safetensors)"
    )
    licence = "no licence stated in chuangchuangtan/C2P-CLIP-DeepfakeDetection; ask its authors"

    def build(self, request: DetectorRequest) -> BuiltDetector:
        """The release's tower in open_clip form, normalised, and its ``fc``."""
        path = request.pretrained
        if not path or path == "none":
            raise ModelLoadError(
                "c2p-clip needs its release file: --pretrained C2P_CLIP_release_20240901.zip "
                "(from github.com/chuangchuangtan/C2P-CLIP-DeepfakeDetection)"
            )
        raw = read_state_dict(path, "C2P-CLIP release")
        hf = {k.removeprefix("model."): v for k, v in raw.items()}
        needed = [f"{VISION}embeddings.class_embedding", "visual_projection.weight", "fc.weight"]
        require_keys(hf, needed, "C2P-CLIP release", path)
        tower, image_size, embed_dim = build_tower(hf)
        try:
            state = open_clip_state(hf)
        except KeyError as e:
            raise ModelLoadError(f"C2P-CLIP release {Path(path).name} lacks {e}") from e
        load_exactly(tower, state, "C2P-CLIP release", path)
        fc = nn.Linear(embed_dim, 1)
        load_exactly(fc, {"weight": hf["fc.weight"], "bias": hf["fc.bias"]}, "C2P-CLIP fc", path)
        digest = sha256_file(Path(path))
        info = ModelInfo(
            name=_architecture(hf),
            pretrained=Path(path).name,
            feature_dim=embed_dim,
            image_size=image_size,
            quick_gelu=True,
            checkpoint_sha256=digest,
            detector=self.name,
        )
        preprocess = PreprocessConfig(
            mode="resize_center_crop", crop_size=image_size, resize_size=image_size
        )
        return BuiltDetector(
            encoder=NormalisedEncoder(tower.float().eval()).eval(),
            head=fc.eval(),
            info=info,
            preprocess=preprocess,
            head_info=HeadInfo(kind="c2p-clip", source=Path(path).name, sha256=digest),
        )
