"""``ufd.client``: call a running ``ufd-serve`` from Python (standard library only).

>>> from ufd.client import Client
>>> client = Client("http://127.0.0.1:8000", api_key=None)  # or Client("unix:/run/ufd.sock")
>>> for record in client.detect(["photo.jpg", open("b.png", "rb").read()], method="all"):
...     print(record.path, record.prob, record.label)

Records are the :class:`~ufd.runtime.records.Record` objects ``Detector.score``
gives, built from the service's JSON.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import urllib.parse
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ufd.runtime.errors import UfdError
from ufd.runtime.records import Record


class ServiceError(UfdError):
    """The service answered an error (its status and message are kept)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"ufd-serve answered {status}: {message}" if status else message)
        self.status = status
        self.message = message


class Client:
    """A small client of ``ufd-serve``'s HTTP API."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 120.0) -> None:
        """A client of the service at ``url``: ``http(s)://host:port`` or ``unix:/path/to.sock``.

        Raises:
            ServiceError: ``url`` is neither.
        """
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.socket_path: str | None = None
        self.prefix = ""
        self._local = threading.local()  # one kept-alive connection per calling thread
        if self.url.startswith("unix:"):
            self.socket_path = self.url.removeprefix("unix:")
        else:
            parts = urllib.parse.urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ServiceError(
                    0, f"{url!r} is not a service address: give http://HOST:PORT or unix:PATH"
                )
            self.prefix = parts.path.rstrip("/")

    def detect(
        self,
        images: Sequence[str | os.PathLike[str] | bytes],
        names: Sequence[str] | None = None,
        method: str | None = None,
        k: int | None = None,
        views: int | None = None,
    ) -> list[Record]:
        """Score images (paths are read here and sent as bytes): one record each, in order.

        ``views``: re-upload views scored with each image (``None``: the service's default).

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
        if views is not None:
            parts.append(("views", None, str(views).encode()))
        boundary = uuid.uuid4().hex
        body = _multipart(parts, boundary)
        answer = self._call("POST", "/v1/detect", body, f"multipart/form-data; boundary={boundary}")
        return [Record.from_dict(row) for row in answer["records"]]

    def info(self) -> dict[str, Any]:
        """``GET /v1/info``."""
        info: dict[str, Any] = self._call("GET", "/v1/info")
        return info

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
        try:
            connection = self._connection()
            connection.request(verb, self.prefix + path, body, headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as e:
            self._close()
            raise ServiceError(
                0, f"cannot reach ufd-serve at {self.url}: {_reason(e)} (is it running?)"
            ) from None

        if response.status >= 400:
            try:
                message = json.loads(data).get("error", response.reason)
            except (ValueError, AttributeError):
                message = response.reason
            raise ServiceError(response.status, message)
        return json.loads(data)

    def _connection(self) -> http.client.HTTPConnection:
        """This thread's kept-alive connection (a Unix socket or TCP), made on first use."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self.socket_path is not None:
                connection = _UnixConnection(self.socket_path, self.timeout)
            else:
                parts = urllib.parse.urlsplit(self.url)
                kind = (
                    http.client.HTTPSConnection
                    if parts.scheme == "https"
                    else http.client.HTTPConnection
                )
                connection = kind(parts.hostname or "127.0.0.1", parts.port, timeout=self.timeout)
            self._local.connection = connection
        return connection

    def _close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        self._close()


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix domain socket (``ufd-serve --socket PATH``)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


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
