"""The bundle manifest: the one contract between the build side and devices.

``manifest.json`` has two parts:

* the **runtime contract**, checked strictly (:mod:`ufd.runtime.bundle.schema`):
  the model, the preprocessing, the encoder graphs, each scoring method's files,
  threshold, calibration and configuration, and every file's hash. Unknown or
  missing fields and out-of-range enum values are errors;
* **provenance** (``provenance``), read leniently: how the bundle was made and
  measured (parity against torch, index quality, build times, training
  summaries, notes). It never changes a score, so it never stops a bundle
  from loading.

Versions: 1 (encoder, head, parity), 2 (+ banks, heads, thresholds, fusion),
3 (one ``methods`` section, ``encoders`` by precision, lenient
``provenance``), 4 (k-NN banks name their ``backend`` and ``storage``), 5
(``realonly`` may score with a density model), 6 (attribution sources, open
set, unsure band), 7 (device parity probes and tolerance, the ``int8-portable``
encoder), 8 (``model.detector``), 9 (how an image becomes the encoder's inputs:
``preprocess.mode`` ``resize``, ``whole``, ``five_crops`` or ``tiles``, with
their settings, and the ``aggregator`` graph of tiled detectors). Schema 1 and
2 manifests are migrated in memory (:mod:`ufd.runtime.bundle.legacy`), 3 to 8
read as they are (new fields take their defaults), and all score exactly as
before; a newer one is refused with
"upgrade ufd". Each method's ``config`` is checked against the dataclass the
caller gives for it (:data:`MethodConfigs`: the method registry's
``config_types()``); this module never imports the methods.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ufd.runtime.bundle.schema import build, describe, lenient
from ufd.runtime.errors import BundleError

SCHEMA_VERSION = 9
SCHEMA_FINGERPRINTS = {
    3: "fbef47549236",
    4: "e4d5c6f8ac5b",
    5: "536231575ba5",
    6: "98cd2d828aa8",
    7: "400ace4e3f6e",
    8: "c457ac99190a",
    9: "3ca821c76e2e",
}
"""Digest of :func:`schema_text` per version: a test fails when the dataclasses change
without a new version. Append a line for a new version; never edit an old one."""
MANIFEST_NAME = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8", "int8-portable")
Precision = Literal["fp32", "fp16", "int8", "int8-portable"]
"""``int8``: 8-bit MatMul weights, full range (fast and exact where the CPU accumulates
u8 x s8 products in 32 bits: AVX-512 VNNI, AMX, Arm dot-product); ``int8-portable``:
7-bit weights (``reduce_range``), whose products never saturate the 16-bit sums of
AVX2-only x86, so it gives the same answer on every CPU (schema 7)."""
MethodConfigs = Mapping[str, type | None]
"""Method name -> the dataclass its ``config`` must match (``None``: it takes none)."""

# CLIP's normalisation statistics (OpenAI), used by UnivFD's test pipeline.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


PreprocessMode = Literal[
    "center_crop", "resize_center_crop", "resize", "whole", "five_crops", "tiles"
]
SINGLE_CROP_MODES = ("center_crop", "resize_center_crop", "resize")
"""Modes that give the encoder one fixed-size input per image (schema 8 and before: all)."""


@dataclass(frozen=True)
class PreprocessConfig:
    """How an RGB image becomes the encoder's inputs (its "units").

    One unit per image, ``crop_size`` square:

    * ``center_crop``: the official UnivFD test pipeline: no resize, a centre crop
      that zero-pads images smaller than the crop;
    * ``resize_center_crop``: first resize the shorter side to ``resize_size``;
    * ``resize``: resize to ``crop_size`` x ``crop_size``, aspect not kept (schema 9).

    Several units per image (schema 9):

    * ``whole``: the whole image as it is, any size (a dynamic-size encoder); one
      larger than ``max_input_pixels`` is centre-cropped to it (its record says so);
    * ``five_crops``: ``crop_size`` crops at the centre and the four corners, on a
      ``grid``-pixel grid, of the image tiled around itself when it is smaller (B-Free);
      the image's feature is the mean of the five;
    * ``tiles``: ``crop_size`` tiles every ``tile_stride`` pixels (torchvision's five
      crops when there are fewer than ``min_tiles``); the bundle's ``aggregator``
      graph turns the tiles' features into the image's (SPAI).
    """

    mode: PreprocessMode = "center_crop"
    crop_size: int = 224
    resize_size: int = 256
    resize_interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    exif_transpose: bool = False
    grid: int = 1
    """``five_crops``: crop offsets are multiples of this (the encoder's patch size)."""
    tile_stride: int | None = None
    """``tiles``: pixels between tiles (``None``: ``crop_size``, no overlap)."""
    min_tiles: int = 0
    """``tiles``: fewer tiles than this and the image gives five crops instead."""
    max_input_pixels: int | None = None
    """``whole``: the largest encoder input, in pixels (``None``: no cap beyond decoding's)."""

    def __post_init__(self) -> None:
        if self.mode not in typing.get_args(PreprocessMode):
            raise BundleError(
                f"unknown preprocessing mode {self.mode!r}; expected one of "
                f"{', '.join(typing.get_args(PreprocessMode))} (a newer ufd may know it)"
            )
        if self.crop_size <= 0 or self.resize_size <= 0 or self.grid <= 0:
            raise BundleError("crop_size, resize_size and grid must be positive")
        if self.tile_stride is not None and self.tile_stride <= 0:
            raise BundleError("tile_stride must be positive")

    @property
    def units_per_image(self) -> bool:
        """Whether an image becomes several encoder inputs (or one of its own size)."""
        return self.mode not in SINGLE_CROP_MODES


@dataclass(frozen=True)
class ModelInfo:
    """Which detector and backbone the bundle holds."""

    name: str
    pretrained: str
    feature_dim: int
    image_size: int
    quick_gelu: bool
    checkpoint_sha256: str | None = None
    detector: str = "univfd"
    """The ``ufd-export --detector`` that built it (schema 8; older bundles: univfd)."""


@dataclass(frozen=True)
class EncoderGraph:
    """One encoder graph: (N, 3, H, W) float32 pixels -> (N, D) float32 features."""

    file: str
    input_name: str
    output_name: str
    batch_invariant: bool = True
    """False when an image's output depends on the rest of its batch (dynamic int8
    quantises activations per tensor): the runtime then runs one image per call."""
    quantization: Literal["dynamic", "static"] | None = None
    optimization: Literal["extended"] | None = None
    """``extended`` when onnxruntime's optimised graph was saved (``--optimize``)."""
    attention: Literal["fused", "plain"] | None = None
    """``fused`` (one ``com.microsoft.MultiHeadAttention`` op per block) or ``plain``
    (standard ONNX ops); ``None`` in bundles made before attention fusion."""


@dataclass(frozen=True)
class AggregatorGraph:
    """``tiles`` bundles: (1, L, input_dim) tile features -> (1, D) the image's feature."""

    file: str
    input_name: str
    output_name: str
    input_dim: int
    """The width of a tile's feature (the encoder's output)."""


@dataclass(frozen=True)
class Tolerance:
    """What every encoder graph of a bundle promises against its fp32 reference, on the probes.

    ``max_abs_logit`` is ``None`` in bundles without a linear head (cosine only).
    """

    min_feature_cosine: float
    max_abs_logit: float | None = None


@dataclass(frozen=True)
class ParityProbes:
    """Probe images with their fp32 reference features, to measure graphs where they run.

    ``file`` (an ``.npz``) holds ``crops``, (N, S, S, 3) uint8 pixels as the bundle's
    preprocessing crops them, and ``features``, (N, D) float32 from the torch fp32
    model at export. A device normalises the crops, runs a graph and compares
    (:mod:`ufd.runtime.parity`); logits go through the bundle's current linear head.
    """

    file: str
    n_probes: int
    tolerance: Tolerance


@dataclass(frozen=True)
class FileEntry:
    """Integrity record of one bundle file."""

    sha256: str
    size: int


@dataclass(frozen=True)
class CalibrationInfo:
    """How a method's threshold was set (``ufd-calibrate``)."""

    target_fpr: float
    achieved_fpr: float
    n_real: int
    threshold: float
    created_utc: str
    k: int | None = None
    """Neighbours the threshold was calibrated with (k-NN methods): their default k."""
    target_fnr: float | None = None
    """The unsure band (schema 6): the miss rate allowed on held-out fakes below
    ``real_below``; ``None``: no band."""
    achieved_fnr: float | None = None
    n_fake: int | None = None
    real_below: float | None = None


@dataclass(frozen=True)
class MethodEntry:
    """One scoring method the bundle offers.

    Attributes:
        files: the method's bundle files by role (``graph``, ``index``, ``labels``).
        threshold: its decision threshold; ``None``: the method's default.
        calibration: how the threshold was calibrated, if it was.
        config: the method's own settings, of the type its module registers.
        real_below: the unsure band's lower edge (schema 6): ``real`` at or below it,
            ``unsure`` between it and ``threshold``, ``fake`` above; ``None``: no band.
    """

    files: dict[str, str] = field(default_factory=dict)
    threshold: float | None = None
    calibration: CalibrationInfo | None = None
    config: Any = None
    real_below: float | None = None


@dataclass(frozen=True)
class ParityReport:
    """Provenance: one precision's ONNX pipeline against the torch fp32 reference.

    Logit figures are ``None`` when the bundle had no head at export.
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
class Manifest:
    """Everything a device needs to know to run a bundle."""

    ufd_version: str
    created_utc: str
    model: ModelInfo
    preprocess: PreprocessConfig
    encoders: dict[Precision, EncoderGraph]
    files: dict[str, FileEntry]
    opset: int
    methods: dict[str, MethodEntry] = field(default_factory=dict)
    probes: ParityProbes | None = None
    """Device parity probes (schema 7); ``None`` in bundles made before."""
    aggregator: AggregatorGraph | None = None
    """The graph that turns tile features into the image's (schema 9, ``tiles`` only)."""
    provenance: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def precisions(self) -> list[str]:
        """Encoder precisions present in the bundle, in canonical order."""
        return [p for p in PRECISIONS if p in self.encoders]

    def encoder(self, precision: str) -> EncoderGraph:
        """The encoder graph of ``precision``, or a :class:`BundleError`."""
        if precision not in self.encoders:
            raise BundleError(
                f"this bundle has no {precision} encoder; it has {', '.join(self.precisions)}. "
                f"Pick one with --precision, or re-export with --precision {precision}"
            )
        return self.encoders[precision]

    def method(self, name: str) -> MethodEntry | None:
        """The entry of method ``name``, or ``None`` when the bundle lacks it."""
        return self.methods.get(name)

    @property
    def parity(self) -> dict[str, ParityReport]:
        """Provenance: export-time parity per precision (read leniently)."""
        found = self.provenance.get("parity")
        if not isinstance(found, dict):
            return {}
        return {str(p): lenient(ParityReport, report) for p, report in found.items()}

    @property
    def notes(self) -> list[str]:
        """Provenance: notes for people (random weights, synthetic probes...)."""
        notes = self.provenance.get("notes")
        return [str(n) for n in notes] if isinstance(notes, list) else []

    def method_provenance(self, name: str) -> dict[str, Any]:
        """Provenance of one method (training summary, index quality, build time)."""
        methods = self.provenance.get("methods")
        found = methods.get(name) if isinstance(methods, dict) else None
        return found if isinstance(found, dict) else {}

    def with_method(
        self, name: str, entry: MethodEntry | None, provenance: dict[str, Any] | None = None
    ) -> Manifest:
        """A copy with method ``name`` set (or removed when ``entry`` is ``None``).

        ``provenance`` replaces the method's provenance when given.
        """
        methods = {k: v for k, v in self.methods.items() if k != name}
        if entry is not None:
            methods[name] = entry
        record = json.loads(json.dumps(self.provenance))
        if provenance is not None or entry is None:
            per_method = record.setdefault("methods", {})
            per_method.pop(name, None)
            if provenance is not None:
                per_method[name] = provenance
        return dataclasses.replace(self, methods=methods, provenance=record)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists), stamped with the current schema."""
        data = dataclasses.asdict(self)
        data["schema_version"] = SCHEMA_VERSION
        return data

    def to_json(self) -> str:
        """The manifest as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, method_configs: MethodConfigs) -> Manifest:
        """Check ``data`` (any schema up to the current one) and build a manifest.

        Args:
            data: the parsed ``manifest.json``.
            method_configs: the methods this ufd knows, each with its config type.

        Raises:
            BundleError: the schema is newer than this ufd, or a field is
                missing, unknown or of the wrong type.
        """
        if not isinstance(data, dict):
            raise BundleError("manifest.json must hold a JSON object")
        version = data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise BundleError("manifest.json has no integer schema_version; is this a ufd bundle?")
        if version > SCHEMA_VERSION:
            raise BundleError(
                f"bundle manifest has schema {version}, but this ufd reads up to "
                f"{SCHEMA_VERSION}; upgrade ufd (pip install -U ufd) or re-export the bundle"
            )
        if version < 3:
            from ufd.runtime.bundle.legacy import migrate

            data = migrate(data)
        raw_methods = data.get("methods", {})
        rest = {k: v for k, v in data.items() if k != "methods"}
        manifest: Manifest = build(cls, rest, "manifest")
        methods = _build_methods(raw_methods, method_configs)
        return dataclasses.replace(manifest, methods=methods, schema_version=SCHEMA_VERSION)

    @classmethod
    def read(cls, path: Path, method_configs: MethodConfigs) -> Manifest:
        """Read and check ``manifest.json`` at ``path`` (see :meth:`from_dict`)."""
        return cls.from_dict(read_json(path), method_configs)


def read_json(path: Path) -> Any:
    """The JSON document of a manifest file, with fix-it errors."""
    return parse_json(read_bytes(path), path)


def read_bytes(path: Path) -> bytes:
    """A manifest file's bytes, with fix-it errors."""
    try:
        return path.read_bytes()
    except FileNotFoundError as e:
        raise BundleError(f"{path} not found: not a ufd bundle (make one with ufd-export)") from e
    except OSError as e:
        raise BundleError(f"cannot read {path}: {e.strerror}") from e


def parse_json(data: bytes, path: Path) -> Any:
    """The JSON document in a manifest's bytes, with fix-it errors."""
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BundleError(f"{path} is not UTF-8 text; re-export the bundle") from e
    except json.JSONDecodeError as e:
        raise BundleError(f"{path} is not valid JSON ({e}); re-export the bundle") from e
    except RecursionError as e:
        raise BundleError(f"{path} nests too deeply to be a manifest; re-export the bundle") from e


def _build_methods(raw: Any, configs: MethodConfigs) -> dict[str, MethodEntry]:
    if not isinstance(raw, dict):
        raise BundleError("manifest.methods must be an object")
    methods = {}
    for name, value in raw.items():
        if name not in configs:
            raise BundleError(
                f"the bundle offers method {name!r}, which this ufd does not know "
                f"(it knows {', '.join(configs)}); upgrade ufd (pip install -U ufd)"
            )
        where = f"manifest.methods.{name}"
        entry = build(MethodEntry, value, where)
        config_type = configs[name]
        if config_type is None:
            if entry.config is not None:
                raise BundleError(f"{where}.config must be null: {name} takes no settings")
        else:
            config = build(config_type, entry.config, f"{where}.config")
            entry = dataclasses.replace(entry, config=config)
        methods[name] = entry
    return methods


def schema_text(method_configs: MethodConfigs) -> str:
    """The canonical text of the runtime contract: the manifest and every method config."""
    parts = [describe(Manifest), describe(MethodEntry)]
    parts += [
        f"{name}:{describe(tp) if tp else None}" for name, tp in sorted(method_configs.items())
    ]
    return "\n".join(parts)


def schema_fingerprint(method_configs: MethodConfigs) -> str:
    """A short digest of :func:`schema_text`."""
    import hashlib

    return hashlib.sha256(schema_text(method_configs).encode()).hexdigest()[:12]
