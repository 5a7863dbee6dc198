"""ufd-bundle verify / info / slim."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ufd.cli.bundle import app
from ufd.runtime import Detector
from ufd.runtime.methods import open_bundle

runner = CliRunner()


@pytest.fixture
def copy(full_bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(full_bundle, target)
    return target


def test_verify_accepts_a_whole_bundle(copy: Path) -> None:
    result = runner.invoke(app, ["verify", str(copy)])
    assert result.exit_code == 0, result.output
    assert "every file matches its sha256" in result.stdout


def test_verify_names_each_bad_file(copy: Path) -> None:
    manifest = open_bundle(copy).manifest
    nn = manifest.methods["nn"].files["index"]
    head = manifest.methods["linear"].files["graph"]
    data = bytearray((copy / nn).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    (copy / nn).write_bytes(bytes(data))
    (copy / head).write_bytes(b"short")
    (copy / "encoder.fp16.onnx").unlink()
    (copy / "stray.bin").write_bytes(b"?")
    result = runner.invoke(app, ["verify", str(copy)])
    assert result.exit_code == 2
    for name, why in ((nn, "sha256"), (head, "truncated"), ("encoder.fp16.onnx", "missing")):
        assert f"BAD {name}: " in result.stderr and why in result.stderr
    assert "3 problem(s)" in result.stderr  # damaged files first; the stray one after repair


def test_verify_loads_what_hashes_cannot_judge(copy: Path) -> None:
    from ufd.runtime.bundle.update import file_entry, write_manifest

    graph = copy / "encoder.fp32.onnx"
    graph.write_bytes(b"not a graph at all")  # consistent hashes, broken content
    manifest = open_bundle(copy).manifest
    files = {**manifest.files, "encoder.fp32.onnx": file_entry(graph)}
    import dataclasses

    write_manifest(copy, dataclasses.replace(manifest, files=files))
    result = runner.invoke(app, ["verify", str(copy)])
    assert (
        result.exit_code == 2 and "BAD encoder.fp32.onnx: onnxruntime cannot load" in result.stderr
    )


def test_info_describes_the_bundle(copy: Path) -> None:
    result = runner.invoke(app, ["info", str(copy)])
    assert result.exit_code == 0, result.output
    assert "ufd-tiny-vit" in result.stdout and "encoder int8:" in result.stdout
    assert "method realonly: threshold" in result.stdout and "(calibrated)" in result.stdout
    about = json.loads(runner.invoke(app, ["info", str(copy), "--json"]).stdout)
    assert set(about["encoders"]) == {"fp32", "fp16", "int8", "int8-portable"}
    assert about["methods"]["nn"]["config"]["backend"] == "usearch"
    assert about["parity"]["fp32"]["max_abs_logit_error"] <= 1e-4


def test_slim_keeps_what_a_device_needs(copy: Path) -> None:
    before = Detector.open(copy, precision="int8", provider="cpu").score_features(
        __import__("numpy").zeros((1, 768), "float32"), ["z"], "all"
    )
    result = runner.invoke(app, ["slim", str(copy), "--keep", "int8"])
    assert result.exit_code == 0, result.output
    assert not (copy / "encoder.fp32.onnx").exists() and not (copy / "encoder.fp16.onnx").exists()
    assert open_bundle(copy).manifest.precisions == ["int8"]
    assert runner.invoke(app, ["verify", str(copy)]).exit_code == 0
    after = Detector.open(copy, provider="cpu").score_features(
        __import__("numpy").zeros((1, 768), "float32"), ["z"], "all"
    )
    assert after == before
    refused = runner.invoke(app, ["slim", str(copy), "--keep", "fp16"])
    assert refused.exit_code == 2 and "would drop every encoder" in refused.stderr
    assert (copy / "encoder.int8.onnx").exists()
