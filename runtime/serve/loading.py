"""Open a bundle for serving: load every method, warm the graphs, start the engine.

Shared by ``ufd-serve``'s own API (:mod:`ufd.runtime.serve.app`) and its Open
Inference Protocol server (:mod:`ufd.runtime.oip`), so that both answer with the
same detector, batching and records.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ufd.runtime.detector import Detector
from ufd.runtime.serve.config import ServeConfig
from ufd.runtime.serve.engine import Engine, EngineStats


def open_detector(config: ServeConfig) -> Detector:
    """The detector ``config`` names (precision chosen by the parity measured here)."""
    return Detector.open(
        config.bundle,
        precision=config.precision,
        provider=config.provider,
        threads=config.threads,
        max_pixels=config.max_pixels,
        provenance=config.provenance,
    )


def warm(detector: Detector, config: ServeConfig) -> None:
    """Check the defaults, load every method and run one image through the graphs.

    Raises:
        UfdError: the default ``--method``/``--views`` do not work on this bundle, or
            a method does not load.
    """
    available = detector.methods.available()
    detector.plan(config.method, views=config.views)  # the defaults must work
    if available:
        detector.plan(",".join(available))
    size = detector.bundle.manifest.model.image_size
    features = detector.features(np.zeros((1, 3, size, size), np.float32))
    if available:
        detector.methods.columns(available, features, detector.plan(",".join(available))[1])


def start_engine(
    detector: Detector,
    config: ServeConfig,
    stats: EngineStats | None = None,
    on_failure: Callable[[str], None] = lambda reason: None,
) -> Engine:
    """The batching engine over ``detector`` with ``config``'s limits."""
    provider = detector.provider_spec
    max_wait = config.max_wait_ms if config.max_wait_ms is not None else provider.batch_wait_ms
    return Engine(
        detector,
        max_batch=config.max_batch or provider.batch_size,
        max_wait=max_wait / 1e3,
        queue_images=config.queue_images,
        decode_workers=config.decode_workers,
        stats=stats,
        on_failure=on_failure,
    )
