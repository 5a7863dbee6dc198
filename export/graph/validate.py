"""Export-time validation: ONNX graphs against the official torch pipeline.

The reference is the official UnivFD test path, run in torch fp32:
torchvision ``CenterCrop -> ToTensor -> Normalize`` on the PIL image, the
visual encoder, the linear head. The candidate is ufd's own path: numpy
preprocessing and the ONNX graphs under onnxruntime (CPU). So the recorded
error covers preprocessing too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from ufd.runtime.bundle.manifest import ParityReport, PreprocessConfig
from ufd.runtime.errors import ExportError
from ufd.runtime.preprocess import build_preprocessor
from ufd.runtime.sessions import EncoderSession, HeadSession

logger = logging.getLogger(__name__)

FP32_MAX_LOGIT_ERROR = 1e-4
FP32_MIN_COSINE = 0.99999
_BATCH = 4


@dataclass
class Reference:
    """Torch fp32 outputs of the official pipeline on the probe images."""

    pixels: np.ndarray  # ufd's own preprocessing of the same images
    features: np.ndarray
    logits: np.ndarray | None


def official_transform(config: PreprocessConfig) -> transforms.Compose:
    """The torchvision transform of a single-crop bundle's official test pipeline.

    ``center_crop`` is UnivFD's; ``resize_center_crop`` torchvision's ``Resize`` of
    the shorter side first; ``resize`` open_clip's ``squash`` (both sides to the crop).
    """
    steps: list = []
    interpolation = transforms.InterpolationMode(config.resize_interpolation)
    if config.mode == "resize_center_crop":
        steps.append(transforms.Resize(config.resize_size, interpolation=interpolation))
    elif config.mode == "resize":
        size = (config.crop_size, config.crop_size)
        steps.append(transforms.Resize(size, interpolation=interpolation))
    steps += [
        transforms.CenterCrop(config.crop_size),
        transforms.ToTensor(),
        transforms.Normalize(mean=config.mean, std=config.std),
    ]
    return transforms.Compose(steps)


def torch_reference(
    visual: torch.nn.Module,
    linear: torch.nn.Linear | None,
    images: list[Image.Image],
    config: PreprocessConfig,
) -> Reference:
    """Run the official torch pipeline (and ufd's preprocessing) on ``images``."""
    official = official_transform(config)
    ours = build_preprocessor(config)
    features, logits = [], []
    with torch.no_grad():
        for start in range(0, len(images), _BATCH):
            chunk = images[start : start + _BATCH]
            feats = visual(torch.stack([official(img) for img in chunk]))
            features.append(feats.numpy())
            if linear is not None:
                logits.append(linear(feats).reshape(-1).numpy())
    return Reference(
        pixels=np.stack([ours(img) for img in images]),
        features=np.concatenate(features),
        logits=np.concatenate(logits) if linear is not None else None,
    )


def measure_parity(
    precision: str,
    encoder_path: Path,
    head_path: Path | None,
    reference: Reference,
    batch_invariant: bool = True,
) -> ParityReport:
    """Compare an ONNX encoder (+ head) under onnxruntime CPU with the reference."""
    level = "extended" if precision == "fp16" else "all"
    encoder = EncoderSession(encoder_path, optimization=level)
    encoder.batch_invariant = batch_invariant  # run it as the runtime will
    feats = np.concatenate(
        [encoder(reference.pixels[i : i + _BATCH]) for i in range(0, len(reference.pixels), _BATCH)]
    )
    ref = reference.features
    a, b = feats.astype(np.float64), ref.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    # no additive epsilon: features of a random-init tower can be ~1e-4 long (PE-Core)
    cosine = np.sum(a * b, axis=1) / np.maximum(norms, np.finfo(np.float64).tiny)
    logit_figures: dict[str, float | None] = dict.fromkeys(("max", "p50", "p99", "agreement"), None)
    if head_path is not None and reference.logits is not None:
        logits = HeadSession(head_path)(feats)
        err = np.abs(logits.astype(np.float64) - reference.logits.astype(np.float64))
        logit_figures = {
            "max": float(err.max()),
            "p50": float(np.percentile(err, 50)),
            "p99": float(np.percentile(err, 99)),
            "agreement": float(np.mean((logits > 0) == (reference.logits > 0))),
        }
    report = ParityReport(
        precision=precision,
        n_probes=len(ref),
        max_abs_logit_error=logit_figures["max"],
        p50_abs_logit_error=logit_figures["p50"],
        p99_abs_logit_error=logit_figures["p99"],
        decision_agreement=logit_figures["agreement"],
        min_feature_cosine=float(cosine.min()),
        max_abs_feature_error=float(np.abs(feats - ref).max()),
    )
    logger.info("parity %s: %s", precision, _summary(report))
    return report


def enforce(report: ParityReport, max_logit_error: float | None = None) -> None:
    """Refuse a graph whose parity misses its bar.

    fp32 must match the official pipeline within 1e-4 in logit (cosine
    >= 0.99999 without a head). Other precisions are refused only when
    ``max_logit_error`` is given and exceeded.

    Raises:
        ExportError: the graph misses its bar; nothing is written.
    """
    logit_err = report.max_abs_logit_error
    if report.precision == "fp32":
        if logit_err is not None and logit_err > FP32_MAX_LOGIT_ERROR:
            raise ExportError(
                f"fp32 ONNX logits differ from torch by {logit_err:.2e} "
                f"(limit {FP32_MAX_LOGIT_ERROR:.0e}); the export is not faithful, "
                "nothing was written. Try another --opset, and report it"
            )
        if report.min_feature_cosine < FP32_MIN_COSINE:
            raise ExportError(
                f"fp32 ONNX features have cosine {report.min_feature_cosine:.6f} to torch "
                f"(limit {FP32_MIN_COSINE}); nothing was written"
            )
        return
    if max_logit_error is not None and logit_err is not None and logit_err > max_logit_error:
        raise ExportError(
            f"{report.precision} graph has max |Δlogit| {logit_err:.4f} > "
            f"--max-logit-error {max_logit_error}; nothing was written. Drop "
            f"{report.precision} from --precision or raise the limit"
        )


def _summary(report: ParityReport) -> str:
    parts = [f"cos_min={report.min_feature_cosine:.6f}"]
    if report.max_abs_logit_error is not None:
        parts.append(f"max|Δlogit|={report.max_abs_logit_error:.2e}")
        parts.append(f"agreement={report.decision_agreement:.3f}")
    return " ".join(parts)
