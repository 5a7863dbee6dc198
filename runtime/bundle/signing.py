"""Signed bundles: who published a bundle, checked before anything in it is used.

A bundle's ``manifest.json`` pins the sha256 of every other file, and every file
is checked against it when it is loaded; so a signature over the manifest is a
signature over the whole bundle. ``ufd-bundle sign`` writes one with OpenSSF
model signing (``model-signing``: a Sigstore bundle with a DSSE envelope, an
elliptic-curve key or a certificate, offline) to ``signature.sig`` beside the
manifest.

Trust is configured per process: ``--trust-key PUB.pem`` on any command, or
``UFD_TRUSTED_KEYS`` (public keys, separated by ``:``), and ``UFD_TRUSTED_CERTS``
(certificate chains: root and intermediates). With trust configured, a bundle
that is unsigned, signed by another key, or changed after signing is refused
(:class:`~ufd.runtime.errors.BundleError`: exit 2). Without it, bundles load as
they always did. The manifest is verified from the very bytes that are then
parsed, so it cannot change between the check and its use.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ufd.runtime.errors import BundleError, UsageError

SIGNATURE_NAME = "signature.sig"
KEYS_ENV, CERTS_ENV = "UFD_TRUSTED_KEYS", "UFD_TRUSTED_CERTS"
SIGNING_HINT = "pip install 'ufd[signing]'"


def trust(keys: Sequence[Path] = (), certificates: Sequence[Path] = ()) -> None:
    """Trust only bundles signed by these keys (or certificate chains), in this process.

    Set in the environment, so worker processes (ufd-scan) apply the same policy.

    Raises:
        UsageError: a key or certificate file does not exist.
    """
    for name, paths in ((KEYS_ENV, keys), (CERTS_ENV, certificates)):
        missing = [str(p) for p in paths if not Path(p).is_file()]
        if missing:
            raise UsageError(f"no such file: {', '.join(missing)}")
        if paths:
            os.environ[name] = os.pathsep.join(str(Path(p).absolute()) for p in paths)


def trusted() -> tuple[list[Path], list[Path]]:
    """The public keys and certificate chains this process trusts (both empty: no policy)."""

    def read(name: str) -> list[Path]:
        return [Path(p) for p in os.environ.get(name, "").split(os.pathsep) if p.strip()]

    return read(KEYS_ENV), read(CERTS_ENV)


def check(root: Path, manifest_bytes: bytes) -> str | None:
    """Check the bundle's signature when a trust policy is set; the signer, or ``None``.

    Raises:
        BundleError: trust is configured and the bundle is unsigned, signed by no
            trusted key, or changed since it was signed.
    """
    keys, certificates = trusted()
    if not keys and not certificates:
        return None
    signature = root / SIGNATURE_NAME
    if not signature.is_file():
        raise BundleError(
            f"bundle {root} is not signed, and this run trusts only signed bundles "
            f"({KEYS_ENV}/--trust-key); sign it with ufd-bundle sign, or trust it otherwise"
        )
    failures = []
    for kind, paths in (("key", keys), ("certificate", certificates)):
        for path in paths:
            try:
                _verify(manifest_bytes, signature, kind, path)
                return f"{kind} {path.name}"
            except BundleError as e:
                failures.append(f"{path.name}: {e}")
    raise BundleError(
        f"bundle {root} is signed, but not by a trusted key, or it changed after signing "
        f"({'; '.join(failures)}); do not use it: get the bundle again from its publisher"
    )


def _verify(manifest_bytes: bytes, signature: Path, kind: str, trusted_file: Path) -> None:
    verifying = _model_signing("verifying")
    config = verifying.Config()
    if kind == "key":
        config = config.use_elliptic_key_verifier(public_key=trusted_file)
    else:
        config = config.use_certificate_verifier(certificate_chain=[trusted_file])
    with tempfile.TemporaryDirectory(prefix="ufd-manifest-") as folder:
        copy = Path(folder) / "manifest.json"
        copy.write_bytes(manifest_bytes)  # the bytes that will be parsed, not the file again
        try:
            config.verify(copy, signature)
        except Exception as e:  # model-signing raises ValueError and others, with reasons
            raise BundleError(_first_line(e)) from e


def sign(
    root: Path, key: Path, certificate: Path | None = None, chain: Sequence[Path] = ()
) -> Path:
    """Sign the bundle at ``root`` (its manifest) with an EC private key; the signature's path.

    With ``certificate`` (and its ``chain``), the signature carries the certificate.

    Raises:
        UsageError: the key cannot be used.
        BundleError: not a bundle.
    """
    manifest = root / "manifest.json"
    if not manifest.is_file():
        raise BundleError(f"{root} is not a bundle (no manifest.json)")
    signing = _model_signing("signing")
    config = signing.Config()
    try:
        if certificate is None:
            config = config.use_elliptic_key_signer(private_key=key)
        else:
            config = config.use_certificate_signer(
                private_key=key, signing_certificate=certificate, certificate_chain=list(chain)
            )
        target = root / SIGNATURE_NAME
        tmp = root / f".{SIGNATURE_NAME}.tmp"
        config.sign(manifest, tmp)
        os.replace(tmp, target)
    except (OSError, ValueError, TypeError) as e:
        raise UsageError(f"cannot sign with {key}: {_first_line(e)}") from e
    return target


def _model_signing(part: str) -> Any:
    try:
        import importlib

        return importlib.import_module(f"model_signing.{part}")
    except ModuleNotFoundError as e:
        raise UsageError(
            f"signed bundles need model-signing, which is not installed: {SIGNING_HINT}"
        ) from e


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]
