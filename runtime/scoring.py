"""Scores -> records: one :class:`Record` per input of a batch, in input order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ufd.runtime.neighbours import Vote
from ufd.runtime.records import Record, label_for, sigmoid


def batch_records(
    paths: Sequence[str],
    errors: Sequence[str | None],
    logits: np.ndarray | None,
    vote: Vote | None,
    threshold: float,
) -> list[Record]:
    """Records for a batch.

    Args:
        paths: every input of the batch, in order.
        errors: per input, ``None`` if it was encoded, else the reason it was not.
        logits: linear-head logits of the encoded inputs, in order (or ``None``).
        vote: k-NN vote of the encoded inputs, in order (or ``None``).
        threshold: decision threshold on p(fake) for the linear head.
    """
    records, row = [], 0
    for path, error in zip(paths, errors, strict=True):
        if error is not None:
            records.append(Record(path, error=error))
            continue
        fields: dict = {}
        if logits is not None:
            logit = float(logits[row])
            prob = sigmoid(logit)
            fields.update(logit=logit, prob=prob, label=label_for(prob, threshold))
        if vote is not None:
            fields.update(
                nn_score=float(vote.score[row]),
                nn_label="fake" if vote.is_fake[row] else "real",
                nn_dist_real=_finite(vote.dist_real[row]),
                nn_dist_fake=_finite(vote.dist_fake[row]),
            )
        records.append(Record(path, **fields))
        row += 1
    return records


def _finite(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
