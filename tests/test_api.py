"""The server-ready Python API: images from bytes and files, no expansion, threads."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import random_image
from PIL import Image
from typer.testing import CliRunner

from ufd.cli.detect import app as detect_app
from ufd.runtime import Detector, ImageError
from ufd.runtime.io.decode import decode_image

runner = CliRunner()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("api")
    sizes = [(300, 260), (120, 90), (640, 480), (224, 224), (1, 300), (500, 231)]
    return [random_image(folder / f"p{i}.png", size, seed=i) for i, size in enumerate(sizes)]


def test_bytes_file_objects_and_paths_score_alike(tiny_bundle: Path, photos: list[Path]) -> None:
    detector = Detector.open(tiny_bundle, provider="cpu", precision="fp32")
    by_path = detector.score_images(photos)
    by_bytes = detector.score_images(
        [p.read_bytes() for p in photos], names=[str(p) for p in photos]
    )
    with photos[0].open("rb") as fh:
        by_file = detector.score_images([fh], names=[str(photos[0])])
    assert by_path == by_bytes and by_file[0] == by_path[0]
    assert [r.path for r in detector.score_images([photos[0].read_bytes()])] == ["image-0"]


def test_nothing_is_expanded_or_searched(tiny_bundle: Path, photos: list[Path]) -> None:
    detector = Detector.open(tiny_bundle, provider="cpu")
    folder = photos[0].parent
    records = detector.score_images([folder, str(folder / "*.png"), b"", b"junk"])
    assert [r.error for r in records] == [
        "is a directory, not an image file",
        "no such file or directory",
        "empty file (0 bytes)",
        "not a recognised image format (corrupt or not an image)",
    ]


def test_decoding_bytes_checks_the_pixel_cap_and_leaves_pillow_alone(photos: list[Path]) -> None:
    before = Image.MAX_IMAGE_PIXELS
    data = photos[2].read_bytes()  # 640 x 480
    with pytest.raises(ImageError, match="over the cap of 1,000"):
        decode_image(data, max_pixels=1000)
    assert decode_image(io.BytesIO(data), max_pixels=10**9).size == (640, 480)
    assert before == Image.MAX_IMAGE_PIXELS  # a cap above Pillow's never changes its global


def test_eight_threads_get_the_records_of_sequential_calls(
    full_bundle: Path, photos: list[Path]
) -> None:
    detector = Detector.open(full_bundle, provider="cpu")  # int8: one image per call
    jobs = [photos[i % len(photos) :] + photos[: i % len(photos)] for i in range(16)]
    sequential = [detector.score_images(job, method="all") for job in jobs]
    fresh = Detector.open(full_bundle, provider="cpu")  # methods load lazily, under threads
    start = threading.Barrier(8)  # the first eight calls begin together

    def run(index: int) -> list:
        if index < 8:
            start.wait()
        return fresh.score_images(jobs[index], method="all")

    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(run, range(len(jobs))))
    assert threaded == sequential


def test_io_binding_state_is_per_thread(tiny_bundle: Path) -> None:
    from ufd.runtime.sessions import EncoderSession

    session = EncoderSession(tiny_bundle / "encoder.fp32.onnx", io_binding=True)
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(n, 3, 224, 224)).astype(np.float32) for n in (1, 2, 3, 1) * 4]
    expected = [EncoderSession(tiny_bundle / "encoder.fp32.onnx")(b) for b in batches]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(session, batches))
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "magic"], "unknown method 'magic'"),
        (["--method", ","], "no method"),
        (["--method", "nn"], "no nn method"),
        (["--k", "0"], "--k"),
        (["--batch-size", "0"], "--batch-size"),
        (["--format", "xml"], "unknown --format"),
        (["--provider", "rocm"], "unknown provider 'rocm'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    tiny_bundle: Path, photos: list[Path], args: list[str], message: str
) -> None:
    result = runner.invoke(detect_app, [str(tiny_bundle), str(photos[0]), *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.stderr


def test_verbose_shows_the_traceback(tiny_bundle: Path, photos: list[Path]) -> None:
    result = runner.invoke(detect_app, [str(tiny_bundle), str(photos[0]), "--method", "nn", "-v"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "error: bundle" in result.stderr
