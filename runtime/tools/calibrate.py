"""``ufd-calibrate``'s engine: a method's threshold for a target false-positive rate.

The threshold is set on the method's :attr:`~ufd.runtime.methods.Measured.score`
(p(fake) for heads, a distance for ``realonly``) over held-out real features,
so that at most ``target_fpr`` of them score above it; it is stored in the
method's manifest entry with how it was set (for k-NN methods, with the k it
was set for, which becomes the default k).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np

from ufd.runtime.bundle import CalibrationInfo, Manifest
from ufd.runtime.bundle.update import write_manifest
from ufd.runtime.detector import Detector
from ufd.runtime.errors import UsageError
from ufd.runtime.methods import ScoreOptions, method_class
from ufd.runtime.tools.metrics import threshold_for_fpr

MIN_REALS = 20


def calibrate(
    detector: Detector, method: str, reals: np.ndarray, target_fpr: float, k: int | None = None
) -> Manifest:
    """Set ``method``'s threshold from held-out real features and write the manifest.

    Args:
        detector: the open bundle.
        method: a calibratable method the bundle has.
        reals: held-out real features (N, D), never seen by the method's bank.
        target_fpr: the false-positive rate wanted on reals, in [0, 1).
        k: neighbours for k-NN methods (stored as their default).

    Returns:
        The manifest written.

    Raises:
        UsageError: a method that cannot be calibrated, too few reals, a bad target.
        BundleError: the bundle lacks the method.
    """
    cls = method_class(method)
    if not cls.calibratable:
        raise UsageError(f"{method} decides by its own rule and has no threshold to calibrate")
    if len(reals) < MIN_REALS:
        raise UsageError(
            f"only {len(reals)} real images: use at least {MIN_REALS} (hundreds are better)"
        )
    if not 0.0 <= target_fpr < 1.0:
        raise UsageError(f"--target-fpr {target_fpr} must lie in [0, 1)")
    k = k if cls.uses_k else None
    options = ScoreOptions(k=k)
    detector.methods.check((method,), options, need_threshold=False)
    scores = detector.methods.get(method).measure(reals, options).score
    threshold, achieved = threshold_for_fpr(scores, target_fpr)
    info = CalibrationInfo(
        target_fpr=target_fpr,
        achieved_fpr=achieved,
        n_real=len(scores),
        threshold=threshold,
        created_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        k=k,
    )
    manifest = detector.bundle.manifest
    entry = dataclasses.replace(manifest.methods[method], threshold=threshold, calibration=info)
    manifest = dataclasses.replace(manifest, methods={**manifest.methods, method: entry})
    write_manifest(detector.bundle.root, manifest)
    return manifest
