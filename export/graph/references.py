"""What each graph of an export is checked against: the torch detector on the probes.

:func:`references` runs the torch detector on the probe images (one crop each, or
the units of :mod:`ufd.export.graph.units_reference`) and on the device-parity
probes; :class:`Validation` measures each exported graph against it and refuses
one over the logit tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ufd.export.detectors.base import BuiltDetector
from ufd.export.graph.device_probes import probe_images
from ufd.export.graph.units_reference import (
    UnitsReference,
    device_probe_crops,
    image_units,
    measure_units_parity,
    units_reference,
)
from ufd.export.graph.validate import Reference, enforce, measure_parity, torch_reference
from ufd.runtime.bundle import EncoderGraph, ParityReport, PreprocessConfig
from ufd.runtime.preprocess import Normalizer, build_preprocessor


def references(
    built: BuiltDetector, probes: list[Image.Image]
) -> tuple[Reference | UnitsReference, np.ndarray, np.ndarray]:
    """The torch reference on the probe images, and the device probes with their features."""
    preprocess = built.preprocess
    device_images = probe_images(probes)
    if not preprocess.units_per_image:
        reference = torch_reference(built.encoder, built.head, probes, preprocess)
        device = torch_reference(built.encoder, built.head, device_images, preprocess)
        crops = np.stack([build_preprocessor(preprocess).crop(image) for image in device_images])
        return reference, crops, device.features
    crops = device_probe_crops(device_images, preprocess)
    normalise = Normalizer(preprocess.mean, preprocess.std)
    with torch.no_grad():
        features = built.encoder(torch.from_numpy(normalise(crops))).numpy()
    return units_reference(built, probes), crops, features


def calibration_pixels(images: list[Image.Image], preprocess: PreprocessConfig) -> np.ndarray:
    """Normalised encoder inputs for static quantisation: one per image (its first unit)."""
    if not preprocess.units_per_image:
        preprocessor = build_preprocessor(preprocess)
        return np.stack([preprocessor(image) for image in images])
    firsts = [units[0] for units in image_units(images, preprocess)]
    return np.stack([u for u in firsts if u.shape == firsts[0].shape])


@dataclass
class Validation:
    """Validates each encoder graph against torch and keeps its parity report."""

    max_logit_error: float
    reference: Reference | UnitsReference
    head_path: Path | None
    aggregator_path: Path | None
    preprocess: PreprocessConfig
    on_step: Callable[[str], None]
    parity: dict[str, ParityReport] = field(default_factory=dict)

    def __call__(self, precision: str, path: Path, entry: EncoderGraph) -> EncoderGraph:
        """Measure and enforce parity; return ``entry`` unchanged."""
        reference = self.reference
        if isinstance(reference, UnitsReference):
            self.on_step(f"validating {precision} against torch on {len(reference.units)} probes")
            report = measure_units_parity(
                precision,
                path,
                self.head_path,
                self.aggregator_path,
                reference,
                self.preprocess.mode,
                entry.batch_invariant,
            )
        else:
            self.on_step(f"validating {precision} against torch on {len(reference.pixels)} probes")
            report = measure_parity(
                precision, path, self.head_path, reference, entry.batch_invariant
            )
        enforce(report, self.max_logit_error)
        self.parity[precision] = report
        return entry
