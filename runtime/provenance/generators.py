"""Generator metadata: what known image generators write into their own files, one rule each.

Each :class:`Rule` reads one place of the file (a PNG text chunk, an EXIF tag,
the XMP ``CreatorTool``, A1111's stealth alpha bits) and names the generator
when the text there matches. Every rule names the file of
``tests/fixtures/provenance/`` that proves it (a real file a public repository
ships); the corpus test removes each rule in turn and checks that its proof
file then reads differently. A new rule is one table entry and one file.

The record's ``generator`` holds the first matching rule's ``name``,
``source`` and ``detail``, and ``sources``: every place that matched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ufd.runtime.provenance.stealth import read_stealth

MAX_TEXT_CHARS = 256
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
EXIF_IFD = 0x8769
USER_COMMENT, MAKER_NOTE, SOFTWARE = 0x9286, 0x927C, 0x0131


@dataclass(frozen=True)
class Rule:
    """Where to look, what must be there, and which generator that means."""

    sources: tuple[str, ...]
    """Places read (``png:KEY``, ``exif:UserComment``, ``exif:MakerNote``,
    ``exif:Software``, ``xmp:CreatorTool``, ``stealth:parameters``)."""
    matches: Callable[[str], bool]
    name: str | None
    """The generator; ``None``: the matching text names it (``Software: NovelAI``)."""
    proof: str
    """The corpus file (under ``tests/fixtures/provenance/``) that proves the rule."""
    detail: Callable[[str], str | None] = lambda text: None
    problem: Callable[[str], str | None] = lambda text: None
    """What is wrong with a matching text (reported in ``errors``; the rule still holds)."""


def _present(text: str) -> bool:
    return True


def _names_generator(text: str) -> bool:
    lowered = text.lower()
    return any(name in lowered for name in KNOWN_GENERATORS)


def _a1111_parameters(text: str) -> bool:
    return "Steps: " in text and "Sampler: " in text


def _json_problem(text: str) -> str | None:
    try:
        json.loads(text)
    except ValueError:
        return "not valid JSON"
    return None


def _a1111_model(text: str) -> str | None:
    model = re.search(r"Model:\s*([^,\n]{1,80})", text)
    return clip_text(model.group(1) if model else text)


RULES: tuple[Rule, ...] = (
    Rule(("png:fooocus_scheme",), _present, "Fooocus", "sd-parsers/fooocus1_cropped.png"),
    Rule(
        ("png:parameters",),
        _present,
        "AUTOMATIC1111-compatible",
        "sd-parsers/automatic1111_cropped.png",
        _a1111_model,
    ),
    Rule(
        ("stealth:parameters",),
        _a1111_parameters,
        "AUTOMATIC1111-compatible",
        "sd-parsers/automatic1111_stealth.png",
        _a1111_model,
    ),
    Rule(
        ("exif:UserComment",),
        _a1111_parameters,
        "AUTOMATIC1111-compatible",
        "sd-parsers/automatic1111_cropped.jpg",
        _a1111_model,
    ),
    Rule(
        ("png:prompt", "png:workflow"),
        _present,
        "ComfyUI",
        "sd-parsers/img2img_cropped.png",
        lambda text: "malformed JSON" if _json_problem(text) else "workflow JSON",
        _json_problem,
    ),
    Rule(("png:invokeai_metadata",), _present, "InvokeAI", "sd-parsers/invokeai_imeta1.png"),
    Rule(("png:sd-metadata",), _present, "InvokeAI", "sd-parsers/invokeai_sdmeta1.png"),
    Rule(("png:Dream",), _present, "InvokeAI", "sd-parsers/invokeai_dream1.png"),
    Rule(
        ("exif:UserComment",),
        lambda text: "Made with OpenAI DALL-E" in text,
        "DALL-E",
        "community-forensics/dalle_00000845.png",
    ),
    Rule(
        ("exif:MakerNote",),
        lambda text: text.startswith("OpenAI--req_"),
        "DALL-E",
        "community-forensics/dalle_00000845.png",
    ),
    Rule(
        ("png:Software", "exif:Software", "xmp:CreatorTool"),
        _names_generator,
        None,
        "sd-parsers/novelai1_cropped.png",
    ),
)
"""The rules, first match first (its ``name`` and ``detail`` are reported)."""


def read_generator(
    image: Image.Image,
    xmp: dict[str, str],
    errors: list[str],
    rules: tuple[Rule, ...] | None = None,
) -> dict[str, Any]:
    """The ``generator`` entry of an opened image (empty: none matched); default :data:`RULES`."""
    rules = RULES if rules is None else rules
    texts = _Texts(image, xmp, errors)
    found: dict[str, Any] = {}
    for rule in rules:
        for source in rule.sources:
            text = texts.get(source)
            if text is None or not rule.matches(text):
                continue
            if problem := rule.problem(text):
                errors.append(f"{source}: {problem}")
            if not found:
                found = {"source": source, "name": rule.name or clip_text(text)}
                detail = rule.detail(text)
                if detail:
                    found["detail"] = detail
                found["sources"] = []
            if source not in found["sources"]:
                found["sources"].append(source)
    return found


class _Texts:
    """The text at each source of one image, read once and only when a rule asks."""

    def __init__(self, image: Image.Image, xmp: dict[str, str], errors: list[str]) -> None:
        self.image, self.xmp, self.errors = image, xmp, errors
        self.cache: dict[str, str | None] = {}
        self._exif: dict[int, Any] | None = None

    def get(self, source: str) -> str | None:
        if source not in self.cache:
            self.cache[source] = self._read(source)
        return self.cache[source]

    def _read(self, source: str) -> str | None:
        kind, _, key = source.partition(":")
        if kind == "png":
            value = self.image.info.get(key)
            return value if isinstance(value, str) else None
        if kind == "xmp":
            return self.xmp.get("creator_tool")
        if kind == "stealth":
            return self._stealth()
        tag = {"UserComment": USER_COMMENT, "MakerNote": MAKER_NOTE, "Software": SOFTWARE}[key]
        return self._exif_text(tag)

    def _stealth(self) -> str | None:
        try:
            return read_stealth(self.image)
        except Exception as e:  # noqa: BLE001 - a broken block is an entry, never a failure
            self.errors.append(f"stealth parameters unreadable: {type(e).__name__}")
            return None

    def _exif_text(self, tag: int) -> str | None:
        if self._exif is None:
            try:
                exif = self.image.getexif()
                found: dict[int, Any] = {**exif.get_ifd(EXIF_IFD), **exif}
            except Exception as e:  # noqa: BLE001
                self.errors.append(f"exif: unreadable ({type(e).__name__})")
                found = {}
            self._exif = found
        return exif_text(self._exif.get(tag))


def exif_text(value: object) -> str | None:
    """An EXIF string or UNDEFINED value as text (UserComment's charset prefix decoded)."""
    if isinstance(value, str):
        return value.rstrip("\x00")
    if not isinstance(value, bytes):
        return None
    head, body = value[:8], value[8:]
    if head == b"UNICODE\x00":  # UTF-16; writers differ in byte order
        big = len(body) > 1 and body[0] == 0
        return body.decode("utf-16-be" if big else "utf-16-le", "replace").rstrip("\x00")
    if head in (b"ASCII\x00\x00\x00", b"\x00" * 8):
        return body.decode("utf-8", "replace").rstrip("\x00")
    return value.decode("utf-8", "replace").rstrip("\x00")


def clip_text(text: str) -> str:
    """Text cut to :data:`MAX_TEXT_CHARS` (reported strings are bounded)."""
    text = text.strip()
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + "..."
