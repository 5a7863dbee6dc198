"""ufd-bench: interleaved rounds, median figures, fractions of the measured peak."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ufd.cli.bench import app
from ufd.runtime.tools.bench import median_run


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
        assert len(row["rounds_p50_ms"]) == 2
        peak = report["matmul_peak_gmacs"]["int8" if precision == "int8" else "fp32"]
        expected = report["encoder_gmacs"] / (row["p50_ms"] / 1e3) / peak
        assert row["fraction_of_peak"] == pytest.approx(expected)
        assert report["e2e"][precision]["images"] == 3
    assert (out / "bench.md").read_text().count("| onnxruntime |") == 2


def test_bench_refuses_a_precision_the_bundle_lacks(tiny_bundle: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [str(tiny_bundle), "--precision", "int4"])
    assert result.exit_code != 0
    assert "int4" in result.output


def test_plan_names_every_job_for_the_provider(tmp_path: Path) -> None:
    from ufd.runtime.tools.bench_plan import BenchPlan

    cpu = BenchPlan(tmp_path, ["fp32", "int8"], [1, 4], images=tmp_path, torch_model="ViT-B-16")
    assert set(cpu.jobs()) == {
        "peak.fp32",
        "peak.int8",
        "ort.fp32.1",
        "ort.fp32.4",
        "ort.int8.1",
        "ort.int8.4",
        "torch.1",
        "torch.4",
        "e2e.fp32",
        "e2e.int8",
    }
    assert cpu.jobs()["torch.1"][1]["folder"] == str(tmp_path)  # e2e only at batch 1
    assert cpu.jobs()["torch.4"][1]["folder"] is None
    gpu = BenchPlan(tmp_path, ["fp16"], [64], provider="cuda", torch_model="ViT-L-14")
    jobs = gpu.jobs()
    assert {"peak.fp32", "peak.fp16"} <= set(jobs) and "peak.int8" not in jobs
    assert jobs["torch.64"][1]["device"] == "cuda"
    assert jobs["ort.fp16.64"][1]["provider"] == "cuda"
