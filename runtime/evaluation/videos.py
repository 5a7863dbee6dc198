"""Videos in ``ufd-eval`` sets: each scored from its sampled frames, as ufd-detect does.

A set's ``0_real``/``1_fake`` folders may hold videos (by extension). Under each
condition a video's frames get that condition's view (the same blur/JPEG as
images), go through the encoder and methods, and the video's record decides
by the run's ``--video-rule`` (:mod:`ufd.runtime.video`). Each video then counts
as one input of its class; its timeline (each method's score per frame) goes to
the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ufd.runtime.detector import Detector
from ufd.runtime.evaluation.scores import SetScores
from ufd.runtime.io.decode import ImageSource
from ufd.runtime.io.inputs import InputItem
from ufd.runtime.methods import ScoreOptions
from ufd.runtime.pipeline import Pixels
from ufd.runtime.records import Record
from ufd.runtime.video.run import VideoRun

VIDEO_SOURCE = "video"
"""A video's ``nn`` source in the attribution matrix (its frames may name several)."""


@dataclass
class VideoScores:
    """Per method, one score, decision and unsure flag per video scored (in ``paths``)."""

    paths: list[str] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=dict)
    predictions: dict[str, list[bool]] = field(default_factory=dict)
    unsure: dict[str, list[bool]] = field(default_factory=dict)
    timelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Path -> ``{"timeline": [...], "label": ..., "field": score field of the first method}``."""

    def arrays(self, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores, fake decisions, unsure) of ``method`` as arrays."""
        return (
            np.array(self.scores.get(method, []), dtype=np.float64),
            np.array(self.predictions.get(method, []), dtype=bool),
            np.array(self.unsure.get(method, []), dtype=bool),
        )


def score_videos(
    detector: Detector,
    paths: list[str],
    methods: tuple[str, ...],
    options: ScoreOptions,
    prepare: Callable[[ImageSource], Pixels],
    video: VideoRun,
    batch_size: int | None,
    on_skip: Callable[[str, str], None],
) -> VideoScores:
    """Each video's record under ``prepare`` (a condition's view); failures go to ``on_skip``."""
    loaded = [detector.methods.get(m) for m in methods]
    scored = VideoScores(
        scores={m: [] for m in methods},
        predictions={m: [] for m in methods},
        unsure={m: [] for m in methods},
    )

    def score(group: Iterable[InputItem]) -> Iterator[list[Record]]:
        for batch, features, failure in detector.feature_batches(group, batch_size, prepare):
            yield detector.records(batch, features, failure, methods, options)

    quiet = VideoRun(video.options, video.rule)  # the video's record only, not its frames'
    for path in paths:
        record = list(quiet.batches(InputItem(path), score, loaded))[-1][0]
        if not record.ok:
            on_skip(path, record.error or "not scored")
            continue
        scored.paths.append(path)
        for method in loaded:
            label = record.get(method.label_field())
            scored.scores[method.name].append(float(record.get(method.score_field())))
            scored.predictions[method.name].append(label == "fake")
            scored.unsure[method.name].append(label == "unsure")
        first = loaded[0]
        scored.timelines[path] = {
            "timeline": record.get("timeline"),
            "label": record.get(first.label_field()),
            "field": first.score_field(),
        }
    return scored


def add_videos(detector: Detector, scored: SetScores, videos: VideoScores) -> None:
    """Append the videos' scores after the images' (each video one input of its class)."""
    images = len(scored.paths)
    scored.paths = [*scored.paths, *videos.paths]
    for method in scored.scores:
        score, fake, unsure = videos.arrays(method)
        scored.scores[method] = np.concatenate([scored.scores[method], score])
        scored.predictions[method] = np.concatenate([scored.predictions[method], fake])
        if detector.methods.get(method).real_below is not None:
            before = scored.unsure.get(method, np.zeros(images, dtype=bool))
            scored.unsure[method] = np.concatenate([before, unsure])
    if "nn" in scored.scores:  # a video has no single nearest source
        scored.sources = [*scored.sources, *([VIDEO_SOURCE] * len(videos.paths))]
    scored.timelines |= videos.timelines
