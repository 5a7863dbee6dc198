"""``realonly``: distance to real images only (Detecting Generated Images by Real Images Only).

Score: mean cosine distance to the k nearest features of a bank of reals
(``ufd-index --real-only``); fake above a threshold ``ufd-calibrate --method
realonly`` sets for a target false-positive rate on held-out reals (it also
stores the k it used, which becomes the default).
"""

from __future__ import annotations

import numpy as np

from ufd.runtime.methods.base import Columns, Measured, ScoreOptions, labels
from ufd.runtime.methods.nn import BankMethod
from ufd.runtime.methods.registry import register


@register
class RealOnly(BankMethod):
    """Far from every real image = generated, whatever the generator."""

    name = "realonly"
    summary = "realonly (distance to real features, ufd-index --real-only + ufd-calibrate)"
    fields = ("realonly_score", "realonly_label")
    table_columns = (("realonly_label", "ronly", 6), ("realonly_score", "d_reals", 8))
    default_threshold = None
    missing_hint = "build its bank with ufd-index BUNDLE --real-only --real DIR"

    def measure(self, features: np.ndarray, options: ScoreOptions) -> Measured:
        """Raw and score: mean cosine distance to the k nearest reals."""
        bank = self.bank
        _, dist = bank.bank.search(features, self.k(options), bank.use_exact(options.exact))
        distances = dist.astype(np.float64).mean(axis=1)
        return Measured(raw=distances, score=distances)

    def columns(self, measured: Measured, is_fake: np.ndarray) -> Columns:
        """``realonly_score``, ``realonly_label``."""
        return {
            "realonly_score": [float(d) for d in measured.score],
            "realonly_label": labels(is_fake),
        }
