"""C2PA content credentials (``pip install 'ufd[provenance]'``: c2pa-python).

Reports the active manifest's claim generator, its actions with their
``digitalSourceType``, and how it validated:

* ``manifest``: ``embedded`` (in the file) or ``remote`` (the file names a URL,
  ``remote_url``). ufd never fetches it: a file must not make a device or a
  server open connections, so a remote manifest is present but unverified
  (``validation_state`` and ``intact`` are ``null``);
* ``validation_state``: c2pa's ``Invalid``, ``Valid`` or ``Trusted``;
* ``intact``: the claim's signature and the hashes of the assertions, of the
  image data and of the ingredients' manifests verify: ``Valid`` or ``Trusted``
  with nothing in ``broken``. A tampered file is not intact: its claims are not
  to be believed;
* ``broken``: the failure codes that make it not intact (``ingredient:`` for an
  ingredient's), so a state and ``intact`` never disagree without a reason;
* ``trusted``: the signer chains to a trust list c2pa was given (``Trusted``);
  anyone can sign an intact manifest with their own certificate;
* ``failures``: c2pa's failure codes of the active manifest, trust failures
  (``signingCredential.untrusted``, ``cawg.x509.credential.untrusted``) included.
"""

from __future__ import annotations

import io
import re
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
    "MP4": "video/mp4",  # videos, by their container (ufd.runtime.io.containers)
    "MOV": "video/quicktime",
    "AVI": "video/x-msvideo",
}
_ACTIONS = ("c2pa.actions", "c2pa.actions.v2")
TRUST_ONLY = frozenset({"signingCredential.untrusted", "cawg.x509.credential.untrusted"})
"""Failures that say who signed is not on a trust list, not that anything changed."""
_REMOTE = re.compile(r"remote manifests? from url (\S{1,500})")
OFFLINE = {"verify": {"remote_manifest_fetch": False}}


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
        context = c2pa.Context(c2pa.Settings.from_dict(OFFLINE))
        with c2pa.Reader(mime, io.BytesIO(data), context=context) as reader:
            manifest = reader.get_active_manifest() or {}
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
    except Exception as e:  # noqa: BLE001 - c2pa reports "no manifest" as an error too
        text = stable_text(e)
        if "JumbfNotFound" in text or "ManifestNotFound" in text or "no JUMBF" in text:
            return None
        if remote := _REMOTE.search(text):
            return remote_manifest(remote.group(1))
        return {"error": f"unreadable manifest: {text[:200]}"}
    failures = _failures(results.get("activeManifest"))
    broken = [code for code in failures if code not in TRUST_ONLY] + [
        f"ingredient: {code}"
        for delta in results.get("ingredientDeltas") or []
        for code in _failures(delta.get("validationDeltas"))
        if code not in TRUST_ONLY
    ]
    if state not in ("Valid", "Trusted") and not broken:
        broken = [f"validation state {state} (c2pa named no failure)"]
    return {
        "manifest": "embedded",
        "claim_generator": _generator(manifest),
        "actions": _actions(manifest),
        "validation_state": state,
        "intact": state in ("Valid", "Trusted") and not broken,
        "trusted": state == "Trusted" and not failures,
        "failures": failures,
        "broken": broken,
    }


def remote_manifest(url: str) -> dict[str, Any]:
    """A manifest the file only points to: present, not fetched, so not verified."""
    return {
        "manifest": "remote",
        "remote_url": url,
        "claim_generator": None,
        "actions": [],
        "validation_state": None,
        "intact": None,
        "trusted": False,
        "failures": [],
        "broken": [],
    }


def _generator(manifest: dict[str, Any]) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        return " ".join(str(info[0].get(k, "")) for k in ("name", "version")).strip() or None
    return manifest.get("claim_generator")


def _actions(manifest: dict[str, Any]) -> list[dict[str, str]]:
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


def _failures(status: dict[str, Any] | None) -> list[str]:
    """The failure codes of one validation status (the active manifest's, an ingredient's)."""
    return [str(item.get("code")) for item in (status or {}).get("failure", []) or []]
