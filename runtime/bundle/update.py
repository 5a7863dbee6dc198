"""Change an existing bundle safely: new files first, then one atomic manifest swap.

New files are written (or staged in a hidden folder inside the bundle and
swapped in with renames) before the manifest is replaced with one
``os.replace``, so a reader never sees a manifest that lists files it cannot
find. The manifest written is always of the current schema.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ufd.runtime.bundle.directory import Bundle, sha256_file
from ufd.runtime.bundle.manifest import MANIFEST_NAME, FileEntry, Manifest
from ufd.runtime.bundle.signing import SIGNATURE_NAME

logger = logging.getLogger(__name__)

ManifestChange = Callable[[Manifest], Manifest]


@contextlib.contextmanager
def staged_folder(bundle: Bundle, name: str) -> Iterator[Path]:
    """A hidden staging folder in ``bundle``; removed if the block fails."""
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-", dir=bundle.root))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def publish_folder(bundle: Bundle, name: str, staging: Path, change: ManifestChange) -> Manifest:
    """Replace ``bundle/name`` by ``staging`` and rewrite the manifest.

    Args:
        bundle: the open bundle.
        name: folder inside the bundle (``index``).
        staging: the staged folder (from :func:`staged_folder`).
        change: applied to the manifest once its file table lists the new files.

    Returns:
        The new manifest.
    """
    root = bundle.root
    target, old = root / name, root / f".{name}.old-{os.getpid()}"
    files = {k: v for k, v in bundle.manifest.files.items() if not k.startswith(f"{name}/")}
    for path in sorted(staging.rglob("*")):
        if path.is_file():
            files[f"{name}/{path.relative_to(staging).as_posix()}"] = file_entry(path)
    manifest = change(dataclasses.replace(bundle.manifest, files=files))
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    write_manifest(root, manifest)
    shutil.rmtree(old, ignore_errors=True)
    return manifest


def publish_file(
    bundle: Bundle, name: str, replaces: str | None, change: ManifestChange
) -> Manifest:
    """List the new file ``name`` (already written in the bundle), drop ``replaces``.

    The manifest is switched first, then the replaced file is removed.
    """
    files = {k: v for k, v in bundle.manifest.files.items() if k != replaces}
    files[name] = file_entry(bundle.root / name)
    manifest = change(dataclasses.replace(bundle.manifest, files=files))
    write_manifest(bundle.root, manifest)
    if replaces is not None and replaces != name:
        (bundle.root / replaces).unlink(missing_ok=True)
    return manifest


def file_entry(path: Path) -> FileEntry:
    """The integrity record (sha256, size) of a file."""
    return FileEntry(sha256=sha256_file(path), size=path.stat().st_size)


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Replace ``root/manifest.json`` atomically (a signature over the old one is stale then)."""
    tmp = root / f".{MANIFEST_NAME}.tmp-{os.getpid()}"
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    os.replace(tmp, root / MANIFEST_NAME)
    if (root / SIGNATURE_NAME).is_file():
        logger.warning(
            "%s changed after it was signed: sign it again (ufd-bundle sign), or devices that "
            "trust its signer refuse it",
            root,
        )
