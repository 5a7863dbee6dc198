"""A video's record, from the records of its sampled frames.

Per method, over the frames that were scored: the mean and the maximum of the
method's score (``prob`` for heads, ``nn_score`` for ``nn``...) and the share of
frames labelled fake. ``--video-rule`` says which decides the video's label:

* ``mean`` (default): the mean frame score against the method's threshold,
  with its unsure band, as for one image (``nn``: the mean vote share above
  its threshold, 0.5 unless calibrated);
* ``max``: the highest frame score, the same way (catches a short insert, and
  calls more real videos fake);
* ``share``: fake when more than half of the frames are labelled fake, unsure
  when fake and unsure frames together are more than half.

The method's score field holds the deciding value (for ``share``: the share),
its label field the decision; other per-image fields (``logit``...) stay empty.
``frames`` counts the frames scored, ``frame_errors`` the frames that failed and
``frame_error`` says why the first did (a frame that fails is noted here, never
a failed video). ``timeline``: per scored frame, its time stamp ``t`` (s) and each
method's score, in time order (what ufd-serve's page and ufd-eval plot).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ufd.runtime.methods.base import UNSURE, Measured, Method
from ufd.runtime.records import Record
from ufd.runtime.registry import VIDEO_FIELDS

VIDEO_RULES = ("mean", "max", "share")
NO_FRAMES = "no frame of the video could be decoded"
COMMON_FIELDS = tuple(VIDEO_FIELDS)
FRAME_MARK = "#t="
"""Between a video's path and a frame's time stamp in frame records (``clip.mp4#t=12``)."""


def method_video_fields(method: Any) -> tuple[str, str, str]:
    """A method's video fields: its score's mean and max, and the share of fake frames."""
    score = method.score_field()
    prefix = method.label_field().removesuffix("label")
    return (f"{score}_mean", f"{score}_max", f"{prefix}fake_share")


def video_fields(methods: Sequence[Any]) -> tuple[str, ...]:
    """The fields video records add to a run's records (method classes or instances)."""
    return COMMON_FIELDS + tuple(f for m in methods for f in method_video_fields(m))


def video_record(
    path: str,
    frames: Sequence[Record],
    methods: Sequence[Any],
    rule: str,
    failed: Sequence[str] = (),
) -> Record:
    """The record of the video at ``path`` from its frame records (``methods``: loaded ones).

    ``failed``: why frames failed before they became records (a decode error that
    ended the video); failed frame records count too.
    """
    scored = [r for r in frames if r.ok]
    reasons = [*(r.error for r in frames if r.error), *failed]
    if not scored:
        return Record(path, error=f"{NO_FRAMES}: {reasons[0]}" if reasons else NO_FRAMES)
    values: dict[str, Any] = {
        "frames": len(scored),
        "frame_errors": len(reasons),
        "frame_error": reasons[0] if reasons else None,
        "video_rule": rule,
        "timeline": [_point(r, methods) for r in scored],
    }
    for method in methods:
        values |= _method_values(method, scored, rule)
    return Record(path, values)


def _method_values(method: Any, scored: Sequence[Record], rule: str) -> dict[str, Any]:
    score_field, label_field = method.score_field(), method.label_field()
    scores = np.array([float(r.get(score_field)) for r in scored], dtype=np.float64)
    frame_labels = [r.get(label_field) for r in scored]
    fake_share = sum(label == "fake" for label in frame_labels) / len(scored)
    mean_name, max_name, share_name = method_video_fields(method)
    values: dict[str, Any] = {
        mean_name: float(scores.mean()),
        max_name: float(scores.max()),
        share_name: fake_share,
    }
    if rule == "share":
        unsure_share = sum(label == UNSURE for label in frame_labels) / len(scored)
        label = "fake" if fake_share > 0.5 else "real"
        if label == "real" and fake_share + unsure_share > 0.5:
            label = UNSURE
        return values | {score_field: fake_share, label_field: label}
    value = values[mean_name] if rule == "mean" else values[max_name]
    measured = Measured(raw=np.array([value]), score=np.array([value]))
    is_fake = Method.decide(method, measured)  # the threshold (nn's own vote needs neighbours)
    unsure = method.unsure(measured, is_fake)
    label = UNSURE if unsure[0] else ("fake" if is_fake[0] else "real")
    return values | {score_field: value, label_field: label}


def frame_time(path: str) -> float | None:
    """The time stamp in a frame record's path (``clip.mp4#t=12`` -> 12.0), else ``None``."""
    _, mark, stamp = path.rpartition(FRAME_MARK)
    try:
        return float(stamp) if mark else None
    except ValueError:
        return None


def _point(record: Record, methods: Sequence[Any]) -> dict[str, Any]:
    point: dict[str, Any] = {"t": frame_time(record.path)}
    for method in methods:
        point[method.score_field()] = record.get(method.score_field())
    return point
