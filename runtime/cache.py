"""Where ufd keeps downloads and caches: one rule, ``$UFD_CACHE_DIR``, else ``$XDG_CACHE_HOME/ufd``.

Every cache ufd writes lives under :func:`cache_dir`: encoded features
(``features/``), TensorRT engines (``tensorrt/``), the stamps of verified bundle
files (``verified.json``), device parity measurements (``parity/``) and the
downloaded UnivFD head.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """Ufd's cache folder, or a path inside it (``cache_dir("features")``)."""
    if env := os.environ.get("UFD_CACHE_DIR"):
        base = Path(env)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ufd"
    return base.joinpath(*parts)
