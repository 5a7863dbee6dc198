"""ufd-export on a tiny random-init model: parity, dynamic batch, atomicity, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_MODEL

from ufd.export.graph.build import ExportOptions, export_bundle
from ufd.export.models import load_visual
from ufd.runtime import Detector
from ufd.runtime.bundle.manifest import Manifest
from ufd.runtime.errors import ExportError, ModelLoadError
from ufd.runtime.methods import config_types


def test_recorded_parity_is_sane(tiny_bundle: Path) -> None:
    manifest = Manifest.read(tiny_bundle / "manifest.json", config_types())
    fp32, fp16, int8 = (manifest.parity[p] for p in ("fp32", "fp16", "int8"))
    assert fp32.max_abs_logit_error <= 1e-4
    assert fp32.min_feature_cosine >= 0.99999
    assert fp16.max_abs_logit_error < 0.05
    assert int8.max_abs_logit_error < 0.5
    assert int8.decision_agreement >= 0.8
    for report in (fp32, fp16, int8):
        assert report.n_probes == 10
        assert report.p50_abs_logit_error <= report.p99_abs_logit_error
        assert report.p99_abs_logit_error <= report.max_abs_logit_error


def _float_weight_matmuls(graph: Path) -> set[str]:
    """Names of the MatMuls of ``graph`` that still multiply by a float weight."""
    import onnx

    model = onnx.load(str(graph))
    floats = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    return {n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in floats}


def test_int8_keeps_the_output_projection_in_fp32(tiny_bundle: Path) -> None:
    """Exactly the MatMul that writes the feature stays fp32; every other one is int8."""
    from ufd.export.graph.precision import output_projections

    manifest = Manifest.read(tiny_bundle / "manifest.json", config_types())
    fp32_graph = tiny_bundle / manifest.encoder("fp32").file
    keep = output_projections(fp32_graph)
    assert keep == ["/MatMul"]  # open_clip's ``x @ proj``
    assert _float_weight_matmuls(tiny_bundle / manifest.encoder("int8").file) == set(keep)
    assert len(_float_weight_matmuls(fp32_graph)) > 1


@pytest.mark.parametrize("batch", [1, 2, 4, 5])
def test_dynamic_batch_logits_match_torch(checkpoint_bundle, head_file: Path, batch: int):
    """Any batch size runs, and logits equal torch's encode_image + official head."""
    out, model = checkpoint_bundle
    state = torch.load(head_file, map_location="cpu", weights_only=True)
    torch.manual_seed(batch)
    x = torch.randn(batch, 3, 224, 224)
    with torch.no_grad():
        expected = (model.encode_image(x) @ state["weight"].T + state["bias"]).reshape(-1)
    detector = Detector.open(out, precision="fp32", provider="cpu")
    logits = detector.logits(detector.features(x.numpy()))
    assert logits.shape == (batch,)
    assert np.abs(logits - expected.numpy()).max() <= 1e-4


def test_local_checkpoint_is_recorded(checkpoint_bundle, head_file: Path) -> None:
    from ufd.runtime.bundle import sha256_file

    out, _ = checkpoint_bundle
    manifest = Manifest.read(out / "manifest.json", config_types())
    assert manifest.model.pretrained == "tiny.pt"
    assert manifest.model.checkpoint_sha256 is not None
    assert manifest.provenance["head"]["sha256"] == sha256_file(head_file)
    assert not any("RANDOM" in note for note in manifest.notes)


def test_failed_validation_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ufd.export.graph.references as references

    def refuse(report, max_logit_error=None) -> None:
        raise ExportError("simulated parity failure")

    monkeypatch.setattr(references, "enforce", refuse)
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="simulated"):
        export_bundle(ExportOptions(out=out, model=TINY_MODEL, pretrained="none", head="none"))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging directory left behind


def test_existing_bundle_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    options = ExportOptions(
        out=out, model=TINY_MODEL, pretrained="none", head="none", precisions=("fp32",)
    )
    export_bundle(options)
    (out / "stale.txt").write_text("from the first export")
    with pytest.raises(ExportError, match="--force"):
        export_bundle(options)
    assert (out / "stale.txt").exists()
    options.force = True
    export_bundle(options)
    assert not (out / "stale.txt").exists()  # the whole bundle was replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_refuses_to_replace_a_directory_that_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not a ufd bundle"):
        export_bundle(ExportOptions(out=tmp_path, model=TINY_MODEL, pretrained="none", force=True))
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_headless_bundle_exports_features_only(tmp_path: Path) -> None:
    out = tmp_path / "b"
    manifest = export_bundle(
        ExportOptions(out=out, model=TINY_MODEL, pretrained="none", head="none")
    )
    assert manifest.method("linear") is None
    assert manifest.parity["fp32"].max_abs_logit_error is None
    assert manifest.parity["fp32"].max_abs_feature_error < 1e-4


def test_fp32_not_requested_is_validated_but_not_shipped(tmp_path: Path) -> None:
    out = tmp_path / "b"
    manifest = export_bundle(
        ExportOptions(
            out=out, model=TINY_MODEL, pretrained="none", head="none", precisions=("int8",)
        )
    )
    assert manifest.precisions == ["int8"]
    assert "fp32" in manifest.parity
    assert not (out / "encoder.fp32.onnx").exists()


def test_max_logit_error_refuses_a_quantised_graph(tmp_path: Path, head_file: Path) -> None:
    with pytest.raises(ExportError, match="--max-logit-error"):
        export_bundle(
            ExportOptions(
                out=tmp_path / "b",
                model=TINY_MODEL,
                pretrained="none",
                head=str(head_file),
                precisions=("fp32", "int8"),
                max_logit_error=1e-9,
            )
        )
    assert not (tmp_path / "b").exists()


def test_offline_tag_says_to_pass_a_local_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    import open_clip

    def offline(*args, **kwargs):
        raise RuntimeError("Failed to download weights for tag 'openai': no network")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(ModelLoadError, match="--pretrained /path/to/ViT-L-14"):
        load_visual("ViT-L-14", "openai")


def test_openai_tag_turns_on_quick_gelu(monkeypatch: pytest.MonkeyPatch) -> None:
    import open_clip

    seen = {}

    def fake_create(name, pretrained=None, force_quick_gelu=False, **kwargs):
        seen["quick_gelu"] = force_quick_gelu
        raise RuntimeError("stop here")

    monkeypatch.setattr(open_clip, "create_model", fake_create)
    with pytest.raises(ModelLoadError):
        load_visual("ViT-L-14", "openai")
    assert seen["quick_gelu"] is True


@pytest.mark.parametrize(
    ("model", "pretrained", "message"),
    [
        ("ViT-Q-99", "none", "unknown open_clip model"),
        ("ViT-B-16", "no-such-tag", "neither a file nor a pretrained tag"),
        ("ViT-B-16", "/no/such/file.pt", "not found"),
    ],
)
def test_bad_model_arguments_explain_themselves(model: str, pretrained: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        load_visual(model, pretrained)


def test_unknown_precision_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown precision"):
        ExportOptions(out=tmp_path, precisions=("fp8",))


def test_static_int8_is_calibrated_and_batch_invariant(tmp_path: Path, sample_dir: Path) -> None:
    manifest = export_bundle(
        ExportOptions(
            out=tmp_path / "b",
            model=TINY_MODEL,
            pretrained="none",
            head="none",
            precisions=("int8",),
            quantization="static",
            calibration_dir=sample_dir,
            n_calibration=8,
        )
    )
    graph = manifest.encoder("int8")
    assert graph.quantization == "static" and graph.batch_invariant
    assert _float_weight_matmuls(tmp_path / "b" / graph.file) == {"/MatMul"}  # output projection
    assert (
        manifest.parity["int8"].min_feature_cosine > 0.97
    )  # int8 u8s8 saturates on CPUs without VNNI: 0.977-0.988 there, 0.9999 with VNNI
    detector = Detector.open(tmp_path / "b", precision="int8", provider="cpu")
    x = np.random.default_rng(0).normal(size=(4, 3, 224, 224)).astype(np.float32)
    together = detector.encoder.run(x)  # one call for the whole batch
    alone = np.concatenate([detector.encoder.run(x[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_optimized_graphs_are_saved_revalidated_and_equal(tmp_path: Path) -> None:
    options = dict(model=TINY_MODEL, pretrained="none", head="none", precisions=("fp32", "int8"))
    torch.manual_seed(0)  # same random weights in both bundles
    plain = export_bundle(ExportOptions(out=tmp_path / "plain", **options))
    torch.manual_seed(0)
    optimized = export_bundle(ExportOptions(out=tmp_path / "opt", optimize=True, **options))
    assert optimized.encoder("fp32").optimization == "extended"
    assert optimized.parity["fp32"].min_feature_cosine >= 0.99999
    assert plain.files["encoder.fp32.onnx"].sha256 != optimized.files["encoder.fp32.onnx"].sha256
    x = np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
    a = Detector.open(tmp_path / "plain", precision="fp32", provider="cpu").features(x)
    b = Detector.open(tmp_path / "opt", precision="fp32", provider="cpu").features(x)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_a_detector_declares_its_options_and_export_takes_only_those(tmp_path: Path) -> None:
    """A detector's own options: offered by ufd-export, refused for another detector."""
    import subprocess
    import sys

    from typer.testing import CliRunner

    from ufd.cli.export import app

    runner = CliRunner()
    probe = ["--detector", "probe", "--model", "timm:vit_tiny_patch16_224", "--out", str(tmp_path)]
    refused = runner.invoke(app, [*probe, "--resize"])
    assert refused.exit_code == 2 and "no such option: --resize" in refused.stderr
    assert "probe's own: --features, --pool, --quick-gelu" in refused.stderr
    bad = runner.invoke(app, [*probe, "--features", "avg"])
    assert bad.exit_code == 2 and "--features must be one of cls, blocks" in bad.stderr
    typo = runner.invoke(app, ["--precison", "fp32", "--out", str(tmp_path)])
    assert typo.exit_code == 2 and "no such option: --precison" in typo.stderr
    assert not any(tmp_path.iterdir())  # refused before anything was loaded or written
    command = [sys.executable, "-m", "ufd.cli.export", "--detector", "probe", "--help"]
    shown = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    assert "Options of --detector probe" in shown and "Choices: cls, blocks" in shown
    assert "--resize" not in shown.split("Options of --detector probe")[1]
