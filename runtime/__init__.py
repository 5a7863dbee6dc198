"""ufd runtime: light, on-device inference (onnxruntime + numpy + Pillow).

Never imports torch. The public API is :class:`Detector`. Names are imported on
first use, so that ``import ufd.runtime.bundle`` (reading a manifest) or
``import ufd.client`` does not load onnxruntime or numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

from ufd.runtime.errors import (
    BundleError,
    ImageError,
    ProviderError,
    UfdError,
    UsageError,
)

__version__ = "0.2.0"

_LAZY = {
    "Bundle": "ufd.runtime.bundle",
    "Manifest": "ufd.runtime.bundle",
    "PreprocessConfig": "ufd.runtime.bundle",
    "Detector": "ufd.runtime.detector",
    "Record": "ufd.runtime.records",
}

__all__ = [
    "Bundle",
    "BundleError",
    "Detector",
    "ImageError",
    "Manifest",
    "PreprocessConfig",
    "ProviderError",
    "Record",
    "UfdError",
    "UsageError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ufd.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
