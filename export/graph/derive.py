"""The graphs an export derives from its fp32 encoder: int8 (dynamic or static), fp16.

A detector says how its int8 graphs are best made (:attr:`BuiltDetector.static_int8_ops`:
static QDQ over its convolutions, else dynamic int8 MatMuls); ``--quantization``
overrides it. The int8-portable graph, when not shipped, is still made (the same
way) and measured: its error sets the bundle's device-parity tolerance.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ufd.export.detectors.base import BuiltDetector
from ufd.export.graph.device_probes import measure_at_export
from ufd.export.graph.onnx_export import ENCODER_INPUT, ENCODER_OUTPUT
from ufd.export.graph.precision import make_fp16, make_int8_dynamic, make_int8_static
from ufd.export.graph.probes import folder_probes
from ufd.export.graph.references import calibration_pixels
from ufd.runtime.bundle import EncoderGraph, PreprocessConfig
from ufd.runtime.parity import GraphParity, Logits

if TYPE_CHECKING:
    from ufd.export.graph.build import ExportOptions


def encoder_file(precision: str) -> str:
    """File name of the encoder graph of ``precision``."""
    return f"encoder.{precision}.onnx"


@dataclass(frozen=True)
class Int8Plan:
    """How the int8 graphs are made: the flavour, the op types, the calibration images."""

    flavour: str
    ops: tuple[str, ...]
    fp32_modules: tuple[str, ...]
    options: ExportOptions
    preprocess: PreprocessConfig

    def __init__(self, options: ExportOptions, built: BuiltDetector) -> None:
        flavour = options.quantization
        if flavour == "auto":
            flavour = "static" if built.static_int8_ops else "dynamic"
        object.__setattr__(self, "flavour", flavour)
        object.__setattr__(self, "ops", built.static_int8_ops or ("MatMul",))
        object.__setattr__(self, "fp32_modules", built.int8_fp32_modules)
        object.__setattr__(self, "options", options)
        object.__setattr__(self, "preprocess", built.preprocess)

    def calibration(self, probe_pixels: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        """The images static ranges are calibrated on (``--calibration-dir``, else the probes)."""
        if self.options.calibration_dir is None:
            return probe_pixels
        images = folder_probes(self.options.calibration_dir, self.options.n_calibration)
        return calibration_pixels(images, self.preprocess)


def derive(
    precision: str,
    fp32_path: Path,
    path: Path,
    int8: Int8Plan,
    probe_pixels: Sequence[np.ndarray],
    on_step: Callable[[str], None],
) -> EncoderGraph:
    """Make the ``precision`` graph at ``path`` (fp32 exists already) and describe it."""
    quantization, batch_invariant = None, True
    portable = precision == "int8-portable"
    kind = "7-bit weights, the same on every CPU" if portable else "full range"
    if precision in ("int8", "int8-portable") and int8.flavour == "static":
        ops = "+".join(int8.ops)
        on_step(f"quantising the encoder to {precision} (static QDQ {ops}, calibrated, {kind})")
        pixels = int8.calibration(probe_pixels)
        make_int8_static(
            fp32_path,
            path,
            pixels,
            ENCODER_INPUT,
            int8.ops,
            reduce_range=portable,
            fp32_modules=int8.fp32_modules,
        )
        quantization = "static"
    elif precision in ("int8", "int8-portable"):
        on_step(f"quantising the encoder to {precision} (dynamic, per-channel, {kind})")
        make_int8_dynamic(fp32_path, path, reduce_range=portable)
        quantization, batch_invariant = "dynamic", False  # per-tensor activation scales
    elif precision == "fp16":
        on_step("converting the encoder to fp16")
        make_fp16(fp32_path, path)
    return EncoderGraph(
        encoder_file(precision), ENCODER_INPUT, ENCODER_OUTPUT, batch_invariant, quantization
    )


def measure_unshipped_basis(
    fp32_path: Path,
    logits: Logits | None,
    probes: tuple[np.ndarray, np.ndarray],
    int8: Int8Plan,
    probe_pixels: Sequence[np.ndarray],
    on_step: Callable[[str], None],
) -> GraphParity:
    """The int8-portable graph's error on the device probes, for a bundle that does not ship it.

    Made as the bundle's int8 graphs are (``int8``); its arithmetic is the same on
    every CPU, so the promise it sets does not depend on the export host
    (:func:`~ufd.export.graph.device_probes.tolerance_basis`).
    """
    on_step("measuring an int8-portable graph (not shipped) for the bundle's tolerance")
    crops, features = probes
    with tempfile.TemporaryDirectory(prefix="ufd-basis-") as folder:
        path = Path(folder) / encoder_file("int8-portable")
        derive("int8-portable", fp32_path, path, int8, probe_pixels, lambda _: None)
        return measure_at_export("int8-portable", path, logits, crops, features, int8.preprocess)
