"""The bundle manifest: the one contract between ``ufd.export`` and ``ufd.runtime``.

A bundle is a directory holding ONNX graphs and ``manifest.json``. The manifest
is a versioned tree of dataclasses; :func:`Manifest.from_dict` checks a JSON
document against them field by field (unknown or missing keys are errors), in
the way open_clip checks model configs against its dataclasses.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ufd.runtime.errors import BundleError

SCHEMA_VERSION = 2
"""1: encoder, head, parity. 2: adds ``index`` (nearest-neighbour bank)."""
MANIFEST_NAME = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")

# CLIP's normalisation statistics (OpenAI), used by UnivFD's test pipeline.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class PreprocessConfig:
    """How an RGB image becomes the encoder's input tensor.

    ``center_crop`` is the official UnivFD test pipeline: no resize, a centre
    crop of ``crop_size`` that zero-pads images smaller than the crop.
    ``resize_center_crop`` first resizes the shorter side to ``resize_size``.
    """

    mode: str = "center_crop"
    crop_size: int = 224
    resize_size: int = 256
    resize_interpolation: str = "bilinear"
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    exif_transpose: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("center_crop", "resize_center_crop"):
            raise BundleError(
                f"unknown preprocessing mode {self.mode!r}; "
                "expected 'center_crop' or 'resize_center_crop'"
            )
        if self.resize_interpolation not in ("bilinear", "bicubic", "nearest"):
            raise BundleError(f"unknown resize interpolation {self.resize_interpolation!r}")
        if self.crop_size <= 0 or self.resize_size <= 0:
            raise BundleError("crop_size and resize_size must be positive")


@dataclass(frozen=True)
class ModelInfo:
    """Which CLIP visual encoder the bundle holds."""

    name: str
    pretrained: str
    feature_dim: int
    image_size: int
    quick_gelu: bool
    checkpoint_sha256: str | None = None


@dataclass(frozen=True)
class HeadInfo:
    """Where the linear head came from (``univfd``, a file, or ``none``)."""

    kind: str
    source: str
    sha256: str | None = None


@dataclass(frozen=True)
class GraphEntry:
    """One ONNX graph of the bundle."""

    role: str  # "encoder" or "head"
    precision: str
    path: str
    input_name: str
    output_name: str
    batch_invariant: bool = True
    """False when an image's output depends on the rest of its batch (dynamic int8
    quantises activations per tensor): the runtime then runs one image per call."""
    quantization: str | None = None
    """``dynamic`` or ``static`` for int8 graphs."""
    optimization: str | None = None
    """``extended`` when onnxruntime's optimised graph was saved (``--optimize``)."""
    attention: str | None = None
    """Encoders: ``fused`` (one ``com.microsoft.MultiHeadAttention`` op per block)
    or ``plain`` (standard ONNX ops); ``None`` in bundles made before ufd 0.2."""


@dataclass(frozen=True)
class FileEntry:
    """Integrity record of one bundle file."""

    sha256: str
    size: int


@dataclass(frozen=True)
class ParityReport:
    """How one precision's ONNX pipeline compares with the torch fp32 reference.

    Logit figures are ``None`` when the bundle has no head.
    """

    precision: str
    n_probes: int
    max_abs_logit_error: float | None
    p50_abs_logit_error: float | None
    p99_abs_logit_error: float | None
    decision_agreement: float | None
    min_feature_cosine: float
    max_abs_feature_error: float


@dataclass(frozen=True)
class IndexQuality:
    """HNSW vs exact search, measured at build time (leave-one-out on a bank sample)."""

    n_queries: int
    k: int
    recall_at_1: float
    recall_at_k: float
    vote_agreement_k1: float
    vote_agreement_k: float


@dataclass(frozen=True)
class IndexInfo:
    """The nearest-neighbour bank: an hnswlib index and one label per vector.

    hnswlib saves neither its space, its dimension nor its query ``ef``; they
    live here and are applied at every load.
    """

    file: str
    labels_file: str
    dim: int
    counts: dict[str, int]
    m: int
    ef_construction: int
    ef: int
    seed: int
    exact_below: int
    encoder_precision: str
    build_seconds: float
    space: str = "cosine"
    quality: IndexQuality | None = None


@dataclass(frozen=True)
class CalibrationInfo:
    """How the decision threshold was set (``ufd-calibrate``)."""

    method: str
    target_fpr: float
    achieved_fpr: float
    n_real: int
    threshold: float
    created_utc: str
    k: int | None = None


@dataclass(frozen=True)
class TrainingSummary:
    """How a head was trained (``ufd-train``)."""

    method: str
    n_train_real: int
    n_train_fake: int
    n_val: int
    epochs_run: int
    best_epoch: int
    best_val_acc: float
    final_lr: float
    augment: bool
    views: int
    seed: int
    max_abs_logit_error_onnx: float


@dataclass(frozen=True)
class TracesInfo:
    """The natural-trace head (``ufd-train --method traces``); see ufd.export.traces."""

    file: str
    n_traces: int
    tau: float
    n_train_real: int
    n_train_fake: int
    n_val: int
    val_acc: float
    epochs: int
    seed: int
    max_abs_logit_error_onnx: float


@dataclass(frozen=True)
class FusionInfo:
    """``--method fused``: p(fake) = sigmoid(sum_m w_m (s_m - mean_m) / std_m + bias)."""

    methods: list[str]
    means: list[float]
    stds: list[float]
    weights: list[float]
    bias: float
    n_val: int
    val_acc: float


@dataclass(frozen=True)
class Manifest:
    """Everything a device needs to know to run a bundle."""

    ufd_version: str
    created_utc: str
    model: ModelInfo
    preprocess: PreprocessConfig
    head: HeadInfo
    graphs: dict[str, GraphEntry]
    parity: dict[str, ParityReport]
    files: dict[str, FileEntry]
    opset: int
    threshold: float = 0.5
    schema_version: int = SCHEMA_VERSION
    notes: list[str] = field(default_factory=list)
    index: IndexInfo | None = None
    realonly: IndexInfo | None = None
    traces: TracesInfo | None = None
    fusion: FusionInfo | None = None
    method_thresholds: dict[str, float] = field(default_factory=dict)
    calibrations: dict[str, CalibrationInfo] = field(default_factory=dict)
    training: TrainingSummary | None = None

    @property
    def precisions(self) -> list[str]:
        """Encoder precisions present in the bundle, in canonical order."""
        have = {g.precision for g in self.graphs.values() if g.role == "encoder"}
        return [p for p in PRECISIONS if p in have]

    def encoder(self, precision: str) -> GraphEntry:
        """The encoder graph of ``precision``, or a :class:`BundleError`."""
        for graph in self.graphs.values():
            if graph.role == "encoder" and graph.precision == precision:
                return graph
        raise BundleError(
            f"this bundle has no {precision} encoder; it has {', '.join(self.precisions)}. "
            f"Pick one with --precision, or re-export with --precision {precision}"
        )

    def head_graph(self) -> GraphEntry | None:
        """The linear head graph, or ``None`` for a features-only bundle."""
        heads = [g for g in self.graphs.values() if g.role == "head"]
        return heads[0] if heads else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The manifest as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Check ``data`` against the dataclasses and build a manifest.

        Raises:
            BundleError: the schema is newer than this ufd, or a field is
                missing, unknown or of the wrong type.
        """
        if not isinstance(data, dict):
            raise BundleError("manifest.json must hold a JSON object")
        version = data.get("schema_version")
        if not isinstance(version, int):
            raise BundleError("manifest.json has no integer schema_version; is this a ufd bundle?")
        if version > SCHEMA_VERSION:
            raise BundleError(
                f"bundle manifest has schema {version}, but this ufd reads up to "
                f"{SCHEMA_VERSION}; upgrade ufd (pip install -U ufd) or re-export the bundle"
            )
        return _build(cls, data, "manifest")

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """Read and check ``manifest.json`` at ``path``."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise BundleError(
                f"{path} not found: not a ufd bundle (make one with ufd-export)"
            ) from e
        except OSError as e:
            raise BundleError(f"cannot read {path}: {e.strerror}") from e
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise BundleError(f"{path} is not valid JSON ({e}); re-export the bundle") from e
        return cls.from_dict(data)


def _build(tp: Any, value: Any, where: str) -> Any:
    """Convert JSON ``value`` to type ``tp``, raising :class:`BundleError` at ``where``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise BundleError(f"{where} must be an object")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = set(value) - names
        if unknown:
            raise BundleError(f"{where} has unknown field(s) {sorted(unknown)}")
        required = {
            f.name
            for f in dataclasses.fields(tp)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = required - set(value)
        if missing:
            raise BundleError(f"{where} lacks field(s) {sorted(missing)}")
        kwargs = {k: _build(hints[k], v, f"{where}.{k}") for k, v in value.items()}
        return tp(**kwargs)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise BundleError(f"{where} must be an object")
        _, val_tp = typing.get_args(tp)
        return {str(k): _build(val_tp, v, f"{where}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise BundleError(f"{where} must be a list")
        args = typing.get_args(tp)
        items = [_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
        if origin is tuple:
            if args[-1] is not Ellipsis and len(items) != len(args):
                raise BundleError(f"{where} must have {len(args)} items")
            return tuple(items)
        return items
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BundleError(f"{where} must be a number")
        return float(value)
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise BundleError(f"{where} must be of type {tp.__name__}")
        return value
    raise BundleError(f"{where}: unsupported manifest type {tp!r}")  # pragma: no cover
