"""Detectors ``ufd-export --detector NAME`` exports: one module each, registered by name.

The import order below is the order of ``ufd-export --list``. Each module turns
its authors' published files into an encoder and a head (torch modules) and its
official test preprocessing (:mod:`.base`); the runtime never sees which
detector a bundle holds, beyond ``model.detector`` in its manifest.
"""

from __future__ import annotations

# isort: off
# A new detector: one module, one line here.
from ufd.export.detectors import univfd  # noqa: F401
from ufd.export.detectors import rine  # noqa: F401
from ufd.export.detectors import c2p_clip  # noqa: F401
from ufd.export.detectors import commfor  # noqa: F401
from ufd.export.detectors import probe  # noqa: F401
from ufd.export.detectors import dda  # noqa: F401
from ufd.export.detectors import bfree  # noqa: F401
from ufd.export.detectors import aligned  # noqa: F401
from ufd.export.detectors import spai  # noqa: F401

# isort: on
from ufd.export.detectors.base import BuiltDetector, Detector, DetectorRequest
from ufd.export.detectors.registry import DETECTORS, describe_detectors, get_detector, register

__all__ = [
    "DETECTORS",
    "BuiltDetector",
    "Detector",
    "DetectorRequest",
    "describe_detectors",
    "get_detector",
    "register",
]
