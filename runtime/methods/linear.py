"""``linear``: UnivFD's linear head (LC), p(fake) = sigmoid(w . f + b), fake above 0.5.

The head is a features -> logit ONNX graph (``ufd-export --head``, or
``ufd-train``); ``ufd-calibrate`` may move the threshold.
"""

from __future__ import annotations

import numpy as np

from ufd.runtime.methods.base import (
    Columns,
    Measured,
    Method,
    ScoreOptions,
    labels,
    probabilities,
)
from ufd.runtime.providers import PROVIDERS
from ufd.runtime.registry import register
from ufd.runtime.sessions import HeadSession


class HeadMethod(Method):
    """A method scored by a features -> logit graph (``files.graph``), on the CPU."""

    prefix = ""

    def load(self) -> None:
        """Load and verify the head graph (tiny: it runs on the CPU)."""
        path = self.bundle.graph_path(self.entry.files["graph"], self.context.verify)
        self.head = HeadSession(path, PROVIDERS["cpu"], self.context.threads)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """The head's logits (N,) for a feature batch."""
        return self.head(features)

    def measure(self, features: np.ndarray, options: ScoreOptions) -> Measured:
        """Raw: the logit; score: p(fake)."""
        logits = self.logits(features)
        return Measured(raw=logits.astype(np.float64), score=probabilities(logits))

    def columns(self, measured: Measured, is_fake: np.ndarray) -> Columns:
        """``<prefix>logit``, ``<prefix>prob``, ``<prefix>label``."""
        return {
            f"{self.prefix}logit": [float(x) for x in measured.raw],
            f"{self.prefix}prob": [float(p) for p in measured.score],
            f"{self.prefix}label": labels(is_fake),
        }


@register
class Linear(HeadMethod):
    """UnivFD's linear classifier on the CLIP feature."""

    name = "linear"
    summary = "linear (UnivFD LC head)"
    fields = ("logit", "prob", "label")
    table_columns = (("label", "label", 6), ("prob", "p(fake)", 8), ("logit", "logit", 9))
    missing_hint = (
        "it was exported with --head none: re-export it with ufd-export --head univfd "
        "(or --head PATH.pth), or train one with ufd-train"
    )
