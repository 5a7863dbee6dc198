"""``ufd-eval --stability``: does each image keep its verdict when it is re-uploaded?

Every image of every set is scored as it is and as each re-upload view
(:data:`ufd.runtime.transforms.REUPLOADS`: downscale to 0.5 and 0.75, JPEG
quality 95/75/50/40, WebP 80, centre crop 90 % and 80 %, downscale 0.5 then JPEG
75), with the same cached features as the rest of ``ufd-eval``. Per method and
set, over every (image, view) pair:

* ``flip_rate``: the share of pairs whose decision differs from the image's own;
* ``images_flipped``: the share of images that at least one view flips;
* ``mean_abs_delta`` and ``p95_abs_delta``: of |score(view) - score(image)|, the
  score each method thresholds (p(fake) for the heads, the vote share for ``nn``,
  the distance for ``realonly``);
* ``worst_view``: the view that flips most (ties: the larger mean |Δ|), and
  ``per_view``: flip rate and mean |Δ| of each view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ufd.runtime.detector import Detector
from ufd.runtime.evaluation.evaluate import EvalOptions, TestSet, score_set
from ufd.runtime.evaluation.scores import SetScores
from ufd.runtime.transforms import REUPLOADS, View

STABILITY_KEYS = ("flip_rate", "images_flipped", "mean_abs_delta", "p95_abs_delta")


def stability(
    detector: Detector,
    sets: list[TestSet],
    options: EvalOptions,
    clean: dict[str, SetScores] | None = None,
    on_skip: Callable[[str, str], None] = lambda path, reason: None,
    views: tuple[View, ...] = REUPLOADS,
) -> dict[str, Any]:
    """The stability of every method on every set (``results.json``'s ``stability``).

    Args:
        detector: the bundle.
        sets: the test sets.
        options: methods, k, batch size and feature cache (as the rest of ``ufd-eval``).
        clean: the sets already scored as they are (``evaluate``'s ``clean``), if any.
        on_skip: told about each image (or view of one) that could not be scored.
        views: the views to compare with.
    """
    per_set = {}
    for test_set in sets:
        base = (clean or {}).get(test_set.name)
        if base is None:
            base = score_set(detector, test_set, options, View(()), on_skip)
        scored = {
            view.name: score_set(detector, test_set, options, view, on_skip) for view in views
        }
        per_set[test_set.name] = {
            method: method_stability(base, scored, method) for method in options.methods
        }
    return {
        "views": [view.name for view in views],
        "sets": per_set,
        "mean": _mean(per_set, options.methods, [view.name for view in views]),
    }


def method_stability(base: SetScores, views: dict[str, SetScores], method: str) -> dict[str, Any]:
    """One method's stability on one set: ``base`` (the images) against each view."""
    row_of = {path: i for i, path in enumerate(base.paths)}
    flipped_images = np.zeros(len(base.paths), dtype=bool)
    flips, deltas, per_view = [], [], {}
    for name, scored in views.items():
        pairs = [(j, row_of[p]) for j, p in enumerate(scored.paths) if p in row_of]
        mine = np.array([j for j, _ in pairs], dtype=int)
        theirs = np.array([i for _, i in pairs], dtype=int)
        flip = scored.predictions[method][mine] != base.predictions[method][theirs]
        delta = np.abs(
            np.asarray(scored.scores[method], np.float64)[mine]
            - np.asarray(base.scores[method], np.float64)[theirs]
        )
        flipped_images[theirs[flip]] = True
        flips.append(flip)
        deltas.append(delta)
        per_view[name] = {
            "flip_rate": _mean_or_none(flip),
            "mean_abs_delta": _mean_or_none(delta),
            "pairs": len(pairs),
        }
    all_flips = np.concatenate(flips) if flips else np.zeros(0, dtype=bool)
    all_deltas = np.concatenate(deltas) if deltas else np.zeros(0)
    return {
        "flip_rate": _mean_or_none(all_flips),
        "images_flipped": _mean_or_none(flipped_images),
        "mean_abs_delta": _mean_or_none(all_deltas),
        "p95_abs_delta": float(np.percentile(all_deltas, 95)) if len(all_deltas) else None,
        "worst_view": worst_view(per_view),
        "per_view": per_view,
        "images": len(base.paths),
    }


def worst_view(per_view: dict[str, dict[str, Any]]) -> str | None:
    """The view with the highest flip rate (ties: the larger mean |Δ|); ``None``: no pair."""
    rated = [
        (row["flip_rate"], row["mean_abs_delta"], name)
        for name, row in per_view.items()
        if row["flip_rate"] is not None
    ]
    return max(rated, key=lambda r: (r[0], r[1]))[2] if rated else None


def _mean(per_set: dict[str, Any], methods: tuple[str, ...], views: list[str]) -> dict[str, Any]:
    """Per method: each key's mean over the sets, and each view's mean flip rate."""
    means = {}
    for method in methods:
        rows = [metrics[method] for metrics in per_set.values()]
        row: dict[str, Any] = {key: _nanmean([r[key] for r in rows]) for key in STABILITY_KEYS}
        row["per_view"] = {
            view: {
                key: _nanmean([r["per_view"][view][key] for r in rows])
                for key in ("flip_rate", "mean_abs_delta")
            }
            for view in views
        }
        row["worst_view"] = worst_view(row["per_view"])
        row["images"] = sum(r["images"] for r in rows)
        means[method] = row
    return means


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _nanmean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None
