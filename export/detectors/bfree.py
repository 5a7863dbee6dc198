"""``bfree``: B-Free (Guillaro et al., CVPR 2025; grip-unina/B-Free, non-commercial licence).

Official semantics (``code/networks/wrapper5crops.py``, ``code/main_bfree_single.py``):
timm's ``vit_base_patch14_reg4_dinov2`` with one output, its input size set to
504 (``set_input_size``), wrapped by ``Wrapper5crops``: the patch embedding runs
on the **whole** image, normalised (``get_list_norm(norm_type)`` of the weights'
``config.yaml``: ``resnet`` = ImageNet mean/std, ``clip``, ``xception`` or
``none``); when it has fewer than 36 cells a side, the cells are tiled around
themselves and cut to 36 x 36; five 36 x 36 windows (centre, then the corners)
go through the ViT; the logit is the mean of the five. The weights are
``{'model': state}`` in timm's own keys (position embedding already at 504).

Cropping cells of a stride-14 patch embedding is cropping pixels on the 14-pixel
grid, so ufd takes the five 504-pixel crops in numpy (``five_crops`` mode,
:mod:`ufd.runtime.units`) and exports the ViT at 504 as one fixed graph; the
image's feature is the mean of the five crops' features, which the linear head
turns into exactly the mean of the five logits. The architecture is read from
the weights (width, depth, registers, patch, input size; 64-d heads).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from timm.models.vision_transformer import VisionTransformer

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

logger = logging.getLogger(__name__)

HEAD_WIDTH = 64
NORMALISATIONS = {
    "resnet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": (CLIP_MEAN, CLIP_STD),
    "xception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
"""``get_list_norm``'s normalisations (``code/utils/normalization.py``)."""
LICENCE_NOTE = (
    "B-Free's code and weights are licensed by GRIP-UNINA for non-commercial purposes only "
    "(code/LICENSE.txt of grip-unina/B-Free): this bundle inherits that licence"
)


def weights_and_config(pretrained: str) -> tuple[Path, dict[str, str]]:
    """The weights file and the ``config.yaml`` beside it (or in the folder given), if any."""
    path = Path(pretrained).expanduser()
    folder = path if path.is_dir() else path.parent
    config: dict[str, str] = {}
    if (folder / "config.yaml").is_file():
        import yaml

        with (folder / "config.yaml").open(encoding="utf-8") as fh:
            config = {k: str(v) for k, v in (yaml.safe_load(fh) or {}).items()}
    if path.is_dir():
        if "weights_file" not in config:
            raise ModelLoadError(f"{path} holds no config.yaml naming its weights_file")
        path = folder / config["weights_file"]
    return path, config


def build_vit(state: dict[str, torch.Tensor]) -> tuple[VisionTransformer, int]:
    """Timm's DINOv2-with-registers ViT shaped as the weights say: (model, input size)."""
    width = state["cls_token"].shape[-1]
    patch = state["patch_embed.proj.weight"].shape[-1]
    registers = state["reg_token"].shape[1] if "reg_token" in state else 0
    grid = math.isqrt(state["pos_embed"].shape[1])  # no class-token embedding (no_embed_class)
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
            init_values=1.0 if "blocks.0.ls1.gamma" in state else None,
            reg_tokens=registers,
            no_embed_class=True,
            num_classes=state["head.weight"].shape[0],
        )
    return model.eval(), grid * patch


def one_logit(head: torch.nn.Linear) -> torch.nn.Linear:
    """The head as one logit: itself, or for two outputs their difference.

    The official code reads a two-logit model as ``out[:, 1] - out[:, 0]``.
    """
    if head.out_features == 1:
        return head
    if head.out_features != 2:
        raise ModelLoadError(f"a head of {head.out_features} outputs: expected 1 or 2")
    single = torch.nn.Linear(head.in_features, 1)
    with torch.no_grad():
        single.weight.copy_(head.weight[1:] - head.weight[:1])
        single.bias.copy_(head.bias[1:] - head.bias[:1])
    return single


@register
class BFree(Detector):
    """A DINOv2 ViT-B/14 with registers, five 504-px crops of the whole image, mean logit."""

    name = "bfree"
    summary = "B-Free (CVPR 2025): DINOv2 ViT-B/14 + registers, five 504-px crops, mean logit"
    backbone = "timm vit_base_patch14_reg4_dinov2, tuned end to end"
    input_size = "the whole image: five 504-px crops on the 14-px grid (tiled when smaller)"
    weights = (
        "--pretrained BFREE_dino2reg4/ (the folder of config.yaml and model_epoch_best.pth "
        "from grip-unina/B-Free), or its .pth with --normalization"
    )
    licence = "NON-COMMERCIAL ONLY: code and weights under GRIP-UNINA's licence (grip-unina/B-Free)"
    options = (
        DetectorOption(
            "normalization",
            "The norm_type of B-Free's config.yaml: resnet (ImageNet), clip, xception or none. "
            "Read from config.yaml when it lies beside the weights.",
            choices=tuple(NORMALISATIONS),
        ),
    )

    def build(self, request: DetectorRequest) -> BuiltDetector:
        """The ViT at 504 and its one-output head, for five crops per image."""
        if not request.pretrained or request.pretrained.lower() in ("none", "random"):
            raise ModelLoadError(
                "bfree needs its weights: --pretrained BFREE_dino2reg4/ (config.yaml and "
                "model_epoch_best.pth, from grip-unina/B-Free)"
            )
        path, config = weights_and_config(request.pretrained)
        norm = request.setting("normalization") or config.get("norm_type")
        if norm not in NORMALISATIONS:
            raise ModelLoadError(
                f"no config.yaml beside {path.name} says how B-Free normalises: pass "
                "--normalization resnet|clip|xception|none (its norm_type)"
            )
        raw = read_state_dict(path, "B-Free weights")
        if not isinstance(raw.get("model"), dict):
            raise ModelLoadError(f"B-Free weights {path.name} have no 'model' entry")
        state = {k: v.float() for k, v in raw["model"].items()}
        require_keys(
            state,
            ["cls_token", "pos_embed", "patch_embed.proj.weight", "head.weight"],
            "B-Free",
            path,
        )
        vit, size = build_vit(state)
        load_exactly(vit, state, "B-Free weights", path)
        head = one_logit(vit.head)
        vit.reset_classifier(0)
        logger.warning(LICENCE_NOTE)
        mean, std = NORMALISATIONS[norm]
        info = ModelInfo(
            name=config.get("arch", "vit_base_patch14_reg4_dinov2").removeprefix("timm_c5i504_"),
            pretrained=path.name,
            feature_dim=vit.num_features,
            image_size=size,
            quick_gelu=False,
            checkpoint_sha256=sha256_file(path),
            detector=self.name,
        )
        patch = vit.patch_embed.patch_size[0]
        return BuiltDetector(
            encoder=vit,
            head=head.eval(),
            info=info,
            preprocess=PreprocessConfig(
                mode="five_crops", crop_size=size, grid=patch, mean=mean, std=std
            ),
            head_info=HeadInfo(kind="bfree", source=path.name, sha256=info.checkpoint_sha256),
            notes=[LICENCE_NOTE, f"B-Free normalisation: {norm}"],
        )
