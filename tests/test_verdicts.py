"""Verdicts beyond a score: attribution to a named generator, open set, the unsure band."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ufd.cli.calibrate import app as calibrate_app
from ufd.cli.detect import app as detect_app
from ufd.cli.index import app as index_app
from ufd.cli.train import app as train_app
from ufd.export.train.synthetic import SyntheticWorld
from ufd.runtime import Detector
from ufd.runtime.methods import open_bundle
from ufd.runtime.metrics import real_below_for_fnr, threshold_for_fpr
from ufd.runtime.search.neighbours import attribute as attribute_votes
from ufd.runtime.search.neighbours import knn_vote

runner = CliRunner()
GENERATORS = ("progan", "stylegan", "biggan", "ldm")  # seen; generator 4 is never indexed


@pytest.fixture(scope="module")
def world_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bank, held-out and test features per generator of a synthetic world.

    Artefacts are strong enough for the NN vote to see them. The unseen generator
    is one a k-NN vote calls fake (a model derived from progan: progan's artefact
    plus a strong one of its own): only the open-set distance can say its source
    is none of the bank's.
    """
    world = SyntheticWorld(dim=768, seed=0, artefact=3.0)
    folder = tmp_path_factory.mktemp("attribution")
    derived = world.fakes(200, 0, 14) + 0.5 * world.directions[4]
    derived /= np.linalg.norm(derived, axis=1, keepdims=True)
    sets = {
        "bank_real": world.reals(400, 11),
        "held_real": world.reals(300, 12),
        "test_real": world.reals(200, 13),
        "unseen": derived,
    }
    for g, name in enumerate(GENERATORS):
        sets[f"bank_{name}"] = world.fakes(150, g, 20 + g)
        sets[f"held_{name}"] = world.fakes(100, g, 30 + g)
        sets[f"test_{name}"] = world.fakes(100, g, 40 + g)
    files = {}
    for name, rows in sets.items():
        files[name] = folder / f"{name}.npy"
        np.save(files[name], rows.astype(np.float32))
    return files


@pytest.fixture(scope="module")
def named_bundle(
    tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path, world_files: dict[str, Path]
) -> Path:
    bundle = tmp_path_factory.mktemp("named") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    args = [str(bundle), "--real-features", str(world_files["bank_real"])]
    for name in GENERATORS:
        args += ["--fake-features", f"{name}={world_files[f'bank_{name}']}"]
    result = runner.invoke(index_app, args)
    assert result.exit_code == 0, result.output
    assert "fake sources: progan 150, stylegan 150, biggan 150, ldm 150" in result.stdout
    return bundle


def _nn_rows(bundle: Path, features: Path, k: int = 5) -> list[dict]:
    result = runner.invoke(
        detect_app,
        [
            str(bundle),
            "--features",
            str(features),
            "--method",
            "nn",
            "--k",
            str(k),
            "--format",
            "jsonl",
        ],
    )
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_index_records_each_named_source(named_bundle: Path) -> None:
    config = open_bundle(named_bundle).manifest.methods["nn"].config
    assert config.sources == GENERATORS and config.counts == {"real": 400, "fake": 600}
    assert np.bincount(np.load(named_bundle / "index" / "labels.npy")).tolist() == [400] + [150] * 4


@pytest.mark.parametrize("name", GENERATORS)
def test_nn_names_the_generator(
    named_bundle: Path, world_files: dict[str, Path], name: str
) -> None:
    rows = _nn_rows(named_bundle, world_files[f"test_{name}"])
    caught = [r for r in rows if r["nn_label"] == "fake"]
    assert len(caught) >= 0.8 * len(rows)
    named = np.mean([r["nn_source"] == name for r in caught])  # attribution of the caught
    assert named >= 0.95, named
    for row in rows:
        share = row["nn_source_share"]
        assert abs(sum(share.values()) - 1) < 1e-6
        assert set(share) <= {"real", *GENERATORS}
        if row["nn_label"] == "fake":  # the named source has the most fake voters
            fake_votes = {s: v for s, v in share.items() if s != "real"}
            assert share[row["nn_source"]] == max(fake_votes.values())


def test_reals_are_attributed_to_real(named_bundle: Path, world_files: dict[str, Path]) -> None:
    rows = _nn_rows(named_bundle, world_files["test_real"])
    assert all((r["nn_source"] == "real") == (r["nn_label"] == "real") for r in rows)
    assert np.mean([r["nn_source"] == "real" for r in rows]) >= 0.9


def test_open_set_calls_an_unseen_generator_unknown(
    named_bundle: Path, world_files: dict[str, Path], tmp_path: Path
) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(named_bundle, bundle)
    before = _nn_rows(bundle, world_files["unseen"])
    assert np.mean([r["nn_source"] == "progan" for r in before]) >= 0.8  # closed set: a name
    args = [str(bundle), "--method", "nn", "--unknown-rate", "0.05"]
    for name in GENERATORS:
        args += ["--fake-features", f"{name}={world_files[f'held_{name}']}"]
    result = runner.invoke(calibrate_app, args)
    assert result.exit_code == 0, result.output
    assert "names 'unknown'" in result.stdout
    after = _nn_rows(bundle, world_files["unseen"])
    unseen = [r for r in after if r["nn_label"] == "fake"]
    assert len(unseen) >= 150
    assert np.mean([r["nn_source"] == "unknown" for r in unseen]) >= 0.9
    known = [r for n in GENERATORS for r in _nn_rows(bundle, world_files[f"test_{n}"])]
    unknown_rate = np.mean([r["nn_source"] == "unknown" for r in known])
    assert unknown_rate <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / len(known)) + 0.03, unknown_rate
    # the vote itself never changes: unknown is a fake whose source is not in the bank
    assert [r["nn_label"] for r in before] == [r["nn_label"] for r in after]


def test_attribution_ties_go_to_the_nearer_source() -> None:
    dist = np.array([[0.1, 0.2, 0.3, 0.4]])
    codes = np.array([[2, 1, 1, 2]])  # two votes each; source 2's voters are nearer (0.25)
    vote = knn_vote(dist, codes > 0, 4)
    found = attribute_votes(dist, codes, 4, vote, ("real", "a", "b"))
    assert found.source == ["b"] and found.share == [{"a": 0.5, "b": 0.5}]


def test_plain_fake_folders_keep_the_source_fake(full_bundle: Path, world_features) -> None:
    config = open_bundle(full_bundle).manifest.methods["nn"].config
    assert config.sources == ("fake",)
    rows = _nn_rows(full_bundle, world_features["test"], k=1)
    assert {r["nn_source"] for r in rows} <= {"real", "fake"}
    assert all(r["nn_source_share"] == {r["nn_source"]: 1.0} for r in rows)


def test_train_pools_several_named_fake_files(
    tiny_bundle: Path, world_files: dict[str, Path], tmp_path: Path
) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    args = [
        str(bundle),
        "--real-features",
        str(world_files["bank_real"]),
        "--no-cache",
        "--epochs",
        "2",
        "--no-augment",
    ]
    for name in GENERATORS[:2]:
        args += ["--fake-features", f"{name}={world_files[f'bank_{name}']}"]
    args += ["--fake-features", str(world_files["bank_ldm"])]
    bad = [a for a in args if a != "--no-augment"] + ["--augment", "blur-only"]
    result = runner.invoke(train_app, bad)
    assert result.exit_code == 2 and "unknown --augment 'blur-only'" in result.output
    result = runner.invoke(train_app, args)
    assert result.exit_code == 0, result.output
    summary = open_bundle(bundle).manifest.method_provenance("linear")["training"]
    assert summary["augment"] == "none" and summary["views"] == 0  # --no-augment
    assert summary["n_train_real"] + summary["n_train_fake"] + summary["n_val"] == 400 + 450
    assert summary["n_train_fake"] > 400  # three files pooled (10 % held out)


# --- the unsure band -----------------------------------------------------------------------


def test_real_below_for_fnr_keeps_the_misses_at_the_target() -> None:
    scores = np.random.default_rng(0).normal(size=1000)
    for target in (0.0, 0.01, 0.1, 0.5):
        edge, achieved = real_below_for_fnr(scores, target)
        assert achieved == np.mean(scores <= edge) <= target
        assert achieved > target - 0.002  # the highest such edge
    edge, achieved = real_below_for_fnr(np.array([0.5, 0.5, 0.5, 0.9]), 0.5)
    assert edge < 0.5 and achieved == 0.0  # ties at the edge would miss 75 %


@pytest.fixture(scope="module")
def band_features(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Overlapping real and fake score distributions (the random head cannot tell them)."""
    world = SyntheticWorld(dim=768, seed=3)
    folder = tmp_path_factory.mktemp("band")
    sets = {
        "cal_real": world.reals(2000, 1),
        "cal_fake": world.fakes(2000, 0, 2),
        "test_real": world.reals(2000, 3),
        "test_fake": world.fakes(2000, 0, 4),
    }
    files = {}
    for name, rows in sets.items():
        files[name] = folder / f"{name}.npy"
        np.save(files[name], rows.astype(np.float32))
    return files


def _labels(bundle: Path, features: Path, method: str = "linear") -> list[str]:
    result = runner.invoke(
        detect_app,
        [str(bundle), "--features", str(features), "--method", method, "--format", "jsonl"],
    )
    assert result.exit_code == 0, result.output
    return [json.loads(line)["label"] for line in result.stdout.splitlines()]


def test_unsure_band_rates_match_the_targets(
    tiny_bundle: Path, band_features: dict[str, Path], tmp_path: Path
) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    fpr, fnr = 0.1, 0.2
    result = runner.invoke(
        calibrate_app,
        [
            str(bundle),
            "--real-features",
            str(band_features["cal_real"]),
            "--fake-features",
            str(band_features["cal_fake"]),
            "--target-fpr",
            str(fpr),
            "--target-fnr",
            str(fnr),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "unsure band" in result.stdout
    entry = open_bundle(bundle).manifest.methods["linear"]
    assert entry.real_below < entry.threshold and entry.calibration.target_fnr == fnr
    reals, fakes = (
        _labels(bundle, band_features["test_real"]),
        _labels(bundle, band_features["test_fake"]),
    )
    assert set(reals + fakes) == {"real", "unsure", "fake"}
    tolerance = 4 * np.sqrt(2 * 0.2 * 0.8 / 2000)  # calibration and test sampling, 4 sd
    assert abs(np.mean(np.array(reals) == "fake") - fpr) <= tolerance
    assert abs(np.mean(np.array(fakes) == "real") - fnr) <= tolerance


def test_without_a_band_nothing_changes(
    tiny_bundle: Path, band_features: dict[str, Path], tmp_path: Path
) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    base = ["--real-features", str(band_features["cal_real"]), "--target-fpr", "0.1"]
    assert runner.invoke(calibrate_app, [str(bundle), *base]).exit_code == 0
    plain = _labels(bundle, band_features["test_real"])
    assert set(plain) == {"real", "fake"}
    banded = [*base, "--fake-features", str(band_features["cal_fake"]), "--target-fnr", "0.2"]
    assert runner.invoke(calibrate_app, [str(bundle), *banded]).exit_code == 0
    with_band = _labels(bundle, band_features["test_real"])
    assert [a for a, b in zip(plain, with_band, strict=True) if b != "unsure"] == [
        b for b in with_band if b != "unsure"
    ]  # the band only turns some reals unsure; fakes stay fakes
    assert runner.invoke(calibrate_app, [str(bundle), *base]).exit_code == 0  # no band again
    assert _labels(bundle, band_features["test_real"]) == plain
    assert open_bundle(bundle).manifest.methods["linear"].real_below is None


def test_the_api_and_an_explicit_threshold(
    tiny_bundle: Path, band_features: dict[str, Path], tmp_path: Path
) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    result = runner.invoke(
        calibrate_app,
        [
            str(bundle),
            "--real-features",
            str(band_features["cal_real"]),
            "--fake-features",
            str(band_features["cal_fake"]),
            "--target-fnr",
            "0.3",
        ],
    )
    assert result.exit_code == 0, result.output
    features = np.load(band_features["test_real"])[:200]
    names = [f"r{i}" for i in range(200)]
    labels = [r.values["label"] for r in Detector.open(bundle).score_features(features, names)]
    assert "unsure" in labels
    fixed = Detector.open(bundle, threshold=0.5).score_features(features, names)
    assert {r.values["label"] for r in fixed} <= {"real", "fake"}  # the pair is replaced


def test_band_needs_fakes(tiny_bundle: Path, band_features: dict[str, Path]) -> None:
    args = [
        str(tiny_bundle),
        "--real-features",
        str(band_features["cal_real"]),
        "--target-fnr",
        "0.1",
    ]
    result = runner.invoke(calibrate_app, args)
    assert result.exit_code == 2 and "held-out fakes" in result.output


def test_threshold_for_fpr_and_band_edge_agree_on_one_sample() -> None:
    scores = np.linspace(0, 1, 101)
    threshold, fpr = threshold_for_fpr(scores, 0.1)
    edge, fnr = real_below_for_fnr(scores, 0.1)
    assert fpr == pytest.approx(0.099, abs=1e-3) and fnr == pytest.approx(0.099, abs=1e-3)
    assert edge < threshold
