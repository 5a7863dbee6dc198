"""Prometheus metrics of the service, every name prefixed ``ufd_``.

One registry per app (tests run several). Image errors are counted by reason
class (the message up to its details), so label values stay few.
"""

from __future__ import annotations

import re

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ufd.runtime.records import Record

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
_DETAIL = re.compile(r"[:(=0-9]")


def error_reason(message: str) -> str:
    """A short, low-cardinality class of an image error (``damaged image data``...)."""
    head = _DETAIL.split(message, maxsplit=1)[0].strip().rstrip(",;")
    return head[:48] or "other"


class ServeMetrics:
    """The counters, histograms and gauges of one service."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ufd_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "ufd_request_seconds",
            "Request latency by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.images = Counter("ufd_images", "Images answered, by result", ["result"], registry=r)
        self.image_errors = Counter(
            "ufd_image_errors", "Images that got an error record, by reason", ["reason"], registry=r
        )
        self.batch_size = Histogram(
            "ufd_encoder_batch_size", "Images per encoder batch", buckets=_BATCH_BUCKETS, registry=r
        )
        self.encoder_seconds = Histogram(
            "ufd_encoder_batch_seconds",
            "Encoder time per batch",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "ufd_queue_depth", "Images admitted and not yet answered", registry=r
        )
        self.ready = Gauge("ufd_ready", "1 once the bundle is loaded and warmed", registry=r)

    def on_batch(self, size: int, seconds: float) -> None:
        """An encoder batch ran."""
        self.batch_size.observe(size)
        self.encoder_seconds.observe(seconds)

    def on_records(self, records: list[Record]) -> None:
        """A request's records are ready."""
        for record in records:
            self.images.labels("scored" if record.ok else "error").inc()
            if record.error is not None:
                self.image_errors.labels(error_reason(record.error)).inc()

    def on_request(self, route: str, status: int, seconds: float) -> None:
        """A request was answered."""
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def exposition(self, queue_depth: int) -> bytes:
        """The text exposition format, with the queue depth sampled now."""
        self.queue_depth.set(queue_depth)
        return generate_latest(self.registry)
