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

**Attribution.** Fake vectors carry the source (generator) they came from. A
fake vote names the source most of the fake voters come from (a tie goes to the
source whose voters are nearer on average); a real vote names ``real``. The
share of the k voters per class is reported too. Open set: when the bank has an
``unknown_beyond`` distance (calibrated on held-out fakes), a fake vote whose
nearest fake is farther than it names ``unknown``.

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


UNKNOWN = "unknown"


@dataclass(frozen=True)
class Attribution:
    """Which source each query's vote names, and each class's share of the k voters."""

    source: list[str]
    share: list[dict[str, float]]


def attribute(
    dist: np.ndarray,
    codes: np.ndarray,
    k: int,
    vote: Vote,
    names: tuple[str, ...],
    unknown_beyond: float | None = None,
) -> Attribution:
    """Name the source of each vote (see the module docstring).

    Args:
        dist: candidate distances (N, K), sorted.
        codes: candidate labels (N, K): 0 real, ``i + 1`` source ``names[i]``.
        k: voters.
        vote: :func:`knn_vote` of the same candidates.
        names: ``real`` followed by the fake sources.
        unknown_beyond: the open-set distance, or ``None``.
    """
    sources, shares = [], []
    for row in range(len(dist)):
        voters, near = codes[row, :k], dist[row, :k]
        found, counts = np.unique(voters, return_counts=True)
        pairs = zip(found, counts, strict=True)
        shares.append({names[c]: round(float(n) / k, 6) for c, n in pairs})
        if not vote.is_fake[row]:
            sources.append(names[0])
            continue
        fakes = [
            (int(n), -float(near[voters == c].mean()), int(c))
            for c, n in zip(found, counts, strict=True)
            if c > 0
        ]
        if unknown_beyond is not None and not vote.dist_fake[row] <= unknown_beyond:
            sources.append(UNKNOWN)
        else:
            sources.append(names[max(fakes)[2]])
    return Attribution(sources, shares)


class LabelledBank:
    """A :class:`VectorBank` plus one label per vector (0 real, ``i + 1`` fake source i)."""

    def __init__(
        self,
        bank: VectorBank,
        labels: np.ndarray,
        exact_below: int,
        sources: tuple[str, ...] = ("fake",),
        unknown_beyond: float | None = None,
    ) -> None:
        if len(labels) != len(bank):
            raise ValueError(f"{len(labels)} labels for {len(bank)} vectors")
        self.bank = bank
        self.codes = labels.astype(np.int64)
        self.labels = self.codes > 0
        self.names = ("real", *sources)
        self.unknown_beyond = unknown_beyond
        self.exact_below = exact_below

    def vote(
        self, features: np.ndarray, k: int, exact: bool | None = None, threads: int = 1
    ) -> Vote:
        """k-NN vote for each feature row; ``exact=None`` chooses by bank size."""
        ids, dist = self._candidates(features, k, exact, threads)
        return knn_vote(dist, self.labels[ids], k)

    def vote_and_attribute(
        self, features: np.ndarray, k: int, exact: bool | None = None, threads: int = 1
    ) -> tuple[Vote, Attribution]:
        """The vote and the source it names, per feature row."""
        ids, dist = self._candidates(features, k, exact, threads)
        vote = knn_vote(dist, self.labels[ids], k)
        return vote, attribute(dist, self.codes[ids], k, vote, self.names, self.unknown_beyond)

    def _candidates(
        self, features: np.ndarray, k: int, exact: bool | None, threads: int
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.bank.search(features, max(k, CANDIDATES), self.use_exact(exact), threads)

    def use_exact(self, exact: bool | None) -> bool:
        """Whether a search runs exact: forced, or chosen by bank size."""
        return len(self.bank) < self.exact_below if exact is None else exact
