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


def test_auto_says_it_once_per_host_then_only_under_verbose(
    broken_int8: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """The fall-back is a warning when measured (first run here); cached, a log line (-v)."""
    monkeypatch.setenv("UFD_CACHE_DIR", str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO, logger="ufd"):
        first = Detector.open(broken_int8, provider="cpu")
        caplog_first = [(r.levelno, r.getMessage()) for r in caplog.records]
        caplog.clear()
        second = Detector.open(broken_int8, provider="cpu")
        caplog_second = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert first.precision == second.precision == "int8-portable"
    said = [m for level, m in caplog_first if "breaks the bundle's tolerance" in m]
    assert len(said) == 1 and (logging.WARNING, said[0]) in caplog_first
    again = [(level, m) for level, m in caplog_second if "breaks the bundle's tolerance" in m]
    assert len(again) == 1 and again[0][0] == logging.INFO
    assert again[0][1].endswith("(measured before on this host)")
    assert [p.precision for p in second.passed_over] == ["int8"] and second.passed_over[0].cached


def _as_an_older_export(bundle: Path, int8_sums: str, cosine: float) -> None:
    """Rewrite the manifest as ufd before the portable basis wrote it: no int8-portable
    graph, a promise taken from int8 as measured on a CPU with ``int8_sums``."""
    manifest = open_bundle(bundle).manifest
    encoders = {p: g for p, g in manifest.encoders.items() if p != "int8-portable"}
    files = {k: v for k, v in manifest.files.items() if k != "encoder.int8-portable.onnx"}
    (bundle / "encoder.int8-portable.onnx").unlink()
    provenance = json.loads(json.dumps(manifest.provenance))
    at_export = provenance["device_parity_at_export"]
    at_export.pop("basis", None)
    at_export["graphs"].pop("int8-portable")
    at_export["host"]["int8"] = int8_sums
    loose = dataclasses.replace(manifest.probes.tolerance, min_feature_cosine=cosine)
    loose = dataclasses.replace(loose, max_abs_logit=50.0)
    probes = dataclasses.replace(manifest.probes, tolerance=loose)
    changed = dataclasses.replace(
        manifest, encoders=encoders, files=files, probes=probes, provenance=provenance
    )
    write_manifest(bundle, changed)


@pytest.mark.parametrize("int8_sums", ["avx2", "vnni"])
def test_a_loose_promise_from_an_older_export_is_recognised_and_judged_by_the_new_rule(
    broken_int8: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, int8_sums: str
) -> None:
    monkeypatch.setenv("UFD_CACHE_DIR", str(tmp_path / "cache"))
    measured = json.loads(
        runner.invoke(bundle_app, ["verify", "--parity", "--json", str(broken_int8)]).stdout
    )
    int8_cosine = measured["graphs"]["int8"]["min_feature_cosine"]
    assert int8_cosine < parity.DEFAULT_TOLERANCE.min_feature_cosine  # the broken graph
    _as_an_older_export(broken_int8, int8_sums, cosine=round(int8_cosine - 0.01, 6))
    result = runner.invoke(bundle_app, ["verify", "--parity", str(broken_int8)])
    report = json.loads(
        runner.invoke(bundle_app, ["verify", "--parity", "--json", str(broken_int8)]).stdout
    )
    if int8_sums == "vnni":  # exact int8 sums at export: the promise stands as written
        assert report["note"] is None and report["auto"] == "int8"
        return
    assert "derived from its full-range int8 graph" in result.stdout
    assert "(avx2: int8 sums can saturate there)" in result.stdout
    assert report["auto"] == "fp32" and not report["graphs"]["int8"]["ok"]
    assert report["graphs"]["int8"]["tolerance"]["min_feature_cosine"] == 0.999
    assert Detector.open(broken_int8, provider="cpu").precision == "fp32"  # runs agree


def test_the_promise_comes_from_the_portable_graph_even_when_it_is_not_shipped(
    checkpoint_bundle,
) -> None:
    """Exported with fp32,int8 only: the tolerance is the (unshipped) int8-portable
    graph's error, whatever int8 measured on the export host."""
    from ufd.export.graph.device_probes import derive_tolerance, tolerance_basis

    manifest = open_bundle(checkpoint_bundle[0]).manifest
    assert manifest.precisions == ["fp32", "int8"]
    at_export = manifest.provenance["device_parity_at_export"]
    assert at_export["basis"] == "int8-portable" and "int8-portable" not in at_export["graphs"]
    basis = at_export["basis_graph"]
    assert basis["precision"] == "int8-portable"
    figures = parity.GraphParity(
        "int8-portable",
        "cpu",
        basis["n_probes"],
        basis["min_feature_cosine"],
        basis["max_abs_logit"],
        manifest.probes.tolerance,
    )
    assert derive_tolerance(figures) == manifest.probes.tolerance
    assert parity.loose_promise(manifest) is None
    assert tolerance_basis(("fp32", "int8")) == tolerance_basis(("int8",)) == "int8-portable"
    assert tolerance_basis(("fp32", "fp16")) == "fp16" and tolerance_basis(("fp32",)) == "fp32"


def test_export_warns_about_a_graph_that_breaks_the_promise_on_the_export_host(caplog) -> None:
    from ufd.export.graph.device_probes import tolerance_notes

    promise = parity.Tolerance(0.9999, 0.05)
    measured = {
        "int8": parity.GraphParity("int8", "cpu", 8, 0.99015, 1.0177, promise),
        "int8-portable": parity.GraphParity("int8-portable", "cpu", 8, 0.99999, 0.01, promise),
    }
    with caplog.at_level(logging.WARNING):
        notes = tolerance_notes(measured, promise)
    assert len(notes) == 1 and "int8 (cosine 0.99015 < 0.99990" in notes[0]
    assert [r.getMessage() for r in caplog.records] == notes


def test_slim_says_what_the_kept_graphs_do_here_and_names_the_cure(
    broken_int8: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from ufd.runtime import encoder_choice

    monkeypatch.setenv("UFD_CACHE_DIR", str(tmp_path / "cache"))
    result = runner.invoke(bundle_app, ["slim", str(broken_int8), "--keep", "int8"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].startswith("FAILS  int8 ") and "no graph keeps the tolerance" in lines[2]
    assert "warning: no graph this bundle keeps works here" in result.stdout
    assert "without int8-portable, x86 CPUs with AVX2 but no VNNI" in result.stdout
    monkeypatch.setattr(encoder_choice.parity, "int8_class", lambda: "avx2")
    capsys.readouterr()
    assert Detector.open(broken_int8, provider="cpu").precision == "int8"
    said = capsys.readouterr().err  # the command set up ufd's logging on stderr
    assert "no graph of this bundle keeps its tolerance" in said
    assert "needs the bundle's int8-portable graph" in said


def test_slim_keeps_the_portable_graph_by_default(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    result = runner.invoke(bundle_app, ["slim", str(bundle)])
    assert result.exit_code == 0, result.output
    assert open_bundle(bundle).manifest.precisions == ["int8", "int8-portable"]
    assert "--precision auto takes" in result.stdout
    assert "without int8-portable" not in result.stdout
