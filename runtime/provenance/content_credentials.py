"""C2PA content credentials (``pip install 'ufd[provenance]'``: c2pa-python).

Reports the active manifest's claim generator, its actions with their
``digitalSourceType``, and how it validated:

* ``validation_state``: c2pa's ``Invalid``, ``Valid`` or ``Trusted``;
* ``intact``: the claim's signature and the hashes of the assertions and of the
  image data verify (``Valid`` or ``Trusted``, no failure but an untrusted
  signer). A tampered file is not intact: its claims are not to be believed;
* ``trusted``: the signer chains to a trust list c2pa was given (``Trusted``);
  anyone can sign an intact manifest with their own certificate;
* ``failures``: c2pa's failure codes.
"""

from __future__ import annotations

import io
from typing import Any

from ufd.runtime.errors import stable_text

_MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
    "AVIF": "image/avif",
    "HEIF": "image/heic",
}
_ACTIONS = ("c2pa.actions", "c2pa.actions.v2")
UNTRUSTED_SIGNER = {"signingCredential.untrusted"}


def read_c2pa(data: bytes, image_format: str | None) -> dict[str, Any] | None:
    """The file's C2PA manifest summary; ``None`` when it has none (or c2pa is absent)."""
    try:
        import c2pa
    except ModuleNotFoundError:
        return None
    mime = _MIME.get(image_format or "")
    if mime is None:
        return None
    try:
        with c2pa.Reader(mime, io.BytesIO(data)) as reader:
            manifest = reader.get_active_manifest() or {}
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
    except Exception as e:  # noqa: BLE001 - c2pa reports "no manifest" as an error too
        text = stable_text(e)
        if "JumbfNotFound" in text or "ManifestNotFound" in text or "no JUMBF" in text:
            return None
        return {"error": f"unreadable manifest: {text[:200]}"}
    failures = _failures(results)
    return {
        "claim_generator": _generator(manifest),
        "actions": _actions(manifest),
        "validation_state": state,
        "intact": state in ("Valid", "Trusted") and set(failures) <= UNTRUSTED_SIGNER,
        "trusted": state == "Trusted" and not failures,
        "failures": failures,
    }


def _generator(manifest: dict) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        return " ".join(str(info[0].get(k, "")) for k in ("name", "version")).strip() or None
    return manifest.get("claim_generator")


def _actions(manifest: dict) -> list[dict[str, str]]:
    found = []
    for assertion in manifest.get("assertions", []):
        if assertion.get("label") not in _ACTIONS:
            continue
        for action in (assertion.get("data") or {}).get("actions", []):
            entry = {"action": str(action.get("action"))}
            if action.get("digitalSourceType"):
                entry["digital_source_type"] = str(action["digitalSourceType"]).rsplit("/", 1)[-1]
            agent = action.get("softwareAgent")
            if isinstance(agent, dict):
                agent = agent.get("name")
            if agent:
                entry["software_agent"] = str(agent)
            found.append(entry)
    return found


def _failures(results: dict) -> list[str]:
    codes = []
    active = results.get("activeManifest") or {}
    for item in active.get("failure", []) or []:
        codes.append(str(item.get("code")))
    return codes
