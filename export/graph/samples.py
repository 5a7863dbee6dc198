"""A folder of sample photos in many sizes and modes, for demos and checks.

Real photographs come from scikit-image's bundled data (astronaut, chelsea,
coffee, rocket, ...) when it is installed; otherwise synthetic probe images
stand in. Each photo is also written in the awkward forms a detector meets:
smaller than the crop, thin strips, odd sizes, grayscale, RGBA, palette,
CMYK, TIFF, BMP, WebP, animated GIF.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from PIL import Image

from ufd.export.graph.probes import synthetic_probes

logger = logging.getLogger(__name__)

SKIMAGE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "camera.png",
    "retina.jpg",
    "hubble_deep_field.jpg",
    "motorcycle_left.png",
    "logo.png",
    "coins.png",
    "no_time_for_that_tiny.gif",
    "multipage_rgb.tif",
)


def skimage_data_dir() -> Path | None:
    """scikit-image's data folder, or ``None`` when it is not installed."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder if folder.is_dir() else None


def source_photos() -> list[tuple[str, Image.Image]]:
    """(name, RGB image) pairs: real photos when available, else synthetic ones."""
    folder = skimage_data_dir()
    photos = []
    if folder is not None:
        for name in SKIMAGE_PHOTOS:
            try:
                with Image.open(folder / name) as img:
                    photos.append((Path(name).stem, img.convert("RGB")))
            except OSError:  # missing, or a codec Pillow lacks (multipage_rgb.tif)
                continue
    if not photos:
        logger.info("scikit-image not installed: using synthetic sample images")
        photos = [(f"synthetic{i}", img) for i, img in enumerate(synthetic_probes())]
    return photos


def write_samples(folder: Path, variants: bool = True) -> list[Path]:
    """Write sample images into ``folder`` (created); return their paths, sorted.

    Originals are copied as their own files (their original format and mode).
    With ``variants``, each of the first photos is also written in awkward sizes
    and modes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    data = skimage_data_dir()
    if data is not None:
        for name in SKIMAGE_PHOTOS:
            if (data / name).is_file():
                target = folder / name
                target.write_bytes((data / name).read_bytes())
                written.append(target)
    photos = source_photos()
    if not written:
        for name, image in photos:
            written.append(_save(image, folder / f"{name}.png"))
    if variants:
        for name, image in photos[:3]:
            written += _write_variants(name, image, folder)
    return sorted(written)


def _write_variants(name: str, image: Image.Image, folder: Path) -> list[Path]:
    w, h = image.size
    out = [
        _save(image.resize((120, 90)), folder / f"{name}_small_120x90.jpg"),
        _save(image.resize((223, 225)), folder / f"{name}_odd_223x225.png"),
        _save(image.crop((0, 0, min(w, 333), min(h, 257))), folder / f"{name}_odd_crop.webp"),
        _save(image.resize((1, 400)), folder / f"{name}_strip_1x400.png"),
        _save(image.resize((400, 1)), folder / f"{name}_strip_400x1.bmp"),
        _save(image.convert("L"), folder / f"{name}_gray.png"),
        _save(image.convert("RGBA"), folder / f"{name}_rgba.png"),
        _save(image.convert("P", palette=Image.Palette.ADAPTIVE), folder / f"{name}_palette.gif"),
        _save(image.convert("CMYK"), folder / f"{name}_cmyk.jpg"),
        _save(image, folder / f"{name}_copy.tiff"),
        _save(image.resize((w * 2, h * 2)), folder / f"{name}_large.JPG"),
    ]
    return out


def _save(image: Image.Image, path: Path) -> Path:
    image.save(path, quality=92) if path.suffix.lower() in (".jpg", ".jpeg") else image.save(path)
    return path


def write_sample_video(path: Path, seconds: int = 3, size: tuple[int, int] = (320, 240)) -> Path:
    """A short H.264 MP4 at ``path``: each second one of the sample photos, panning.

    Raises:
        ImportError: PyAV is not installed (``pip install 'ufd[video]'``).
    """
    import av
    import numpy as np

    photos = [image.convert("RGB") for _, image in source_photos()][:seconds]
    rate = 10
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for second, photo in enumerate(photos):
            wide = photo.resize((size[0] + rate * 4, size[1]))
            for step in range(rate):
                view = wide.crop((step * 4, 0, step * 4 + size[0], size[1]))
                frame = av.VideoFrame.from_ndarray(np.asarray(view), format="rgb24")
                frame.pts = second * rate + step
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
