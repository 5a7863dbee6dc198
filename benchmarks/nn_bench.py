"""Nearest-neighbour benchmark: HNSW banks vs exact numpy search.

Synthetic clustered 768-d features (see ``synthetic_features`` for the
scales): 256 semantic clusters shared by both classes, a 32-d within-cluster
spread, isotropic noise, and fakes shifted along one of 8 "generator
artefact" directions. For each total bank size
(half real, half fake, one labelled index): build time, index size on disk and in RAM,
single-query p50/p99 latency, batch throughput, recall@1 and recall@9
against exact search, k=1 and k=9 vote agreement with exact, and the exact
search's own latency. Queries are fresh samples, never in the banks.

Usage:
    python benchmarks/nn_bench.py                  # 10k and 100k
    python benchmarks/nn_bench.py --full           # also 1M (tens of minutes)
    python benchmarks/nn_bench.py --sizes 20000 --ef 64,128

Writes benchmarks/results/nn_bench.json and nn_bench.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from ufd.runtime.search.base import l2_normalise
from ufd.runtime.search.hnsw import HnswBank
from ufd.runtime.search.neighbours import LabelledBank

DIM = 768


def synthetic_features(
    n: int, fake: bool, seed: int, latent: int = 32, clusters: int = 256, spread: float = 0.45
):
    """``n`` clustered unit features of one class (deterministic per seed).

    Scales (per coordinate of 768): cluster centres N(0, 1) (norm ~28, centres
    ~39 apart: the semantic content); within a cluster a ``latent``-dim
    Gaussian of sd ``spread`` (norm ~12 at 0.45: pose, lighting...); isotropic
    noise sd 0.1; fakes add one of 8 generator "artefact" directions of
    norm ~8. Raise ``latent`` or ``spread`` for harder data.
    """
    base = np.random.default_rng(12345)  # structure shared by both classes
    centres = base.normal(0, 1, (clusters, DIM)).astype(np.float32)
    basis = base.normal(0, 1, (latent, DIM)).astype(np.float32) / np.sqrt(latent)
    artefacts = base.normal(0, 0.3, (8, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        which = rng.integers(0, clusters, m)
        x = centres[which] + rng.normal(0, spread, (m, latent)).astype(np.float32) @ basis
        x += rng.normal(0, 0.1, (m, DIM)).astype(np.float32)
        if fake:
            x += artefacts[rng.integers(0, len(artefacts), m)]
        out[start : start + m] = x
    return l2_normalise(out)


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1e3, q))


def bench_size(
    n: int, efs: list[int], m: int, ef_construction: int, n_queries: int, latent: int
) -> list[dict]:
    vectors = np.empty((n, DIM), np.float32)  # one copy of the bank, filled per class
    vectors[: n // 2] = synthetic_features(n // 2, fake=False, seed=1, latent=latent)
    vectors[n // 2 :] = synthetic_features(n - n // 2, fake=True, seed=2, latent=latent)
    labels = np.r_[np.zeros(n // 2, bool), np.ones(n - n // 2, bool)]
    queries = np.concatenate(
        [
            synthetic_features(n_queries // 2, False, 3, latent=latent),
            synthetic_features(n_queries // 2, True, 4, latent=latent),
        ]
    )
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    bank = HnswBank.build(vectors, m=m, ef_construction=ef_construction)
    build_s = time.perf_counter() - t0
    rss_mb = (proc.memory_info().rss - rss0) / 1e6  # the index itself (data existed before)
    # The exact baseline is plain numpy over the bank held in memory as a matrix.
    bank._vectors = l2_normalise(vectors)
    del vectors
    import ufd.runtime.search.neighbours as neighbours

    neighbours._CACHE_VECTORS_BELOW = max(neighbours._CACHE_VECTORS_BELOW, n)
    with tempfile.TemporaryDirectory() as tmp:
        bank.save(Path(tmp) / "bank.hnsw")
        size = os.path.getsize(Path(tmp) / "bank.hnsw")
    voter = LabelledBank(bank, labels, exact_below=0)
    k = 9
    e_ids, _ = bank.search(queries, k, exact=True)
    exact_votes = {kk: voter.vote(queries, kk, exact=True).is_fake for kk in (1, k)}
    exact_p50, _ = _latency(voter, queries[:100], exact=True)
    rows = []
    for ef in efs:
        bank.ef = ef
        row = {"n": n, "latent": latent, "M": m, "ef_construction": ef_construction, "ef": ef,
               "build_s": round(build_s, 1), "disk_mb": round(size / 1e6, 1),
               "ram_mb": round(rss_mb, 1)}  # fmt: skip
        h_ids, _ = bank.search(queries, k, exact=False, threads=os.cpu_count())
        row["recall_at_1"] = float(np.mean(h_ids[:, 0] == e_ids[:, 0]))
        row["recall_at_9"] = float(
            np.mean([len(set(a) & set(b)) / k for a, b in zip(h_ids, e_ids, strict=True)])
        )
        for kk in (1, k):
            votes = voter.vote(queries, kk, exact=False, threads=os.cpu_count()).is_fake
            row[f"vote_agreement_k{kk}"] = float(np.mean(votes == exact_votes[kk]))
        # one query at a time, one thread, search + vote: what ufd-detect pays per image
        row["p50_ms"], row["p99_ms"] = _latency(voter, queries[:1000], exact=False)
        row["exact_p50_ms"] = exact_p50
        row["speedup_vs_exact"] = round(exact_p50 / row["p50_ms"], 1)
        t = time.perf_counter()
        voter.vote(queries, 1, exact=False, threads=os.cpu_count())
        row["batch_qps"] = round(len(queries) / (time.perf_counter() - t))
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _latency(voter: LabelledBank, queries: np.ndarray, exact: bool) -> tuple[float, float]:
    samples = []
    for q in queries:
        t = time.perf_counter()
        voter.vote(q[None], 1, exact=exact, threads=1)
        samples.append(time.perf_counter() - t)
    return percentile_ms(samples, 50), percentile_ms(samples, 99)


def markdown(rows: list[dict]) -> str:
    cols = ["n", "latent", "M", "ef", "build_s", "disk_mb", "ram_mb", "p50_ms", "p99_ms",
            "exact_p50_ms", "speedup_vs_exact", "batch_qps", "recall_at_1", "recall_at_9",
            "vote_agreement_k1", "vote_agreement_k9"]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--full", action="store_true", help="also 1,000,000 vectors")
    parser.add_argument("--ef", default="128", help="query ef values, comma-separated")
    parser.add_argument("--M", default="16", help="M values, comma-separated")
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--latent", type=int, default=32, help="within-cluster dimension")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] + ([1_000_000] if args.full else [])
    rows = []
    for n in sizes:
        for m in (int(v) for v in args.M.split(",")):
            efs = [int(e) for e in args.ef.split(",")]
            rows += bench_size(n, efs, m, args.ef_construction, args.queries, args.latent)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nn_bench.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "nn_bench.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
