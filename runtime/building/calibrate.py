"""``ufd-calibrate``'s engine: a method's threshold for a target false-positive rate.

The threshold is set on the method's :attr:`~ufd.runtime.methods.Measured.score`
(p(fake) for heads, a distance for ``realonly``) over held-out real features,
so that at most ``target_fpr`` of them score above it; it is stored in the
method's manifest entry with how it was set (for k-NN methods, with the k it
was set for, which becomes the default k).

**Unsure band.** Given held-out fakes and a target miss rate too, a second,
lower edge ``real_below`` is set on the fakes' scores so that at most
``target_fnr`` of them score at or below it: records are then ``real`` at or
below it, ``fake`` above the threshold and ``unsure`` between.

**Open set** (``nn``): :func:`calibrate_open_set` sets the distance beyond which
a fake vote names an ``unknown`` source, from held-out fakes of known sources.
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
from ufd.runtime.metrics import real_below_for_fnr, threshold_for_fpr

MIN_REALS = 20


def calibrate(
    detector: Detector,
    method: str,
    reals: np.ndarray,
    target_fpr: float,
    k: int | None = None,
    fakes: np.ndarray | None = None,
    target_fnr: float | None = None,
) -> Manifest:
    """Set ``method``'s threshold (and unsure band) from held-out features; write the manifest.

    Args:
        detector: the open bundle.
        method: a calibratable method the bundle has.
        reals: held-out real features (N, D), never seen by the method's bank.
        target_fpr: the false-positive rate wanted on reals, in [0, 1).
        k: neighbours for k-NN methods (stored as their default).
        fakes: held-out fake features, for the unsure band.
        target_fnr: the miss rate allowed on ``fakes`` below the band; ``None``: no band
            (a band set before is removed).

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
    band = None
    if target_fnr is not None:
        if fakes is None or len(fakes) < MIN_REALS:
            got = 0 if fakes is None else len(fakes)
            raise UsageError(
                f"--target-fnr needs held-out fakes (--fake DIR or --fake-features F.npy): "
                f"got {got}, use at least {MIN_REALS} (hundreds are better)"
            )
        if not 0.0 <= target_fnr < 1.0:
            raise UsageError(f"--target-fnr {target_fnr} must lie in [0, 1)")
        band = (fakes, target_fnr)
    k = k if cls.uses_k else None
    options = ScoreOptions(k=k)
    detector.methods.check((method,), options, need_threshold=False)
    measure = detector.methods.get(method).measure
    scores = measure(reals, options).score
    threshold, achieved = threshold_for_fpr(scores, target_fpr)
    real_below = achieved_fnr = None
    if band is not None:
        band_fakes, band_fnr = band
        real_below, achieved_fnr = real_below_for_fnr(measure(band_fakes, options).score, band_fnr)
        real_below = min(real_below, threshold)  # fakes this separable leave no band
    info = CalibrationInfo(
        target_fpr=target_fpr,
        achieved_fpr=achieved,
        n_real=len(scores),
        threshold=threshold,
        created_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        k=k,
        target_fnr=target_fnr,
        achieved_fnr=achieved_fnr,
        n_fake=len(band[0]) if band is not None else None,
        real_below=real_below,
    )
    manifest = detector.bundle.manifest
    entry = dataclasses.replace(
        manifest.methods[method], threshold=threshold, calibration=info, real_below=real_below
    )
    manifest = dataclasses.replace(manifest, methods={**manifest.methods, method: entry})
    write_manifest(detector.bundle.root, manifest)
    return manifest


def calibrate_open_set(detector: Detector, fakes: np.ndarray, unknown_rate: float) -> Manifest:
    """Set the ``nn`` bank's open-set distance from held-out fakes of its sources.

    The distance is the one at most ``unknown_rate`` of these fakes' nearest bank
    fakes lie beyond: a fake vote farther than it from every fake names ``unknown``.

    Raises:
        UsageError: too few fakes or a bad rate.
        BundleError: the bundle has no nn bank.
    """
    if len(fakes) < MIN_REALS:
        raise UsageError(f"only {len(fakes)} held-out fakes: use at least {MIN_REALS}")
    if not 0.0 <= unknown_rate < 1.0:
        raise UsageError(f"--unknown-rate {unknown_rate} must lie in [0, 1)")
    detector.methods.check(("nn",), ScoreOptions(k=1), need_threshold=False)
    vote = detector.methods.bank_method("nn").bank.vote(fakes, 1)
    nearest_fake = np.where(np.isnan(vote.dist_fake), np.inf, vote.dist_fake)
    beyond, achieved = threshold_for_fpr(nearest_fake, unknown_rate)
    if not np.isfinite(beyond):
        raise UsageError("the held-out fakes have no fake among their nearest neighbours")
    manifest = detector.bundle.manifest
    entry = manifest.methods["nn"]
    config = dataclasses.replace(entry.config, unknown_beyond=beyond)
    entry = dataclasses.replace(entry, config=config)
    provenance = {
        **manifest.method_provenance("nn"),
        "open_set": {
            "unknown_rate": unknown_rate,
            "achieved_unknown_rate": achieved,
            "n_fake": len(fakes),
            "unknown_beyond": beyond,
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }
    manifest = manifest.with_method("nn", entry, provenance)
    write_manifest(detector.bundle.root, manifest)
    return manifest
