"""What every engine refuses, and the words it uses: default caps and stable error reasons.

``ufd-detect`` (here or through a service), the service itself, ``ufd-scan`` and
the Python API write these same reasons in a record's ``error`` for the same
input, so that records from any of them compare equal. Standard library only:
the service client's light path imports it.
"""

from __future__ import annotations

DEFAULT_MAX_PIXELS = 64_000_000
"""Default cap on decoded pixels (about 8000 x 8000); 192 MB as RGB."""

NO_SUCH_FILE = "no such file or directory"
IS_A_DIRECTORY = "is a directory, not an image file"
PERMISSION_DENIED = "permission denied"
EMPTY_FILE = "empty file (0 bytes)"
NOT_AN_IMAGE_FORMAT = "not a recognised image format (corrupt or not an image)"


def unreadable(error: OSError) -> str:
    """The record's reason for a file that cannot be read (``error``: what reading raised)."""
    if isinstance(error, IsADirectoryError):
        return IS_A_DIRECTORY
    if isinstance(error, FileNotFoundError):
        return NO_SUCH_FILE
    if isinstance(error, PermissionError):
        return PERMISSION_DENIED
    return f"cannot read: {error.strerror or error}"
