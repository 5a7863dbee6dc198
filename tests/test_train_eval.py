"""ufd-train, ufd-calibrate, ufd-eval, the metrics and the feature cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import random_image
from sklearn import metrics as skm
from typer.testing import CliRunner

from ufd.cli.calibrate import app as calibrate_app
from ufd.cli.eval import app as eval_app
from ufd.cli.train import app as train_app
from ufd.export.train.augment import PaperAugmentation
from ufd.export.train.head_install import install_head
from ufd.export.train.linear import TrainOptions, train_linear_head
from ufd.runtime import Detector
from ufd.runtime.bundle.manifest import Manifest
from ufd.runtime.evaluation.evaluate import discover_sets, limit_per_class
from ufd.runtime.features.cache import FeatureCache, cached_features
from ufd.runtime.io.inputs import InputItem
from ufd.runtime.methods import config_types, open_bundle
from ufd.runtime.metrics import (
    average_precision,
    best_threshold_accuracy,
    roc_auc,
    set_metrics,
    threshold_for_fpr,
    tpr_at_fpr,
)

runner = CliRunner()


# --- metrics ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_metrics_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(300) < 0.4
    scores = np.round(rng.random(300) + labels * 0.3, 2 if seed % 2 else 6)  # ties when rounded
    assert average_precision(labels, scores) == pytest.approx(
        skm.average_precision_score(labels, scores), abs=1e-12
    )
    assert roc_auc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    assert tpr_at_fpr(labels, scores, 0.05) == pytest.approx(tpr[fpr <= 0.05].max())
    brute = max(np.mean((scores > t) == labels) for t in np.r_[-1, np.unique(scores)])
    assert best_threshold_accuracy(labels, scores) == pytest.approx(brute)


def test_set_metrics_on_known_scores() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1], bool)
    scores = np.array([0.1, 0.4, 0.6, 0.3, 0.8, 0.9])
    m = set_metrics(labels, scores, 0.5)
    assert (m.real_acc, m.fake_acc, m.acc) == pytest.approx((2 / 3, 2 / 3, 4 / 6))
    assert m.best_acc == pytest.approx(5 / 6) and (m.n_real, m.n_fake) == (3, 3)


@pytest.mark.parametrize("target", [0.01, 0.05, 0.1, 0.2])
def test_calibration_hits_the_target_fpr(target: float) -> None:
    reals = np.random.default_rng(1).beta(2, 5, 2000)
    threshold, achieved = threshold_for_fpr(reals, target)
    assert achieved <= target and achieved > target - 0.002
    assert np.mean(reals > threshold) == achieved


# --- layout, sampling ---------------------------------------------------------------


def _tree(root: Path, layout: dict[str, int]) -> None:
    for folder, n in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            random_image(root / folder / f"{i}.png", (230, 230), seed=hash(folder) % 1000 + i)


def test_official_layout_with_nested_class_folders(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "progan/car/0_real": 2,
            "progan/car/1_fake": 3,
            "progan/cat/0_real": 1,
            "progan/cat/1_fake": 1,
            "dalle/0_real": 2,
            "dalle/1_fake": 2,
        },
    )
    (tmp_path / "notes").mkdir()
    sets = {s.name: s for s in discover_sets(tmp_path)}
    assert set(sets) == {"progan", "dalle"}
    assert (len(sets["progan"].real), len(sets["progan"].fake)) == (3, 4)
    sample = limit_per_class(sets["progan"], 2, seed=0)
    assert (len(sample.real), len(sample.fake)) == (2, 2)
    assert sample == limit_per_class(sets["progan"], 2, seed=0)  # reproducible


# --- feature cache --------------------------------------------------------------------


def _fake_encoder(calls: list, fail_after: int | None = None):
    def encode(items: list[InputItem]):
        for start in range(0, len(items), 2):
            if fail_after is not None and len(calls) >= fail_after:
                raise KeyboardInterrupt  # the run is killed mid-way
            batch = items[start : start + 2]
            calls.append(len(batch))
            feats = np.array([[float(Path(i.path).stem), 1.0] for i in batch], np.float32)
            yield batch, feats, []

    return encode


def test_interrupted_extraction_resumes_and_cached_equals_cold(tmp_path: Path) -> None:
    files = []
    for i in range(7):
        (tmp_path / f"{i}.png").write_bytes(b"x" * (i + 1))
        files.append(InputItem(str(tmp_path / f"{i}.png")))
    cold_paths, cold = cached_features(files, None, _fake_encoder([]))
    cache = FeatureCache(tmp_path / "cache", "key")
    with pytest.raises(KeyboardInterrupt):
        cached_features(files, cache, _fake_encoder([], fail_after=2))
    assert len(FeatureCache(tmp_path / "cache", "key")) == 4  # two whole batches kept
    calls: list = []
    paths, warm = cached_features(
        files, FeatureCache(tmp_path / "cache", "key"), _fake_encoder(calls)
    )
    assert sum(calls) == 3  # only the rest was encoded
    assert paths == cold_paths and np.array_equal(warm, cold)
    (tmp_path / "3.png").write_bytes(b"changed!")  # a changed file is encoded again
    calls.clear()
    cached_features(files, FeatureCache(tmp_path / "cache", "key"), _fake_encoder(calls))
    assert sum(calls) == 1


def test_augmentation_is_deterministic_per_seed_path_view(sample_dir: Path) -> None:
    from ufd.runtime.io.decode import decode_image

    image = decode_image(sorted(sample_dir.glob("*.png"))[0])
    aug = PaperAugmentation(seed=3)
    a = aug(image, aug.rng("p", 0))
    assert a.shape == (3, 224, 224)
    assert np.array_equal(a, aug(image, aug.rng("p", 0)))
    assert not np.array_equal(a, aug(image, aug.rng("p", 1)))


def test_reupload_augmentation_adds_a_platforms_steps_deterministically(sample_dir: Path) -> None:
    from ufd.export.train.augment import AUGMENTATIONS, ReuploadAugmentation, make_augmentation
    from ufd.runtime.errors import UsageError
    from ufd.runtime.io.decode import decode_image

    image = decode_image(sorted(sample_dir.glob("*.png"))[0])
    paper, reupload = PaperAugmentation(seed=3), ReuploadAugmentation(seed=3)
    assert reupload.variant(0) != paper.variant(0)  # cached apart
    views = [reupload(image, reupload.rng("p", v)) for v in range(8)]
    assert all(v.shape == (3, 224, 224) for v in views)
    assert np.array_equal(views[0], reupload(image, reupload.rng("p", 0)))
    paper_views = [paper(image, paper.rng("p", v)) for v in range(8)]
    assert any(not np.array_equal(a, b) for a, b in zip(views, paper_views, strict=True))
    assert set(AUGMENTATIONS) == {"paper", "reupload", "none"}
    assert make_augmentation("none", 0) is None
    with pytest.raises(UsageError, match="unknown --augment"):
        make_augmentation("mixup", 0)


# --- training --------------------------------------------------------------------------


def _separable(n: int, seed: int, dim: int = 768) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(np.float32)
    direction = np.random.default_rng(99).normal(size=dim)
    x = rng.normal(size=(n, dim)) + np.outer(y * 2 - 1, direction) * 0.15
    return x.astype(np.float32), y


def test_training_separates_and_onnx_head_matches(tiny_bundle: Path, tmp_path: Path) -> None:
    x, y = _separable(1200, 0)
    vx, vy = _separable(300, 1)
    result = train_linear_head(x, y, vx, vy, TrainOptions(epochs=30, seed=0))
    assert result.best_val_acc >= 0.95
    again = train_linear_head(x, y, vx, vy, TrainOptions(epochs=30, seed=0))
    assert np.array_equal(
        again.linear.weight.detach().numpy(), result.linear.weight.detach().numpy()
    )

    bundle_dir = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle_dir)
    summary = {"best_val_acc": result.best_val_acc}
    manifest = install_head(open_bundle(bundle_dir), "linear", result.linear, summary, vx)
    assert manifest.method_provenance("linear")["training"]["max_abs_logit_error_onnx"] <= 1e-4
    assert manifest.provenance["head"]["source"] == "ufd-train"
    assert manifest.parity["fp32"].max_abs_logit_error is None  # measured with the old head
    detector = Detector.open(bundle_dir, precision="fp32", provider="cpu")  # hashes verified
    import torch

    with torch.no_grad():
        expected = result.linear(torch.from_numpy(vx)).reshape(-1).numpy()
    assert np.abs(detector.logits(vx) - expected).max() <= 1e-4
    assert len(list(bundle_dir.glob("head*.onnx"))) == 1  # the old head is gone


# --- the commands end to end -----------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for split, n in (("train", 16), ("test", 6)):
        for cls, mode in (("0_real", "RGB"), ("1_fake", "L")):  # two visibly different classes
            folder = root / split / "setA" / cls
            folder.mkdir(parents=True)
            for i in range(n):
                random_image(
                    folder / f"{i}.png", (240, 240), mode, seed=i + (100 if mode == "L" else 0)
                )
    return root


def test_train_calibrate_eval_commands(
    tiny_bundle: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UFD_CACHE_DIR", str(tmp_path / "cache"))
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    train_dir = dataset / "train" / "setA"
    result = runner.invoke(
        train_app,
        [
            str(bundle),
            "--real",
            str(train_dir / "0_real"),
            "--fake",
            str(train_dir / "1_fake"),
            "--val-split",
            "0.25",
            "--epochs",
            "20",
            "--views",
            "2",
            "--augment",
            "reupload",
            "--precision",
            "fp32",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = Manifest.read(bundle / "manifest.json", config_types())
    training = manifest.method_provenance("linear")["training"]
    assert training["views"] == 2 and training["n_val"] == 8
    assert training["augment"] == "reupload"

    reals = [str(dataset / split / "setA" / "0_real") for split in ("train", "test")]
    args = [str(bundle), "--real", reals[0], "--real", reals[1], "--target-fpr", "0.1"]
    result = runner.invoke(calibrate_app, [*args, "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    calibrated = Manifest.read(bundle / "manifest.json", config_types())
    linear = calibrated.methods["linear"]
    assert linear.calibration.achieved_fpr <= 0.1
    assert linear.threshold == linear.calibration.threshold

    out = tmp_path / "eval"
    args = [
        str(bundle),
        str(dataset / "test"),
        "--out",
        str(out),
        "--jpeg",
        "75",
        "--blur",
        "1",
        "--max-per-class",
        "4",
        "--precision",
        "fp32",
    ]
    first = runner.invoke(eval_app, args)
    assert first.exit_code == 0, first.output
    results = json.loads((out / "results.json").read_text())
    assert set(results["conditions"]) == {"clean", "jpeg75", "blur1", "blur1+jpeg75"}
    row = results["conditions"]["clean"]["sets"]["setA"]["linear"]
    assert row["n_real"] == 4 and row["n_fake"] == 4
    assert set(row) >= {"ap", "acc", "real_acc", "fake_acc", "best_acc", "auc", "tpr_at_5fpr"}
    assert "| setA |" in (out / "table.md").read_text()
    assert (out / "report.html").read_text().count("data:image/png;base64") == 4
    assert "sampling at most 4 images per class" in first.stderr
    second = runner.invoke(eval_app, args)  # warm cache: identical results
    assert json.loads((out / "results.json").read_text())["conditions"] == results["conditions"]
    assert second.exit_code == 0
