"""Bad input never crashes a run nor drops a file; long runs survive kills."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import bad_input_corpus, fault_env, random_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from ufd.cli.detect import app
from ufd.runtime import Detector
from ufd.runtime.errors import ImageError
from ufd.runtime.io.decode import decode_image

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str | None]]:
    return bad_input_corpus(tmp_path_factory.mktemp("corpus"))


def test_every_file_gets_one_record_with_a_specific_reason(
    corpus, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import ImageFile

    root, expect = corpus
    decoded: list[tuple[int, int]] = []  # the size of every image whose pixels were decoded
    load = ImageFile.ImageFile.load

    def counting_load(image):
        decoded.append(image.size)
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    result = runner.invoke(app, [str(tiny_bundle), str(root), "--format", "jsonl", "-q"])
    records = [json.loads(line) for line in result.stdout.splitlines()]
    by_name = {Path(r["path"]).relative_to(root).as_posix(): r for r in records}
    assert len(records) == len(by_name) == len(expect), sorted(by_name)  # no dupes via the loop
    for name, error in expect.items():
        record = by_name[name]
        if error is None:
            assert record["error"] is None, (name, record["error"])
            assert record["label"] in ("fake", "real")
        else:
            assert error in record["error"], (name, record["error"])
            assert record["logit"] is None
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert decoded and max(w * h for w, h in decoded) < 10_000 * 10_000  # bombs: header only


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    deep = (np.arange(256 * 256).reshape(256, 256)).astype(np.uint16)  # 0..65535
    Image.fromarray(deep).save(tmp_path / "deep.png")
    rgb = np.asarray(decode_image(tmp_path / "deep.png"))
    np.testing.assert_array_equal(rgb[..., 0], (deep >> 8).astype(np.uint8))
    assert (rgb == 255).mean() < 0.01  # Pillow's convert("RGB") would make ~all of it white


def test_animated_images_use_the_first_frame(corpus) -> None:
    root, _ = corpus
    for name in ("animated.gif", "animated.webp"):
        first = np.asarray(decode_image(root / name))
        assert first[..., 0].mean() > 200 and first[..., 2].mean() < 50  # red, not blue/green


def test_exif_orientation_is_ignored_by_default(tmp_path: Path) -> None:
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 300, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display
    image.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    plain = decode_image(tmp_path / "rotated.jpg")
    turned = decode_image(tmp_path / "rotated.jpg", exif_transpose=True)
    assert plain.size == (300, 200)  # the official pipeline's view
    assert turned.size == (200, 300)


def test_permission_denied_is_a_record(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = random_image(tmp_path / "locked.png", (64, 64))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("ufd.runtime.io.decode.Image.open", denied)
    with pytest.raises(ImageError, match="permission denied"):
        decode_image(path)


def test_large_valid_image_is_scored(tiny_bundle: Path, tmp_path: Path) -> None:
    big = random_image(tmp_path / "big.jpg", (6000, 4000))
    record = next(Detector.open(tiny_bundle, provider="cpu").score([big]))
    assert record.ok
    capped = Detector.open(tiny_bundle, provider="cpu", max_pixels=10_000_000)
    assert "over the cap" in next(capped.score([big])).error


_SEED_IMAGES = {}


def _seed(fmt: str) -> bytes:
    if fmt not in _SEED_IMAGES:
        buffer = io.BytesIO()
        pixels = np.random.default_rng(3).integers(0, 255, (40, 50, 3), np.uint8)
        Image.fromarray(pixels).save(buffer, fmt)
        _SEED_IMAGES[fmt] = buffer.getvalue()
    return _SEED_IMAGES[fmt]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fmt=st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"]),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=12),
    cut=st.one_of(st.none(), st.integers(0, 2000)),
)
def test_fuzzed_bytes_decode_or_raise_image_error(tmp_path: Path, fmt, edits, cut) -> None:
    data = bytearray(_seed(fmt))
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[:cut]
    path = tmp_path / f"fuzz.{fmt.lower()}"
    path.write_bytes(bytes(data))
    try:
        image = decode_image(path, max_pixels=4_000_000)
    except ImageError:
        return
    assert image.mode == "RGB"
    from ufd.runtime.bundle.manifest import PreprocessConfig
    from ufd.runtime.preprocess import build_preprocessor

    assert build_preprocessor(PreprocessConfig())(image).shape == (3, 224, 224)


# --- long runs -----------------------------------------------------------------------


@pytest.fixture
def many_images(tmp_path: Path) -> Path:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        random_image(folder / f"img{i:03d}.png", (240, 240), seed=i)
    return folder


def _detect_process(
    bundle: Path, folder: Path, output: Path, *extra: str, pause_after: int | None = None
) -> subprocess.Popen:
    """ufd-detect in a process; ``pause_after``: it waits after that many batches (faults)."""
    env = os.environ | (fault_env(f"pause-after-batches={pause_after}") if pause_after else {})
    cmd = [
        sys.executable,
        "-m",
        "ufd.cli.detect",
        str(bundle),
        str(folder),
        "--output",
        str(output),
        "--batch-size",
        "1",
        "--precision",
        "fp32",
        *extra,
    ]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_interruptible,
    )


def _interruptible() -> None:
    """Ctrl-C as a terminal gives it: a suite started in the background (``make test &``,
    ``nohup``) hands its children SIGINT ignored, and Python then never raises
    KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_lines(path: Path, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {n} lines")


def test_killed_run_resumes_without_loss_or_duplicates(
    tiny_bundle: Path, many_images: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out.jsonl"
    proc = _detect_process(tiny_bundle, many_images, output, pause_after=5)
    _wait_for_lines(output, 5)  # it waits there: the kill comes half way, every time
    proc.kill()  # no chance to clean up
    proc.wait()
    with output.open("a") as fh:
        fh.write('{"path": "half a rec')  # what a kill mid-write leaves
    first = output.read_text().count("\n")
    assert first == 5

    resumed = _detect_process(tiny_bundle, many_images, output, "--resume")
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert f"resuming: {first} inputs already" in err
    records = [json.loads(line) for line in output.read_text().splitlines()]
    names = [Path(r["path"]).name for r in records]
    assert sorted(names) == [f"img{i:03d}.png" for i in range(40)]  # each exactly once
    assert all(r["error"] is None for r in records)


def test_ctrl_c_stops_cleanly_with_a_summary(
    tiny_bundle: Path, many_images: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out.jsonl"
    proc = _detect_process(tiny_bundle, many_images, output, pause_after=3)
    try:
        _wait_for_lines(output, 3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # never left paused behind a failed test
    assert proc.returncode == 130
    assert "interrupted:" in err and "--resume" in err and "Traceback" not in err
    lines = output.read_text().splitlines()
    assert all(json.loads(line)["error"] is None for line in lines)  # whole records only


def test_strict_stops_at_the_first_bad_file(tiny_bundle: Path, tmp_path: Path) -> None:
    good = random_image(tmp_path / "a.png", (240, 240))
    bad = tmp_path / "b.png"
    bad.write_bytes(b"junk")
    after = random_image(tmp_path / "c.png", (240, 240))
    args = [str(tiny_bundle), str(good), str(bad), str(after), "--format", "jsonl", "--strict"]
    result = runner.invoke(app, args)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["path"]).name for r in records] == ["a.png", "b.png"]
    assert result.exit_code == 1 and "stopped (--strict) at" in result.stderr


def test_resume_needs_a_parseable_output(tiny_bundle: Path, tmp_path: Path) -> None:
    image = random_image(tmp_path / "a.png", (64, 64))
    result = runner.invoke(app, [str(tiny_bundle), str(image), "--resume"])
    assert result.exit_code == 2 and "--resume needs --output" in result.stderr
    table = tmp_path / "out.txt"
    result = runner.invoke(app, [str(tiny_bundle), str(image), "--resume", "--output", str(table)])
    assert result.exit_code == 2 and "--format jsonl or csv" in result.stderr
