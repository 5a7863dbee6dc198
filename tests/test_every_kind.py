"""Every command on every kind of bundle: whole images, five crops, tiles with an aggregator.

The bundles are today's detectors from random weights (tests/detector_bundles.py):
AlignedForensics (``whole``, input cap 300,000 pixels), B-Free (``five_crops``)
and SPAI (``tiles``). ufd-detect (with --views), ufd-serve, ufd-scan (local and
Ray), ufd-index (nn), ufd-eval and ufd-bundle verify --parity must each give every
image a record or an error record, the same numbers as the library, and the
``input`` note where the input cap cropped an image.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from helpers import random_image
from serving import multipart, post, serving
from typer.testing import CliRunner

from ufd.cli.bundle import app as bundle_app
from ufd.cli.detect import app as detect_app
from ufd.cli.eval import app as eval_app
from ufd.cli.index import app as index_app
from ufd.cli.scan import app as scan_app
from ufd.runtime import Detector

KINDS = ["aligned", "bfree", "spai"]
runner = CliRunner()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """(kind, bundle) for each kind of bundle."""
    return request.param, request.getfixturevalue(f"{request.param}_bundle")[0]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    """Photos in many sizes (one over the 300,000-pixel cap), a thin strip, a bad file."""
    folder = tmp_path_factory.mktemp("kinds-images")
    for name in ("astronaut.png", "chelsea_large.JPG", "camera.png", "coffee_small_120x90.jpg"):
        shutil.copy(sample_dir / name, folder / name)
    random_image(folder / "strip.png", (600, 9), seed=3)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return folder


def detect(bundle: Path, *args: str) -> dict[str, dict]:
    result = runner.invoke(detect_app, [str(bundle), *args, "--format", "jsonl", "-q"])
    assert result.exit_code in (0, 1), result.output
    return {Path(r["path"]).name: r for r in map(json.loads, result.stdout.splitlines())}


def test_detect_scores_every_image_with_views(kind, images: Path) -> None:
    name, bundle = kind
    records = detect(bundle, str(images), "--views", "2", "--precision", "fp32")
    assert set(records) == {p.name for p in images.iterdir()}
    assert records["broken.jpg"]["error"] and records["broken.jpg"]["logit"] is None
    scored = [r for r in records.values() if r["error"] is None]
    assert len(scored) >= 4 and all("views_agree" in r for r in scored)
    local = Detector.open(bundle, precision="fp32", provider="cpu")
    for record in local.score_images(sorted(images.iterdir())):
        if record.error is None:
            assert records[Path(record.path).name]["logit"] == pytest.approx(record.logit, abs=1e-6)
    if name == "aligned":  # 902x600 is over the cap: centre-cropped, and the record says so
        assert records["chelsea_large.JPG"]["input"].startswith("centre 671x446 of 902x600")
        assert records["camera.png"]["input"] is None
    else:
        assert "input" not in scored[0]


def test_serve_answers_as_the_library(kind, images: Path) -> None:
    name, bundle = kind
    files = ["chelsea_large.JPG", "camera.png", "broken.jpg"]
    parts = [("file", f, (images / f).read_bytes()) for f in files]
    with serving(bundle, "--precision", "fp32") as server:
        status, body, _ = post(
            server.url + "/v1/detect", multipart(parts), "multipart/form-data; boundary=ufdtest"
        )
    assert status == 200
    got = {r["path"]: r for r in body["records"]}
    expected = detect(bundle, *(str(images / f) for f in files), "--precision", "fp32")
    for file in files:
        for field in ("logit", "error", *(("input",) if name == "aligned" else ())):
            value = expected[file][field]
            if isinstance(value, float):
                assert got[file][field] == pytest.approx(value, abs=1e-6)
            else:
                assert got[file][field] == value, (file, field)


def scan_rows(out: Path) -> dict[str, dict]:
    table = ds.dataset(out, format="parquet").to_table()
    return {Path(r["path"]).name: r for r in table.to_pylist()}


def assert_rows_equal_detect(out: Path, bundle: Path, images: Path) -> None:
    rows = scan_rows(out)
    expected = detect(bundle, str(images), "--precision", "fp32")
    assert set(rows) == set(expected)
    local = Detector.open(bundle, precision="fp32", provider="cpu")
    for file, record in expected.items():
        row = rows[file]
        assert (row["error"] is None) == (record["error"] is None), file
        assert row.get("input") == record.get("input"), file
        if record["error"] is None:
            assert row["logit"] == pytest.approx(record["logit"], abs=1e-6)
            features, failure = local.encode_pixels([local.prepare(images / file)])
            assert failure is None and np.allclose(row["feature"], features[0], atol=1e-5)


def test_local_scan_rows_equal_detect(kind, images: Path, tmp_path: Path) -> None:
    _, bundle = kind
    out = tmp_path / "scan"
    args = [bundle, images, "--out", out, "--precision", "fp32", "--features", "--no-progress"]
    result = runner.invoke(scan_app, [str(a) for a in args])
    assert result.exit_code == 1, result.output  # the broken file: an error row, exit 1
    assert_rows_equal_detect(out, bundle, images)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["aligned", "spai"])
def test_ray_scan_ships_units_to_its_actors(
    name: str, request: pytest.FixtureRequest, images: Path, tmp_path: Path
) -> None:
    bundle = request.getfixturevalue(f"{name}_bundle")[0]
    out = tmp_path / "scan"
    cmd = [sys.executable, "-m", "ufd.cli.scan", str(bundle), str(images), "--out", str(out),
           "--engine", "ray", "--workers", "1", "--precision", "fp32", "--features",
           "--object-store-mb", "256", "--no-progress"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr
    assert_rows_equal_detect(out, bundle, images)


def test_index_eval_and_device_parity(kind, tmp_path: Path) -> None:
    _, bundle = kind
    work = tmp_path / "bundle"
    shutil.copytree(bundle, work)
    data = tmp_path / "data" / "setA"
    for cls, mode, base in (("0_real", "RGB", 0), ("1_fake", "L", 50)):
        (data / cls).mkdir(parents=True)
        for i in range(4):
            random_image(data / cls / f"{i}.png", (300, 250), mode, seed=base + i)
    built = runner.invoke(
        index_app,
        [str(work), "--real", str(data / "0_real"), "--fake", str(data / "1_fake")],
    )
    assert built.exit_code == 0, built.output
    image = str(data / "1_fake" / "0.png")
    record = detect(work, image, "--method", "linear,nn", "--precision", "fp32")["0.png"]
    assert record["nn_dist_fake"] <= 1e-5  # its own bank entry (the bank is fp32 features)
    report = tmp_path / "report"
    evaluated = runner.invoke(eval_app, [str(work), str(tmp_path / "data"), "--out", str(report)])
    assert evaluated.exit_code == 0, evaluated.output
    results = json.loads((report / "results.json").read_text())
    assert "setA" in json.dumps(results)
    parity = runner.invoke(bundle_app, ["verify", str(work), "--parity", "--json"])
    assert parity.exit_code == 0, parity.output
    verdict = json.loads(parity.stdout)
    assert verdict["graphs"]["fp32"]["ok"]
