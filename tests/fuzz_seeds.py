"""Seed corpora for the fuzz targets (``python benchmarks/fuzz.py --make-seeds``).

Small, valid inputs of each kind, made here (no downloads): images in the
common formats, files with generator metadata, XMP packets, EXIF blocks,
request bodies, manifests. Findings are added by hand next to them, named
``finding-*``, once fixed.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from PIL import Image, PngImagePlugin

XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
    b'22-rdf-syntax-ns#"><rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/'
    b'2008-02-29/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" Iptc4xmpExt:DigitalSourceType='
    b'"http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia" '
    b'xmp:CreatorTool="Adobe Firefly"/></rdf:RDF></x:xmpmeta>'
)


def _image(size: tuple[int, int] = (24, 20)) -> Image.Image:
    return Image.linear_gradient("L").resize(size).convert("RGB")


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def images() -> dict[str, bytes]:
    base = _image()
    found = {
        f"image.{fmt.lower()}": _save(base, fmt)
        for fmt in ("PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP", "TGA", "PPM")
    }
    found["palette.png"] = _save(base.convert("P"), "PNG", transparency=0)
    found["16bit.png"] = _save(Image.new("I;16", (12, 9), 4000), "PNG")
    found["lzw.tiff"] = _save(base, "TIFF", compression="tiff_lzw")
    found["truncated.jpg"] = found["image.jpeg"][:120]
    return found


def with_metadata() -> dict[str, bytes]:
    base = _image()
    text = PngImagePlugin.PngInfo()
    text.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler, Model: sd_xl_base_1.0")
    comfy = PngImagePlugin.PngInfo()
    comfy.add_text("prompt", json.dumps({"3": {"class_type": "KSampler"}}))
    exif = Image.Exif()
    exif[0x0131] = "Midjourney v6"
    return {
        "a1111.png": _save(base, "PNG", pnginfo=text),
        "comfyui.png": _save(base, "PNG", pnginfo=comfy),
        "xmp.jpg": _save(base, "JPEG", xmp=XMP),
        "xmp.png": _save(base, "PNG", xmp=XMP),
        "exif-software.jpg": _save(base, "JPEG", exif=exif.tobytes()),
    }


def bodies() -> tuple[dict[str, bytes], dict[str, bytes]]:
    png = _save(_image((8, 8)), "PNG")
    part = (
        b'--ufdfuzz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + png + b"\r\n"
    )
    field = b'--ufdfuzz\r\nContent-Disposition: form-data; name="method"\r\n\r\nlinear\r\n'
    multipart = {
        "two.bin": part + part + field + b"--ufdfuzz--\r\n",
        "one.bin": part + b"--ufdfuzz--\r\n",
    }
    image = {"name": "a.png", "data": base64.b64encode(png).decode()}
    json_bodies = {
        "one.json": json.dumps({"images": [image]}).encode(),
        "k.json": json.dumps({"images": [image, image], "method": "nn", "k": 3}).encode(),
    }
    return multipart, json_bodies


def manifests() -> dict[str, bytes]:
    here = Path(__file__).with_name("fixtures") / "bundle-v2" / "manifest.json"
    document = json.loads(here.read_text())
    return {"v2.json": here.read_bytes(), "v2-min.json": json.dumps(document).encode()}


def exif_blocks() -> dict[str, bytes]:
    exif = Image.Exif()
    exif[0x0131] = "DALL-E"
    exif[0x010E] = "made by a generator"
    return {"software.bin": exif.tobytes()}


def write_all(root: Path) -> None:
    """Write every target's seeds under ``root/<target>/``."""
    multipart, json_bodies = bodies()
    files = images() | with_metadata()
    corpora = {
        "decode": images(),
        "provenance": files,
        "xmp": {"packet.xmp": XMP, "truncated.xmp": XMP[:120]},
        "png-text": {"a1111.txt": b"a cat\nSteps: 20, Model: sdxl", "comfy.txt": b'{"1": {}}'},
        "exif": exif_blocks(),
        "c2pa": {k: v for k, v in files.items() if k.endswith((".jpg", ".png"))},
        "multipart": multipart,
        "json": json_bodies,
        "manifest": manifests(),
    }
    for target, seeds in corpora.items():
        folder = root / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (folder / f"seed-{name}").write_bytes(data)
