"""``ufd-bundle``'s engine: check a copied bundle as a whole, describe it, slim it.

* :func:`verify`: every listed file's size and sha256, the manifest, and that
  every graph loads and every bank opens; a problem per bad file.
* :func:`describe`: what the bundle holds (for ``info``).
* :func:`slim`: drop encoder precisions a device does not need, in place: the
  manifest is switched first (atomically), then the files go.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ufd.runtime.bundle import MANIFEST_NAME, PRECISIONS, Bundle, Manifest
from ufd.runtime.bundle.manifest import read_json
from ufd.runtime.bundle.signing import SIGNATURE_NAME
from ufd.runtime.bundle.update import write_manifest
from ufd.runtime.errors import BundleError, UfdError, UsageError
from ufd.runtime.methods import open_bundle


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a bundle: the file (or ``manifest.json``) and why."""

    file: str
    reason: str


def verify(root: Path) -> list[Problem]:
    """Everything wrong with the bundle at ``root`` (empty: it is whole)."""
    try:
        bundle = open_bundle(root)
    except BundleError as e:
        return [Problem(MANIFEST_NAME, str(e))]
    problems = []
    for name in bundle.manifest.files:
        try:
            bundle.verified_path(name, full=True)
        except BundleError as e:
            problems.append(Problem(name, str(e)))
    if problems:
        return problems  # loading damaged files would only repeat these
    problems += _load_everything(bundle)
    listed = set(bundle.manifest.files) | {MANIFEST_NAME, SIGNATURE_NAME}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel not in listed and not PurePosixPath(rel).name.startswith("."):
            problems.append(Problem(rel, "not listed in the manifest (left over or added?)"))
    return problems


def _load_everything(bundle: Bundle) -> list[Problem]:
    """Open every encoder with onnxruntime and load every method (graphs, banks)."""
    from ufd.runtime.methods import MethodSet
    from ufd.runtime.providers import PROVIDERS
    from ufd.runtime.sessions import EncoderSession

    problems = []
    cpu = PROVIDERS["cpu"]
    for precision, graph in bundle.manifest.encoders.items():
        try:
            EncoderSession(
                bundle.encoder_path(graph, verify=False),
                cpu,
                optimization=cpu.optimization(precision),
            )
        except UfdError as e:
            problems.append(Problem(graph.file, str(e)))
    methods = MethodSet(bundle, cpu, verify=False)
    for name, entry in bundle.manifest.methods.items():
        try:
            methods.get(name)
        except UfdError as e:
            problems.append(Problem(", ".join(entry.files.values()) or name, str(e)))
    return problems


def signature_state(root: Path) -> str:
    """One line on the bundle's signature (verified only when a trust policy is set)."""
    bundle = open_bundle(root)  # checks the signature when keys are trusted
    if bundle.signed_by is not None:
        return f"signature verified with the trusted {bundle.signed_by}"
    if (Path(root) / SIGNATURE_NAME).is_file():
        return f"signed ({SIGNATURE_NAME}); not checked: pass --trust-key PUB.pem to check it"
    return "not signed (ufd-bundle sign adds a signature)"


def make_keys(prefix: Path) -> tuple[Path, Path]:
    """A new P-256 key pair: ``PREFIX.pem`` (private, 0600) and ``PREFIX.pub.pem``.

    Raises:
        UsageError: a file is in the way.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private, public = Path(f"{prefix}.pem"), Path(f"{prefix}.pub.pem")
    taken = [str(p) for p in (private, public) if p.exists()]
    if taken:
        raise UsageError(f"{', '.join(taken)} exists already: choose another prefix")
    key = ec.generate_private_key(ec.SECP256R1())
    private.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as fh:
        fh.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def describe(root: Path) -> dict[str, Any]:
    """What the bundle holds, for ``ufd-bundle info``."""
    bundle = open_bundle(root)
    manifest = bundle.manifest
    sizes = {name: entry.size for name, entry in manifest.files.items()}
    encoders = {
        p: {
            "file": g.file,
            "mb": sizes[g.file] / 1e6,
            "quantization": g.quantization,
            "attention": g.attention,
            "batch_invariant": g.batch_invariant,
        }
        for p, g in manifest.encoders.items()
    }
    methods = {}
    for name, entry in manifest.methods.items():
        methods[name] = {
            "threshold": entry.threshold,
            "calibration": None if entry.calibration is None else vars(entry.calibration),
            "mb": sum(sizes.get(f, 0) for f in entry.files.values()) / 1e6,
            "config": _config_dict(entry.config),
        }
    return {
        "schema_version_on_disk": read_json(root / MANIFEST_NAME).get("schema_version"),
        "ufd_version": manifest.ufd_version,
        "created_utc": manifest.created_utc,
        "model": vars(manifest.model),
        "encoders": encoders,
        "methods": methods,
        "parity": {p: vars(r) for p, r in manifest.parity.items()},
        "notes": manifest.notes,
        "signed": (Path(root) / SIGNATURE_NAME).is_file(),
        "signed_by": bundle.signed_by,
        "total_mb": sum(sizes.values()) / 1e6,
    }


def _config_dict(config: Any) -> Any:
    """A method's manifest config as JSON-ready data."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return config


def slim(root: Path, keep: list[str]) -> tuple[Manifest, list[str]]:
    """Keep only the ``keep`` encoder precisions; returns (new manifest, files removed).

    Raises:
        UsageError: an unknown precision, or nothing left to encode with.
    """
    bundle = open_bundle(root)
    manifest = bundle.manifest
    unknown = [p for p in keep if p not in PRECISIONS]
    if unknown:
        raise UsageError(f"unknown precision(s) {unknown}; use {', '.join(PRECISIONS)}")
    kept = {p: g for p, g in manifest.encoders.items() if p in keep}
    if not kept:
        raise UsageError(
            f"--keep {','.join(keep)} would drop every encoder (the bundle has "
            f"{', '.join(manifest.precisions)}); keep at least one of them"
        )
    dropped = [g.file for p, g in manifest.encoders.items() if p not in kept]
    dropped += [c for f in list(dropped) for c in bundle.companion_files(f)]
    files = {k: v for k, v in manifest.files.items() if k not in dropped}
    slimmer = dataclasses.replace(manifest, encoders=kept, files=files)
    write_manifest(root, slimmer)  # the switch: from here the bundle no longer needs them
    for name in dropped:
        (root / name).unlink(missing_ok=True)
    return slimmer, dropped
