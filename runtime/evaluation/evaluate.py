"""``ufd-eval``'s engine: the paper's protocol on any bundle.

Layout (official ``validate.py``): ``ROOT/<set>/0_real/*`` and
``ROOT/<set>/1_fake/*``, or one more level of class folders
(``ROOT/<set>/<class>/0_real``). Every set is scored per method and per
perturbation condition; features are cached per condition.

A method with an unsure band adds, per set, the share of images it called
``unsure`` and its accuracy on the rest. When ``nn`` runs on a bank whose fake
sources are named after test sets (``ufd-index --fake progan=...`` and a set
``progan``), an attribution confusion matrix is added per condition.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ufd.runtime.detector import Detector
from ufd.runtime.errors import UfdError
from ufd.runtime.evaluation.scores import SetScores
from ufd.runtime.evaluation.videos import add_videos, score_videos
from ufd.runtime.features.cache import (
    EncodedBatch,
    FeatureCache,
    cache_key,
    cached_features,
    encoded_batches,
)
from ufd.runtime.io.decode import ImageSource
from ufd.runtime.io.inputs import InputItem, is_image_name, is_video_name
from ufd.runtime.methods import ScoreOptions
from ufd.runtime.metrics import set_metrics
from ufd.runtime.pipeline import Pixels
from ufd.runtime.transforms import View, condition
from ufd.runtime.video.run import VideoRun

logger = logging.getLogger(__name__)

REAL_DIR, FAKE_DIR = "0_real", "1_fake"
METRIC_KEYS = ("ap", "acc", "real_acc", "fake_acc", "best_acc", "auc", "tpr_at_5fpr")
UNSURE_KEYS = ("unsure", "unsure_real", "unsure_fake", "sure_acc")


@dataclass
class TestSet:
    """One test set: its real and fake image paths."""

    name: str
    real: list[str]
    fake: list[str]


def _images(folder: Path) -> list[str]:
    """Images and videos under ``folder`` (by extension), sorted."""
    return sorted(
        str(p)
        for p in folder.rglob("*")
        if p.is_file() and (is_image_name(p.name) or is_video_name(p.name))
    )


def _collect(folder: Path) -> tuple[list[str], list[str]]:
    """Reals and fakes under ``folder``: direct 0_real/1_fake, or one level of classes."""
    if (folder / REAL_DIR).is_dir() or (folder / FAKE_DIR).is_dir():
        return _images(folder / REAL_DIR), _images(folder / FAKE_DIR)
    real, fake = [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if (sub / REAL_DIR).is_dir() or (sub / FAKE_DIR).is_dir():
            real += _images(sub / REAL_DIR)
            fake += _images(sub / FAKE_DIR)
    return real, fake


def discover_sets(root: Path) -> list[TestSet]:
    """The test sets under ``root`` (or ``root`` itself if it holds 0_real/1_fake).

    Raises:
        UfdError: no set found; says what layout is expected.
    """
    root = Path(root)
    candidates = [root] if (root / REAL_DIR).is_dir() or (root / FAKE_DIR).is_dir() else []
    if not candidates and root.is_dir():
        candidates = sorted(p for p in root.iterdir() if p.is_dir())
    sets = []
    for folder in candidates:
        real, fake = _collect(folder)
        if real or fake:
            sets.append(TestSet(folder.name, real, fake))
        else:
            logger.warning("%s holds no 0_real/ or 1_fake/ images; skipped", folder)
    if not sets:
        raise UfdError(
            f"no test set under {root}: expected ROOT/<set>/0_real and ROOT/<set>/1_fake "
            "(or ROOT/<set>/<class>/0_real ...)"
        )
    return sets


def limit_per_class(test_set: TestSet, max_per_class: int | None, seed: int) -> TestSet:
    """A reproducible random sample of at most ``max_per_class`` images per class."""
    if max_per_class is None:
        return test_set

    def pick(paths: list[str], salt: str) -> list[str]:
        if len(paths) <= max_per_class:
            return paths
        digest = hashlib.sha256(f"{seed}|{test_set.name}|{salt}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))  # not hash(): salted
        return sorted(rng.choice(paths, max_per_class, replace=False).tolist())

    return TestSet(test_set.name, pick(test_set.real, "real"), pick(test_set.fake, "fake"))


@dataclass
class EvalOptions:
    """What to evaluate."""

    methods: tuple[str, ...] = ("linear",)
    k: int | None = None
    conditions: tuple[tuple[float, int | None], ...] = ((0.0, None),)
    max_per_class: int | None = None
    seed: int = 0
    batch_size: int | None = None
    cache_root: Path | None = None
    video: VideoRun = field(default_factory=VideoRun)
    """How videos in the sets are sampled and decided."""


def evaluate(
    detector: Detector,
    sets: list[TestSet],
    options: EvalOptions,
    on_skip: Callable[[str, str], None] = lambda path, reason: None,
) -> tuple[dict[str, Any], dict[str, dict[str, SetScores]]]:
    """Score every set under every condition.

    Returns:
        (results for ``results.json``, scores per condition and set for the report).
    """
    results: dict[str, Any] = {}
    all_scores: dict[str, dict[str, SetScores]] = {}
    for sigma, quality in options.conditions:
        view = condition(sigma, quality)
        name = view.name
        per_set, scores_here = {}, {}
        for test_set in sets:
            scored = score_set(detector, test_set, options, view, on_skip)
            scores_here[test_set.name] = scored
            per_set[test_set.name] = {
                method: set_metrics(
                    scored.labels, scored.scores[method], _threshold(detector, method)
                ).to_dict()
                | _prediction_accuracy(scored, method)
                | _unsure_rates(scored, method)
                for method in options.methods
            }
        results[name] = {"sets": per_set, "mean": _mean_rows(per_set, options.methods)}
        matrix = attribution_matrix(detector, scores_here) if "nn" in options.methods else None
        if matrix is not None:
            results[name]["attribution"] = matrix
        all_scores[name] = scores_here
    return results, all_scores


def view_preparer(detector: Detector, view: View) -> Callable[[ImageSource], Pixels]:
    """Image -> encoder input of its ``view`` (the detector's own prepare step when clean)."""
    if not view.steps:
        return detector.prepare
    preparer = detector.preparer
    return lambda source: preparer.normalise(preparer.view_crop(source, view))


def score_set(
    detector: Detector,
    test_set: TestSet,
    options: EvalOptions,
    view: View,
    on_skip: Callable[[str, str], None],
) -> SetScores:
    """Every method's scores and decisions on ``view`` of each image of a set (features cached)."""
    cache = None
    if options.cache_root is not None:
        manifest = detector.bundle.manifest
        encoder_sha = manifest.files[manifest.encoder(detector.precision).file].sha256
        key = cache_key(encoder_sha, detector.preprocess_config, view.name)
        cache = FeatureCache(options.cache_root, key)
    everything = (*test_set.real, *test_set.fake)
    videos = [p for p in everything if is_video_name(p)]
    items = [InputItem(p) for p in everything if not is_video_name(p)]
    fake_paths = set(test_set.fake)
    prepare = view_preparer(detector, view)

    def encode(missing: list[InputItem]) -> Iterator[EncodedBatch]:
        return encoded_batches(detector, missing, options.batch_size, prepare)

    paths, features = cached_features(items, cache, encode, on_skip)
    scored = SetScores(labels=np.array([p in fake_paths for p in paths], dtype=bool), paths=paths)
    for method in options.methods:
        scored.scores[method], scored.predictions[method] = np.zeros(0), np.zeros(0, bool)
    if len(features):
        _score_images(detector, scored, features, options)
    if videos:
        args = (ScoreOptions(options.k), prepare, options.video, options.batch_size, on_skip)
        add_videos(detector, scored, score_videos(detector, videos, options.methods, *args))
        scored.labels = np.array([p in fake_paths for p in scored.paths], dtype=bool)
    return scored


def _score_images(
    detector: Detector, scored: SetScores, features: np.ndarray, options: EvalOptions
) -> None:
    runs = detector.methods.run(options.methods, features, ScoreOptions(options.k))
    for method, result in runs.items():  # the score the threshold applies to, and the decision
        scored.scores[method], scored.predictions[method] = result.measured.score, result.is_fake
        if detector.methods.get(method).real_below is not None and result.unsure is not None:
            scored.unsure[method] = result.unsure
        if method == "nn":
            scored.sources = list(result.columns["nn_source"])


def _unsure_rates(scored: SetScores, method: str) -> dict[str, Any]:
    """Share called unsure and accuracy on the rest (methods with a band only)."""
    unsure = scored.unsure.get(method)
    if unsure is None or not len(unsure):
        return {}
    sure = ~unsure
    right = scored.predictions[method] == scored.labels
    return {
        "unsure": float(np.mean(unsure)),
        "unsure_real": float(np.mean(unsure[~scored.labels])) if (~scored.labels).any() else None,
        "unsure_fake": float(np.mean(unsure[scored.labels])) if scored.labels.any() else None,
        "sure_acc": float(np.mean(right[sure])) if sure.any() else None,
    }


def attribution_matrix(detector: Detector, sets: dict[str, SetScores]) -> dict[str, Any] | None:
    """Counts of true source x ``nn_source`` over sets named after the bank's sources.

    Reals of every set count under ``real``; fakes of a set named like a source
    under that source; fakes of other sets under ``other:<set>`` (an open-set
    check: ``unknown`` is the right answer there). ``None`` when no set is named
    after a source.
    """
    config = detector.bundle.manifest.methods["nn"].config
    named = [name for name in sets if name in config.sources]
    if not named:
        return None
    matrix: dict[str, dict[str, int]] = {}
    for name, scored in sets.items():
        for is_fake, predicted in zip(scored.labels, scored.sources, strict=True):
            truth = "real" if not is_fake else name if name in named else f"other:{name}"
            row = matrix.setdefault(truth, {})
            row[predicted] = row.get(predicted, 0) + 1
    total = sum(sum(matrix.get(t, {}).values()) for t in named)
    right = sum(matrix.get(t, {}).get(t, 0) for t in named)
    return {
        "sources": list(config.sources),
        "matrix": matrix,
        "accuracy": right / total if total else None,
        "accuracy_of_caught": _caught_accuracy(matrix, named),
    }


def _caught_accuracy(matrix: dict[str, dict[str, int]], named: list[str]) -> float | None:
    """Of the named sets' fakes the vote called fake, the share attributed right."""
    caught = right = 0
    for truth in named:
        for predicted, count in matrix.get(truth, {}).items():
            if predicted != "real":
                caught += count
                right += count if predicted == truth else 0
    return right / caught if caught else None


def _threshold(detector: Detector, method: str) -> float:
    """The decision threshold each method's score is compared with."""
    return detector.methods.get(method).threshold


def _prediction_accuracy(scored: SetScores, method: str) -> dict[str, Any]:
    """Accuracies from the method's own decisions (the NN vote breaks ties by distance)."""
    pred, labels = scored.predictions[method], scored.labels
    if not len(labels):
        return {}
    return {
        "acc": float(np.mean(pred == labels)),
        "real_acc": float(np.mean(~pred[~labels])) if (~labels).any() else float("nan"),
        "fake_acc": float(np.mean(pred[labels])) if labels.any() else float("nan"),
    }


def _nanmean(values: list[float]) -> float:
    """The mean of the known values; NaN (quietly) when none is known (a set with one class)."""
    known = np.asarray(values, dtype=np.float64)
    known = known[~np.isnan(known)]
    return float(known.mean()) if len(known) else float("nan")


def _mean_rows(per_set: dict[str, Any], methods: tuple[str, ...]) -> dict[str, Any]:
    means = {}
    for method in methods:
        rows = [metrics[method] for metrics in per_set.values()]
        means[method] = {key: _nanmean([r[key] for r in rows]) for key in METRIC_KEYS}
        means[method]["n_real"] = int(sum(r["n_real"] for r in rows))
        means[method]["n_fake"] = int(sum(r["n_fake"] for r in rows))
        for key in UNSURE_KEYS:
            values = [r[key] for r in rows if r.get(key) is not None]
            if values:
                means[method][key] = float(np.mean(values))
    return means
