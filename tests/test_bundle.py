"""The manifest contract and bundle integrity: hashes, paths, schema."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ufd.runtime import BundleError, Detector
from ufd.runtime.bundle import safe_join
from ufd.runtime.bundle.manifest import SCHEMA_VERSION, Manifest
from ufd.runtime.methods import config_types, open_bundle


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, target)
    return target


def _edit_manifest(bundle: Path, edit) -> None:
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_manifest_round_trip(tiny_bundle: Path) -> None:
    manifest = Manifest.read(tiny_bundle / "manifest.json", config_types())
    again = Manifest.from_dict(json.loads(manifest.to_json()), config_types())
    assert again == manifest
    assert manifest.schema_version == SCHEMA_VERSION
    assert manifest.model.feature_dim == 768
    assert manifest.precisions == ["fp32", "fp16", "int8", "int8-portable"]
    assert set(manifest.files) == {
        "encoder.fp32.onnx",
        "encoder.fp16.onnx",
        "encoder.int8.onnx",
        "encoder.int8-portable.onnx",
        "head.onnx",
        "parity/probes.npz",
    }
    assert manifest.probes.file == "parity/probes.npz" and manifest.probes.n_probes == 8


def test_tampered_file_is_refused(bundle_copy: Path) -> None:
    path = bundle_copy / "head.onnx"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        Detector.open(bundle_copy, precision="fp32", provider="cpu")


def test_truncated_file_is_refused(bundle_copy: Path) -> None:
    path = bundle_copy / "encoder.int8.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(BundleError, match="truncated"):
        Detector.open(bundle_copy, precision="int8", provider="cpu")


def test_missing_file_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / "encoder.fp32.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        Detector.open(bundle_copy, precision="fp32", provider="cpu")


def test_missing_precision_names_the_ones_present(bundle_copy: Path) -> None:
    _edit_manifest(bundle_copy, lambda d: d["encoders"].pop("int8"))
    with pytest.raises(BundleError, match="fp32, fp16"):
        Detector.open(bundle_copy, precision="int8", provider="cpu")


@pytest.mark.parametrize("bad", ["../escape.onnx", "/etc/passwd", "a/../../x", "a\\..\\x", ""])
def test_paths_escaping_the_bundle_are_refused(bundle_copy: Path, bad: str) -> None:
    def edit(data: dict) -> None:
        data["files"][bad] = {"sha256": "0" * 64, "size": 1}

    _edit_manifest(bundle_copy, edit)
    with pytest.raises(BundleError, match="outside the bundle"):
        open_bundle(bundle_copy)


def test_symlink_escaping_the_bundle_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(b"x")
    (bundle_copy / "link.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="outside the bundle"):
        safe_join(bundle_copy, "link.onnx")


def test_newer_schema_is_refused_with_upgrade_hint(bundle_copy: Path) -> None:
    _edit_manifest(bundle_copy, lambda d: d.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(BundleError, match="upgrade ufd"):
        open_bundle(bundle_copy)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("model"), "lacks field"),
        (lambda d: d.update(surprise=1), "unknown field"),
        (lambda d: d["model"].update(feature_dim="768"), "feature_dim must be of type int"),
        (lambda d: d["preprocess"].update(mode="stretch"), "preprocess.mode is 'stretch'"),
        (lambda d: d["encoders"]["int8"].update(quantization="fancy"), "quantization is 'fancy'"),
        (lambda d: d["encoders"].update(fp8=d["encoders"]["fp32"]), "key is 'fp8'"),
        (lambda d: d["methods"].update(magic={}), "upgrade ufd"),
        (lambda d: d["methods"]["linear"].update(config={"x": 1}), "must be null"),
        (lambda d: d["preprocess"].update(mean=[0.5, 0.5]), "must have 3 items"),
    ],
)
def test_malformed_manifest_is_refused(bundle_copy: Path, edit, message: str) -> None:
    _edit_manifest(bundle_copy, edit)
    with pytest.raises(BundleError, match=message):
        open_bundle(bundle_copy)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a ufd bundle"):
        open_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        open_bundle(tmp_path)


def test_invalid_onnx_is_refused_with_a_clear_message(bundle_copy: Path) -> None:
    from ufd.runtime.bundle import sha256_file

    path = bundle_copy / "encoder.fp32.onnx"
    path.write_bytes(b"this is not a protobuf")

    def rehash(data: dict) -> None:  # a consistent but broken bundle
        data["files"]["encoder.fp32.onnx"] = {"sha256": sha256_file(path), "size": 22}

    _edit_manifest(bundle_copy, rehash)
    with pytest.raises(BundleError, match=r"onnxruntime cannot load encoder\.fp32\.onnx"):
        Detector.open(bundle_copy, precision="fp32", provider="cpu")
