"""Scores of re-uploaded views (``--views N``): does a verdict survive a re-upload?

Each view (:func:`ufd.runtime.transforms.reupload_views`) is measured like the
image itself. Three fields join each method's record fields
(:func:`ufd.runtime.registry.view_fields`): the lowest and the highest score over
the views, and whether every view's decision equals the image's. When they do
not, the views disagree about the side of the threshold, and the label becomes
``unsure``; the score stays the image's own.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ufd.runtime.methods.base import UNSURE, Measured, Method, Scored
from ufd.runtime.registry import view_fields


def split_rows(measured: Measured, n: int) -> tuple[Measured, Measured]:
    """A measurement of ``n`` images followed by their views, as two measurements."""

    def rows(part: slice) -> Measured:
        extra = {key: value[part] for key, value in measured.extra.items()}
        return Measured(measured.raw[part], measured.score[part], extra)

    return rows(slice(0, n)), rows(slice(n, None))


def with_views(method: Method, scored: Scored, views: Measured, count: int) -> Scored:
    """The image's scored batch with its views' fields (``count`` views per image, image-major).

    Rows whose views do not all agree with the image's decision are labelled
    ``unsure`` (and marked in :attr:`Scored.unsure`).
    """
    n = len(scored.is_fake)
    view_fake = np.asarray(method.decide(views), dtype=bool).reshape(n, count)
    view_scores = np.asarray(views.score, dtype=np.float64).reshape(n, count)
    agree = (view_fake == scored.is_fake[:, None]).all(axis=1)
    low, high, agree_field = view_fields(type(method))
    columns = dict(scored.columns)
    columns[low] = [float(x) for x in view_scores.min(axis=1)]
    columns[high] = [float(x) for x in view_scores.max(axis=1)]
    columns[agree_field] = [bool(a) for a in agree]
    label = method.label_field()
    columns[label] = [
        value if same else UNSURE for value, same in zip(columns[label], agree, strict=True)
    ]
    band = scored.unsure if scored.unsure is not None else np.zeros(n, dtype=bool)
    return dataclasses.replace(scored, columns=columns, unsure=band | ~agree)
