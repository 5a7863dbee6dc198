"""Images for the browser tests: every PNG, GIF, BMP, WebP and JPEG flavour the page
decodes itself or through the browser, damaged files and decompression bombs.

Pillow does not write 16-bit RGB or interlaced PNGs, so :func:`write_png` does.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from helpers import PNG_SIGNATURE, png_bomb, png_chunk
from PIL import Image

ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, grey+alpha, RGB, RGBA)


def write_png(path: Path, pixels: np.ndarray, interlace: bool = False) -> Path:
    """``pixels`` (H, W, C) of uint8 or uint16 as a PNG, Adam7-interlaced if asked."""
    height, width, channels = pixels.shape
    depth = 16 if pixels.dtype == np.uint16 else 8
    big = pixels.astype(">u2") if depth == 16 else pixels.astype(np.uint8)

    def rows(image: np.ndarray) -> bytes:
        return b"".join(b"\x00" + row.tobytes() for row in image)

    if interlace:
        raw = b"".join(
            rows(big[y0::dy, x0::dx]) for x0, y0, dx, dy in ADAM7 if big[y0::dy, x0::dx].size
        )
    else:
        raw = rows(big)

    header = struct.pack(
        ">IIBBBBB", width, height, depth, COLOUR_TYPE[channels], 0, 0, int(interlace)
    )
    path.write_bytes(
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )
    return path


def photo(size: tuple[int, int] = (320, 240), seed: int = 0) -> np.ndarray:
    """A real photo (scikit-image's astronaut) cut and resized: structure, not noise."""
    from skimage import data

    rng = np.random.default_rng(seed)
    image = Image.fromarray(data.astronaut())
    left, top = (int(v) for v in rng.integers(0, 100, 2))
    return np.asarray(image.crop((left, top, left + 400, top + 400)).resize(size))


def web_corpus(root: Path) -> dict[str, str | None]:
    """Write the files; file name -> expected error substring (``None``: scored)."""
    expect: dict[str, str | None] = {}
    rgb = photo()
    rng = np.random.default_rng(7)

    def save(name: str, image: Image.Image, **options) -> None:
        image.save(root / name, **options)
        expect[name] = None

    save("photo.jpg", Image.fromarray(rgb), quality=90)
    save(
        "photo_444_progressive.jpg",
        Image.fromarray(rgb),
        quality=95,
        subsampling=0,
        progressive=True,
    )
    save("grey.jpg", Image.fromarray(rgb).convert("L"))
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: Pillow (and so ufd) ignore it; a browser would apply it
    save("rotated_exif.jpg", Image.fromarray(rgb), exif=exif.tobytes())
    save("photo.png", Image.fromarray(rgb))
    alpha = np.linspace(0, 255, rgb.shape[0] * rgb.shape[1]).reshape(rgb.shape[:2]).astype(np.uint8)
    save("alpha.png", Image.fromarray(np.dstack([rgb, alpha]), "RGBA"))
    save("grey.png", Image.fromarray(rgb).convert("L"))
    save("grey_alpha.png", Image.fromarray(rgb).convert("LA"))
    save("one_bit.png", Image.fromarray(rgb).convert("1"))
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=200)
    save("palette.png", palette)
    save("palette_transparent.png", palette, transparency=3)
    save(
        "four_bit_palette.png",
        Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16),
        bits=4,
    )
    grey16 = (rgb[..., 0].astype(np.uint32) * 257 + rng.integers(0, 256, rgb.shape[:2])).astype(
        np.uint16
    )
    save("grey16.png", Image.fromarray(grey16))
    wide = rgb.astype(np.uint16) * 257 + rng.integers(0, 256, rgb.shape).astype(np.uint16)
    write_png(root / "rgb16.png", wide)
    write_png(root / "rgba16_interlaced.png", np.dstack([wide, wide[..., :1]]), interlace=True)
    write_png(root / "interlaced.png", rgb, interlace=True)
    write_png(root / "odd_interlaced_13x7.png", rgb[:7, :13], interlace=True)
    expect |= dict.fromkeys(
        ["rgb16.png", "rgba16_interlaced.png", "interlaced.png", "odd_interlaced_13x7.png"]
    )
    save("palette.gif", palette, transparency=5, interlace=False)
    save("interlaced.gif", palette, interlace=True)
    frames = [Image.fromarray(np.roll(rgb, 40 * i, axis=1)).convert("P") for i in range(3)]
    save("animated.gif", frames[0], save_all=True, append_images=frames[1:], duration=50)
    save("rotated_exif.webp", Image.fromarray(rgb), exif=exif.tobytes(), lossless=True)
    save("lossy.webp", Image.fromarray(rgb), quality=80)
    save("lossless.webp", Image.fromarray(rgb), lossless=True)
    save("photo.bmp", Image.fromarray(rgb))
    save("palette.bmp", palette)
    save("small_90x60.png", Image.fromarray(rgb[:60, :90]))
    save("large_1200x900.jpg", Image.fromarray(photo((1200, 900), seed=3)), quality=92)
    good = (root / "photo.png").read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    expect["truncated.png"] = "damaged image data"
    jpeg = (root / "photo.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(jpeg[:400])
    expect["truncated.jpg"] = "damaged image data"
    (root / "empty.png").write_bytes(b"")
    expect["empty.png"] = "empty file"
    (root / "text.jpg").write_text("hello, I am not a JPEG")
    expect["text.jpg"] = "not a recognised image format"
    png_bomb(root / "bomb_header.png", 10_000, 10_000)  # 100 MP > the 64 MP cap
    expect["bomb_header.png"] = "over the cap"
    Image.new("L", (9000, 8000)).save(root / "bomb_real.png")  # 72 MP of zeros, 70 kB
    expect["bomb_real.png"] = "over the cap"
    return expect
