"""``ufd-serve``'s settings: where it listens, what it accepts, how it batches."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path

from ufd.runtime.errors import UsageError
from ufd.runtime.io.policy import DEFAULT_MAX_PIXELS
from ufd.runtime.video.run import VideoRun

MB = 1 << 20


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``ufd-serve`` is told; defaults suit a device and a small server.

    Memory stays bounded: at most ``queue_images`` images are admitted (decoded
    pixels, features) at once, each request body is at most ``max_request_bytes``,
    and at most ``max_connections`` connections are open (more get 503).
    """

    bundle: Path
    host: str = "127.0.0.1"
    port: int = 8000
    method: str = "linear"
    views: int = 0
    """Re-upload views scored with each image when a request names none (``--views``)."""
    precision: str | None = None
    provider: str = "auto"
    threads: int | None = None
    api_key: str | None = None
    max_image_bytes: int = 32 * MB
    max_request_bytes: int = 64 * MB
    max_images: int = 64
    max_pixels: int = DEFAULT_MAX_PIXELS
    request_timeout: float = 60.0
    max_batch: int | None = None
    """Images per encoder call; ``None``: the provider's batch size."""
    max_wait_ms: float | None = None
    """How long the encoder waits to fill a batch; ``None``: the provider's (0 on the CPU)."""
    queue_images: int = 256
    decode_workers: int = 2
    max_connections: int = 64
    drain_timeout: float = 30.0
    cors_origins: list[str] = field(default_factory=list)
    provenance: bool = False
    video: VideoRun = field(default_factory=VideoRun)
    """How uploaded videos are sampled and decided (``--fps``, ``--max-frames``, ...)."""

    def __post_init__(self) -> None:
        positive = {
            "max_image_bytes": self.max_image_bytes,
            "max_request_bytes": self.max_request_bytes,
            "max_images": self.max_images,
            "queue_images": self.queue_images,
            "decode_workers": self.decode_workers,
            "max_connections": self.max_connections,
        }
        for name, value in positive.items():
            if value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
        if self.request_timeout <= 0:
            raise UsageError("--request-timeout must be positive")

    def key_matches(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries the key (always, without a key)."""
        if self.api_key is None:
            return True
        scheme, _, token = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        )


def read_api_key(path: Path) -> str:
    """The API key in ``path`` (first line, stripped).

    Raises:
        UsageError: missing or empty file.
    """
    try:
        key = path.read_text(encoding="utf-8").strip().splitlines()
    except OSError as e:
        raise UsageError(f"cannot read --api-key-file {path}: {e.strerror}") from e
    if not key or not key[0].strip():
        raise UsageError(f"--api-key-file {path} is empty; put the key on its first line")
    return key[0].strip()
