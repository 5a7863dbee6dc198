"""The probes a bundle carries, so that devices can measure its graphs (:mod:`ufd.runtime.parity`).

* **Images**: real photos (the sample photos, when scikit-image ships them here)
  and generated ones (the export's probes), cropped as the bundle's preprocessing
  crops them. Measured under ``qemu-x86_64 -cpu Haswell-v4`` (benchmarks/RESULTS.md),
  both kinds expose a graph whose int8 sums saturate (cosine 0.990 and 0.991 on
  the tiny model): the bundle keeps four of each.
* **Reference**: the torch fp32 model's features of those crops, at export.
* **Tolerance**: what every graph promises, from the ``int8-portable`` graph's error
  measured here (its arithmetic is the same on every CPU, so the promise does not
  depend on the CPU that exports): twice its feature distance and twice its
  |Δlogit|, with floors. A bundle that ships an int8 graph but not the portable
  one still gets its promise from the portable graph (made, measured, not
  shipped); a bundle with no int8 graph from its worst graph (fp16, fp32: the same
  on every CPU to ~1e-6). ``--tolerance-cosine``/``--tolerance-logit`` set it.
  ``provenance.device_parity_at_export.basis`` records which it was.
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
from ufd.runtime.sessions import AggregatorSession, EncoderSession, HeadSession

logger = logging.getLogger(__name__)

PROBES_FILE = "parity/probes.npz"
N_REAL, N_GENERATED = 4, 4
MIN_COSINE_MARGIN = 2e-5
MIN_LOGIT_MARGIN = 0.01


def tolerance_basis(precisions: list[str] | tuple[str, ...]) -> str:
    """Whose error sets the tolerance of a bundle shipping ``precisions``.

    ``int8-portable`` when any int8 graph is shipped (never a full-range int8: measured
    on a CPU without VNNI it would make the promise loose); else the worst of the others.
    """
    if any(p.startswith("int8") for p in precisions):
        return parity.TOLERANCE_BASIS
    return "fp16" if "fp16" in precisions else "fp32"


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
    basis: GraphParity, cosine: float | None = None, logit: float | None = None
) -> Tolerance:
    """The tolerance a bundle promises, from its basis graph's error measured at export.

    ``basis``: the graph :func:`tolerance_basis` names, measured on the probes.
    ``cosine`` / ``logit`` (the ``--tolerance-*`` options) replace the derived bounds.
    """
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


def export_logits(head_path: Path | None, aggregator_path: Path | None) -> parity.Logits | None:
    """The logits device parity compares, from the bundle's head (and aggregator) graphs."""
    head = HeadSession(head_path) if head_path is not None else None
    aggregator = AggregatorSession(aggregator_path) if aggregator_path is not None else None
    return parity.unit_logits(head, aggregator)


def measure_at_export(
    precision: str,
    graph: Path,
    logits: parity.Logits | None,
    crops: np.ndarray,
    features: np.ndarray,
    preprocess: PreprocessConfig,
) -> GraphParity:
    """A graph measured on this (the export) host against the device probes' reference."""
    level = "extended" if precision == "fp16" else "all"
    encoder = EncoderSession(graph, optimization=level)
    encoder.batch_invariant = False  # one probe per call, as devices measure
    normalise = Normalizer(preprocess.mean, preprocess.std)
    cosine, logit = parity.compare(parity.encode(encoder, normalise, crops), features, logits)
    return GraphParity(precision, "cpu", len(crops), cosine, logit, parity.DEFAULT_TOLERANCE)


def provenance_at_export(
    measured: dict[str, GraphParity], tolerance: Tolerance, basis: GraphParity, given: bool
) -> dict:
    """Provenance: each graph on the export host, judged by the bundle's tolerance.

    ``basis`` names the graph the tolerance came from (``given``: the ``--tolerance-*``
    options set it), with its figures when it is not shipped.
    """
    judged = {p: dataclasses.replace(m, tolerance=tolerance) for p, m in measured.items()}
    record = {
        "host": parity.describe_host(),
        "graphs": {p: m.to_dict() for p, m in judged.items()},
        "basis": "given" if given else basis.precision,
    }
    if basis.precision not in measured:
        record["basis_graph"] = dataclasses.replace(basis, tolerance=tolerance).to_dict()
    return record


def tolerance_notes(measured: dict[str, GraphParity], tolerance: Tolerance) -> list[str]:
    """Notes for the manifest: the graphs that break the tolerance on the export host.

    Each is also a warning: the graph is written all the same (devices with exact
    int8 sums keep it), and ``--precision auto`` passes it over where it breaks.
    """
    judged = [dataclasses.replace(m, tolerance=tolerance) for m in measured.values()]
    failing = [f"{m.precision} ({m.describe()})" for m in judged if not m.ok]
    if not failing:
        return []
    note = (
        f"on the export host ({parity.int8_class()}) these graphs break the bundle's tolerance: "
        f"{', '.join(failing)}; --precision auto passes them over where that happens"
    )
    logger.warning(note)
    return [note]
