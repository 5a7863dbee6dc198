"""Where ufd keeps downloads and caches: ``$UFD_CACHE_DIR``, else ``$XDG_CACHE_HOME/ufd``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Ufd's cache folder (features, downloaded heads, TensorRT engines)."""
    if env := os.environ.get("UFD_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ufd"
