"""Bundles: the directory, its versioned manifest, and safe in-place updates."""

from ufd.runtime.bundle.directory import Bundle, safe_join, sha256_file
from ufd.runtime.bundle.manifest import (
    MANIFEST_NAME,
    PRECISIONS,
    SCHEMA_VERSION,
    AggregatorGraph,
    CalibrationInfo,
    EncoderGraph,
    FileEntry,
    Manifest,
    MethodEntry,
    ModelInfo,
    ParityProbes,
    ParityReport,
    PreprocessConfig,
    Tolerance,
)

__all__ = [
    "MANIFEST_NAME",
    "PRECISIONS",
    "SCHEMA_VERSION",
    "AggregatorGraph",
    "Bundle",
    "CalibrationInfo",
    "EncoderGraph",
    "FileEntry",
    "Manifest",
    "MethodEntry",
    "ModelInfo",
    "ParityProbes",
    "ParityReport",
    "PreprocessConfig",
    "Tolerance",
    "safe_join",
    "sha256_file",
]
