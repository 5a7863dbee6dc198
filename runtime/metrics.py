"""Detection metrics in numpy, equal to scikit-learn's (tested against it).

Scores are "higher = more fake"; labels are 1 fake, 0 real.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def _curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true/false positives at each distinct score, highest first."""
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    distinct = np.where(np.diff(scores))[0]
    ends = np.r_[distinct, len(scores) - 1]
    tps = np.cumsum(labels)[ends]
    fps = (ends + 1) - tps
    return tps, fps, scores[ends]


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """``sklearn.metrics.average_precision_score``: sum over thresholds of ΔR · P."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, float)
    if labels.sum() == 0:
        return float("nan")
    tps, fps, _ = _curve(labels, scores)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), starting at (0, 0) like scikit-learn."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, float)
    tps, fps, thresholds = _curve(labels, scores)
    n_pos, n_neg = max(labels.sum(), 1), max((~labels).sum(), 1)
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos], np.r_[np.inf, thresholds]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """``sklearn.metrics.roc_auc_score`` (trapezoids under the ROC curve)."""
    labels = np.asarray(labels, bool)
    if labels.all() or not labels.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, target_fpr: float = 0.05) -> float:
    """Highest TPR among thresholds whose FPR stays within ``target_fpr``."""
    fpr, tpr, _ = roc_curve(labels, scores)
    ok = fpr <= target_fpr + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def best_threshold_accuracy(labels: np.ndarray, scores: np.ndarray) -> float:
    """Oracle accuracy: the best accuracy any threshold reaches on these scores."""
    labels = np.asarray(labels, bool)
    tps, fps, _ = _curve(labels, np.asarray(scores, float))
    n_neg = (~labels).sum()
    correct = tps + (n_neg - fps)  # predict fake at and above each threshold
    return float(max(correct.max(), n_neg) / len(labels))  # n_neg: "all real"


@dataclass(frozen=True)
class SetMetrics:
    """The paper's per-set figures, plus ROC-AUC and TPR at 5 % FPR."""

    ap: float
    acc: float
    real_acc: float
    fake_acc: float
    best_acc: float
    auc: float
    tpr_at_5fpr: float
    n_real: int
    n_fake: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


def set_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> SetMetrics:
    """All figures for one test set; ``scores > threshold`` is fake."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, float)
    pred = scores > threshold
    real, fake = ~labels, labels
    return SetMetrics(
        ap=average_precision(labels, scores),
        acc=float(np.mean(pred == labels)),
        real_acc=float(np.mean(~pred[real])) if real.any() else float("nan"),
        fake_acc=float(np.mean(pred[fake])) if fake.any() else float("nan"),
        best_acc=best_threshold_accuracy(labels, scores),
        auc=roc_auc(labels, scores),
        tpr_at_5fpr=tpr_at_fpr(labels, scores, 0.05),
        n_real=int(real.sum()),
        n_fake=int(fake.sum()),
    )


def threshold_for_fpr(real_scores: np.ndarray, target_fpr: float) -> tuple[float, float]:
    """The lowest threshold whose FPR on ``real_scores`` (``score > t`` is fake) <= target.

    Returns:
        (threshold, achieved FPR on these reals).
    """
    scores = np.sort(np.asarray(real_scores, float))
    if not 0.0 <= target_fpr < 1.0 or len(scores) == 0:
        raise ValueError("need reals and a target FPR in [0, 1)")
    allowed = int(np.floor(target_fpr * len(scores) + 1e-9))  # reals allowed above t
    threshold = scores[len(scores) - allowed - 1]
    achieved = float(np.mean(scores > threshold))
    return float(threshold), achieved


def real_below_for_fnr(fake_scores: np.ndarray, target_fnr: float) -> tuple[float, float]:
    """The highest edge whose miss rate on ``fake_scores`` (``score <= t`` is real) <= target.

    Returns:
        (edge, achieved miss rate on these fakes).
    """
    scores = np.sort(np.asarray(fake_scores, float))
    if not 0.0 <= target_fnr < 1.0 or len(scores) == 0:
        raise ValueError("need fakes and a target FNR in [0, 1)")
    allowed = int(np.floor(target_fnr * len(scores) + 1e-9))  # fakes allowed at or below t
    counts = np.searchsorted(scores, scores, side="right")  # fakes <= each score
    fits = np.flatnonzero(counts <= allowed)
    edge = scores[fits[-1]] if len(fits) else np.nextafter(scores[0], -np.inf)
    return float(edge), float(np.mean(scores <= edge))
