"""``fused``: a logistic combination of the other methods' standardised raw scores.

p(fake) = sigmoid(sum_m w_m (raw_m - mean_m) / std_m + bias), with weights
fitted on labelled validation features by ``ufd-train --method fused``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ufd.runtime.methods.base import (
    Columns,
    Measured,
    Method,
    ScoreOptions,
    labels,
    probabilities,
)
from ufd.runtime.registry import register


@dataclass(frozen=True)
class FusionConfig:
    """The fitted combination: one mean, std and weight per component method."""

    methods: list[str]
    means: list[float]
    stds: list[float]
    weights: list[float]
    bias: float


@register
class Fused(Method):
    """Several methods' evidence in one probability."""

    name = "fused"
    summary = "fused (weights over the other methods, ufd-train --method fused)"
    fields = ("fused_prob", "fused_label")
    table_columns = (("fused_label", "fused", 6), ("fused_prob", "p_fused", 8))
    config_type = FusionConfig
    # --k reaches its k-NN components; calibration uses their defaults, as detection does
    uses_k = False
    missing_hint = (
        "fit its weights with ufd-train BUNDLE --method fused --real VAL_REALS --fake VAL_FAKES"
    )

    def load(self) -> None:
        """Load every component (their thresholds are not needed)."""
        self.components = tuple(self.config.methods)
        for name in self.components:
            self.context.methods.get(name)

    def check(self, options: ScoreOptions, need_threshold: bool = True) -> None:
        """Check the components too (k must fit their banks)."""
        super().check(options, need_threshold)
        self.context.methods.check(self.components, options, need_threshold=False)

    def measure(self, features: np.ndarray, options: ScoreOptions) -> Measured:
        """Raw: the combination's logit; score: its p(fake)."""
        return self.combine(self.context.methods.measure(self.components, features, options))

    def combine(self, raw: dict[str, Measured]) -> Measured:
        """The combination of the components' measurements of one batch."""
        config = self.config
        z = np.stack(
            [
                (raw[m].raw - mu) / sd
                for m, mu, sd in zip(config.methods, config.means, config.stds, strict=True)
            ],
            axis=1,
        )
        logits = z @ np.asarray(config.weights) + config.bias
        return Measured(raw=logits, score=probabilities(logits))

    def columns(self, measured: Measured, is_fake: np.ndarray) -> Columns:
        """``fused_prob``, ``fused_label``."""
        return {"fused_prob": [float(p) for p in measured.score], "fused_label": labels(is_fake)}
