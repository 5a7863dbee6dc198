"""Read ``POST /v1/detect`` bodies: images from multipart parts or base64 JSON, bounded.

Limits are enforced while the body streams in: a request whose
``Content-Length`` is over the limit is refused before reading, and reading
stops as soon as the body, one image or the image count passes its limit. A
request never names a server-side file: images are only ever bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

from ufd.runtime.serve.config import MB, ServeConfig
from ufd.runtime.transforms import REUPLOAD_NAMES

FIELD_LIMIT = 1024  # bytes of a non-image form field (method, k, views)
MAX_VIEWS = len(REUPLOAD_NAMES)
MAX_NAME = 1024  # characters of an image's name (its record's path)


class RequestError(Exception):
    """A malformed or refused request: answered as JSON ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class Upload:
    """One uploaded image."""

    name: str
    data: bytes


@dataclass
class DetectRequest:
    """What a detect request asks for."""

    images: list[Upload] = field(default_factory=list)
    method: str | None = None
    k: int | None = None
    views: int | None = None


async def read_detect_request(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    limits: ServeConfig,
) -> DetectRequest:
    """Parse a detect request's body within ``limits``.

    Raises:
        RequestError: 400 malformed, 413 too large, 415 wrong content type.
    """
    kind, options = parse_options_header(content_type or "")
    declared = int(content_length) if content_length and content_length.isdigit() else 0
    if declared > limits.max_request_bytes:
        raise _too_large("request body", declared, limits.max_request_bytes)
    if kind == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise RequestError(400, "multipart/form-data without a boundary")
        request = await _read_multipart(boundary, body, limits)
    elif kind == b"application/json":
        request = _from_json(await _read_all(body, limits.max_request_bytes), limits)
    else:
        raise RequestError(
            415,
            f"unsupported content type {kind.decode(errors='replace') or 'none'!r}: send "
            "multipart/form-data with one or more 'file' parts, or application/json "
            '{"images": [{"name": "...", "data": "<base64>"}]}',
        )
    if not request.images:
        raise RequestError(
            400, "no images: send one or more 'file' parts, or JSON {\"images\": [...]}"
        )
    return request


def _too_large(what: str, size: int, limit: int) -> RequestError:
    return RequestError(413, f"{what} is over the limit of {limit:,} bytes ({size:,}+ sent)")


async def _read_all(body: AsyncIterator[bytes], limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in body:
        size += len(chunk)
        if size > limit:
            raise _too_large("request body", size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


class _Parts:
    """Collects multipart parts, refusing an oversized image the moment it passes its limit."""

    def __init__(self, limits: ServeConfig) -> None:
        self.limits = limits
        self.request = DetectRequest()
        self.header_field = b""
        self.headers: dict[bytes, bytes] = {}
        self.data = bytearray()
        self.part: tuple[str, str | None] = ("", None)  # (field name, file name)
        self.error: RequestError | None = None

    def callbacks(self) -> MultipartCallbacks:
        """What the multipart parser calls as the body streams in."""
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": lambda: setattr(self, "header_field", b""),
            "on_headers_finished": lambda: setattr(self, "part", self._field()),
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self.headers, self.data = {}, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        key = self.header_field.lower()
        self.headers[key] = self.headers.get(key, b"") + data[start:end]

    def _field(self) -> tuple[str, str | None]:
        _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        return name, filename.decode("utf-8", "replace") if filename is not None else None

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        self.data += data[start:end]
        name = self.part[0]
        limit = self.limits.max_image_bytes if name == "file" else FIELD_LIMIT
        if len(self.data) > limit:
            what = "an image" if name == "file" else f"form field {name!r}"
            self.error = _too_large(what, len(self.data), limit)

    def _end(self) -> None:
        if self.error is not None:
            return
        name, filename = self.part
        if name == "file":
            images = self.request.images
            if len(images) >= self.limits.max_images:
                self.error = RequestError(
                    413, f"more than {self.limits.max_images} images in one request"
                )
                return
            name = filename or f"image-{len(images)}"
            if len(name) > MAX_NAME:
                self.error = RequestError(400, f"a file name over {MAX_NAME} characters")
                return
            images.append(Upload(name, bytes(self.data)))

        elif name in ("method", "k", "views"):
            value = self.data.decode("utf-8", "replace").strip()
            if name == "method":
                self.request.method = value
            elif name == "k":
                self.request.k = _parse_k(_form_integer(name, value))
            else:
                self.request.views = parse_views(_form_integer(name, value))
        else:
            self.error = RequestError(
                400, f"unexpected form field {name!r}: send images as 'file' parts"
            )


async def _read_multipart(
    boundary: bytes, body: AsyncIterator[bytes], limits: ServeConfig
) -> DetectRequest:
    parts = _Parts(limits)
    parser = MultipartParser(boundary, parts.callbacks(), max_header_count=16)
    size = 0
    try:
        async for chunk in body:
            size += len(chunk)
            if size > limits.max_request_bytes:
                raise _too_large("request body", size, limits.max_request_bytes)
            parser.write(chunk)
            if parts.error is not None:
                raise parts.error
        parser.finalize()
    except RequestError:
        raise
    except Exception as e:
        raise RequestError(400, f"malformed multipart body: {e}") from e
    if parts.error is not None:
        raise parts.error
    return parts.request


def _from_json(raw: bytes, limits: ServeConfig) -> DetectRequest:
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(400, f"body is not valid JSON: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise RequestError(400, 'JSON body must be an object with an "images" list')
    unknown = set(doc) - {"images", "method", "k", "views"}
    if unknown:
        raise RequestError(400, f"unknown JSON field(s) {sorted(unknown)}")
    if len(doc["images"]) > limits.max_images:
        raise RequestError(413, f"more than {limits.max_images} images in one request")
    method = doc.get("method")
    if method is not None and not isinstance(method, str):
        raise RequestError(400, '"method" must be a string such as "linear,nn" or "all"')
    request = DetectRequest(
        method=method, k=_parse_k(doc.get("k")), views=parse_views(doc.get("views"))
    )
    for i, entry in enumerate(doc["images"]):
        request.images.append(_json_image(i, entry, limits.max_image_bytes))
    return request


def _json_image(index: int, entry: Any, limit: int) -> Upload:
    where = f"images[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("data"), str):
        raise RequestError(400, f'{where} must be an object with a base64 "data" string')
    unknown = set(entry) - {"name", "data"}
    if unknown:
        raise RequestError(400, f"unknown field(s) {sorted(unknown)} in {where}")

    name = entry.get("name", f"image-{index}")
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise RequestError(400, f"{where}.name must be a string of at most {MAX_NAME} characters")
    if len(entry["data"]) > (limit + 2) // 3 * 4 + 4:
        raise _too_large(f"{where} (decoded)", len(entry["data"]) * 3 // 4, limit)
    try:
        data = base64.b64decode(entry["data"], validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(400, f"{where}.data is not valid base64: {e}") from e
    return Upload(name, data)


def _form_integer(name: str, text: str) -> int:
    """A multipart field that the contract types as an integer: ASCII digits, nothing else.

    Raises:
        RequestError: 400, an empty field or one that is not a whole number.
    """
    if not (text.isascii() and text.isdigit()):
        raise RequestError(400, f'form field "{name}" must be a whole number, not {text[:40]!r}')
    return int(text)


def _parse_k(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():  # JSON Schema's integers include 3.0
        value = int(value)

    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RequestError(400, f'"k" must be a positive integer, not {value!r}')
    return value


def parse_views(value: Any) -> int | None:
    """A request's ``views`` (``None``: the service's default).

    Raises:
        RequestError: 400, not an integer from 0 to the number of re-upload views.
    """
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_VIEWS:
        raise RequestError(400, f'"views" must be an integer from 0 to {MAX_VIEWS}, not {value!r}')
    return value


def describe_limits(limits: ServeConfig) -> dict[str, Any]:
    """The limits as ``/v1/info`` reports them."""
    return {
        "max_image_bytes": limits.max_image_bytes,
        "max_image_mb": limits.max_image_bytes / MB,
        "max_request_bytes": limits.max_request_bytes,
        "max_images": limits.max_images,
        "max_pixels": limits.max_pixels,
        "request_timeout_s": limits.request_timeout,
    }
