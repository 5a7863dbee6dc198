"""Atomic bundle writing: build in a hidden sibling directory, then rename.

An interrupted or failed export leaves no half bundle: the temporary
directory is removed on error, and the final directory appears in one
``rename``. Replacing an existing bundle needs ``force`` and is refused for
directories that are not bundles.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from ufd.runtime.bundle import sha256_file
from ufd.runtime.bundle.manifest import MANIFEST_NAME, FileEntry, Manifest
from ufd.runtime.errors import ExportError

logger = logging.getLogger(__name__)


class BundleWriter:
    """Context manager that stages a bundle and publishes it atomically."""

    def __init__(self, out: Path, force: bool = False) -> None:
        """Check ``out`` can be written and create the staging directory.

        Raises:
            ExportError: ``out`` exists and ``force`` is off, or ``out`` is a
                non-empty directory that is not a bundle.
        """
        self.out = Path(out).absolute()
        check_destination(self.out, force)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.tmp-", dir=self.out.parent))
        umask = os.umask(0)
        os.umask(umask)
        self.staging.chmod(0o777 & ~umask)  # mkdtemp makes it 0700
        self._done = False

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._done:
            shutil.rmtree(self.staging, ignore_errors=True)

    def path(self, name: str) -> Path:
        """Where to write bundle file ``name`` while staging."""
        return self.staging / name

    def file_entries(self) -> dict[str, FileEntry]:
        """Size and sha256 of every staged file (relative POSIX paths)."""
        entries = {}
        for path in sorted(self.staging.rglob("*")):
            if path.is_file() and path.name != MANIFEST_NAME:
                rel = path.relative_to(self.staging).as_posix()
                entries[rel] = FileEntry(sha256=sha256_file(path), size=path.stat().st_size)
        return entries

    def commit(self, manifest: Manifest) -> Path:
        """Write ``manifest.json`` and move the bundle into place."""
        (self.staging / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, old)
        os.replace(self.staging, self.out)
        self._done = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("wrote bundle %s", self.out)
        return self.out


def check_destination(out: Path, force: bool) -> None:
    """Refuse to overwrite without ``force``, and never replace a non-bundle.

    Raises:
        ExportError: with what to do instead.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a directory; choose another path")
    is_bundle = (out / MANIFEST_NAME).is_file()
    if not is_bundle and any(out.iterdir()):
        raise ExportError(
            f"--out {out} is a non-empty directory that is not a ufd bundle; "
            "refusing to replace it, choose another path"
        )
    if is_bundle and not force:
        raise ExportError(f"bundle {out} already exists; pass --force to replace it")
