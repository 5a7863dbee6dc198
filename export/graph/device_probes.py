"""The probes a bundle carries, so that devices can measure its graphs (:mod:`ufd.runtime.parity`).

* **Images**: real photos (the sample photos, when scikit-image ships them here)
  and generated ones (the export's probes), cropped as the bundle's preprocessing
  crops them. Measured under ``qemu-x86_64 -cpu Haswell-v4`` (benchmarks/RESULTS.md),
  both kinds expose a graph whose int8 sums saturate (cosine 0.990 and 0.991 on
  the tiny model): the bundle keeps four of each.
* **Reference**: the torch fp32 model's features of those crops, at export.
* **Tolerance**: what every graph promises, from the ``int8-portable`` graph's error
  measured here (its arithmetic is the same on every CPU): twice its feature
  distance and twice its |Δlogit|, with floors; or the worst other reduced graph
  in bundles without it. ``--tolerance-cosine``/``--tolerance-logit`` set it.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from ufd.export.graph.samples import source_photos
from ufd.runtime import parity
from ufd.runtime.bundle import PreprocessConfig, Tolerance
from ufd.runtime.parity import GraphParity
from ufd.runtime.preprocess import Normalizer
from ufd.runtime.sessions import EncoderSession, HeadSession

logger = logging.getLogger(__name__)

PROBES_FILE = "parity/probes.npz"
N_REAL, N_GENERATED = 4, 4
MIN_COSINE_MARGIN = 2e-5
MIN_LOGIT_MARGIN = 0.01
BASIS_ORDER = ("int8-portable", "int8", "fp16", "fp32")
"""Whose error sets the tolerance: the first graph the bundle has (int8-portable is the
same on every CPU; a full-range int8 measured on a CPU without VNNI would set it loose)."""


def probe_images(generated: list[Image.Image]) -> list[Image.Image]:
    """Up to four real photos and four of the export's generated probes, as RGB."""
    real = [image for name, image in source_photos() if not name.startswith("synthetic")]
    return real[:N_REAL] + [image.convert("RGB") for image in generated[:N_GENERATED]]


def write_probes(path: Path, crops: np.ndarray, features: np.ndarray) -> None:
    """Save the crops (uint8) and their fp32 reference features, compressed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        np.savez_compressed(fh, crops=crops.astype(np.uint8), features=features.astype(np.float32))


def derive_tolerance(
    measured: dict[str, GraphParity], cosine: float | None = None, logit: float | None = None
) -> Tolerance:
    """The tolerance a bundle promises, from its graphs' errors measured at export.

    ``cosine`` / ``logit`` (the ``--tolerance-*`` options) replace the derived bounds.
    """
    basis = next(measured[p] for p in BASIS_ORDER if p in measured)
    distance = max(2 * (1 - basis.min_feature_cosine), MIN_COSINE_MARGIN)
    derived_logit = None
    if basis.max_abs_logit is not None:
        derived_logit = max(2 * basis.max_abs_logit, MIN_LOGIT_MARGIN)
    tolerance = Tolerance(
        min_feature_cosine=round(1 - distance, 6) if cosine is None else cosine,
        max_abs_logit=(round(derived_logit, 4) if derived_logit is not None else None)
        if logit is None
        else logit,
    )
    logger.info("tolerance from %s: %s", basis.precision, tolerance)
    return tolerance


def measure_at_export(
    precision: str,
    graph: Path,
    head_path: Path | None,
    crops: np.ndarray,
    features: np.ndarray,
    preprocess: PreprocessConfig,
) -> GraphParity:
    """A graph measured on this (the export) host against the device probes' reference."""
    level = "extended" if precision == "fp16" else "all"
    encoder = EncoderSession(graph, optimization=level)
    encoder.batch_invariant = False  # one probe per call, as devices measure
    logits = HeadSession(head_path) if head_path is not None else None
    normalise = Normalizer(preprocess.mean, preprocess.std)
    cosine, logit = parity.compare(parity.encode(encoder, normalise, crops), features, logits)
    return GraphParity(precision, "cpu", len(crops), cosine, logit, parity.DEFAULT_TOLERANCE)


def provenance_at_export(measured: dict[str, GraphParity], tolerance: Tolerance) -> dict:
    """Provenance: each graph on the export host, judged by the bundle's tolerance."""
    judged = {p: dataclasses.replace(m, tolerance=tolerance) for p, m in measured.items()}
    return {
        "host": parity.describe_host(),
        "graphs": {p: m.to_dict() for p, m in judged.items()},
    }


def tolerance_notes(measured: dict[str, GraphParity], tolerance: Tolerance) -> list[str]:
    """Notes for the manifest: the graphs that break the tolerance on the export host."""
    judged = [dataclasses.replace(m, tolerance=tolerance) for m in measured.values()]
    failing = [f"{m.precision} ({m.describe()})" for m in judged if not m.ok]
    if not failing:
        return []
    return [
        f"on the export host ({parity.int8_class()}) these graphs break the bundle's tolerance: "
        f"{', '.join(failing)}; --precision auto passes them over where that happens"
    ]
