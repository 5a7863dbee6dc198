"""Faults a test can switch on in a real ufd process (``UFD_TEST_FAULTS``); off everywhere else.

Tests that kill, interrupt or overload a process must not race it. With
``UFD_TEST_FAULTS="pause-after-batches=5"`` a run stops after five batches
(ufd-detect's written records, the service's encoder batches) and waits there to
be killed or interrupted; ``pause-after-shards=2`` does the same once a scan's
dataset holds two shards; ``slow-batch-ms=300`` makes each service batch 300 ms
longer; ``stop-worker-after=2`` stops the service's encoder worker with an
exception after two batches. Unset, as in every real deployment, nothing here
does anything.

They cannot be switched on by accident: a process honours ``UFD_TEST_FAULTS`` only
when ``UFD_TEST_FAULTS_ARE_MEANT=1`` is set too (the tests set both), says so in a
warning the first time, and refuses (with a warning) a name it does not know.
"""

from __future__ import annotations

import functools
import logging
import os
import time

logger = logging.getLogger(__name__)
KNOWN = frozenset(
    {"slow-batch-ms", "stop-worker-after", "pause-after-batches", "pause-after-shards"}
)
MEANT = "UFD_TEST_FAULTS_ARE_MEANT"


class WorkerStopped(BaseException):
    """The injected stop (a BaseException: nothing in the worker may catch it as an error)."""


def _settings() -> dict[str, float]:
    """The faults asked for, when they are meant (see the module docstring)."""
    asked = os.environ.get("UFD_TEST_FAULTS", "").strip()
    if not asked:
        return {}
    if os.environ.get(MEANT) != "1":
        logger.warning("UFD_TEST_FAULTS is set but %s=1 is not: ignored (tests only)", MEANT)
        return {}
    found = {}
    for part in asked.split(","):
        name, _, value = (p.strip() for p in part.partition("="))
        try:
            if name not in KNOWN:
                raise ValueError(name)
            found[name] = float(value)
        except ValueError:
            logger.warning("UFD_TEST_FAULTS: %r is not a fault of this ufd: ignored", part)
    if found:
        logger.warning("test faults on in this process: %s", found)
    return found


def _wait() -> None:
    """Until the test kills or interrupts the process, or creates ``UFD_TEST_RELEASE``."""
    release = os.environ.get("UFD_TEST_RELEASE")
    while not (release and os.path.exists(release)):
        time.sleep(0.05 if release else 3600)


class Faults:
    """The faults of this process."""

    def __init__(self) -> None:
        settings = _settings()
        self.slow = settings.get("slow-batch-ms", 0.0) / 1e3
        self.stop_after = settings.get("stop-worker-after")
        self.pause_after = settings.get("pause-after-batches")
        self.pause_after_shards = settings.get("pause-after-shards")
        self.batches = 0

    def before_batch(self) -> None:
        """A service batch: stop the worker, or sleep, as configured."""
        if self.stop_after is not None and self.batches >= self.stop_after:
            raise WorkerStopped("stopped by UFD_TEST_FAULTS")
        self.batches += 1
        if self.slow:
            time.sleep(self.slow)

    def after_batch(self) -> None:
        """A batch of records was written: pause here once there were enough."""
        self.batches += 1
        if self.pause_after is not None and self.batches >= self.pause_after:
            _wait()

    def after_shard(self, shards: int) -> None:
        """A scan's dataset holds ``shards`` shards: pause here once there are enough."""
        if self.pause_after_shards is not None and shards >= self.pause_after_shards:
            _wait()


@functools.cache
def faults() -> Faults:
    """This process's faults (read from the environment once)."""
    return Faults()
