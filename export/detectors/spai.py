"""``spai``: SPAI, Spectral AI-generated Image detection (CVPR 2025).

Karageorgiou et al.; mever-team/spai, Apache-2.0.

Official semantics (``spai/models/sid.py``, ``vision_transformer.py``, ``filters.py``,
``configs/spai.yaml``, ``data/data_finetune.py`` there), at any resolution: the
image in [0, 1] (``Normalize(0, 1)``, no resize), mirrored (reflect-101) up to 224
where smaller, cut into 224-pixel tiles (stride 224; torchvision's five crops when
fewer than 4). Each tile (``MFViT``): a low- and a high-pass version by a circular
mask (radius 16) on its centred 2-D spectrum, both clamped to [0, 1]; the tile and
both versions normalised (ImageNet) and through the MFM ViT-B/16, keeping every
block's patch tokens; a per-block projector; the cosine similarity of tile and
low, tile and high, low and high per patch, their mean and (Bessel) standard
deviation per block (72 values), beside a projection of the tile's own tokens
(1024): a 1096-d tile feature. The image: cross-attention of a learned query over
its tiles' features (12 heads), a layer norm, and an MLP head to one logit.
The checkpoint is ``{'model': state}`` of ``PatchBasedMFViT``.

Here the tile encoder is one graph whose frequency filter is two real DFTs as
matrix products (exactly the masked FFT, in plain ONNX ops; never quantised), the
aggregator a second graph ((1, L, 1096) -> (1, 1096)), the MLP the head. The
sizes are read from the weights; the blocks feeding the projectors are every
block when there are as many projectors as blocks (the released model), else
``--intermediate-layers``. The modules are in :mod:`.spai_model`.
"""

from __future__ import annotations

from pathlib import Path

import torch

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
from ufd.export.detectors.spai_model import (
    ClassificationHead,
    SpaiAggregator,
    SpaiTileEncoder,
)
from ufd.export.heads import HeadInfo
from ufd.runtime.bundle import sha256_file
from ufd.runtime.bundle.manifest import ModelInfo, PreprocessConfig
from ufd.runtime.errors import ModelLoadError

MIN_TILES = 4
MASK = "mfvit.frequencies_mask"
UNUSED_VIT_KEYS = (
    "cls_pos_embed",
    "actual_cls_token",
    "cls_blocks.",
    "intermediate_fc_norm.",
    "head.",
    "fc_norm.",
    "norm.",
    "cls_norm.",
)
"""MFM ViT parameters the fine-tuned model never uses (its tokens go to the projectors)."""
REQUIRED = [
    MASK,
    "mfvit.vit.pos_embed",
    "mfvit.vit.blocks.0.mlp.fc1.weight",
    "mfvit.features_processor.original_features_processor.alpha",
    "patch_aggregator",
    "to_kv.weight",
    "cls_head.head.6.weight",
]


def official_state(raw: dict, path: Path) -> dict[str, torch.Tensor]:
    """The model's tensors as ``load_pretrained`` reads them.

    ``['model']``, without a pre-training ``encoder.`` prefix, float32, the unused ViT
    parts left out.
    """
    if not isinstance(raw.get("model"), dict):
        raise ModelLoadError(f"SPAI checkpoint {path.name} has no 'model' entry")
    state = raw["model"]
    if any("encoder." in k for k in state):
        state = {k.replace("encoder.", ""): v for k, v in state.items() if k.startswith("encoder.")}
    unused = tuple(f"mfvit.vit.{k}" for k in UNUSED_VIT_KEYS)
    return {k: v.float() for k, v in state.items() if not k.startswith(unused)}


def intermediate_layers(state: dict[str, torch.Tensor], given: str | None) -> tuple[int, ...]:
    """The ViT blocks whose tokens feed the projectors (see the module docstring)."""
    depth = len({k.split(".")[3] for k in state if k.startswith("mfvit.vit.blocks.")})
    prefix = "mfvit.features_processor.patch_projector.projectors."
    projectors = len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})
    if given:
        try:
            layers = tuple(int(i) for i in given.split(","))
        except ValueError as e:
            raise ModelLoadError(f"--intermediate-layers {given!r}: expected 2,5,8,11") from e
    elif projectors == depth:
        layers = tuple(range(depth))
    else:
        raise ModelLoadError(
            f"the checkpoint has {projectors} projectors for {depth} blocks: pass "
            "--intermediate-layers (its MODEL.VIT.INTERMEDIATE_LAYERS, e.g. 2,5,8,11)"
        )
    if len(layers) != projectors or not all(0 <= i < depth for i in layers):
        raise ModelLoadError(
            f"--intermediate-layers {given}: need {projectors} blocks among 0..{depth - 1}"
        )
    return layers


def _under(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


@register
class Spai(Detector):
    """Spectral learning on 224-px tiles and an attention aggregator over them."""

    name = "spai"
    summary = "SPAI (CVPR 2025): spectral tiles of the full image through ViT-B/16, aggregated"
    backbone = "MFM ViT-B/16, three passes per tile (image, low-pass, high-pass), fine-tuned head"
    input_size = "the whole image: 224-px tiles, stride 224 (five crops below 4 tiles), in [0, 1]"
    weights = "--pretrained spai.pth of mever-team/spai (its {'model': ...} holds the whole model)"
    licence = "code and weights Apache-2.0 (mever-team/spai)"
    options = (
        DetectorOption(
            "intermediate_layers",
            "The ViT blocks feeding the projectors, e.g. 2,5,8,11 (MODEL.VIT."
            "INTERMEDIATE_LAYERS). Default: every block when the weights have one projector "
            "per block, as the released model.",
        ),
        DetectorOption(
            "projector_activation",
            "The last activation of the patch projectors (MODEL.FRE.PROJECTOR_LAST_LAYER_"
            "ACTIVATION_TYPE); the released spai.yaml says none.",
            choices=("none", "gelu"),
            default="none",
        ),
    )

    def build(self, request: DetectorRequest) -> BuiltDetector:
        """The tile encoder, the aggregator and the MLP head."""
        if not request.pretrained or request.pretrained.lower() in ("none", "random"):
            raise ModelLoadError(
                "spai needs its weights: --pretrained spai.pth (from mever-team/spai)"
            )
        path = Path(request.pretrained).expanduser()
        state = official_state(read_state_dict(path, "SPAI checkpoint"), path)
        require_keys(state, REQUIRED, "SPAI", path)
        layers = intermediate_layers(state, request.setting("intermediate_layers"))
        mask = state.pop(MASK)
        encoder = SpaiTileEncoder(
            _under(state, "mfvit."),
            mask,
            layers,
            last_gelu=request.setting("projector_activation") == "gelu",
        )
        aggregator = SpaiAggregator(state)
        head = ClassificationHead(_under(state, "cls_head."))
        model = torch.nn.Module()
        model.mfvit, model.cls_head = encoder, head
        for name in ("to_kv", "patch_aggregator", "to_out", "norm"):
            setattr(model, name, getattr(aggregator, name))
        load_exactly(model, state, "SPAI checkpoint", path)
        if head.head[-1].out_features != 1:
            raise ModelLoadError(f"SPAI head of {head.head[-1].out_features} outputs: expected 1")
        size = mask.shape[-1]
        info = ModelInfo(
            name="spai-mfvit-b16",
            pretrained=path.name,
            feature_dim=aggregator.norm.normalized_shape[0],
            image_size=size,
            quick_gelu=False,
            checkpoint_sha256=sha256_file(path),
            detector=self.name,
        )
        return BuiltDetector(
            encoder=encoder.eval(),
            head=head.eval(),
            info=info,
            preprocess=PreprocessConfig(
                mode="tiles",
                crop_size=size,
                tile_stride=size,
                min_tiles=MIN_TILES,
                mean=(0.0, 0.0, 0.0),
                std=(1.0, 1.0, 1.0),
            ),
            head_info=HeadInfo(kind="spai", source=path.name, sha256=info.checkpoint_sha256),
            aggregator=aggregator.eval(),
            tile_feature_dim=aggregator.norm.normalized_shape[0],
            notes=[f"SPAI: {len(layers)} ViT blocks feed the projectors"],
        )
