"""Nearest-neighbour benchmark: HNSW banks vs exact numpy search.

Synthetic clustered 768-d features (real and fake classes, each a mixture of
clusters in a low-dimensional subspace plus isotropic noise; fakes share the
real clusters shifted along "artefact" directions). For each total bank size
(half real, half fake): build time, index size on disk and in RAM,
single-query p50/p99 latency, batch throughput, recall@1 and recall@9 per bank
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

from ufd.runtime.neighbours import HnswBank, knn_vote, l2_normalise

DIM = 768


def synthetic_features(n: int, fake: bool, seed: int, latent: int = 48, clusters: int = 64):
    """``n`` clustered features of one class (deterministic per seed)."""
    base = np.random.default_rng(12345)  # shared structure of both classes
    centres = base.normal(0, 1, (clusters, DIM)).astype(np.float32)
    basis = base.normal(0, 1, (latent, DIM)).astype(np.float32) / np.sqrt(latent)
    artefacts = base.normal(0, 1, (4, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        which = rng.integers(0, clusters, m)
        x = centres[which] + rng.normal(0, 1.0, (m, latent)).astype(np.float32) @ basis * 4
        x += rng.normal(0, 0.15, (m, DIM)).astype(np.float32)
        if fake:
            x += artefacts[which % 4] * 0.35
        out[start : start + m] = x
    return l2_normalise(out)


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1e3, q))


def bench_size(n: int, ef: int, m: int, ef_construction: int, n_queries: int) -> dict:
    real = synthetic_features(n // 2, fake=False, seed=1)
    fake = synthetic_features(n - n // 2, fake=True, seed=2)
    queries = np.concatenate(
        [synthetic_features(n_queries // 2, False, 3), synthetic_features(n_queries // 2, True, 4)]
    )
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    banks = [HnswBank.build(x, m=m, ef_construction=ef_construction, ef=ef) for x in (real, fake)]
    build_s = time.perf_counter() - t0
    rss_mb = (proc.memory_info().rss - rss0) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        size = 0
        for i, bank in enumerate(banks):
            bank.save(Path(tmp) / f"{i}.hnsw")
            size += os.path.getsize(Path(tmp) / f"{i}.hnsw")
    del real, fake

    row = {"n": n, "M": m, "ef_construction": ef_construction, "ef": ef,
           "build_s": round(build_s, 1), "disk_mb": round(size / 1e6, 1),
           "ram_mb": round(rss_mb, 1)}  # fmt: skip
    k = 9
    exact = [b.search(queries, k, exact=True) for b in banks]
    hnsw = [b.search(queries, k, exact=False, threads=os.cpu_count()) for b in banks]
    recall1 = np.mean([np.mean(h[0][:, 0] == e[0][:, 0]) for h, e in zip(hnsw, exact, strict=True)])
    recall9 = np.mean(
        [
            np.mean([len(set(a) & set(b)) / k for a, b in zip(h[0], e[0], strict=True)])
            for h, e in zip(hnsw, exact, strict=True)
        ]
    )
    for kk in (1, 9):
        v_exact = knn_vote(exact[0][1], exact[1][1], kk).is_fake
        v_hnsw = knn_vote(hnsw[0][1], hnsw[1][1], kk).is_fake
        row[f"vote_agreement_k{kk}"] = float(np.mean(v_exact == v_hnsw))
    row["recall_at_1"] = float(recall1)
    row["recall_at_9"] = float(recall9)

    # single query, one thread, both banks + vote: what ufd-detect pays per image
    lat = []
    for q in queries[:1000]:
        t = time.perf_counter()
        d = [b.search(q[None], 1, exact=False, threads=1)[1] for b in banks]
        knn_vote(d[0], d[1], 1)
        lat.append(time.perf_counter() - t)
    row["p50_ms"], row["p99_ms"] = percentile_ms(lat, 50), percentile_ms(lat, 99)
    lat_exact = []
    for q in queries[:100]:
        t = time.perf_counter()
        d = [b.search(q[None], 1, exact=True)[1] for b in banks]
        knn_vote(d[0], d[1], 1)
        lat_exact.append(time.perf_counter() - t)
    row["exact_p50_ms"] = percentile_ms(lat_exact, 50)
    row["speedup_vs_exact"] = round(row["exact_p50_ms"] / row["p50_ms"], 1)
    t = time.perf_counter()
    for b in banks:
        b.search(queries, 1, exact=False, threads=os.cpu_count())
    row["batch_qps"] = round(len(queries) / (time.perf_counter() - t))
    return row


def markdown(rows: list[dict]) -> str:
    cols = ["n", "M", "ef", "build_s", "disk_mb", "ram_mb", "p50_ms", "p99_ms", "exact_p50_ms",
            "speedup_vs_exact", "batch_qps", "recall_at_1", "recall_at_9",
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
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] + ([1_000_000] if args.full else [])
    rows = []
    for n in sizes:
        for ef in (int(e) for e in args.ef.split(",")):
            row = bench_size(n, ef, args.M, args.ef_construction, args.queries)
            print(json.dumps(row), flush=True)
            rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nn_bench.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "nn_bench.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
