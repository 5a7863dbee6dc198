"""ufd runtime: light, on-device inference (onnxruntime + numpy + Pillow).

Never imports torch. The public API is :class:`Detector`.
"""

from ufd.runtime.bundle import Bundle
from ufd.runtime.detector import Detector
from ufd.runtime.errors import BundleError, ImageError, ProviderError, UfdError
from ufd.runtime.manifest import Manifest, PreprocessConfig
from ufd.runtime.records import Record

__version__ = "0.1.0"

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
    "__version__",
]
