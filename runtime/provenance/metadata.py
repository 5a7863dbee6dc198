"""What a file's own metadata says about how it was made: XMP, PNG text, EXIF.

* IPTC/XMP ``DigitalSourceType`` (``trainedAlgorithmicMedia``,
  ``compositeWithTrainedAlgorithmicMedia``...) and ``xmp:CreatorTool``, in JPEG,
  PNG, WebP and TIFF (Pillow exposes each format's XMP packet);
* generator metadata known from the wild: one rule per thing a generator writes
  (:mod:`.generators`: PNG text chunks, EXIF ``UserComment`` / ``MakerNote`` /
  ``Software``, XMP ``CreatorTool``, A1111's stealth alpha bits).

Everything here is untrusted input: packets are capped in size, XMP is read with
bounded regular expressions (never an XML parser: no entities, no DOCTYPE), and a
broken block becomes an entry in ``errors``.
"""

from __future__ import annotations

import re
from typing import Any

from PIL import Image

from ufd.runtime.provenance.generators import clip_text, read_generator

MAX_XMP_BYTES = 1 << 20
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


def read_metadata(image: Image.Image) -> dict[str, Any]:
    """XMP and generator entries of an opened image (empty: nothing said)."""
    found: dict[str, Any] = {}
    errors: list[str] = []
    xmp = _xmp(image, errors)
    if xmp:
        found["xmp"] = xmp
    generator = read_generator(image, xmp, errors)
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
        out["creator_tool"] = clip_text(match.group(1).decode("utf-8", "replace"))
    if b"xmpmeta" not in data and b"rdf:RDF" not in data:
        errors.append("xmp: packet is malformed (no xmpmeta / rdf:RDF)")
    elif b"<x:xmpmeta" in data and b"</x:xmpmeta>" not in data:
        errors.append("xmp: packet is truncated (no closing x:xmpmeta); read what is there")
    return out
