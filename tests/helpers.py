"""Constants and small utilities shared by the tests (imported as ``helpers``)."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_HEAD = REPO.parent / "shared" / "reference" / "univfd" / "fc_weights.pth"
TINY_MODEL = "ufd-tiny-vit"
FIXTURES = Path(__file__).with_name("fixtures")


def fault_env(spec: str) -> dict[str, str]:
    """The environment that switches on ufd's test faults (:mod:`ufd.runtime.faults`)."""
    return {"UFD_TEST_FAULTS": spec, "UFD_TEST_FAULTS_ARE_MEANT": "1"}


def random_head(path: Path, dim: int = 768, seed: int = 0) -> Path:
    """A seeded random head in the official file format: ``{'weight': [1, D], 'bias': [1]}``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(1, dim, generator=generator) * 0.05
    torch.save({"weight": weight, "bias": torch.tensor([-0.5])}, path)
    return path


def random_image(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Path:
    """Save a random image of ``size`` (width, height) and ``mode`` at ``path``."""
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").convert(mode).save(path)
    return path


def official_logit(model, fc, path: Path) -> float:
    """The official UnivFD test pipeline, built without ufd code.

    ``PIL.Image.open(path).convert("RGB")`` -> torchvision ``CenterCrop(224)``,
    ``ToTensor``, ``Normalize(CLIP)`` -> CLIP ``encode_image`` -> linear head.
    """
    import torch
    from torchvision import transforms

    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    official = transforms.Compose(
        [transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )
    x = official(Image.open(path).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        return float(fc(model.encode_image(x)).item())


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width x height`` pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    path.write_bytes(PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat))
    return path


def _animated(path: Path, fmt: str) -> Path:
    frames = [Image.new("RGB", (240, 240), color) for color in ("red", "blue", "green")]
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=50)
    return path


def bad_input_corpus(root: Path) -> tuple[Path, dict[str, str | None]]:
    """Every awkward case in ``root``; maps file name -> expected error substring (None: scored)."""
    expect: dict[str, str | None] = {}

    def good(name: str, size=(300, 260), mode="RGB") -> None:
        random_image(root / name, size, mode, seed=len(expect))
        expect[name] = None

    (root / "zero.jpg").write_bytes(b"")
    expect["zero.jpg"] = "empty file"
    jpeg = io.BytesIO()
    Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(jpeg, "JPEG")
    (root / "truncated.jpg").write_bytes(jpeg.getvalue()[:400])
    expect["truncated.jpg"] = "damaged image data"
    (root / "random.png").write_bytes(np.random.default_rng(0).bytes(5000))
    expect["random.png"] = "not a recognised image format"
    (root / "text.jpg").write_text("hello, I am not a JPEG")
    expect["text.jpg"] = "not a recognised image format"
    png_bomb(root / "bomb.png", 10_000, 10_000)  # 100 MP > the 64 MP default cap
    expect["bomb.png"] = "over the cap"
    png_bomb(root / "giant_bomb.png", 100_000, 100_000)  # Pillow's own guard fires first
    expect["giant_bomb.png"] = "decompression bomb"
    (root / "dir.jpg").mkdir()  # a folder named like an image: walked, holds nothing
    good("strip_1x500.png", (1, 500))
    good("tiny_5x7.bmp", (5, 7))
    good("gray.tiff", (333, 250), "L")
    good("cmyk.jpg", (260, 300), "CMYK")
    good("rgba.png", (230, 240), "RGBA")
    good("upper.JPEG", (400, 300))
    good("photo.webp", (300, 300))
    good("ünïcode and spaces é.png", (250, 250))
    pal = Image.new("P", (240, 240))
    pal.putpalette([i % 256 for i in range(768)])
    pal.info["transparency"] = 0
    pal.save(root / "palette_transparent.png", transparency=0)
    expect["palette_transparent.png"] = None
    deep = (np.arange(300 * 300).reshape(300, 300) % 65536).astype(np.uint16)
    Image.fromarray(deep).save(root / "sixteen_bit.png")
    expect["sixteen_bit.png"] = None
    _animated(root / "animated.gif", "GIF")
    _animated(root / "animated.webp", "WEBP")
    expect["animated.gif"] = expect["animated.webp"] = None
    (root / "sub").mkdir()
    os.symlink(root, root / "sub" / "loop")  # a symlink loop back to the root
    good("sub/nested.png")
    return root, expect


def broken_strip_tiff() -> bytes:
    """An LZW TIFF whose strip claims more bytes than the file holds.

    libtiff prints ``TIFFFillStrip: Read error on strip 0`` to fd 2 when it is decoded.
    """
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "TIFF", compression="tiff_lzw")
    data = bytearray(buffer.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        at = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", data, at)
        if tag == 279:  # StripByteCounts
            struct.pack_into("<I" if kind == 4 else "<H", data, at + 8, 60_000)
    return bytes(data)
