"""Build a bundle: load, export, derive precisions, validate everything, then write.

Nothing is written unless every graph passed its checks: graphs are staged in
a hidden directory that :class:`BundleWriter` publishes in one rename.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ufd.export.detectors import DetectorRequest, get_detector
from ufd.export.detectors.base import BuiltDetector
from ufd.export.graph.derive import Int8Plan, derive, encoder_file, measure_unshipped_basis
from ufd.export.graph.device_probes import (
    PROBES_FILE,
    derive_tolerance,
    export_logits,
    measure_at_export,
    provenance_at_export,
    tolerance_basis,
    tolerance_notes,
    write_probes,
)
from ufd.export.graph.onnx_export import (
    AGGREGATOR_INPUT,
    AGGREGATOR_OUTPUT,
    DEFAULT_OPSET,
    export_aggregator,
    export_encoder,
    export_feature_head,
)
from ufd.export.graph.precision import (
    optimize_in_place,
)
from ufd.export.graph.probes import folder_probes, synthetic_probes
from ufd.export.graph.references import Validation, references
from ufd.export.graph.writer import BundleWriter, check_destination
from ufd.runtime import __version__
from ufd.runtime.bundle import (
    PRECISIONS,
    AggregatorGraph,
    Manifest,
    MethodEntry,
    ParityProbes,
)
from ufd.runtime.errors import ExportError

logger = logging.getLogger(__name__)

HEAD_FILE = "head.onnx"
QUANTIZATIONS = ("auto", "dynamic", "static")
AGGREGATOR_FILE = "aggregator.onnx"


@dataclass
class ExportOptions:
    """What ``ufd-export`` builds; defaults are the official UnivFD setting."""

    out: Path
    model: str | None = None
    """The backbone (``None``: the detector's own; needed only for ``probe``)."""
    pretrained: str | None = None
    head: str | None = None
    detector: str = "univfd"
    """A name of :mod:`ufd.export.detectors` (``ufd-export --list``)."""
    detector_settings: dict[str, Any] = field(default_factory=dict)
    """The detector's own options (its :attr:`~ufd.export.detectors.Detector.options`),
    by name; ``None`` or absent: its default."""
    precisions: tuple[str, ...] = ("fp32", "int8", "int8-portable")
    probe_dir: Path | None = None
    n_probes: int = 10
    opset: int = DEFAULT_OPSET
    max_logit_error: float | None = None
    threshold: float = 0.5
    force: bool = False
    quantization: str = "auto"
    """int8 flavour: ``dynamic``, ``static`` or ``auto`` (the detector's: static QDQ
    over its convolutions for convolutional detectors, else dynamic)."""
    optimize: bool = False
    fuse_attention: bool = True
    calibration_dir: Path | None = None
    n_calibration: int = 64
    tolerance_cosine: float | None = None
    tolerance_logit: float | None = None

    def __post_init__(self) -> None:
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            raise ExportError(
                f"unknown precision(s) {bad}; choose from {', '.join(PRECISIONS)}, "
                "comma-separated (e.g. fp32,int8)"
            )
        if self.quantization not in QUANTIZATIONS:
            raise ExportError(
                f"--quantization must be {', '.join(QUANTIZATIONS)}, not {self.quantization}"
            )
        if not 0.0 < self.threshold < 1.0:
            raise ExportError(f"threshold {self.threshold} must lie strictly between 0 and 1")


def export_bundle(
    options: ExportOptions, on_step: Callable[[str], None] = lambda _: None
) -> Manifest:
    """Build and validate the bundle ``options`` describe and write it atomically.

    Args:
        options: what to build.
        on_step: called with a short line as each step starts (for progress).

    Returns:
        The manifest written.

    Raises:
        ExportError: a graph failed validation; nothing was written.
        ModelLoadError: the model or head cannot be loaded.
    """
    started = time.perf_counter()
    check_destination(Path(options.out).absolute(), options.force)
    detector = get_detector(options.detector)
    request = DetectorRequest(
        options.model,
        options.pretrained,
        options.head,
        detector.settings_for(options.detector_settings),
    )
    on_step(f"loading {detector.name}: {options.model or detector.default_model or 'backbone'}")
    built = detector.build(request)
    preprocess, info = built.preprocess, built.info

    on_step("preparing probe images and the torch reference")
    if options.probe_dir is not None:
        probes = folder_probes(options.probe_dir, options.n_probes)
    else:
        probes = synthetic_probes(options.n_probes)
    reference, crops, device_features = references(built, probes)

    with BundleWriter(options.out, options.force) as writer:
        on_step("exporting the fp32 encoder to ONNX")
        fp32_path = writer.path(encoder_file("fp32"))
        fused = export_encoder(
            built.encoder,
            fp32_path,
            preprocess.crop_size,
            options.opset,
            options.fuse_attention,
            dynamic_size=preprocess.mode == "whole",
        )
        del built.encoder  # free the torch weights before deriving other graphs
        methods, head_path = {}, None
        if built.head is not None:
            head_path = writer.path(HEAD_FILE)
            export_feature_head(built.head, info.feature_dim, head_path, options.opset)
            methods["linear"] = MethodEntry(files={"graph": HEAD_FILE}, threshold=options.threshold)
        aggregator = _export_aggregator(built, writer.path(AGGREGATOR_FILE), options.opset)
        aggregator_path = writer.path(AGGREGATOR_FILE) if aggregator is not None else None
        logits = export_logits(head_path, aggregator_path)
        check = Validation(
            options.max_logit_error, reference, head_path, aggregator_path, preprocess, on_step
        )
        encoders, int8 = {}, Int8Plan(options, built)
        for precision in _ordered(options.precisions):
            path = writer.path(encoder_file(precision))
            entry = derive(precision, fp32_path, path, int8, reference.pixels, on_step)
            encoders[precision] = check(
                precision, path, dataclasses.replace(entry, attention="fused" if fused else "plain")
            )
        basis_name, unshipped_basis = tolerance_basis(options.precisions), None
        if basis_name not in encoders:  # from the plain fp32 graph, before --optimize
            unshipped_basis = measure_unshipped_basis(
                fp32_path, logits, (crops, device_features), int8, reference.pixels, on_step
            )
        if options.optimize:  # last: int8/fp16 derive from the plain fp32 graph
            for precision in [p for p in options.precisions if p != "fp16"]:
                on_step(f"saving onnxruntime's optimised {precision} graph, re-validating")
                path = writer.path(encoders[precision].file)
                optimize_in_place(path)
                optimized = dataclasses.replace(encoders[precision], optimization="extended")
                encoders[precision] = check(precision, path, optimized)
        on_step(f"measuring every graph on the {len(crops)} device parity probes")
        write_probes(writer.path(PROBES_FILE), crops, device_features)
        at_export = {
            p: measure_at_export(p, writer.path(g.file), logits, crops, device_features, preprocess)
            for p, g in encoders.items()
        }
        basis = at_export.get(basis_name) or unshipped_basis
        given = options.tolerance_cosine is not None and options.tolerance_logit is not None
        tolerance = derive_tolerance(basis, options.tolerance_cosine, options.tolerance_logit)
        if "fp32" not in options.precisions:  # validated as the source, not shipped
            fp32_path.unlink()
            del encoders["fp32"], at_export["fp32"]

        on_step("hashing files and writing the manifest")
        manifest = Manifest(
            ufd_version=__version__,
            created_utc=datetime.now(UTC).isoformat(timespec="seconds"),
            model=info,
            preprocess=preprocess,
            encoders=encoders,
            files=writer.file_entries(),
            opset=options.opset,
            methods=methods,
            probes=ParityProbes(PROBES_FILE, len(crops), tolerance),
            aggregator=aggregator,
            provenance={
                "head": dataclasses.asdict(built.head_info),
                "parity": {p: dataclasses.asdict(r) for p, r in check.parity.items()},
                "device_parity_at_export": provenance_at_export(at_export, tolerance, basis, given),
                "notes": _notes(options) + built.notes + tolerance_notes(at_export, tolerance),
            },
        )
        writer.commit(manifest)
    logger.info("export took %.1f s", time.perf_counter() - started)
    return manifest


def _export_aggregator(built: BuiltDetector, path: Path, opset: int) -> AggregatorGraph | None:
    """``tiles`` detectors: write the aggregator graph; its manifest entry."""
    if built.aggregator is None:
        return None
    dim = built.tile_feature_dim or built.info.feature_dim
    export_aggregator(built.aggregator, dim, path, opset)
    return AggregatorGraph(path.name, AGGREGATOR_INPUT, AGGREGATOR_OUTPUT, dim)


def _ordered(precisions: tuple[str, ...]) -> list[str]:
    """fp32 is always validated first: the others derive from it."""
    return ["fp32"] + [p for p in PRECISIONS if p in precisions and p != "fp32"]


def _notes(options: ExportOptions) -> list[str]:
    notes = []
    if (options.pretrained or "").lower() in ("none", "random"):
        notes.append("RANDOM-INIT WEIGHTS: scores are meaningless; for tests and timings only.")
    if options.probe_dir is None:
        notes.append("parity measured on synthetic probe images (use --probe-dir for real ones)")
    return notes
