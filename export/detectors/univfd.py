"""``univfd``: UnivFD (Ojha et al., CVPR 2023): a frozen CLIP visual encoder and a linear head.

The default detector and ufd's first: an open_clip visual tower
(:mod:`ufd.export.models`: any name + pretrained tag, a local checkpoint, or
random weights) and the official ``fc_weights.pth`` (:mod:`ufd.export.heads`).
Official test transform: centre crop 224 without resize (``--resize`` for the
older resize-256 pipeline), CLIP mean and std.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ufd.export.detectors.base import (
    QUICK_GELU,
    BuiltDetector,
    Detector,
    DetectorOption,
    DetectorRequest,
)
from ufd.export.detectors.registry import register
from ufd.export.heads import is_official_head, load_head
from ufd.export.models import load_visual
from ufd.runtime.bundle.manifest import PreprocessConfig

logger = logging.getLogger(__name__)


@register
class UnivFD(Detector):
    """CLIP ViT-L/14 features, the paper's linear classifier."""

    name = "univfd"
    summary = "UnivFD (CVPR 2023): frozen CLIP ViT-L/14, linear head (the default)"
    backbone = "any open_clip image tower (--model, default ViT-L-14, OpenAI weights)"
    input_size = "the tower's (224 for ViT-L/14); centre crop, no resize"
    weights = (
        "--pretrained openai (or a local open_clip checkpoint); --head univfd "
        "(fc_weights.pth of WisconsinAIVision/UniversalFakeDetect), a .pth, or none"
    )
    licence = "CLIP weights MIT (OpenAI); UnivFD head MIT"
    default_model = "ViT-L-14"
    default_pretrained = "openai"
    default_head = "univfd"
    options = (
        QUICK_GELU,
        DetectorOption(
            "resize",
            "Resize the shorter side to 256 before the crop (the older pipeline). Off by "
            "default, as in the official test code.",
            kind=bool,
            default=False,
        ),
    )

    def _quick_gelu(self, request: DetectorRequest) -> bool | None:
        """QuickGELU: as given; else ``load_visual``'s rule, but on for the official head.

        The official head was trained on OpenAI CLIP ViT-L/14 features (QuickGELU), so a
        local ViT-L-14 checkpoint scored by it is taken to be OpenAI's.
        """
        given = request.setting("quick_gelu")
        pretrained = Path(request.pretrained or self.default_pretrained).expanduser()
        if given is not None or not pretrained.is_file():
            return given
        if (request.model or self.default_model) == self.default_model and is_official_head(
            request.head or self.default_head
        ):
            logger.info(
                "QuickGELU: the official UnivFD head scores OpenAI CLIP ViT-L/14 features "
                "(pass --no-quick-gelu for a checkpoint that is not OpenAI's)"
            )
            return True
        return None

    def build(self, request: DetectorRequest) -> BuiltDetector:
        """The open_clip tower and the linear head."""
        loaded = load_visual(
            request.model or self.default_model,
            request.pretrained or self.default_pretrained,
            self._quick_gelu(request),
        )
        head = load_head(request.head or self.default_head, loaded.info.feature_dim)
        mode = "resize_center_crop" if request.setting("resize") else "center_crop"
        preprocess = PreprocessConfig(mode=mode, crop_size=loaded.info.image_size)
        return BuiltDetector(
            encoder=loaded.visual,
            head=head.linear,
            info=dataclasses.replace(loaded.info, detector=self.name),
            preprocess=preprocess,
            head_info=head.info,
        )
