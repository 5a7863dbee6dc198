"""Parity measured where a bundle runs: probes, tolerance, the cached check, auto's fallback.

A graph that breaks the tolerance is made here by perturbing the int8 graph's
quantised weights and re-hashing the bundle, so that every file still verifies.
The AVX2 case runs for real under ``qemu-x86_64 -cpu Haswell-v4`` (Debian's
qemu-user; ``make test`` installs it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ufd.cli.bundle import app as bundle_app
from ufd.runtime import Detector, parity
from ufd.runtime.bundle.update import file_entry, write_manifest
from ufd.runtime.methods import open_bundle

runner = CliRunner()


def _perturb(bundle: Path, precision: str, scale: float = 1.0) -> None:
    """Replace the graph's int8 weights by noise (``scale``: how much) and re-hash it."""
    import onnx
    from onnx import numpy_helper

    manifest = open_bundle(bundle).manifest
    name = manifest.encoder(precision).file
    model = onnx.load(bundle / name)
    rng = np.random.default_rng(0)
    for tensor in model.graph.initializer:
        if tensor.name.endswith("_quantized"):
            weights = numpy_helper.to_array(tensor).astype(np.int16)
            noise = rng.integers(-64, 64, weights.shape) * scale
            changed = np.clip(weights + noise.astype(np.int16), -127, 127).astype(np.int8)
            tensor.CopyFrom(numpy_helper.from_array(changed, tensor.name))
    onnx.save(model, bundle / name)
    files = {**manifest.files, name: file_entry(bundle / name)}
    write_manifest(bundle, dataclasses.replace(manifest, files=files))


@pytest.fixture
def broken_int8(tiny_bundle: Path, tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    _perturb(bundle, "int8")
    return bundle


def test_the_bundle_carries_probes_and_promises_a_tolerance(tiny_bundle: Path) -> None:
    bundle = open_bundle(tiny_bundle)
    crops, features = parity.load_probes(bundle)
    assert crops.shape == (8, 224, 224, 3) and crops.dtype == np.uint8
    assert features.shape == (8, 768)
    tolerance = bundle.manifest.probes.tolerance
    assert 0.999 < tolerance.min_feature_cosine < 1 and 0 < tolerance.max_abs_logit < 0.2
    graphs = bundle.manifest.provenance["device_parity_at_export"]["graphs"]
    assert graphs["int8-portable"]["ok"] and graphs["fp32"]["max_abs_logit"] < 1e-4


def test_auto_passes_over_a_graph_that_breaks_the_tolerance(
    broken_int8: Path, sample_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        detector = Detector.open(broken_int8, provider="cpu")
    assert detector.precision == "int8-portable" and detector.parity.ok
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("int8 breaks the bundle's tolerance")
    assert "running int8-portable" in warnings[0]
    image = sorted(sample_dir.glob("*.png"))[0]
    ours = detector.score([image])
    theirs = Detector.open(broken_int8, precision="int8-portable", provider="cpu").score([image])
    assert [r.logit for r in ours] == [r.logit for r in theirs]


def test_an_explicit_precision_runs_and_warns_once_with_the_figure(
    broken_int8: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            detector = Detector.open(broken_int8, precision="int8", provider="cpu")
    assert detector.precision == "int8" and not detector.parity.ok
    warnings = [r.getMessage() for r in caplog.records if "asked for by name" in r.getMessage()]
    assert len(warnings) == 1 and f"cosine {detector.parity.min_feature_cosine:.5f}" in warnings[0]


def test_verify_parity_reports_each_graph_and_what_auto_takes(broken_int8: Path) -> None:
    result = runner.invoke(bundle_app, ["verify", "--parity", str(broken_int8)])
    assert result.exit_code == 0, result.output  # auto's choice keeps the tolerance
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok     fp32") and lines[2].startswith("FAILS  int8 ")
    assert lines[3].startswith("ok     int8-portable")
    assert "--precision auto takes int8-portable here" in lines[-1]
    args = ["verify", "--parity", "--json", str(broken_int8)]
    report = json.loads(runner.invoke(bundle_app, args).stdout)
    assert report["auto"] == "int8-portable" and report["ok"]
    assert not report["graphs"]["int8"]["ok"] and report["graphs"]["int8-portable"]["ok"]
    assert set(report["graphs"]) == {"fp32", "fp16", "int8", "int8-portable"}


def test_verify_parity_exits_1_when_no_graph_keeps_the_tolerance(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = open_bundle(bundle).manifest
    impossible = dataclasses.replace(manifest.probes.tolerance, min_feature_cosine=1.0000001)
    probes = dataclasses.replace(manifest.probes, tolerance=impossible)
    write_manifest(bundle, dataclasses.replace(manifest, probes=probes))
    result = runner.invoke(bundle_app, ["verify", "--parity", str(bundle)])
    assert result.exit_code == 1 and "no graph keeps the tolerance" in result.stdout


def test_a_measurement_is_cached_and_keyed_by_what_could_change_it(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UFD_CACHE_DIR", str(tmp_path / "cache"))
    first = Detector.open(tiny_bundle, precision="int8-portable", provider="cpu").parity
    again = Detector.open(tiny_bundle, precision="int8-portable", provider="cpu").parity
    assert not first.cached and again.cached
    assert again.min_feature_cosine == first.min_feature_cosine
    assert len(list((tmp_path / "cache" / "parity").glob("*.json"))) == 1
    base = parity.host_key("sha", "cpu", features=["AVX2", "FMA3"], ort_version="1.32.0")
    assert base == parity.host_key("sha", "cpu", features=["FMA3", "AVX2"], ort_version="1.32.0")
    assert base != parity.host_key("sha", "cpu", features=["AVX2"], ort_version="1.32.0")
    assert base != parity.host_key("sha", "cpu", features=["AVX2", "FMA3"], ort_version="1.33.0")
    assert base != parity.host_key("sha2", "cpu", features=["AVX2", "FMA3"], ort_version="1.32.0")


def test_a_bundle_without_probes_loads_as_before_and_verify_measures_what_it_can() -> None:
    from helpers import FIXTURES

    v2 = FIXTURES / "bundle-v2"
    assert Detector.open(v2, provider="cpu").parity is None  # nothing to measure against
    report = json.loads(runner.invoke(bundle_app, ["verify", "--parity", "--json", str(v2)]).stdout)
    assert report["reference"] == "fp32-here" and "no parity probes" in report["note"]
    assert report["graphs"]["fp32"]["min_feature_cosine"] > 0.999999
    assert set(report["graphs"]) == {"fp32", "int8"}


QEMU = shutil.which("qemu-x86_64")


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-user not installed: make test installs it (apt)")
def test_an_avx2_cpu_takes_the_portable_int8_graph(
    tiny_bundle: Path, sample_dir: Path, tmp_path: Path
) -> None:
    """Under an emulated AVX2 CPU without VNNI, full-range int8 saturates; auto notices."""
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted(sample_dir.glob("*.png"))[:3]:
        shutil.copy(path, images)
    env = {"UFD_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    detect = [sys.executable, "-m", "ufd.cli.detect", str(tiny_bundle), str(images)]
    command = [QEMU, "-cpu", "Haswell-v4", *detect, "--format", "jsonl"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    stderr = [line for line in result.stderr.splitlines() if not line.startswith("qemu-")]
    assert any("int8 breaks the bundle's tolerance on this CPU" in line for line in stderr)
    assert stderr[-1].endswith("(int8-portable on cpu)")
    emulated = [json.loads(line) for line in result.stdout.splitlines()]
    here = Detector.open(tiny_bundle, precision="int8-portable", provider="cpu").score(
        sorted(images.iterdir())
    )
    for record, expected in zip(emulated, here, strict=True):  # the same answer on both CPUs
        assert record["logit"] == pytest.approx(expected.logit, abs=1e-4)
