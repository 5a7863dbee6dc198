"""A whole ``ufd-eval`` run: the condition grid, the sets, the scores, ``results.json``'s layout.

:func:`run_evaluation` is what the command calls: it builds the perturbation grid
(clean, each JPEG quality, each blur, then every blur followed by every JPEG
quality), scores each set under each condition (and the re-upload views with
``stability``), and returns the ``results.json`` document and the scores the
HTML report plots. :func:`write_reports` writes ``results.json``, ``table.md`` and
``report.html``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ufd.runtime.detector import Detector
from ufd.runtime.evaluation.evaluate import (
    EvalOptions,
    TestSet,
    discover_sets,
    evaluate,
    limit_per_class,
)
from ufd.runtime.evaluation.scores import SetScores

Condition = tuple[float, int | None]
"""(blur sigma, JPEG quality): 0 and ``None`` leave the image as it is."""


def condition_grid(qualities: list[int], sigmas: list[float]) -> tuple[Condition, ...]:
    """Clean, each JPEG quality, each blur, then each blur followed by each JPEG quality."""
    grid: list[Condition] = [(0.0, None)]
    grid += [(0.0, q) for q in qualities] + [(s, None) for s in sigmas]
    grid += list(itertools.product(sigmas, qualities))  # blur before JPEG
    return tuple(grid)


@dataclass
class Skipped:
    """Unreadable images, each once however many conditions and views meet it."""

    found: list[list[str]] = field(default_factory=list)
    on_skip: Callable[[str, str], None] = lambda path, why: None
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def __call__(self, path: str, why: str) -> None:
        """Record (and pass on) a skipped image, once."""
        if (path, why) not in self._seen:
            self._seen.add((path, why))
            self.found.append([path, why])
            self.on_skip(path, why)


@dataclass
class Evaluation:
    """What a run found: the ``results.json`` document and the scores behind it."""

    results: dict[str, Any]
    scores: dict[str, dict[str, SetScores]]
    sets: list[TestSet]


def load_sets(root: Path, max_per_class: int | None, seed: int) -> list[TestSet]:
    """The test sets under ``root``, sampled to ``max_per_class`` per class (seeded)."""
    return [limit_per_class(s, max_per_class, seed) for s in discover_sets(root)]


def run_evaluation(
    detector: Detector,
    bundle: Path,
    sets: list[TestSet],
    options: EvalOptions,
    stability: bool = False,
    on_skip: Callable[[str, str], None] = lambda path, why: None,
) -> Evaluation:
    """Score ``sets`` under ``options.conditions`` (and re-upload views with ``stability``)."""
    skipped = Skipped(on_skip=on_skip)
    per_condition, scores = evaluate(detector, sets, options, skipped)
    methods = options.methods
    model = detector.bundle.manifest.model
    results: dict[str, Any] = {
        "bundle": str(bundle),
        "bundle_name": Path(bundle).resolve().name,
        "model": {"name": model.name, "pretrained": model.pretrained},
        "precision": detector.precision,
        "threshold": detector.threshold if "linear" in methods else None,
        "thresholds": {m: detector.methods.get(m).threshold for m in methods},
        "unsure_bands": {m: detector.methods.get(m).real_below for m in methods},
        "methods": list(methods),
        "k": options.k,
        "max_per_class": options.max_per_class,
        "seed": options.seed,
        "conditions": per_condition,
        "skipped": skipped.found,
    }
    if stability:
        from ufd.runtime.evaluation.stability import stability as measure_stability

        results["stability"] = measure_stability(detector, sets, options, scores["clean"], skipped)
    return Evaluation(results, scores, sets)


def write_reports(evaluation: Evaluation, out: Path) -> list[str]:
    """Write ``results.json``, ``table.md`` and (with matplotlib) ``report.html``; their names."""
    from ufd.runtime.evaluation.report import write_json, write_table
    from ufd.runtime.evaluation.report_html import write_html

    out.mkdir(parents=True, exist_ok=True)
    write_json(evaluation.results, out / "results.json")
    write_table(evaluation.results, out / "table.md")
    html = write_html(evaluation.results, evaluation.scores, out / "report.html")
    return ["results.json", "table.md", *(["report.html"] if html else [])]
