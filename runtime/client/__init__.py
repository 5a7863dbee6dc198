"""``ufd.client``: call a running ``ufd-serve`` from Python (standard library only).

>>> from ufd.client import Client
>>> client = Client("http://127.0.0.1:8000", api_key=None)
>>> for record in client.detect(["photo.jpg", open("b.png", "rb").read()], method="all"):
...     print(record.path, record.prob, record.label)

Records are the :class:`~ufd.runtime.records.Record` objects ``Detector.score``
gives, built from the service's JSON.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ufd.runtime.errors import UfdError
from ufd.runtime.records import Record


class ServiceError(UfdError):
    """The service answered an error (its status and message are kept)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"ufd-serve answered {status}: {message}")
        self.status = status
        self.message = message


class Client:
    """A small client of ``ufd-serve``'s HTTP API."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def detect(
        self,
        images: Sequence[str | os.PathLike | bytes],
        names: Sequence[str] | None = None,
        method: str | None = None,
        k: int | None = None,
    ) -> list[Record]:
        """Score images (paths are read here and sent as bytes): one record each, in order.

        Raises:
            ServiceError: the service refused the request (4xx/5xx).
        """
        parts: list[tuple[str, str | None, bytes]] = []
        for i, image in enumerate(images):
            if isinstance(image, (bytes, bytearray)):
                default, data = f"image-{i}", bytes(image)
            else:
                default, data = str(image), Path(image).read_bytes()
            parts.append(("file", names[i] if names else default, data))
        if method is not None:
            parts.append(("method", None, method.encode()))
        if k is not None:
            parts.append(("k", None, str(k).encode()))
        boundary = uuid.uuid4().hex
        body = _multipart(parts, boundary)
        answer = self._call("POST", "/v1/detect", body, f"multipart/form-data; boundary={boundary}")
        return [Record.from_dict(row) for row in answer["records"]]

    def info(self) -> dict[str, Any]:
        """``GET /v1/info``."""
        return self._call("GET", "/v1/info")

    def ready(self) -> bool:
        """Whether ``/readyz`` says the bundle is loaded and warmed."""
        try:
            self._call("GET", "/readyz")
        except ServiceError:
            return False
        return True

    def _call(
        self, verb: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url + path, body, headers, method=verb)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error", e.reason)
            except ValueError:
                message = str(e.reason)
            raise ServiceError(e.code, message) from None
        except urllib.error.URLError as e:
            raise ServiceError(0, f"cannot reach {self.url}: {e.reason}") from None


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str) -> bytes:
    chunks = []
    for field, filename, data in parts:
        disposition = f'form-data; name="{field}"'
        if filename is not None:
            safe = (
                filename.replace("\\", "\\\\")
                .replace('"', '\\"')
                .replace("\r", "")
                .replace("\n", "")
            )
            disposition += f'; filename="{safe}"'
        chunks += [
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode(),
            data,
            b"\r\n",
        ]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)
