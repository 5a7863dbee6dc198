"""UnivFD's nearest-neighbour method: one labelled bank of features, k-NN vote.

Features are L2-normalised and compared by cosine distance ``d = 1 - cos``.
The bank (:class:`~ufd.runtime.search.base.VectorBank`) holds real and fake
features with a label each (0 real, 1 fake). A query fetches its
``K = max(k, 16)`` nearest neighbours:

* **k = 1** (the paper's rule): fake when the nearest fake is closer than the
  nearest real, i.e. when the nearest neighbour is fake.
  ``nn_score = d_real / (d_real + d_fake)``: above 0.5 exactly when the
  nearest fake is closer (0.5 when both are 0).
* **k > 1**: the k nearest vote; fake when fakes are the majority; a tie (even
  k) goes to the class whose voters have the smaller mean distance.
  ``nn_score`` = share of fake voters.
* ``d_real`` / ``d_fake`` are the distances to the nearest real / fake among
  the K candidates. A class absent from them is farther than the K-th
  candidate: its distance is reported as ``None`` and, in the k = 1 score,
  bounded by the K-th distance.

Search is exact (numpy, brute force) below ``exact_below`` vectors, HNSW
above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ufd.runtime.search.base import VectorBank

CANDIDATES = 16


@dataclass(frozen=True)
class Vote:
    """The NN decision for a batch of queries."""

    is_fake: np.ndarray  # (N,) bool
    score: np.ndarray  # (N,) in [0, 1], higher = more fake
    dist_real: np.ndarray  # (N,) nearest real among the candidates, nan if none
    dist_fake: np.ndarray  # (N,) nearest fake among the candidates, nan if none


def knn_vote(dist: np.ndarray, fake: np.ndarray, k: int) -> Vote:
    """Vote from candidates sorted by distance: ``dist`` (N, K) and ``fake`` (N, K) bool.

    See the module docstring for the rules; ``K >= k`` is required.
    """
    if dist.shape[1] < k:
        raise ValueError(f"need at least k={k} candidates, got {dist.shape[1]}")
    dist = dist.astype(np.float64)
    fake = fake.astype(bool)
    d_real = _first(dist, ~fake)
    d_fake = _first(dist, fake)
    if k == 1:
        bound = dist[:, -1]
        r, f = np.where(np.isnan(d_real), bound, d_real), np.where(np.isnan(d_fake), bound, d_fake)
        total = r + f
        score = np.where(total > 0, r / np.where(total > 0, total, 1.0), 0.5)
        return Vote(fake[:, 0].copy(), score, d_real, d_fake)
    top_dist, top_fake = dist[:, :k], fake[:, :k]
    n_fake = top_fake.sum(axis=1)
    n_real = k - n_fake
    mean_fake = np.where(top_fake, top_dist, 0).sum(1) / np.maximum(n_fake, 1)
    mean_real = np.where(~top_fake, top_dist, 0).sum(1) / np.maximum(n_real, 1)
    is_fake = (n_fake > n_real) | ((n_fake == n_real) & (mean_fake < mean_real))
    return Vote(is_fake, n_fake / k, d_real, d_fake)


def _first(dist: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, the first (smallest) distance where ``mask`` holds, else nan."""
    has = mask.any(axis=1)
    idx = np.argmax(mask, axis=1)
    return np.where(has, dist[np.arange(len(dist)), idx], np.nan)


class LabelledBank:
    """A :class:`VectorBank` plus one label per vector (1 fake, 0 real)."""

    def __init__(self, bank: VectorBank, labels: np.ndarray, exact_below: int) -> None:
        if len(labels) != len(bank):
            raise ValueError(f"{len(labels)} labels for {len(bank)} vectors")
        self.bank = bank
        self.labels = labels.astype(bool)
        self.exact_below = exact_below

    def vote(
        self, features: np.ndarray, k: int, exact: bool | None = None, threads: int = 1
    ) -> Vote:
        """k-NN vote for each feature row; ``exact=None`` chooses by bank size."""
        use_exact = self.use_exact(exact)
        ids, dist = self.bank.search(features, max(k, CANDIDATES), use_exact, threads)
        return knn_vote(dist, self.labels[ids], k)

    def use_exact(self, exact: bool | None) -> bool:
        """Whether a search runs exact: forced, or chosen by bank size."""
        return len(self.bank) < self.exact_below if exact is None else exact
