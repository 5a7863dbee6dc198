"""How well a k-NN bank's HNSW search matches exact search, measured at build time.

A seeded sample of the vectors is held out while the bank is built from the
rest; the held-out vectors query it, approximately (HNSW at each ``ef`` tried)
and exactly (fp32 brute force over the indexed vectors, so the figures include
what fp16/int8 storage costs); then they join the bank. Queries that are in the
graph would find themselves at distance 0 and flatter the figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ufd.runtime.search.base import FloatBank, VectorBank
from ufd.runtime.search.neighbours import knn_vote

AUTO_EF = (64, 128, 256, 512, 1024)
MIN_RECALL_AT_1 = 0.99
MIN_VOTE_AGREEMENT = 0.999
HELD_OUT_SHARE = 5
"""At most one vector in this many is held out as a query."""


@dataclass(frozen=True)
class IndexQuality:
    """HNSW vs exact search on held-out queries, measured at build time."""

    n_queries: int
    k: int
    recall_at_1: float | None
    recall_at_k: float | None
    vote_agreement_k1: float | None
    vote_agreement_k: float | None
    """``None``: the bank was too small to hold queries out (under two vectors)."""


def held_out_order(n_vectors: int, n_queries: int, seed: int) -> tuple[np.ndarray, int]:
    """An order of the vectors that puts a seeded sample of queries last, and its size.

    At most ``n_queries``, and at most one vector in :data:`HELD_OUT_SHARE` (at
    least one when the bank has two vectors or more).
    """
    n = min(n_queries, max(1, n_vectors // HELD_OUT_SHARE)) if n_vectors >= 2 else 0
    held = np.sort(np.random.default_rng(seed).choice(n_vectors, n, replace=False))
    rest = np.setdiff1d(np.arange(n_vectors), held, assume_unique=True)
    return np.concatenate([rest, held]).astype(np.int64), n


def measure_quality(
    bank: VectorBank,
    reference: np.ndarray,
    labels: np.ndarray,
    queries: np.ndarray,
    check_k: int,
    efs: tuple[int, ...],
) -> tuple[int, IndexQuality]:
    """Recall and vote agreement of HNSW against exact fp32 search, for held-out queries.

    ``reference`` holds the bank's vectors in fp32 and ``labels`` their labels;
    ``queries`` are not in the bank. HNSW is tried at each ``efs`` in order and
    the first ef reaching recall@1 >= 0.99 and >= 99.9 % vote agreement is kept
    (else the last).

    Returns:
        (chosen ef, its quality figures).
    """
    k = min(check_k, len(bank))
    if not len(queries) or k < 1:
        return efs[0], IndexQuality(len(queries), k, None, None, None, None)
    e_ids, e_dist = FloatBank(reference).search(queries, k, exact=True, invariant=False)
    fake = labels.astype(bool)
    exact_votes = {kk: knn_vote(e_dist, fake[e_ids], kk).is_fake for kk in (1, k)}
    for ef in efs:
        bank.ef = ef
        h_ids, h_dist = bank.search(queries, k, exact=False, threads=-1)
        votes = {
            kk: float(np.mean(knn_vote(h_dist, fake[h_ids], kk).is_fake == exact_votes[kk]))
            for kk in (1, k)
        }
        overlap = [len(set(a) & set(b)) / k for a, b in zip(h_ids, e_ids, strict=True)]
        recall = float(np.mean(h_ids[:, 0] == e_ids[:, 0]))
        quality = IndexQuality(
            n_queries=len(queries),
            k=k,
            recall_at_1=recall,
            recall_at_k=float(np.mean(overlap)),
            vote_agreement_k1=votes[1],
            vote_agreement_k=votes[k],
        )
        if recall >= MIN_RECALL_AT_1 and min(votes.values()) >= MIN_VOTE_AGREEMENT:
            break
    return ef, quality
