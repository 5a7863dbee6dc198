"""The method registry: every registered method goes through the same tests.

A new method is tested here by adding its step to ``full_bundle`` (conftest); the
toy method at the end shows what adding one touches: one class, nothing else.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import FULL_BUNDLE_STEPS
from helpers import random_image
from typer.testing import CliRunner

from ufd.cli.calibrate import app as calibrate_app
from ufd.cli.detect import app as detect_app
from ufd.cli.eval import app as eval_app
from ufd.runtime import BundleError, Detector
from ufd.runtime.bundle import MethodEntry
from ufd.runtime.bundle.update import write_manifest
from ufd.runtime.errors import UsageError
from ufd.runtime.methods import (
    REGISTRY,
    Measured,
    Method,
    fields_for,
    method_names,
    open_bundle,
    register,
)
from ufd.runtime.methods.base import labels
from ufd.runtime.registry import unregister

runner = CliRunner()
METHODS = method_names()
CALIBRATABLE = [m for m in METHODS if REGISTRY[m].calibratable]
WITH_K = [m for m in METHODS if REGISTRY[m].uses_k]


def _detect_features(bundle: Path, features: Path, *args: str) -> list[dict]:
    result = runner.invoke(
        detect_app, [str(bundle), "--features", str(features), "--format", "jsonl", *args]
    )
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_full_bundle_offers_every_registered_method(full_bundle: Path) -> None:
    assert set(FULL_BUNDLE_STEPS) == set(METHODS), "add the new method's step to full_bundle"
    assert Detector.open(full_bundle, provider="cpu").methods.available() == METHODS


@pytest.mark.parametrize("method", METHODS)
def test_records_carry_exactly_the_methods_fields(
    full_bundle: Path, world_features: dict[str, Path], method: str
) -> None:
    records = _detect_features(full_bundle, world_features["test"], "--method", method)
    assert len(records) == 40
    for record in records:
        assert tuple(record) == fields_for(method) == ("path", *REGISTRY[method].fields, "error")
        assert record["error"] is None
        declared = REGISTRY[method].field_types
        for name, value in record.items():
            if name.endswith("label"):
                assert value in ("real", "fake")
            elif declared.get(name) == "string":
                assert isinstance(value, str) and value
            elif declared.get(name) == "shares":
                assert isinstance(value, dict) and math.isclose(sum(value.values()), 1.0)
            elif name not in ("path", "error") and value is not None:
                assert math.isfinite(value)


@pytest.mark.parametrize("method", METHODS)
def test_a_bundle_without_the_method_says_how_to_add_it(
    tiny_bundle: Path, tmp_path: Path, method: str
) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    manifest = open_bundle(bundle).manifest
    write_manifest(bundle, manifest.with_method(method, None))
    detector = Detector.open(bundle, provider="cpu", precision="fp32")
    assert method not in detector.methods.available()
    with pytest.raises(BundleError, match=rf"has no {method} method") as info:
        detector.methods.get(method)
    assert REGISTRY[method].missing_hint in str(info.value)


@pytest.mark.parametrize("method", CALIBRATABLE)
def test_calibration_meets_the_target_on_its_reals(
    full_bundle: Path, world_features: dict[str, Path], tmp_path: Path, method: str
) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(full_bundle, bundle)
    reals = world_features["held_real"]
    result = runner.invoke(
        calibrate_app,
        [str(bundle), "--method", method, "--real-features", str(reals), "--target-fpr", "0.1"],
    )
    assert result.exit_code == 0, result.output
    entry = open_bundle(bundle).manifest.methods[method]
    assert entry.threshold == entry.calibration.threshold
    assert 0.08 <= entry.calibration.achieved_fpr <= 0.1
    records = _detect_features(bundle, reals, "--method", method)
    flagged = np.mean([r[REGISTRY[method].fields[-1]] == "fake" for r in records])
    assert flagged == pytest.approx(entry.calibration.achieved_fpr)


@pytest.mark.parametrize("method", WITH_K)
def test_k_beyond_the_bank_is_a_usage_error(
    full_bundle: Path, world_features: dict[str, Path], method: str
) -> None:
    result = runner.invoke(
        detect_app,
        [
            str(full_bundle),
            "--features",
            str(world_features["test"]),
            "--method",
            method,
            "--k",
            "100000",
        ],
    )
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "k must be at most 300, the smallest bank's size" in result.stderr


def test_k_beyond_the_smallest_bank_is_refused_whatever_the_method(full_bundle: Path) -> None:
    """One rule for ufd-detect, ufd-scan and the service: k is never silently ignored."""
    from ufd.runtime import Detector
    from ufd.runtime.errors import UsageError

    detector = Detector.open(full_bundle, precision="fp32", provider="cpu")
    largest = detector.methods.largest_k()
    assert largest == 300  # the real-only bank (300 reals) is the smallest
    assert detector.plan("linear", largest)[1].k == largest
    with pytest.raises(UsageError, match="k must be at most 300"):
        detector.plan("linear", largest + 1)


def test_calibrating_a_method_without_threshold_is_refused(full_bundle: Path, world_features):
    from ufd.runtime.building.calibrate import calibrate

    reals = np.load(world_features["held_real"])
    with pytest.raises(UsageError, match="no threshold to calibrate"):
        calibrate(Detector.open(full_bundle), "nn", reals, 0.05)
    result = runner.invoke(  # nn calibrates its open set, from held-out fakes
        calibrate_app,
        [str(full_bundle), "--method", "nn", "--real-features", str(world_features["held_real"])],
    )
    assert result.exit_code == 2 and "held-out fakes" in result.stderr


def test_eval_reports_every_method(full_bundle: Path, tmp_path: Path) -> None:
    for cls in ("0_real", "1_fake"):
        (tmp_path / "data" / "set" / cls).mkdir(parents=True)
        for i in range(3):
            random_image(tmp_path / "data" / "set" / cls / f"{i}.png", (230, 230), seed=i)
    out = tmp_path / "eval"
    result = runner.invoke(
        eval_app,
        [
            str(full_bundle),
            str(tmp_path / "data"),
            "--method",
            "all",
            "--out",
            str(out),
            "--no-cache",
        ],
    )
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert tuple(results["methods"]) == METHODS
    assert set(results["conditions"]["clean"]["sets"]["set"]) == set(METHODS)
    assert set(results["thresholds"]) == set(METHODS)


# --- a new method: one class, registered; nothing else changes -------------------------


@dataclass(frozen=True)
class NormConfig:
    """The toy method's manifest config."""

    scale: float


class FeatureNorm(Method):
    """Toy: the feature's length, scaled (a stand-in for any new scoring idea)."""

    name = "toy_norm"
    summary = "toy_norm (feature length)"
    fields = ("toy_norm_score", "toy_norm_label")
    table_columns = (("toy_norm_label", "norm", 6), ("toy_norm_score", "length", 8))
    config_type = NormConfig
    missing_hint = "add it in a test"

    def measure(self, features: np.ndarray, options) -> Measured:
        """Raw and score: the scaled L2 norm."""
        norms = np.linalg.norm(features, axis=1).astype(np.float64) * self.config.scale
        return Measured(raw=norms, score=norms)

    def columns(self, measured: Measured, is_fake: np.ndarray) -> dict[str, list]:
        """Its two fields."""
        return {
            "toy_norm_score": [float(s) for s in measured.score],
            "toy_norm_label": labels(is_fake),
        }


@pytest.fixture
def toy_bundle(full_bundle: Path, tmp_path: Path):
    register(FeatureNorm)
    bundle = tmp_path / "b"
    shutil.copytree(full_bundle, bundle)
    entry = MethodEntry(threshold=2.0, config=NormConfig(scale=2.0))
    write_manifest(bundle, open_bundle(bundle).manifest.with_method("toy_norm", entry))
    yield bundle
    unregister("toy_norm")


def test_a_new_method_needs_only_its_class(toy_bundle: Path, world_features, tmp_path) -> None:
    features = world_features["test"]
    records = _detect_features(toy_bundle, features, "--method", "all")
    assert list(records[0])[-3:] == ["toy_norm_score", "toy_norm_label", "error"]
    rows = np.load(features)
    assert records[0]["toy_norm_score"] == pytest.approx(2 * np.linalg.norm(rows[0]), rel=1e-6)
    table = runner.invoke(
        detect_app, [str(toy_bundle), "--features", str(features), "--method", "toy_norm"]
    )
    assert table.stdout.splitlines()[0].split()[:2] == ["norm", "length"]
    result = runner.invoke(
        calibrate_app,
        [
            str(toy_bundle),
            "--method",
            "toy_norm",
            "--real-features",
            str(world_features["held_real"]),
            "--target-fpr",
            "0.2",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = open_bundle(toy_bundle).manifest
    assert manifest.methods["toy_norm"].config == NormConfig(scale=2.0)  # config checked, kept
    assert manifest.methods["toy_norm"].calibration.target_fpr == 0.2
    unregister("toy_norm")  # an older ufd meets a bundle with a method it does not know
    with pytest.raises(BundleError, match="upgrade ufd"):
        open_bundle(toy_bundle)
    register(FeatureNorm)
