"""Manifest versions: old bundles read as they are and score the same; contract changes bump.

``tests/fixtures/bundle-v2`` is a schema-2 bundle written by the ufd before the
method registry, with every method; ``v2-expected`` holds the records it wrote.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES
from PIL import Image
from typer.testing import CliRunner

from ufd.cli.calibrate import app as calibrate_app
from ufd.cli.detect import app as detect_app
from ufd.runtime import BundleError, Detector
from ufd.runtime.bundle import Manifest
from ufd.runtime.bundle.manifest import (
    SCHEMA_FINGERPRINTS,
    SCHEMA_VERSION,
    schema_fingerprint,
    schema_text,
)
from ufd.runtime.methods import config_types, method_names, open_bundle

V2 = FIXTURES / "bundle-v2"
EXPECTED = FIXTURES / "v2-expected"
runner = CliRunner()
IMAGE_SIZES = [(300, 260), (224, 224), (120, 90), (1, 400), (500, 231), (640, 480)]


@pytest.fixture
def v2_copy(tmp_path: Path) -> Path:
    target = tmp_path / "bundle-v2"
    shutil.copytree(V2, target)
    return target


@pytest.fixture(scope="module")
def fixture_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("v2-images")
    for i, (w, h) in enumerate(IMAGE_SIZES):  # as tests/fixtures/README.md made them
        pixels = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG junk")
    return folder


def _detect(bundle: Path, *args: str) -> list[dict]:
    result = runner.invoke(detect_app, [str(bundle), *args, "--format", "jsonl", "-q"])
    assert result.exit_code in (0, 1), result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    for row in rows:
        row["path"] = Path(row["path"]).name
    return rows


def _expected(name: str) -> list[dict]:
    return [json.loads(line) for line in (EXPECTED / name).read_text().splitlines()]


ADDED_FIELDS = {"nn_source", "nn_source_share"}
"""Fields records gained since v2 was written (attribution; checked below)."""


def _assert_same_records(got: list[dict], expected: list[dict], atol: float) -> None:
    """Same names, fields, labels and errors; numbers within ``atol``; new fields consistent."""
    assert [r["path"] for r in got] == [r["path"] for r in expected]
    for g, e in zip(got, expected, strict=True):
        assert [f for f in g if f not in ADDED_FIELDS] == list(e)
        if "nn_source" in g and g["error"] is None:
            assert g["nn_source"] == ("fake" if g["nn_label"] == "fake" else "real")
            assert set(g["nn_source_share"]) <= {"real", "fake"}
        for key, value in e.items():
            if isinstance(value, float):
                assert g[key] == pytest.approx(value, abs=atol), (e["path"], key)
            else:
                assert g[key] == value, (e["path"], key)


def test_v2_bundle_is_read_as_it_is(v2_copy: Path) -> None:
    before = (v2_copy / "manifest.json").read_bytes()
    manifest = open_bundle(v2_copy).manifest
    assert json.loads(before)["schema_version"] == 2
    assert set(manifest.methods) == {"linear", "nn", "realonly", "traces", "fused"}
    assert manifest.methods["realonly"].calibration.k == 3
    assert manifest.parity["int8"].n_probes == 10  # provenance kept
    (record,) = Detector.open(v2_copy, provider="cpu").score_features(
        np.zeros((1, 768), np.float32), ["z"], "all"
    )
    assert record.ok and record.path == "z"
    for field in ("label", "nn_label", "traces_label", "realonly_label", "fused_label"):
        assert record.get(field) in ("real", "fake"), field  # every method of the v2 bundle ran
    assert (v2_copy / "manifest.json").read_bytes() == before  # never rewritten by reading


def test_v2_bundle_gives_the_same_feature_records() -> None:
    """Identical but for float32 rounding: exact k-NN now computes each query on its own
    (so a score no longer depends on its batch), which moves distances by ~1e-8."""
    features = str(EXPECTED / "features.npy")
    got = _detect(V2, "--features", features, "--method", "all")
    _assert_same_records(got, _expected("features-all.jsonl"), 1e-6)
    got = _detect(V2, "--features", features, "--method", "nn,realonly", "--k", "3")
    _assert_same_records(got, _expected("features-nn-realonly-k3.jsonl"), 1e-6)


def test_v2_bundle_gives_the_same_image_records(fixture_images: Path) -> None:
    """fp32, end to end. (int8 kernels round differently on CPUs with and without
    AVX-512 VNNI, so images-all-int8.jsonl is equal only on the kind of CPU that made it.)"""
    got = _detect(V2, str(fixture_images), "--method", "all", "--precision", "fp32")
    _assert_same_records(got, _expected("images-all-fp32.jsonl"), 1e-5)


def test_updating_a_v2_bundle_writes_the_current_schema(v2_copy: Path, tmp_path: Path) -> None:
    reals = tmp_path / "reals.npy"
    np.save(reals, np.load(EXPECTED / "features.npy"))
    result = runner.invoke(
        calibrate_app,
        [str(v2_copy), "--method", "traces", "--real-features", str(reals), "--target-fpr", "0.2"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((v2_copy / "manifest.json").read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    manifest = Manifest.from_dict(data, config_types())
    assert manifest.methods["traces"].calibration.target_fpr == 0.2
    assert manifest.methods["realonly"].calibration.k == 3  # the rest carried over
    got = _detect(v2_copy, "--features", str(EXPECTED / "features.npy"), "--method", "nn,fused")
    expected = [
        {
            k: v
            for k, v in row.items()
            if k == "path" or k == "error" or k.startswith(("nn_", "fused"))
        }
        for row in _expected("features-all.jsonl")
    ]
    _assert_same_records(got, expected, 1e-6)


def test_schema_1_manifest_migrates() -> None:
    data = json.loads((V2 / "manifest.json").read_text())
    later = ("index", "realonly", "traces", "fusion", "method_thresholds", "calibrations")
    v1 = {k: v for k, v in data.items() if k not in later}
    v1["schema_version"] = 1
    manifest = Manifest.from_dict(v1, config_types())
    assert set(manifest.methods) == {"linear"} and manifest.precisions == ["fp32", "int8"]


def test_newer_schema_says_upgrade(v2_copy: Path) -> None:
    data = json.loads((V2 / "manifest.json").read_text())
    data["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(BundleError, match=r"upgrade ufd \(pip install -U ufd\)"):
        Manifest.from_dict(data, config_types())


def test_provenance_is_read_leniently(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    data = json.loads((bundle / "manifest.json").read_text())
    data["provenance"]["parity"]["fp32"] = {"max_abs_logit_error": "n/a", "new_figure": 1}
    data["provenance"]["made_on"] = {"anything": [1, 2]}
    (bundle / "manifest.json").write_text(json.dumps(data))
    manifest = open_bundle(bundle).manifest
    assert manifest.parity["fp32"].min_feature_cosine is None  # missing: None, not an error
    Detector.open(bundle, provider="cpu")


def test_contract_changes_bump_the_schema() -> None:
    """Changing the manifest dataclasses (or a method's config) needs a new version.

    On failure: bump SCHEMA_VERSION, add its fingerprint to SCHEMA_FINGERPRINTS (never
    edit an old one), and make older manifests still load (runtime/bundle/legacy.py
    when fields moved; new optional fields need nothing).
    """
    configs = config_types()
    assert schema_fingerprint(configs) == SCHEMA_FINGERPRINTS[SCHEMA_VERSION], schema_text(configs)
    assert max(SCHEMA_FINGERPRINTS) == SCHEMA_VERSION
    assert all(f"\n{name}:" in schema_text(configs) for name in method_names())
