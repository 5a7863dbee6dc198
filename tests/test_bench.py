"""ufd-bench: interleaved rounds, median figures, fractions of the measured peak."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from ufd.cli.bench import app
from ufd.runtime.bench.measure import median_run


def test_median_run_keeps_one_whole_round() -> None:
    runs = [{"p50_ms": 9.0, "rss": 1}, {"p50_ms": 3.0, "rss": 2}, {"p50_ms": 5.0, "rss": 3}]
    chosen = median_run(runs, "p50_ms")
    assert (chosen["p50_ms"], chosen["rss"]) == (5.0, 3)  # the figures of one process
    assert chosen["rounds_p50_ms"] == [9.0, 3.0, 5.0]
    assert median_run(runs[:2], "p50_ms")["p50_ms"] == 3.0  # even count: the lower middle


def test_bench_runs_rounds_and_reports_fractions(
    tiny_bundle: Path, sample_dir: Path, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted(sample_dir.glob("*.jpg"))[:3]:
        shutil.copy(path, images)
    out = tmp_path / "out"
    args = [str(tiny_bundle), "--precision", "fp32,int8", "--iterations", "3", "--rounds", "2"]
    result = CliRunner().invoke(app, [*args, "--images", str(images), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())
    assert report["rounds"] == 2
    assert all(len(v) == 2 and min(v) > 0 for v in report["matmul_peak_rounds"].values())
    assert report["encoder_gmacs"] > 0
    rows = {r["precision"]: r for r in report["configs"]}
    assert set(rows) == {"fp32", "int8"}
    for precision, row in rows.items():
        assert len(row["rounds_p50_ms"]) == 2 and sorted(row["rounds_p50_ms"])[0] <= row["p50_ms"]
        assert 0 < row["fraction_of_peak"] <= 1.0  # an encoder never beats a bare MatMul
        assert report["e2e"][precision]["images"] == 3
    assert (out / "bench.md").read_text().count("| onnxruntime |") == 2


def test_bench_refuses_a_precision_the_bundle_lacks(tiny_bundle: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [str(tiny_bundle), "--precision", "int4"])
    assert result.exit_code == 2, result.output  # a usage error, not a crash (3)
    assert "int4" in result.output


def test_mac_count_equals_the_architectures(tmp_path: Path) -> None:
    """count_macs on a plain (unfused) export equals the ViT's MACs from its config.

    Per image: the patch convolution, then per block the q/k/v projections, the two
    attention products (2 T^2 W), the output projection and the 4x MLP; the final
    projection to the embedding.
    """
    import json

    from ufd.export.graph.onnx_export import export_encoder
    from ufd.export.models import MODEL_CONFIG_DIR, load_visual
    from ufd.runtime.bench.measure import count_macs

    config = json.loads((MODEL_CONFIG_DIR / "ufd-tiny-vit.json").read_text())
    vision, dim = config["vision_cfg"], config["embed_dim"]
    width, layers, patch = vision["width"], vision["layers"], vision["patch_size"]
    patches = (vision["image_size"] // patch) ** 2
    tokens = patches + 1
    block = tokens * width * 3 * width + 2 * tokens**2 * width + tokens * width**2
    block += 2 * tokens * width * 4 * width
    expected = patches * width * 3 * patch**2 + layers * block + width * dim
    path = tmp_path / "plain.onnx"
    export_encoder(load_visual("ufd-tiny-vit", "none").visual, path, 224, fuse_attention=False)
    assert count_macs(path) == expected
