"""Scores -> records: per-method columns, then one :class:`Record` per input.

Each ``*_columns`` function turns one method's outputs for the encoded inputs
of a batch into record fields; :func:`batch_records` interleaves them with
the inputs that failed, keeping input order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ufd.runtime.neighbours import Vote
from ufd.runtime.records import Record, label_for, sigmoid

Columns = dict[str, list]


def linear_columns(logits: np.ndarray, threshold: float) -> Columns:
    """``logit``, ``prob``, ``label`` of the linear head."""
    probs = [sigmoid(float(x)) for x in logits]
    return {
        "logit": [float(x) for x in logits],
        "prob": probs,
        "label": [label_for(p, threshold) for p in probs],
    }


def traces_columns(logits: np.ndarray, threshold: float) -> Columns:
    """``traces_logit``, ``traces_prob``, ``traces_label`` of the natural-trace head."""
    cols = linear_columns(logits, threshold)
    return {f"traces_{name}": values for name, values in cols.items()}


def fused_columns(logits: np.ndarray, threshold: float) -> Columns:
    """``fused_prob`` and ``fused_label`` of the fitted combination."""
    probs = [sigmoid(float(x)) for x in logits]
    return {"fused_prob": probs, "fused_label": [label_for(p, threshold) for p in probs]}


def nn_columns(vote: Vote) -> Columns:
    """The k-NN vote's fields."""
    return {
        "nn_score": [float(s) for s in vote.score],
        "nn_label": ["fake" if f else "real" for f in vote.is_fake],
        "nn_dist_real": [_finite(d) for d in vote.dist_real],
        "nn_dist_fake": [_finite(d) for d in vote.dist_fake],
    }


def realonly_columns(distances: np.ndarray, threshold: float) -> Columns:
    """Mean distance to the nearest reals; fake when above the calibrated threshold."""
    return {
        "realonly_score": [float(d) for d in distances],
        "realonly_label": [label_for(float(d), threshold) for d in distances],
    }


def batch_records(
    paths: Sequence[str], errors: Sequence[str | None], columns: Columns
) -> list[Record]:
    """Records for a batch: errors where given, else the next row of every column."""
    records, row = [], 0
    for path, error in zip(paths, errors, strict=True):
        if error is not None:
            records.append(Record(path, error=error))
            continue
        records.append(Record(path, **{name: values[row] for name, values in columns.items()}))
        row += 1
    return records


def _finite(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
