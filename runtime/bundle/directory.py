"""Open a bundle directory safely: manifest, contained paths, verified hashes."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ufd.runtime.bundle import signing, stamps
from ufd.runtime.bundle.manifest import (
    MANIFEST_NAME,
    EncoderGraph,
    FileEntry,
    Manifest,
    MethodConfigs,
    parse_json,
    read_bytes,
)
from ufd.runtime.errors import BundleError

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def safe_join(root: Path, relative: str) -> Path:
    """Resolve ``relative`` inside ``root``, refusing anything that escapes it.

    Refuses absolute paths, ``..`` components, backslashes and symlinks that
    point outside the bundle.

    Raises:
        BundleError: the path would leave the bundle directory.
    """
    pure = PurePosixPath(relative)
    if (
        not relative
        or "\\" in relative
        or pure.is_absolute()
        or any(part in ("..", "") for part in pure.parts)
    ):
        raise BundleError(
            f"manifest names {relative!r}, a path outside the bundle; the bundle is "
            "damaged or hostile: do not use it, re-export it"
        )
    root_resolved = root.resolve()
    target = (root_resolved / Path(*pure.parts)).resolve()
    if not target.is_relative_to(root_resolved):
        raise BundleError(
            f"bundle file {relative!r} resolves to {target}, outside the bundle; "
            "refusing to load it"
        )
    return target


@dataclass(frozen=True)
class Bundle:
    """A checked bundle directory: its manifest and its root."""

    root: Path
    manifest: Manifest
    signed_by: str | None = None
    """The trusted key or certificate the signature verified with (``None``: no trust
    policy was set, see :mod:`ufd.runtime.bundle.signing`)."""

    @classmethod
    def open(cls, root: str | Path, method_configs: MethodConfigs) -> Bundle:
        """Read the manifest of ``root`` and check every listed path stays inside.

        Hashes are verified lazily, per file, by :meth:`verified_path`.
        ``method_configs`` are the methods this ufd knows (the method registry's
        :func:`~ufd.runtime.registry.config_types`; :func:`ufd.runtime.methods.open_bundle`
        passes them).

        Raises:
            BundleError: not a bundle, bad manifest, or an escaping path.
        """
        root = Path(root)
        if not root.is_dir():
            raise BundleError(f"bundle {root} is not a directory; make one with ufd-export")
        path = root / MANIFEST_NAME
        data = read_bytes(path)
        signer = signing.check(root, data)  # before anything in the bundle is used
        manifest = Manifest.from_dict(parse_json(data, path), method_configs)
        for name in manifest.files:
            safe_join(root, name)
        listed = [g.file for g in manifest.encoders.values()]
        listed += [f for entry in manifest.methods.values() for f in entry.files.values()]
        listed += [manifest.probes.file] if manifest.probes is not None else []
        for name in listed:
            if name not in manifest.files:
                raise BundleError(
                    f"manifest names {name!r} without a hash entry; re-export the bundle"
                )
        return cls(root=root, manifest=manifest, signed_by=signer)

    def verified_path(self, relative: str, verify: bool = True, full: bool = False) -> Path:
        """The absolute path of bundle file ``relative``, after checking size and sha256.

        A file whose identity (inode, size, mtime, ctime) was hashed before is
        trusted without hashing it again (:mod:`ufd.runtime.bundle.stamps`);
        ``full`` hashes anyway.

        Raises:
            BundleError: the file is missing, escapes the bundle, or does not
                match the manifest.
        """
        entry = self.manifest.files.get(relative)
        if entry is None:
            raise BundleError(f"{relative!r} is not listed in the bundle manifest")
        path = safe_join(self.root, relative)
        if not path.is_file():
            raise BundleError(
                f"bundle file {relative!r} is missing from {self.root}; copy the whole "
                "bundle directory or re-export it"
            )
        if verify or self.signed_by is not None:  # a signed bundle is always checked
            _check_file(path, relative, entry, full)

        return path

    def graph_path(self, relative: str, verify: bool = True) -> Path:
        """A graph's verified path (its external-data files verified too)."""
        for companion in self.companion_files(relative):
            self.verified_path(companion, verify)
        return self.verified_path(relative, verify)

    def encoder_path(self, graph: EncoderGraph, verify: bool = True) -> Path:
        """An encoder graph's verified path."""
        return self.graph_path(graph.file, verify)

    def companion_files(self, graph_path: str) -> list[str]:
        """Files stored next to a graph as ONNX external data (``<graph>.data``...)."""
        stem = PurePosixPath(graph_path).name
        return [
            name
            for name in self.manifest.files
            if name != graph_path and PurePosixPath(name).name.startswith(stem + ".")
        ]


def _check_file(path: Path, relative: str, entry: FileEntry, full: bool = False) -> None:
    size = path.stat().st_size
    if size != entry.size:
        raise BundleError(
            f"bundle file {relative!r} has {size} bytes, the manifest says {entry.size}: "
            "it was truncated or changed; re-copy or re-export the bundle"
        )
    if not full and stamps.trusted(path, entry.sha256):
        logger.debug("%s unchanged since it was hashed (stamp)", relative)
        return
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise BundleError(
            f"bundle file {relative!r} fails its sha256 check (tampered or corrupt); "
            "re-copy or re-export the bundle"
        )
    stamps.remember(path, digest)
    logger.debug("verified %s (%d bytes)", relative, size)
