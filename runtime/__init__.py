"""ufd runtime: light, on-device inference (onnxruntime + numpy + Pillow).

Never imports torch. The public API is :class:`Detector`.
"""

from ufd.runtime.bundle import Bundle, Manifest, PreprocessConfig
from ufd.runtime.detector import Detector
from ufd.runtime.errors import (
    BundleError,
    ImageError,
    ProviderError,
    UfdError,
    UsageError,
)
from ufd.runtime.records import Record

__version__ = "0.2.0"

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
