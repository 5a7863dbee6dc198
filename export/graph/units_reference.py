"""Export-time validation of bundles whose images give several encoder inputs (schema 9).

For ``whole``, ``five_crops`` and ``tiles`` bundles the reference is the torch
detector run on ufd's own units of each probe image (the unit functions of
:mod:`ufd.runtime.units`, which the tests hold against each official wrapper):
the encoder's feature of every unit, then the image's feature as the detector
makes it (their mean, the aggregator module, or the only one) and its logit. The
candidate is the ONNX encoder on the same units under onnxruntime, aggregated as
the runtime does it (:func:`ufd.runtime.detector.aggregate_units`). Probe images
the preprocessing refuses (smaller than one grid cell) are left out, with a note.

Device-parity probes of these bundles are single units: the first of each image
(``five_crops``, ``tiles``), or a centre crop of ``crop_size`` (``whole``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ufd.export.detectors.base import BuiltDetector
from ufd.runtime.bundle.manifest import ParityReport, PreprocessConfig
from ufd.runtime.detector import aggregate_units
from ufd.runtime.errors import ImageError
from ufd.runtime.preprocess import CenterCropPreprocessor, Normalizer
from ufd.runtime.sessions import AggregatorSession, EncoderSession, HeadSession
from ufd.runtime.units import UNIT_PREPROCESSORS

logger = logging.getLogger(__name__)


@dataclass
class UnitsReference:
    """Per probe image: its normalised units, their torch features, the image's logit."""

    units: list[np.ndarray]
    features: list[np.ndarray]
    logits: np.ndarray | None

    @property
    def pixels(self) -> list[np.ndarray]:
        """What calibrates static quantisation: each image's first unit, (3, H, W).

        Of any size: ``whole`` images differ.
        """
        return [u[0] for u in self.units]


def image_units(images: list[Image.Image], config: PreprocessConfig) -> list[np.ndarray]:
    """The normalised units, (K, 3, H, W), of each image the preprocessing takes."""
    units = UNIT_PREPROCESSORS[config.mode](config)
    normalise = Normalizer(config.mean, config.std)
    found = []
    for image in images:
        try:
            found.append(normalise(units.units(image)[0]))
        except ImageError as e:
            logger.info("probe image %dx%d left out: %s", *image.size, e)
    return found


def torch_image_feature(built: BuiltDetector, features: torch.Tensor) -> torch.Tensor:
    """The image's feature from its units' features, as the torch detector makes it."""
    mode = built.preprocess.mode
    if mode == "tiles":
        if built.aggregator is None:
            raise ValueError("a tiles detector needs its aggregator module")
        return built.aggregator(features[None])[0]
    if mode == "five_crops":
        return features.mean(dim=0)
    return features[0]


def units_reference(built: BuiltDetector, images: list[Image.Image]) -> UnitsReference:
    """Run the torch detector on ufd's units of ``images`` (see the module docstring)."""
    units = image_units(images, built.preprocess)
    features, logits = [], []
    with torch.no_grad():
        for unit in units:
            feats = built.encoder(torch.from_numpy(unit))
            features.append(feats.numpy())
            if built.head is not None:
                image = torch_image_feature(built, feats)
                logits.append(float(built.head(image[None]).reshape(-1)[0]))
    return UnitsReference(
        units, features, np.asarray(logits, np.float32) if built.head is not None else None
    )


def measure_units_parity(
    precision: str,
    encoder_path: Path,
    head_path: Path | None,
    aggregator_path: Path | None,
    reference: UnitsReference,
    mode: str,
    batch_invariant: bool = True,
) -> ParityReport:
    """Compare an ONNX encoder (+ aggregation and head) with the torch reference."""
    level = "extended" if precision == "fp16" else "all"
    encoder = EncoderSession(encoder_path, optimization=level)
    encoder.batch_invariant = batch_invariant
    aggregator = AggregatorSession(aggregator_path) if aggregator_path is not None else None
    cosines, feature_errors, images = [], [], []
    for unit, ref in zip(reference.units, reference.features, strict=True):
        feats = encoder(unit)
        a, b = feats.astype(np.float64), ref.astype(np.float64)
        cosines.append((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))
        feature_errors.append(float(np.abs(a - b).max()))
        images.append(aggregate_units(mode, aggregator, feats))
    cosine = np.concatenate(cosines)
    figures: dict[str, float | None] = dict.fromkeys(("max", "p50", "p99", "agreement"), None)
    if head_path is not None and reference.logits is not None:
        logits = HeadSession(head_path)(np.stack(images))
        err = np.abs(logits.astype(np.float64) - reference.logits.astype(np.float64))
        figures = {
            "max": float(err.max()),
            "p50": float(np.percentile(err, 50)),
            "p99": float(np.percentile(err, 99)),
            "agreement": float(np.mean((logits > 0) == (reference.logits > 0))),
        }
    return ParityReport(
        precision=precision,
        n_probes=len(reference.units),
        max_abs_logit_error=figures["max"],
        p50_abs_logit_error=figures["p50"],
        p99_abs_logit_error=figures["p99"],
        decision_agreement=figures["agreement"],
        min_feature_cosine=float(cosine.min()),
        max_abs_feature_error=max(feature_errors),
    )


def device_probe_crops(images: list[Image.Image], config: PreprocessConfig) -> np.ndarray:
    """(N, S, S, 3) uint8 single units for device parity (see the module docstring)."""
    if config.mode == "whole":
        crop = CenterCropPreprocessor(config.crop_size, Normalizer(config.mean, config.std))
        return np.stack([crop.crop(image) for image in images])
    units = UNIT_PREPROCESSORS[config.mode](config)
    found = []
    for image in images:
        try:
            found.append(units.units(image)[0][0])
        except ImageError:
            continue
    return np.stack(found)
