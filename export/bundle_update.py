"""Add or replace a folder of files inside an existing bundle, then its manifest.

New files are staged in a hidden folder inside the bundle, swapped in with
renames, and the manifest is replaced atomically (write + ``os.replace``), so a
reader never sees a manifest that lists files it cannot find.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ufd.runtime.bundle import Bundle, sha256_file
from ufd.runtime.manifest import MANIFEST_NAME, FileEntry, Manifest


@contextlib.contextmanager
def staged_folder(bundle: Bundle, name: str) -> Iterator[Path]:
    """A hidden staging folder in ``bundle``; removed if the block fails."""
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-", dir=bundle.root))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish_folder(bundle: Bundle, name: str, staging: Path, **changes: Any) -> Manifest:
    """Replace ``bundle/name`` by ``staging`` and rewrite the manifest.

    Args:
        bundle: the open bundle.
        name: folder inside the bundle (``index``).
        staging: the staged folder (from :func:`staged_folder`).
        **changes: manifest fields to replace (e.g. ``index=IndexInfo(...)``).

    Returns:
        The new manifest.
    """
    root = bundle.root
    target, old = root / name, root / f".{name}.old-{os.getpid()}"
    files = {k: v for k, v in bundle.manifest.files.items() if not k.startswith(f"{name}/")}
    for path in sorted(staging.rglob("*")):
        if path.is_file():
            rel = f"{name}/{path.relative_to(staging).as_posix()}"
            files[rel] = FileEntry(sha256=sha256_file(path), size=path.stat().st_size)
    manifest = dataclasses.replace(bundle.manifest, files=files, **changes)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    write_manifest(root, manifest)
    shutil.rmtree(old, ignore_errors=True)
    return manifest


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Replace ``root/manifest.json`` atomically."""
    tmp = root / f".{MANIFEST_NAME}.tmp-{os.getpid()}"
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(tmp, root / MANIFEST_NAME)
