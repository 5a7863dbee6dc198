"""A density model of real features for ``realonly``, beside the k-NN distance.

**Gaussian in a principal subspace, plus the residual outside it** (probabilistic
PCA): for unit features x with mean m, top-k principal directions c_i with
variances l_i, and the mean residual variance s of the D - k other dimensions,

    inside(x)  = sum_i ((x - m).c_i)^2 / (l_i + s)    ~ chi2(k) for reals
    outside(x) = |residual of x - m|^2 / s              ~ chi2(D - k) for reals

and the score is how atypical either is: ``max((inside - k) / sqrt(2k),
|outside - (D-k)| / sqrt(2(D-k)))``. The residual test is two-sided on purpose:
features are unit vectors, so an image that over-does one attribute has *less*
of everything else, and a residual far below the reals' is as telling as one far
above (the plain Mahalanobis distance would call it more real than the reals).
It sees an artefact outside the reals' span at once, but not a fake *between*
real modes, where a Gaussian is dense, nor one that over-does an attribute the
reals' clusters already spread widely: the k-NN distance sees those. So the real-only
score may also be the **combination**: the larger of the two z-scores, each
against held-out reals.

:func:`choose` fits candidates on training reals and keeps the one with the best
average precision on held-out reals against seen fakes (ties: the combination,
then the simpler model); the choice and its parameters go into the bundle.

Scoring with a fitted model (:class:`GaussianModel`, :func:`combined`) lives with
the method, in :mod:`ufd.runtime.methods.density`; fitting and choosing live here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ufd.runtime.methods.density import GaussianModel, combined
from ufd.runtime.metrics import average_precision
from ufd.runtime.search.base import l2_normalise

SUBSPACES = (8, 16, 32, 64, 128)


def fit_gaussian(reals: np.ndarray, k: int) -> GaussianModel:
    """PPCA with ``k`` principal directions of unit ``reals``."""
    unit = l2_normalise(reals).astype(np.float64)
    mean = unit.mean(axis=0)
    _, sing, vt = np.linalg.svd(unit - mean, full_matrices=False)
    variances = sing**2 / max(len(unit) - 1, 1)
    k = min(k, len(variances) - 1)
    dims = unit.shape[1]
    noise = max(float(variances[k:].sum() / (dims - k)), 1e-12)
    return GaussianModel(mean, vt[:k], variances[:k], noise)


@dataclass
class Choice:
    """What :func:`choose` kept: ``knn``, ``gaussian`` or ``combined``, and its parts."""

    scorer: str
    model: GaussianModel | None
    z: tuple[float, float, float, float] | None  # mean/std of knn, of gaussian, on reals
    validation_ap: dict[str, float]


def z_params(knn: np.ndarray, gaussian: np.ndarray) -> tuple[float, float, float, float]:
    """Mean and standard deviation of each score on held-out reals."""
    return (
        float(knn.mean()),
        float(knn.std()) or 1.0,
        float(gaussian.mean()),
        float(gaussian.std()) or 1.0,
    )


def choose(
    train_reals: np.ndarray,
    val_reals: np.ndarray,
    val_fakes: np.ndarray,
    knn_score: Callable[[np.ndarray], np.ndarray],
) -> Choice:
    """Fit the candidates on ``train_reals``; keep the best by validation AP.

    Args:
        train_reals: reals the models are fitted on (the real bank's).
        val_reals: held-out reals (not in the bank).
        val_fakes: fakes of the generators seen in training.
        knn_score: features -> the bank's k-NN real-only score.
    """
    labels = np.r_[np.zeros(len(val_reals)), np.ones(len(val_fakes))].astype(bool)
    features = np.concatenate([val_reals, val_fakes])
    knn = knn_score(features)
    ap = {"knn": average_precision(labels, knn)}
    best: tuple[GaussianModel, np.ndarray] | None = None
    best_k_ap = -1.0
    for k in SUBSPACES:
        if k >= min(len(train_reals), train_reals.shape[1]):
            break
        model = fit_gaussian(train_reals, k)
        scores = model.score(features)
        ap[f"gaussian{k}"] = average_precision(labels, scores)
        if ap[f"gaussian{k}"] > best_k_ap:
            best, best_k_ap = (model, scores), ap[f"gaussian{k}"]
    if best is None:
        return Choice("knn", None, None, ap)
    best_model, best_gauss = best
    n_real = len(val_reals)
    z = z_params(knn[:n_real], best_gauss[:n_real])
    ap["combined"] = average_precision(labels, combined(knn, best_gauss, z))
    ranked = [("combined", ap["combined"]), ("gaussian", best_k_ap), ("knn", ap["knn"])]
    top = max(value for _, value in ranked)
    scorer = next(name for name, value in ranked if value >= top - 1e-3)
    return Choice(scorer, None if scorer == "knn" else best_model, z, ap)
