"""Real-world inputs: every image format this install decodes, skips counted, C noise kept off.

The folder holds each format Pillow's own test images cover that Pillow (or an
installed plugin) can write, plus hand-made XPM and FITS files it can only read,
plus files that are not images; nothing is downloaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import broken_strip_tiff
from PIL import Image
from typer.testing import CliRunner

from ufd.cli.detect import app as detect_app
from ufd.runtime.io.formats import register_plugins
from ufd.runtime.io.inputs import DUPLICATE, NOT_AN_IMAGE, Skipped, expand_inputs

WRITABLE = {  # file name -> (Pillow format, mode)
    "a.avif": ("AVIF", "RGB"),
    "a.blp": ("BLP", "P"),
    "a.bmp": ("BMP", "RGB"),
    "a.dds": ("DDS", "RGB"),
    "a.dib": ("DIB", "RGB"),
    "a.gif": ("GIF", "P"),
    "a.icns": ("ICNS", "RGB"),
    "a.ico": ("ICO", "RGB"),
    "a.im": ("IM", "RGB"),
    "a.JPG": ("JPEG", "RGB"),
    "a.jp2": ("JPEG2000", "RGB"),
    "a.j2k": ("JPEG2000", "RGB"),
    "a.mpo": ("MPO", "RGB"),
    "a.msp": ("MSP", "1"),
    "a.pcx": ("PCX", "RGB"),
    "a.png": ("PNG", "RGBA"),
    "a.ppm": ("PPM", "RGB"),
    "a.pgm": ("PPM", "L"),
    "a.pbm": ("PPM", "1"),
    "a.qoi": ("QOI", "RGB"),
    "a.sgi": ("SGI", "RGB"),
    "a.tga": ("TGA", "RGB"),
    "a.tiff": ("TIFF", "RGB"),
    "a.webp": ("WEBP", "RGB"),
    "a.xbm": ("XBM", "1"),
}
PLUGIN_WRITABLE = {"HEIC/HEIF": ("a.heic", "HEIF"), "JPEG XL": ("a.jxl", "JXL")}
NOT_IMAGES = ("notes.txt", "meta.json", "clip.mpg", "Thumbs.db")  # videos: test_video.py

XPM = b"""/* XPM */
static char *a[] = {
"4 2 2 1",
"  c #000000",
". c #FFFFFF",
" .. ",
". . "
};
"""


def _fits() -> bytes:
    cards = [
        "SIMPLE  =                    T",
        "BITPIX  =                    8",
        "NAXIS   =                    2",
        "NAXIS1  =                    8",
        "NAXIS2  =                    8",
        "END",
    ]
    header = "".join(card.ljust(80) for card in cards).ljust(2880).encode()
    return header + bytes(range(64)).ljust(2880, b"\0")


@pytest.fixture(scope="module")
def format_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """Every format, and the names expected to be scored."""
    folder = tmp_path_factory.mktemp("formats")
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), "RGB")
    scored = set()
    for name, (fmt, mode) in WRITABLE.items():
        image = base.convert(mode) if mode != "P" else base.quantize(64)
        options = {"save_all": True, "append_images": [base]} if fmt == "MPO" else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Pillow 15 drops writing IM
            image.save(folder / name, format=fmt, **options)
        scored.add(name)
    installed = register_plugins()
    for plugin, (name, fmt) in PLUGIN_WRITABLE.items():
        if plugin in installed:
            base.save(folder / name, format=fmt)
            scored.add(name)
    (folder / "a.xpm").write_bytes(XPM)
    (folder / "a.fits").write_bytes(_fits())
    scored |= {"a.xpm", "a.fits"}
    for name in NOT_IMAGES:
        (folder / name).write_text("not an image")
    return folder, scored


def test_every_readable_format_is_scored_and_each_skip_counted(
    tiny_bundle: Path, format_folder: tuple[Path, set[str]]
) -> None:
    folder, scored = format_folder
    result = CliRunner().invoke(
        detect_app, [str(tiny_bundle), str(folder), "--format", "jsonl", "--precision", "fp32"]
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {Path(r["path"]).name for r in records} == scored
    assert all(r["error"] is None and r["label"] in ("real", "fake") for r in records)
    summary = result.stderr.strip().splitlines()[-1]
    assert f"{len(records)} scored, 0 failed; {len(NOT_IMAGES)} skipped: " in summary
    assert f"{len(NOT_IMAGES)} {NOT_AN_IMAGE}" in summary and ".txt 1" in summary


def test_a_file_reached_twice_is_scored_once(tiny_bundle: Path, tmp_path: Path) -> None:
    from helpers import random_image

    random_image(tmp_path / "x.png", (60, 40))
    random_image(tmp_path / "y.png", (60, 40), seed=1)
    skipped = Skipped()
    items = list(expand_inputs([tmp_path, str(tmp_path / "*.png"), tmp_path / "x.png"], skipped))
    assert [Path(i.path).name for i in items] == ["x.png", "y.png"]
    assert skipped.paths == {DUPLICATE: [str(tmp_path / n) for n in ("x.png", "y.png", "x.png")]}
    result = CliRunner().invoke(detect_app, [str(tiny_bundle), str(tmp_path), f"{tmp_path}/*"])
    assert result.exit_code == 0, result.output
    assert "2 scored, 0 failed; 2 skipped: 2 named again (scored once)" in result.stderr
    verbose = CliRunner().invoke(detect_app, [str(tiny_bundle), str(tmp_path), str(tmp_path), "-v"])
    assert f"skipped {tmp_path / 'x.png'}: {DUPLICATE}" in verbose.stderr


def test_heic_and_jxl_without_their_plugins_say_how_to_read_them(tmp_path: Path) -> None:
    (tmp_path / "phone.HEIC").write_bytes(b"\0" * 16)
    skipped = Skipped()
    list(expand_inputs([tmp_path], skipped))
    if skipped.paths:  # pillow-heif missing here: the summary names the extra
        assert "pip install 'ufd[formats]'" in skipped.summary()
    else:
        assert "HEIC/HEIF" in register_plugins()


def test_c_library_warnings_stay_off_the_terminal(tiny_bundle: Path, tmp_path: Path) -> None:
    """libtiff prints 'TIFFFillStrip: Read error ...' to fd 2; ufd-detect keeps it in the log."""
    (tmp_path / "broken.tif").write_bytes(broken_strip_tiff())
    command = [sys.executable, "-m", "ufd.cli.detect", str(tiny_bundle), str(tmp_path)]
    quiet = subprocess.run([*command, "--format", "jsonl"], capture_output=True, text=True)
    assert quiet.returncode == 1, quiet.stderr
    (record,) = [json.loads(line) for line in quiet.stdout.splitlines()]
    assert record["error"].startswith("damaged image data")
    assert "TIFFFillStrip" not in quiet.stderr and "0 scored, 1 failed" in quiet.stderr
    logged = subprocess.run([*command, "-vv"], capture_output=True, text=True)
    assert "ufd.clib: C library: TIFFFillStrip: Read error" in logged.stderr
