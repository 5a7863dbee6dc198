"""``rine``: RINE (Koutlis & Papadopoulos, ECCV 2024; mever-team/rine, Apache-2.0).

Official semantics (``src/models.py``, ``src/utils.py`` of mever-team/rine):
a frozen CLIP ViT-L/14 (OpenAI weights); a forward hook on every block's
``ln_2`` keeps the class token of its output, giving (N, blocks, 1024); the
trainable part projects each (``proj1``: Dropout, then ``nproj`` x [Linear,
ReLU, Dropout]), weights the blocks by ``softmax(alpha, dim=blocks)`` (the
Trainable Importance Estimator), sums over blocks, projects again (``proj2``)
and classifies (``head``: Linear, ReLU, Dropout, Linear, ReLU, Dropout,
Linear -> 1). Test transform: CenterCrop(224), ToTensor, CLIP Normalize.

In the bundle the encoder ends at ``proj2``: its feature is RINE's own
representation ``z`` (``proj_dim``-d, the one its contrastive loss shapes), so
the k-NN and real-only methods work on it; the head graph is RINE's ``head``.
``nproj`` and ``proj_dim`` are read from the checkpoint
(``ckpt/model_{1class,2class,4class,ldm}_trainable.pth``).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch
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
from ufd.export.models import load_visual
from ufd.runtime.bundle import sha256_file
from ufd.runtime.bundle.manifest import PreprocessConfig
from ufd.runtime.errors import ModelLoadError, UsageError


def _projection(first_dim: int, dim: int, layers: int) -> nn.Sequential:
    """Dropout, then ``layers`` x [Linear, ReLU, Dropout]: the official indices (1, 4, 7...)."""
    parts: list[nn.Module] = [nn.Dropout()]
    for i in range(layers):
        parts += [nn.Linear(first_dim if i == 0 else dim, dim), nn.ReLU(), nn.Dropout()]
    return nn.Sequential(*parts)


class RineTrainable(nn.Module):
    """The trainable part of RINE, laid out as the official ``Model`` (same state-dict keys)."""

    def __init__(self, blocks: int, width: int, nproj: int, proj_dim: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(1, blocks, proj_dim))
        self.proj1 = _projection(width, proj_dim, nproj)
        self.proj2 = _projection(proj_dim, proj_dim, nproj)
        self.head = nn.Sequential(
            nn.Linear(proj_dim, proj_dim),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(proj_dim, proj_dim),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(proj_dim, 1),
        )


class BlockClassTokens(nn.Module):
    """pixels -> (N, blocks, D): the class token of every block's ``ln_2`` output."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def norms(self) -> list[nn.Module]:
        """Every ``ln_2`` of the tower, in block order (found again after a copy)."""
        return [m for name, m in self.visual.named_modules() if name.endswith("ln_2")]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Run the tower once; keep token 0 of each ``ln_2`` output (batch-first towers)."""
        tokens: list[torch.Tensor] = []
        handles = [
            norm.register_forward_hook(lambda module, args, out: tokens.append(out[:, 0]))
            for norm in self.norms()
        ]
        try:
            self.visual(pixels)
        finally:
            for handle in handles:
                handle.remove()
        return torch.stack(tokens, dim=1)


class RineEncoder(nn.Module):
    """pixels -> z: block class tokens, ``proj1``, importance weighting, sum, ``proj2``."""

    def __init__(self, tokens: BlockClassTokens, trainable: RineTrainable) -> None:
        super().__init__()
        self.tokens = tokens
        self.alpha = trainable.alpha
        self.proj1 = trainable.proj1
        self.proj2 = trainable.proj2

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """RINE's ``z`` (N, proj_dim)."""
        g = self.proj1(self.tokens(pixels).float())
        z = torch.sum(torch.softmax(self.alpha, dim=1) * g, dim=1)
        return self.proj2(z)


def read_trainable(path: str, blocks: int, width: int) -> tuple[RineTrainable, dict]:
    """The official trainable checkpoint, its shape read from the file.

    Raises:
        ModelLoadError: a missing key, or a checkpoint made for another backbone.
    """
    state = read_state_dict(path, "RINE checkpoint")
    require_keys(state, ["alpha", "proj1.1.weight", "head.6.weight"], "RINE checkpoint", path)
    nproj = len([k for k in state if re.fullmatch(r"proj1\.\d+\.weight", k)])
    _, ckpt_blocks, proj_dim = tuple(state["alpha"].shape)
    if ckpt_blocks != blocks or state["proj1.1.weight"].shape[1] != width:
        raise ModelLoadError(
            f"RINE checkpoint {path} was trained on {ckpt_blocks} blocks of "
            f"{state['proj1.1.weight'].shape[1]}-d tokens, but the backbone has {blocks} of "
            f"{width}-d (RINE's checkpoints need ViT-L-14 with OpenAI weights)"
        )
    trainable = RineTrainable(blocks, width, nproj, proj_dim)
    load_exactly(trainable, {k: v.float() for k, v in state.items()}, "RINE checkpoint", path)
    return trainable.eval(), {"nproj": nproj, "proj_dim": proj_dim}


@register
class Rine(Detector):
    """CLIP ViT-L/14's every block, weighted by learned importance."""

    name = "rine"
    summary = "RINE (ECCV 2024): every CLIP ViT-L/14 block's class token, importance-weighted"
    backbone = "CLIP ViT-L/14, OpenAI weights (frozen)"
    input_size = "224; centre crop, no resize"
    weights = (
        "--pretrained openai (or the local OpenAI CLIP checkpoint); --head "
        "ckpt/model_{1class,2class,4class,ldm}_trainable.pth of mever-team/rine"
    )
    licence = "code and trainable checkpoints Apache-2.0 (mever-team/rine); CLIP weights MIT"
    default_model = "ViT-L-14"
    default_pretrained = "openai"
    options = (
        DetectorOption(
            "quick_gelu",
            "Always on: RINE's backbone is OpenAI CLIP ViT-L/14, which uses QuickGELU (even "
            "from a local checkpoint). Accepted so that older command lines keep working.",
            kind=bool,
            default=True,
        ),
    )

    def build(self, request: DetectorRequest) -> BuiltDetector:
        """The CLIP tower with block hooks, RINE's projections, and its head."""
        if not request.head or request.head == "none":
            raise ModelLoadError(
                "rine needs its trainable checkpoint: --head ckpt/model_4class_trainable.pth "
                "(from github.com/mever-team/rine)"
            )
        if request.setting("quick_gelu") is False:
            raise UsageError(
                "RINE's backbone is OpenAI CLIP ViT-L/14, which uses QuickGELU: drop "
                "--no-quick-gelu"
            )
        loaded = load_visual(
            request.model or self.default_model,
            request.pretrained or self.default_pretrained,
            quick_gelu=True,
        )
        tokens = BlockClassTokens(loaded.visual)
        width = int(loaded.visual.conv1.out_channels)
        trainable, shape = read_trainable(request.head, len(tokens.norms()), width)
        info = dataclasses.replace(loaded.info, feature_dim=shape["proj_dim"], detector=self.name)
        return BuiltDetector(
            encoder=RineEncoder(tokens, trainable).eval(),
            head=trainable.head,
            info=info,
            preprocess=PreprocessConfig(crop_size=loaded.info.image_size),
            head_info=HeadInfo(
                kind="rine", source=Path(request.head).name, sha256=sha256_file(Path(request.head))
            ),
            notes=[f"RINE trainable part: nproj {shape['nproj']}, proj_dim {shape['proj_dim']}"],
        )
