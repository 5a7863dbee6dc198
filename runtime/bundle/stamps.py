"""Remember which bundle files were hashed, so a device does not hash them at every start.

A stamp maps a file's identity, ``(device, inode, size, mtime_ns, ctime_ns)``, to
the sha256 it had when ufd last hashed it. Writing a file, renaming another over
it or ``touch``-ing it back changes its inode or its ctime (which only the kernel
sets), so a stamp never vouches for changed bytes; a file whose identity has
no stamp is hashed in full. Stamps live in ufd's cache (``verified.json``);
``UFD_VERIFY=full`` (or ``ufd-bundle verify``) always hashes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from ufd.runtime.cache import cache_dir

logger = logging.getLogger(__name__)

_MAX_STAMPS = 4096
_lock = threading.Lock()


def _file() -> Path:
    return cache_dir() / "verified.json"


def identity(path: Path) -> str:
    """The key of a file's current identity."""
    st = path.stat()
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def trusted(path: Path, sha256: str) -> bool:
    """Whether ``path``, as it is now, was hashed to ``sha256`` before."""
    if os.environ.get("UFD_VERIFY", "").lower() == "full":
        return False
    try:
        return _read().get(f"{path.resolve()}|{identity(path)}") == sha256
    except OSError:
        return False


def remember(path: Path, sha256: str) -> None:
    """Record that ``path`` hashes to ``sha256`` now (best effort: never fails a run)."""
    try:
        key = f"{path.resolve()}|{identity(path)}"
        with _lock:
            stamps = _read()
            stamps[key] = sha256
            if len(stamps) > _MAX_STAMPS:  # forget the oldest
                stamps = dict(list(stamps.items())[-_MAX_STAMPS:])
            target = _file()
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".verified.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(stamps), encoding="utf-8")
            os.replace(tmp, target)
    except OSError as e:
        logger.debug("cannot record a verified stamp: %s", e)


def _read() -> dict[str, str]:
    try:
        data = json.loads(_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
