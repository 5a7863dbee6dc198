"""What ``ufd-eval`` keeps of one set under one condition: labels, scores, decisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SetScores:
    """Labels (1 fake) and per-method scores of one set under one condition."""

    labels: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    unsure: dict[str, np.ndarray] = field(default_factory=dict)
    """Per method with an unsure band: which images it called ``unsure``."""
    sources: list[str] = field(default_factory=list)
    """``nn_source`` per image, when ``nn`` ran."""
    paths: list[str] = field(default_factory=list)
    """The images scored, in the order of every array here (unreadable ones left out);
    videos come after the images."""
    timelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per video: its timeline, label and plotted field (:mod:`.videos`)."""
