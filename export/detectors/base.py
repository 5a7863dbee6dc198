"""What a detector is to the exporter: the torch modules of a bundle's graphs, its preprocessing.

A detector turns its authors' weight files into

* an **encoder**: pixels (N, 3, S, S) -> features (N, D), exported as
  ``encoder.<precision>.onnx`` (and quantised);
* a **head**: features (N, D) -> logits (N, 1), exported as ``head.onnx`` and run
  by the ``linear`` method (``None``: a features-only bundle, as a probe before
  ``ufd-train``);
* the **preprocessing** of its official *test* transform (resize or not, crop,
  interpolation, mean and std), which the runtime applies in numpy.

The export then validates both graphs against these torch modules run on the
official transform (:mod:`ufd.export.graph.validate`). Everything after the
bundle is written is detector-agnostic: the runtime only sees the two graphs
and the preprocessing in the manifest.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from ufd.export.heads import HeadInfo
from ufd.runtime.bundle.manifest import ModelInfo, PreprocessConfig
from ufd.runtime.errors import ModelLoadError, UsageError


@dataclass(frozen=True)
class DetectorOption:
    """A setting only some detectors take, declared by each detector that takes it.

    ``ufd-export`` offers it as ``--name-with-dashes`` (a ``--name/--no-name`` flag for
    ``bool``) and ``ufd-export --detector NAME --help`` lists the detector's own.
    """

    name: str
    help: str
    kind: type = str
    """``str``, ``int``, ``float`` or ``bool``."""
    choices: tuple[str, ...] = ()
    default: Any = None
    """``None``: not given; the detector decides (its help says how)."""

    @property
    def flag(self) -> str:
        """The command-line spelling, ``--quick-gelu``."""
        return "--" + self.name.replace("_", "-")


QUICK_GELU = DetectorOption(
    "quick_gelu",
    "Force QuickGELU on or off. Default: from the model name and the weights (OpenAI CLIP "
    "weights need it).",
    kind=bool,
)
"""Shared by the detectors on open_clip towers whose weights may be OpenAI's."""


@dataclass(frozen=True)
class DetectorRequest:
    """What ``ufd-export`` was asked for (``None``: the detector's default).

    ``settings`` holds the detector's own options (:attr:`Detector.options`), checked
    and completed with their defaults by :meth:`Detector.settings_for`.
    """

    model: str | None = None
    pretrained: str | None = None
    head: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    def setting(self, name: str) -> Any:
        """The value of one of the detector's options (``None``: not given)."""
        return self.settings.get(name)


@dataclass
class BuiltDetector:
    """The torch side of a bundle, in eval mode, float32.

    ``aggregator`` (``tiles`` bundles only): (1, L, d) tile features -> (1, D) the
    image's feature, which the head scores.
    """

    encoder: torch.nn.Module
    head: torch.nn.Module | None
    info: ModelInfo
    preprocess: PreprocessConfig
    head_info: HeadInfo
    notes: list[str] = field(default_factory=list)
    aggregator: torch.nn.Module | None = None
    tile_feature_dim: int | None = None
    """``tiles``: the width of a tile's feature (the aggregator's input)."""
    static_int8_ops: tuple[str, ...] | None = None
    """Convolutional detectors: their int8 graphs are static QDQ over these op types
    (``--quantization auto``); onnxruntime's dynamic ``ConvInteger`` is slower than
    fp32 on CPU. ``None``: dynamic int8 MatMuls (transformers)."""
    int8_fp32_modules: tuple[str, ...] = ()
    """Top-level encoder modules the static int8 graphs leave fp32 (the detector's
    most sensitive layers; AlignedForensics: its full-resolution stem and stage)."""


class Detector:
    """A detector ``ufd-export --detector NAME`` can export; subclasses register themselves."""

    name: ClassVar[str]
    summary: ClassVar[str]
    backbone: ClassVar[str]
    input_size: ClassVar[str]
    weights: ClassVar[str]
    """The files it takes, as ``--list`` prints them."""
    licence: ClassVar[str]
    default_model: ClassVar[str] = ""
    default_pretrained: ClassVar[str] = "none"
    default_head: ClassVar[str] = "none"
    options: ClassVar[tuple[DetectorOption, ...]] = ()
    """The settings this detector takes beyond --model, --pretrained and --head."""

    def settings_for(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` (option name -> value, ``None``: not given) checked, with defaults.

        Raises:
            UsageError: an option this detector does not take, or a value not among
                the option's choices.
        """
        own = {option.name: option for option in self.options}
        foreign = [name for name, value in given.items() if value is not None and name not in own]
        if foreign:
            flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
            takes = ", ".join(o.flag for o in self.options) or "none beyond --model, --pretrained"
            raise UsageError(f"{flags}: not an option of {self.name} (its own: {takes})")
        settings = {}
        for name, option in own.items():
            value = given.get(name)
            if value is not None and option.choices and value not in option.choices:
                raise UsageError(
                    f"{option.flag} must be one of {', '.join(option.choices)}, not {value!r}"
                )
            settings[name] = option.default if value is None else value
        return settings

    def build(self, request: DetectorRequest) -> BuiltDetector:
        """Load the weights ``request`` names and build the torch modules.

        Raises:
            ModelLoadError: a file is missing, unreadable or of the wrong shape; the
                message names the file and what is missing.
        """
        raise NotImplementedError


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors: ``.safetensors``, or a ``.pth``/``.pt`` read with ``weights_only``.

    Raises:
        ModelLoadError: missing, unreadable, or not a dict of tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"{what} {path} not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif _legacy_zip(path):
            state = _load_legacy_zip(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelLoadError(f"cannot read {what} {path}: {e}") from e
    if not isinstance(state, dict):
        raise ModelLoadError(f"{what} {path} holds a {type(state).__name__}, not a state dict")
    return state


def _legacy_zip(path: Path) -> bool:
    """A zip holding one torch file (``torch.hub``'s legacy format), not a torch archive."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return len(names) == 1 and not names[0].endswith("/")


def _load_legacy_zip(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as tmp:
        inner = archive.extract(archive.namelist()[0], tmp)
        return torch.load(inner, map_location="cpu", weights_only=True)


def require_keys(state: dict, keys: list[str], what: str, path: str | Path) -> None:
    """Refuse a state dict that lacks ``keys``, naming the file and the first missing ones.

    Raises:
        ModelLoadError: some key is missing.
    """
    missing = [k for k in keys if k not in state]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ModelLoadError(f"{what} {Path(path).name} lacks {shown}; is it the right file?")


def load_exactly(module: torch.nn.Module, state: dict, what: str, path: str | Path) -> None:
    """Load ``state`` into ``module`` strictly; a mismatch names the file and the keys.

    Raises:
        ModelLoadError: missing or unexpected keys, or a tensor of the wrong shape.
    """
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatch
        raise ModelLoadError(f"{what} {Path(path).name} does not fit: {e}") from e
    if result.missing_keys or result.unexpected_keys:
        raise ModelLoadError(
            f"{what} {Path(path).name}: missing {result.missing_keys[:5]}, unexpected "
            f"{result.unexpected_keys[:5]}; is it the right file?"
        )
