"""Natural-trace head, real-only detection, features in, and generalisation."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ufd.cli.calibrate import app as calibrate_app
from ufd.cli.detect import app as detect_app
from ufd.cli.index import app as index_app
from ufd.export.train.head_install import install_head
from ufd.export.train.synthetic import SyntheticWorld
from ufd.export.train.traces import TracesOptions, trace_contrastive_loss, train_traces_head
from ufd.runtime import Detector
from ufd.runtime.methods import open_bundle

runner = CliRunner()


def test_loss_on_a_hand_computed_case_and_its_gradients() -> None:
    """One real r = e1, one fake f = e2, one trace t = e1, tau = 1.

    Real anchor r: candidates f (cos 0) and t (cos 1): -log(e / (e + 1)).
    Trace anchor t: candidates r (1) and f (0): the same. Mean: log(1 + 1/e).
    """
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    trace = torch.tensor([[1.0, 0.0]], requires_grad=True)
    loss = trace_contrastive_loss(z, torch.tensor([False, True]), trace, tau=1.0)
    assert float(loss.detach()) == pytest.approx(math.log(1 + 1 / math.e), abs=1e-6)
    loss.backward()
    # descent (-grad) moves the real towards the trace and away from the fake ...
    assert z.grad[0, 0] < 0 and z.grad[0, 1] > 0
    # ... and the fake away from the real and the trace (both along e1)
    assert z.grad[1, 0] > 0
    assert trace.grad[0, 0] < 0  # the trace moves towards the real


def test_fakes_only_batch_has_no_anchor() -> None:
    z = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    loss = trace_contrastive_loss(z, torch.ones(4, dtype=torch.bool), torch.randn(2, 8))
    assert float(loss) == 0.0


@pytest.fixture(scope="module")
def world_data():
    world = SyntheticWorld(dim=768, seed=0)
    seen = range(world.generators - 1)
    real, val_real = world.reals(600, 1), world.reals(150, 3)
    fake = np.concatenate([world.fakes(150, g, 2) for g in seen])
    val_fake = np.concatenate([world.fakes(40, g, 4) for g in seen])
    x, vx = np.concatenate([real, fake]), np.concatenate([val_real, val_fake])
    y = np.r_[np.zeros(len(real)), np.ones(len(fake))].astype(np.float32)
    vy = np.r_[np.zeros(len(val_real)), np.ones(len(val_fake))].astype(np.float32)
    head, val_acc = train_traces_head(x, y, vx, vy, TracesOptions(epochs=8, seed=0))
    return world, real, x, y, vx, vy, head, val_acc


def test_unseen_generator_is_caught_by_traces_and_realonly(world_data) -> None:
    """The held-out generator's artefact lies in a direction no training generator used."""
    from ufd.runtime.metrics import roc_auc
    from ufd.runtime.search.hnsw import HnswBank

    world, real, x, y, vx, vy, head, val_acc = world_data
    assert val_acc >= 0.95  # it learned the seen generators
    test_real, unseen = world.reals(300, 5), world.fakes(300, world.generators - 1, 7)
    labels = np.r_[np.zeros(300), np.ones(300)].astype(bool)
    with torch.no_grad():
        traces = head(torch.from_numpy(np.concatenate([test_real, unseen]))).squeeze(1).numpy()
    bank = HnswBank.build(real)
    _, dist = bank.search(np.concatenate([test_real, unseen]), 5, exact=True)
    from ufd.export.train.linear import TrainOptions, train_linear_head

    linear = train_linear_head(x, y, vx, vy, TrainOptions(epochs=10, lr=1e-3)).linear
    with torch.no_grad():
        lin = linear(torch.from_numpy(np.concatenate([test_real, unseen]))).squeeze(1).numpy()
    auc = {"traces": roc_auc(labels, traces), "realonly": roc_auc(labels, dist.mean(1))}
    auc["linear"] = roc_auc(labels, lin)
    assert auc["realonly"] >= 0.85, auc  # chance is 0.5
    assert auc["traces"] >= 0.95, auc  # the residual outside the reals' subspace sees it
    assert auc["realonly"] > auc["linear"] + 0.2, auc  # the linear head cannot see it


def test_traces_head_onnx_equals_training_and_detects(
    world_data, tiny_bundle: Path, tmp_path: Path
) -> None:
    _, _, _, _, vx, _vy, head, val_acc = world_data
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    manifest = install_head(open_bundle(bundle), "traces", head, {"val_acc": val_acc}, vx)
    training = manifest.method_provenance("traces")["training"]
    assert training["max_abs_logit_error_onnx"] <= 1e-4 and training["val_acc"] == val_acc
    features = tmp_path / "val.npy"
    np.save(features, vx)
    result = runner.invoke(
        detect_app,
        [str(bundle), "--features", str(features), "--method", "all", "--format", "jsonl"],
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == len(vx) and records[0]["path"] == f"{features}#0"
    with torch.no_grad():
        expected = head(torch.from_numpy(vx)).squeeze(1).numpy()
    got = np.array([r["traces_logit"] for r in records])
    assert np.abs(got - expected).max() <= 1e-4
    assert {"logit", "traces_prob", "traces_label"} <= set(records[0])  # linear + traces
    assert "nn_score" not in records[0]  # no index in this bundle: not "available"


def test_realonly_index_calibrate_detect(world_data, tiny_bundle: Path, tmp_path: Path) -> None:
    world = world_data[0]
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    files = {}
    for name, rows in (
        ("bank", world.reals(500, 11)),
        ("held_out", world.reals(200, 12)),
        ("unseen", world.fakes(100, world.generators - 1, 13)),
        ("reals", world.reals(100, 14)),
    ):
        files[name] = tmp_path / f"{name}.npy"
        np.save(files[name], rows)
    result = runner.invoke(
        index_app, [str(bundle), "--real-only", "--real-features", str(files["bank"])]
    )
    assert result.exit_code == 0, result.output
    no_threshold = runner.invoke(
        detect_app, [str(bundle), "--features", str(files["reals"]), "--method", "realonly"]
    )
    assert no_threshold.exit_code == 2 and "ufd-calibrate" in no_threshold.stderr
    result = runner.invoke(
        calibrate_app,
        [
            str(bundle),
            "--method",
            "realonly",
            "--real-features",
            str(files["held_out"]),
            "--target-fpr",
            "0.05",
            "--k",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    rates = {}
    for name in ("unseen", "reals"):
        out = runner.invoke(
            detect_app,
            [
                str(bundle),
                "--features",
                str(files[name]),
                "--method",
                "realonly",
                "--format",
                "jsonl",
            ],
        )
        assert out.exit_code == 0, out.output
        labels = [json.loads(line)["realonly_label"] for line in out.stdout.splitlines()]
        rates[name] = np.mean([label == "fake" for label in labels])
    assert rates["reals"] <= 0.15  # calibrated for 5 % false positives
    # at 5 % FPR, chance would flag 5 % of the unseen fakes; measured 44 %
    assert rates["unseen"] >= 0.3
    detector = Detector.open(bundle, provider="cpu")
    assert detector.methods.get("realonly").default_k() == 5  # detect uses the calibrated k


def test_fusion_fits_weights_and_scores(world_data, tiny_bundle: Path, tmp_path: Path) -> None:
    from ufd.cli.train import app as train_app
    from ufd.runtime.building.banks import IndexOptions, build_index

    _, _, x, y, vx, vy, head, _ = world_data
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    build_index(bundle, x[y == 0], x[y == 1], IndexOptions(exact_below=10**6))
    install_head(open_bundle(bundle), "traces", head, {}, vx)
    files = {"real": tmp_path / "r.npy", "fake": tmp_path / "f.npy"}
    np.save(files["real"], vx[vy == 0])
    np.save(files["fake"], vx[vy == 1])
    result = runner.invoke(
        train_app,
        [
            str(bundle),
            "--method",
            "fused",
            "--real-features",
            str(files["real"]),
            "--fake-features",
            str(files["fake"]),
            "--val-split",
            "0.3",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = open_bundle(bundle).manifest
    fusion = manifest.methods["fused"].config
    assert fusion.methods == ["linear", "nn", "traces"]
    assert manifest.method_provenance("fused")["val_acc"] >= 0.9
    detector = Detector.open(bundle, provider="cpu")
    records = detector.score_features(vx, [str(i) for i in range(len(vx))], "fused")
    predicted = np.array([r.fused_label == "fake" for r in records])
    assert np.mean(predicted == (vy > 0.5)) >= 0.9


def test_eval_reports_every_method_of_the_bundle(
    world_data, tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers import random_image

    from ufd.cli.eval import app as eval_app
    from ufd.runtime.building.banks import IndexOptions, build_index

    monkeypatch.setenv("UFD_CACHE_DIR", str(tmp_path / "cache"))
    _, _, x, y, vx, _, head, _ = world_data
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    build_index(bundle, x[y == 0], x[y == 1], IndexOptions())
    install_head(open_bundle(bundle), "traces", head, {}, vx)
    for cls in ("0_real", "1_fake"):
        (tmp_path / "data" / "set" / cls).mkdir(parents=True)
        for i in range(3):
            random_image(tmp_path / "data" / "set" / cls / f"{i}.png", (230, 230), seed=i)
    out = tmp_path / "eval"
    result = runner.invoke(
        eval_app, [str(bundle), str(tmp_path / "data"), "--method", "all", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    row = json.loads((out / "results.json").read_text())["conditions"]["clean"]["sets"]["set"]
    assert set(row) == {"linear", "nn", "traces"}
    assert all(row[m]["n_real"] == 3 and row[m]["n_fake"] == 3 for m in row)
