"""Faults a test can switch on in a real ``ufd-serve`` process (``UFD_TEST_FAULTS``).

``UFD_TEST_FAULTS="slow-batch-ms=300,stop-worker-after=2"`` makes every encoder
batch take 300 ms longer (so that a test can signal the process while requests
are surely in flight, without racing it) and stops the encoder worker with an
exception after two batches (so that a test sees what a crash does). Unset, as
in every real deployment, nothing here does anything.
"""

from __future__ import annotations

import os
import time


class WorkerStopped(BaseException):
    """The injected stop (a BaseException: nothing in the worker may catch it as an error)."""


def _settings() -> dict[str, float]:
    found = {}
    for part in os.environ.get("UFD_TEST_FAULTS", "").split(","):
        name, _, value = part.partition("=")
        if name.strip() and value.strip():
            found[name.strip()] = float(value)
    return found


class Faults:
    """The faults of this process, applied around each encoder batch."""

    def __init__(self) -> None:
        settings = _settings()
        self.slow = settings.get("slow-batch-ms", 0.0) / 1e3
        self.stop_after = settings.get("stop-worker-after")
        self.batches = 0

    def before_batch(self) -> None:
        """Sleep, or stop the worker, as configured."""
        if self.stop_after is not None and self.batches >= self.stop_after:
            raise WorkerStopped("stopped by UFD_TEST_FAULTS")
        self.batches += 1
        if self.slow:
            time.sleep(self.slow)
