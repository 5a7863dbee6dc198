"""``nn``: UnivFD's nearest-neighbour method, a k-NN vote on a labelled bank.

The bank (``ufd-index``) holds real and fake features; the vote rules are in
:mod:`ufd.runtime.search.neighbours`. Its decision is the vote itself, so it
has no threshold to calibrate. Records name the source the vote points to
(``nn_source``: ``real``, a fake source of the bank, or ``unknown``) and each
class's share of the voters (``nn_source_share``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ufd.runtime.methods.banks import BankConfig, open_labelled_bank
from ufd.runtime.methods.base import (
    Columns,
    Measured,
    Method,
    ScoreOptions,
    check_k_fits,
    labels,
)
from ufd.runtime.registry import register


class BankMethod(Method):
    """A method searching a k-NN bank (``files.index``, ``files.labels``)."""

    config_type = BankConfig
    uses_k = True

    def load(self) -> None:
        """Load and verify the bank."""
        self.bank = open_labelled_bank(self.bundle, self.entry, self.context.verify)

    def check(self, options: ScoreOptions, need_threshold: bool = True) -> None:
        """Also refuse a k larger than the bank."""
        super().check(options, need_threshold)
        check_k_fits(self.name, self.k(options), len(self.bank.bank))

    def describe(self, options: ScoreOptions) -> str:
        """k, exact or HNSW search, and the bank's size."""
        bank = self.bank
        search = "exact" if bank.use_exact(options.exact) else f"HNSW (ef={bank.bank.ef})"
        return f"k={self.k(options)}, {search} search over {len(bank.bank)} vectors"


@register
class NearestNeighbours(BankMethod):
    """k-NN vote among real and fake features (k = 1: the paper's rule)."""

    name = "nn"
    summary = "nn (k-NN vote on a real+fake bank, ufd-index)"
    fields = (
        "nn_score",
        "nn_label",
        "nn_dist_real",
        "nn_dist_fake",
        "nn_source",
        "nn_source_share",
    )
    table_columns = (
        ("nn_label", "nn", 6),
        ("nn_source", "source", 12),
        ("nn_score", "nn_score", 8),
        ("nn_dist_real", "d_real", 7),
        ("nn_dist_fake", "d_fake", 7),
    )
    field_types: ClassVar[dict[str, str]] = {"nn_source": "string", "nn_source_share": "shares"}
    calibratable = False
    missing_hint = "build its bank with ufd-index BUNDLE --real DIR --fake DIR"

    def default_k(self) -> int:
        """The paper's k = 1."""
        return 1

    def measure(self, features: np.ndarray, options: ScoreOptions) -> Measured:
        """Raw and score: the vote's score; the vote itself rides along."""
        vote, attribution = self.bank.vote_and_attribute(features, self.k(options), options.exact)
        extra = {
            "is_fake": vote.is_fake,
            "dist_real": vote.dist_real,
            "dist_fake": vote.dist_fake,
            "source": np.array(attribution.source, dtype=object),
            "source_share": np.array(attribution.share, dtype=object),
        }
        return Measured(raw=vote.score, score=vote.score, extra=extra)

    def decide(self, measured: Measured) -> np.ndarray:
        """The vote (ties broken by distance), not a threshold."""
        return measured.extra["is_fake"]

    def columns(self, measured: Measured, is_fake: np.ndarray) -> Columns:
        """The vote's fields; a class absent from the candidates has distance ``None``."""
        return {
            "nn_score": [float(s) for s in measured.score],
            "nn_label": labels(is_fake),
            "nn_dist_real": [_finite(d) for d in measured.extra["dist_real"]],
            "nn_dist_fake": [_finite(d) for d in measured.extra["dist_fake"]],
            "nn_source": [str(s) for s in measured.extra["source"]],
            "nn_source_share": list(measured.extra["source_share"]),
        }


def _finite(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
