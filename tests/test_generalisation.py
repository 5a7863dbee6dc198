"""Real-image models that generalise: the geometries, the density model, realonly training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ufd.cli.calibrate import app as calibrate_app
from ufd.cli.detect import app as detect_app
from ufd.cli.train import app as train_app
from ufd.export.train.geometries import GEOMETRIES
from ufd.runtime.building.density import choose, combined, fit_gaussian, z_params
from ufd.runtime.methods import open_bundle
from ufd.runtime.metrics import average_precision

runner = CliRunner()


def _residual(reals: np.ndarray, others: np.ndarray) -> float:
    """Median share of ``others`` outside the reals' 99 %-variance subspace."""
    mean = reals.mean(axis=0)
    _, sing, vt = np.linalg.svd(reals - mean, full_matrices=False)
    k = int(np.searchsorted(np.cumsum(sing**2) / (sing**2).sum(), 0.99)) + 1
    centred = others - mean
    inside = centred @ vt[:k].T
    return float(np.median(np.sqrt(np.maximum((centred**2).sum(1) - (inside**2).sum(1), 0))))


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_each_geometry_puts_the_unseen_generator_where_it_says(name: str) -> None:
    world = GEOMETRIES[name](seed=0)
    reals = world.reals(2000, 1)
    unseen = world.fakes(300, world.generators - 1, 2)
    held_out = world.reals(300, 3)
    gap = _residual(reals, unseen) / _residual(reals, held_out)
    assert (gap > 3) == world.outside_span, gap  # far outside the span, or as a real
    assert np.allclose(np.linalg.norm(unseen, axis=1), 1, atol=1e-5)


def _scores_ap(real: np.ndarray, fake: np.ndarray) -> float:
    labels = np.r_[np.zeros(len(real)), np.ones(len(fake))].astype(bool)
    return average_precision(labels, np.r_[real, fake])


def test_the_gaussian_sees_what_leaves_the_span() -> None:
    world = GEOMETRIES["orthogonal"](seed=1)
    model = fit_gaussian(world.reals(3000, 1), 32)
    test_real, unseen = world.reals(300, 5), world.fakes(300, world.generators - 1, 7)
    assert _scores_ap(model.score(test_real), model.score(unseen)) >= 0.95


def test_the_combination_keeps_what_the_knn_sees_in_the_span() -> None:
    """An over-done attribute hides in a Gaussian's wide spread but not from the k-NN."""
    world = GEOMETRIES["overdone"](seed=1)
    train, val = world.reals(3000, 1), world.reals(300, 3)
    test_real, unseen = world.reals(300, 5), world.fakes(300, world.generators - 1, 7)
    bank = train / np.linalg.norm(train, axis=1, keepdims=True)

    def knn(x: np.ndarray) -> np.ndarray:
        return np.sort(1 - x @ bank.T, axis=1)[:, :5].mean(axis=1)

    model = fit_gaussian(train, 32)
    z = z_params(knn(val), model.score(val))
    gaussian_ap = _scores_ap(model.score(test_real), model.score(unseen))
    both = _scores_ap(
        combined(knn(test_real), model.score(test_real), z),
        combined(knn(unseen), model.score(unseen), z),
    )
    assert both >= 0.95 and both > gaussian_ap + 0.1, (both, gaussian_ap)


def test_choose_keeps_the_best_scorer_on_validation() -> None:
    world = GEOMETRIES["curved"](seed=0)
    train, val = world.reals(2000, 1), world.reals(400, 3)
    fakes = np.concatenate([world.fakes(100, g, 4) for g in range(world.generators - 1)])
    bank = train / np.linalg.norm(train, axis=1, keepdims=True)

    def knn(x: np.ndarray) -> np.ndarray:
        d = 1 - x @ bank.T
        return np.sort(d, axis=1)[:, :5].mean(axis=1)

    choice = choose(train, val, fakes, knn)
    assert choice.scorer in ("knn", "gaussian", "combined")
    assert {"knn", "combined"} <= set(choice.validation_ap)
    best = max(choice.validation_ap.values())
    key = (
        choice.scorer
        if choice.scorer != "gaussian"
        else max(
            (k for k in choice.validation_ap if k.startswith("gaussian")),
            key=choice.validation_ap.get,
        )
    )
    assert choice.validation_ap[key] >= best - 1e-3


def test_ufd_train_realonly_fits_records_and_scores(
    full_bundle: Path, tmp_path: Path, world_features: dict[str, Path]
) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(full_bundle, bundle)
    f = world_features
    result = runner.invoke(
        train_app,
        [
            str(bundle),
            "--method",
            "realonly",
            "--real-features",
            str(f["held_real"]),
            "--fake-features",
            str(f["train_fake"]),
            "--no-cache",
        ],
    )
    assert result.exit_code == 0, result.output
    entry = open_bundle(bundle).manifest.methods["realonly"]
    assert entry.threshold is None and entry.config.scorer in ("knn", "gaussian", "combined")
    assert "realonly scorer:" in result.stdout
    result = runner.invoke(
        calibrate_app, [str(bundle), "--method", "realonly", "--real-features", str(f["held_real"])]
    )
    assert result.exit_code == 0, result.output
    out = runner.invoke(
        detect_app,
        [str(bundle), "--features", str(f["test"]), "--method", "realonly", "--format", "jsonl"],
    )
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    fakes = np.mean([r["realonly_label"] == "fake" for r in rows[20:]])  # the unseen generator
    reals = np.mean([r["realonly_label"] == "fake" for r in rows[:20]])
    assert fakes >= 0.9 and reals <= 0.3
