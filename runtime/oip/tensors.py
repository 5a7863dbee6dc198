"""Images in, records out, as Open Inference Protocol tensors (no KServe types here).

Inputs (one of the two per request):

- ``image``: ``BYTES [N]``, each element one encoded image file (JPEG, PNG, WebP...),
  as Triton serves image models to clients that do not decode. Over gRPC the
  element is the file's bytes. Over REST it is the file base64-encoded: JSON has no
  bytes, and KServe reads REST BYTES tensors (binary extension included) as UTF-8
  text, which an image is not. An element that arrives as text is base64.
- ``pixels``: ``FP32 [N, 3, S, S]``, images already preprocessed the bundle's way
  (``S``: its crop; bundles with one fixed crop only).

Outputs: one tensor ``[N]`` per record field except ``path``, in input order:
scores ``FP64`` (the JSON numbers of ``ufd-detect``), labels and notes ``BYTES``,
flags ``BOOL``, source shares and provenance ``BYTES`` (JSON text), and ``error`` (``BYTES``,
empty when the image was scored). A record without a value (its image failed)
has NaN, an empty string or false there.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ufd.runtime.io.inputs import InputItem
from ufd.runtime.records import Record
from ufd.runtime.registry import field_kind

IMAGE, PIXELS = "image", "pixels"
DATATYPES = {
    "float": "FP64",
    "int": "INT64",
    "bool": "BOOL",
    "string": "BYTES",
    "shares": "BYTES",
    "json": "BYTES",
}


class BadTensors(ValueError):
    """The request's tensors are not what this model takes: the message says what is."""


@dataclass(frozen=True)
class Tensor:
    """One named tensor as the protocol carries it."""

    name: str
    datatype: str
    data: np.ndarray


def image_items(data: np.ndarray) -> list[InputItem]:
    """The images of an ``image`` input, named ``image-0``, ``image-1``... in order.

    Raises:
        BadTensors: not one dimension, or text that is not base64.
    """
    if data.ndim != 1:
        raise BadTensors(f"input {IMAGE!r} must have shape [N] (one image per element)")
    return [InputItem(f"{IMAGE}-{i}", data=_image_bytes(e, i)) for i, e in enumerate(data.tolist())]


def _image_bytes(element: Any, index: int) -> bytes:
    if isinstance(element, bytes):
        return element
    if not isinstance(element, str):
        raise BadTensors(f"input {IMAGE!r} element {index} is not bytes or base64 text")
    try:
        return base64.b64decode(element, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadTensors(
            f"input {IMAGE!r} element {index} is not base64 ({e}); over REST send each "
            "image file base64-encoded"
        ) from e


def pixel_batch(data: np.ndarray, crop_size: int | None) -> np.ndarray:
    """A ``pixels`` input checked against the bundle's crop.

    Raises:
        BadTensors: the bundle takes no fixed crop, or the shape is not ``[N, 3, S, S]``.
    """
    if crop_size is None:
        raise BadTensors(
            f"this bundle does not take one fixed crop: send the encoded images as {IMAGE!r}"
        )
    if data.ndim != 4 or data.shape[1:] != (3, crop_size, crop_size):
        raise BadTensors(
            f"input {PIXELS!r} must have shape [N, 3, {crop_size}, {crop_size}], "
            f"not {list(data.shape)}"
        )
    if not np.isfinite(data).all():
        raise BadTensors(f"input {PIXELS!r} holds NaN or infinity")
    return np.ascontiguousarray(data, np.float32)


def output_specs(fields: Sequence[str]) -> list[tuple[str, str]]:
    """``(name, datatype)`` of the outputs for record ``fields`` (``path`` is not one)."""
    return [(name, DATATYPES[field_kind(name)]) for name in fields if name != "path"]


def record_tensors(records: Sequence[Record], fields: Sequence[str]) -> list[Tensor]:
    """The outputs for ``records``, one tensor per field in ``fields`` but ``path``."""
    return [
        Tensor(name, datatype, _column([r.get(name) for r in records], name, datatype))
        for name, datatype in output_specs(fields)
    ]


def _column(values: list[Any], name: str, datatype: str) -> np.ndarray:
    if datatype == "FP64":
        return np.array([math.nan if v is None else float(v) for v in values], np.float64)
    if datatype == "INT64":
        return np.array([0 if v is None else int(v) for v in values], np.int64)
    if datatype == "BOOL":
        return np.array([bool(v) for v in values], np.bool_)
    if field_kind(name) in ("shares", "json"):
        values = [None if v is None else json.dumps(v, sort_keys=True) for v in values]
    return np.array([b"" if v is None else str(v).encode() for v in values], np.object_)
