"""What a file's own metadata says about how it was made: XMP, PNG text, EXIF.

* IPTC/XMP ``DigitalSourceType`` (``trainedAlgorithmicMedia``,
  ``compositeWithTrainedAlgorithmicMedia``...) and ``xmp:CreatorTool``, in JPEG,
  PNG, WebP and TIFF (Pillow exposes each format's XMP packet);
* generator metadata known from the wild: AUTOMATIC1111's PNG ``parameters``
  text, ComfyUI's ``prompt`` / ``workflow`` JSON, and EXIF ``Software`` / XMP
  ``CreatorTool`` naming a known generator.

Everything here is untrusted input: packets are capped in size, XMP is read with
bounded regular expressions (never an XML parser: no entities, no DOCTYPE), and a
broken block becomes an entry in ``errors``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from PIL import Image

MAX_XMP_BYTES = 1 << 20
MAX_TEXT_CHARS = 256
_SOURCE_TYPE = re.compile(
    rb"DigitalSourceType(?:\s+rdf:resource)?(?:>|\s*=\s*[\"'])\s*"
    rb"(?:https?://cv\.iptc\.org/newscodes/digitalsourcetype/)?([A-Za-z]{3,80})"
)
_CREATOR_TOOL = re.compile(rb"CreatorTool(?:>|\s*=\s*[\"'])\s*([^<\"']{1,200})")
GENERATED_TYPES = frozenset(
    {
        "trainedAlgorithmicMedia",
        "compositeWithTrainedAlgorithmicMedia",
        "algorithmicMedia",
        "compositeSynthetic",
    }
)
KNOWN_GENERATORS = (
    "midjourney",
    "dall-e",
    "dall·e",
    "dalle",
    "stable diffusion",
    "stablediffusion",
    "sdxl",
    "firefly",
    "novelai",
    "comfyui",
    "invokeai",
    "automatic1111",
    "leonardo",
    "imagen",
    "gemini",
    "ideogram",
    "flux",
    "runway",
    "bing image creator",
    "dreamstudio",
    "nightcafe",
    "craiyon",
    "playground",
)


def read_metadata(image: Image.Image) -> dict[str, Any]:
    """XMP and generator entries of an opened image (empty: nothing said)."""
    found: dict[str, Any] = {}
    errors: list[str] = []
    xmp = _xmp(image, errors)
    if xmp:
        found["xmp"] = xmp
    generator = _generator(image, xmp, errors)
    if generator:
        found["generator"] = generator
    if errors:
        found["errors"] = errors
    return found


def _xmp(image: Image.Image, errors: list[str]) -> dict[str, str]:
    packet = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
    if packet is None:
        return {}
    data = packet.encode("utf-8", "replace") if isinstance(packet, str) else bytes(packet)
    if len(data) > MAX_XMP_BYTES:
        errors.append(f"xmp: {len(data):,} bytes, over the {MAX_XMP_BYTES:,}-byte limit; not read")
        return {}
    if b"<!ENTITY" in data or b"<!DOCTYPE" in data:
        errors.append("xmp: declares entities or a DOCTYPE; refused (not read)")
        return {}
    out = {}
    if match := _SOURCE_TYPE.search(data):
        out["digital_source_type"] = match.group(1).decode("ascii")
    if match := _CREATOR_TOOL.search(data):
        out["creator_tool"] = _clip(match.group(1).decode("utf-8", "replace"))
    if b"xmpmeta" not in data and b"rdf:RDF" not in data:
        errors.append("xmp: packet is malformed (no xmpmeta / rdf:RDF)")
    elif b"<x:xmpmeta" in data and b"</x:xmpmeta>" not in data:
        errors.append("xmp: packet is truncated (no closing x:xmpmeta); read what is there")
    return out


def _generator(image: Image.Image, xmp: dict[str, str], errors: list[str]) -> dict[str, str]:
    info = image.info
    if isinstance(info.get("parameters"), str):
        text = info["parameters"]
        model = re.search(r"Model:\s*([^,\n]{1,80})", text)
        return {
            "source": "png:parameters",
            "name": "AUTOMATIC1111-compatible",
            "detail": _clip(model.group(1) if model else text),
        }
    for key in ("prompt", "workflow"):
        if isinstance(info.get(key), str):
            detail = "workflow JSON"
            try:
                json.loads(info[key])
            except ValueError:
                detail = "malformed JSON"
                errors.append(f"png:{key}: not valid JSON")
            return {"source": f"png:{key}", "name": "ComfyUI", "detail": detail}
    candidates = []
    try:
        software = image.getexif().get(0x0131)
    except Exception as e:  # noqa: BLE001 - a broken EXIF block is an entry, not a failure
        errors.append(f"exif: unreadable ({type(e).__name__})")
        software = None
    if isinstance(software, str):
        candidates.append(("exif:Software", software))
    if "creator_tool" in xmp:
        candidates.append(("xmp:CreatorTool", xmp["creator_tool"]))
    for source, text in candidates:
        lowered = text.lower()
        if any(name in lowered for name in KNOWN_GENERATORS):
            return {"source": source, "name": _clip(text)}
    return {}


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + "..."
