"""The few exception classes ufd raises on purpose.

Every message says what went wrong *and* what to do next; the CLI prints the
message alone (no traceback unless ``-v``) and exits with status 2; the
service answers it as JSON.
"""

from __future__ import annotations

import re


class UfdError(Exception):
    """Base class of every error ufd raises on purpose."""


class UsageError(UfdError, ValueError):
    """A bad argument: an unknown method, a k the bank cannot give, a bad batch size."""


class BundleError(UfdError):
    """A bundle is missing, damaged, tampered with, or of an unknown schema."""


class ImageError(UfdError):
    """One input image cannot be decoded or preprocessed.

    Never fatal for a run: the detector turns it into an error record.
    """


class ProviderError(UfdError):
    """The requested onnxruntime execution provider cannot be used."""


class ModelLoadError(UfdError):
    """A CLIP model, checkpoint or head cannot be loaded (export side)."""


class ExportError(UfdError):
    """Building a bundle or a part of it (graphs, index, head) failed; nothing was written."""


_ADDRESS = re.compile(r"<[^<>]{0,200}? at 0x[0-9a-fA-F]+>|\bat 0x[0-9a-fA-F]+\b")


def stable_text(error: BaseException | str, limit: int = 200) -> str:
    """An error's message as records carry it: the same text for the same file, every run.

    Object reprs with memory addresses (``<_io.BytesIO object at 0x7f...>``) become
    ``(in memory)``; the text is cut at ``limit`` characters.
    """
    text = _ADDRESS.sub("(in memory)", str(error)).strip()
    return text if len(text) <= limit else text[:limit] + "..."
