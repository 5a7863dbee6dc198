"""Load a CLIP visual encoder with open_clip: one factory for any name + pretrained.

``pretrained`` is an open_clip tag (``openai``, ``laion2b_s32b_b82k``...), a local
checkpoint file (an open_clip state dict: ``.bin``, ``.pt``, ``.safetensors``), or
``none`` for random initialisation (seeded: the same model every time; for tests
and latency figures). ufd's own tiny
configs (``ufd-tiny-vit``) live in ``model_configs/`` and are registered here.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch

from ufd.runtime.bundle import sha256_file
from ufd.runtime.bundle.manifest import ModelInfo
from ufd.runtime.errors import ModelLoadError

logger = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).with_name("model_configs")
RANDOM_INIT = ("none", "random")
RANDOM_INIT_SEED = 0

open_clip.add_model_config(MODEL_CONFIG_DIR)


@dataclass
class LoadedVisual:
    """A CLIP visual tower in eval mode, float32, and what it is."""

    visual: torch.nn.Module
    info: ModelInfo


def load_visual(
    model_name: str,
    pretrained: str = "openai",
    quick_gelu: bool | None = None,
    cache_dir: str | None = None,
) -> LoadedVisual:
    """Build ``model_name`` with ``pretrained`` weights and return its visual tower.

    Args:
        model_name: an open_clip model name (``ViT-L-14``, ``ViT-B-16``, ``ufd-tiny-vit``).
        pretrained: a tag, a local checkpoint path, or ``none`` for random weights.
        quick_gelu: force QuickGELU on or off; ``None`` takes it from the model
            name and the tag (OpenAI weights need it).
        cache_dir: where open_clip caches downloads.

    Raises:
        ModelLoadError: unknown model, unknown tag, unreadable checkpoint, or a
            download that failed (offline): the message says what to pass instead.
    """
    if model_name not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if model_name.lower() in m.lower()][:8]
        raise ModelLoadError(
            f"unknown open_clip model {model_name!r}"
            + (f"; did you mean one of {close}?" if close else "; see open_clip.list_models()")
        )
    use_quick_gelu, checkpoint_sha = _resolve_weights(model_name, pretrained, quick_gelu)
    weights = None if pretrained.lower() in RANDOM_INIT else pretrained
    try:
        with warnings.catch_warnings(), torch.random.fork_rng():
            warnings.simplefilter("ignore", UserWarning)  # QuickGELU is settled above
            torch.manual_seed(RANDOM_INIT_SEED)  # random weights: the same model every time
            model = open_clip.create_model(
                model_name,
                pretrained=weights,
                force_quick_gelu=use_quick_gelu,
                cache_dir=cache_dir,
                weights_only=True,
            )
    except Exception as e:  # open_clip raises RuntimeError/OSError/HTTP errors
        raise ModelLoadError(_load_failure_message(model_name, pretrained, e)) from e
    visual = model.visual.float().eval()
    del model
    size = visual.image_size
    image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
    info = ModelInfo(
        name=model_name,
        pretrained=Path(pretrained).name if Path(pretrained).is_file() else pretrained,
        feature_dim=_output_dim(visual, image_size),
        image_size=image_size,
        quick_gelu=use_quick_gelu,
        checkpoint_sha256=checkpoint_sha,
    )
    if weights is None:
        logger.warning(
            "%s has RANDOM weights (--pretrained %s): its scores mean nothing; "
            "use it only for tests and timings",
            model_name,
            pretrained,
        )
    return LoadedVisual(visual, info)


def _output_dim(visual: torch.nn.Module, image_size: int) -> int:
    """The tower's feature width: its ``output_dim``, or (timm towers, as PE-Core) measured."""
    if hasattr(visual, "output_dim"):
        return int(visual.output_dim)
    with torch.no_grad():
        return int(visual(torch.zeros(1, 3, image_size, image_size)).shape[-1])


def _resolve_weights(
    model_name: str, pretrained: str, quick_gelu: bool | None
) -> tuple[bool, str | None]:
    """Decide QuickGELU and hash a local checkpoint."""
    name_says = model_name.endswith("-quickgelu") or bool(
        (open_clip.get_model_config(model_name) or {}).get("quick_gelu", False)
    )
    if pretrained.lower() in RANDOM_INIT:
        return (name_says if quick_gelu is None else quick_gelu), None
    path = Path(pretrained).expanduser()
    if path.is_file():
        if quick_gelu is None and not name_says:
            logger.warning(
                "local checkpoint %s loaded with GELU; OpenAI CLIP weights (the UnivFD "
                "backbone) need QuickGELU: pass --quick-gelu or a '-quickgelu' model name",
                path.name,
            )
        return (name_says if quick_gelu is None else quick_gelu), sha256_file(path)
    if "/" in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")):
        raise ModelLoadError(f"checkpoint file {pretrained} not found")
    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise ModelLoadError(
            f"{pretrained!r} is neither a file nor a pretrained tag of {model_name}; "
            f"tags: {', '.join(tags) or 'none'}; or pass --pretrained none for random weights"
        )
    tag_says = bool(tag_cfg.get("quick_gelu", False))
    return ((tag_says or name_says) if quick_gelu is None else quick_gelu), None


def _load_failure_message(model_name: str, pretrained: str, error: Exception) -> str:
    if Path(pretrained).is_file():
        return (
            f"cannot load checkpoint {pretrained} into {model_name}: {error}; it must be an "
            "open_clip state dict of this architecture"
        )
    return (
        f"could not fetch the {pretrained!r} weights of {model_name} ({error}). Offline? "
        "Download the checkpoint on a machine with network access (e.g. the "
        "open_clip_pytorch_model.bin of the model's Hugging Face repo) and pass its local "
        f"path: --pretrained /path/to/{model_name}.bin"
    )
