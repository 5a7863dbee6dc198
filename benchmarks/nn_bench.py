"""Nearest-neighbour benchmark: bank backends and storages against exact fp32 search.

Synthetic clustered 768-d features (see ``synthetic_features`` for the scales):
256 semantic clusters shared by both classes, a 32-d within-cluster spread,
isotropic noise, and fakes shifted along one of 8 "generator artefact"
directions; half real, half fake, one labelled bank. For each size and each
``backend:storage`` the bank is built as ``ufd-index`` builds it and saved; then
a **fresh process** opens it as ``ufd-detect`` does (memory-mapped where the
backend allows) and reports its RSS (peak and after the searches), single-query
p50/p99 of search + vote (one thread), recall@1 and recall@9, and k=1 / k=9 vote
agreement with exact fp32 search over the original vectors. Queries are fresh
samples, never in the banks.

Usage:
    python benchmarks/nn_bench.py                          # 10k and 100k
    python benchmarks/nn_bench.py --sizes 1000000 --banks usearch:int8 --ef 128,256
Writes benchmarks/results/nn_bench.json and nn_bench.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ufd.runtime.methods.banks import bank_files
from ufd.runtime.search.banks import build_bank
from ufd.runtime.search.base import FloatBank, l2_normalise
from ufd.runtime.search.neighbours import LabelledBank, knn_vote

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


CHILD = """
import json, sys, time
from pathlib import Path
import numpy as np
from ufd.runtime.search.banks import load_bank
from ufd.runtime.search.neighbours import LabelledBank

def rss():
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}

folder, backend, ef, rerank = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[5])
queries = np.load(folder / "queries.npy")
ref = np.load(folder / "reference.npz")
before = rss()
vectors = folder / "vectors.npy"
bank = load_bank(backend, folder / sys.argv[4], queries.shape[1], ef,
                 vectors if vectors.exists() else None)
if hasattr(bank, "rerank"):
    bank.rerank = rerank
voter = LabelledBank(bank, np.load(folder / "labels.npy"), exact_below=0)
loaded = rss()
samples = []
for q in queries[:1000]:
    t = time.perf_counter()
    voter.vote(q[None], 1, exact=False)
    samples.append(time.perf_counter() - t)
ids, _ = bank.search(queries, 9, exact=False)
votes = {kk: voter.vote(queries, kk, exact=False).is_fake for kk in (1, 9)}
after = rss()
ms = np.array(samples) * 1e3
print(json.dumps({
    "rss_before_mb": before["VmRSS"], "rss_loaded_mb": loaded["VmRSS"],
    "rss_end_mb": after["VmRSS"], "rss_peak_mb": after["VmHWM"],
    "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
    "recall_at_1": float(np.mean(ids[:, 0] == ref["ids"][:, 0])),
    "recall_at_9": float(np.mean([len(set(a) & set(b)) / 9 for a, b in zip(ids, ref["ids"])])),
    "vote_agreement_k1": float(np.mean(votes[1] == ref["k1"])),
    "vote_agreement_k9": float(np.mean(votes[9] == ref["k9"])),
}))
"""


def bench_size(
    n: int,
    banks: list[str],
    efs: list[int],
    m: int,
    ef_construction: int,
    n_queries: int,
    latent: int,
    reranks: list[int],
    keep: Path | None,
) -> list[dict]:
    vectors = np.empty((n, DIM), np.float32)  # one copy of the bank, filled per class
    vectors[: n // 2] = synthetic_features(n // 2, fake=False, seed=1, latent=latent)
    vectors[n // 2 :] = synthetic_features(n - n // 2, fake=True, seed=2, latent=latent)
    labels = np.r_[np.zeros(n // 2, np.uint8), np.ones(n - n // 2, np.uint8)]
    queries = np.concatenate(
        [
            synthetic_features(n_queries // 2, False, 3, latent=latent),
            synthetic_features(n_queries // 2, True, 4, latent=latent),
        ]
    )
    t = time.perf_counter()
    exact = LabelledBank(FloatBank(vectors), labels, exact_below=0)
    ids, dist = exact.bank.search(queries, 16, exact=True, invariant=False)
    exact_ms = (time.perf_counter() - t) / len(queries) * 1e3
    fake = labels.astype(bool)
    reference = {
        "ids": ids[:, :9],
        "k1": knn_vote(dist, fake[ids], 1).is_fake,
        "k9": knn_vote(dist, fake[ids], 9).is_fake,
    }
    rows = []
    for spec in banks:
        backend, storage = spec.split(":")
        with tempfile.TemporaryDirectory() as tmp:
            folder = keep / f"{n}-{backend}-{storage}-M{m}" if keep else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / "queries.npy", queries)
            np.save(folder / "labels.npy", labels)
            np.savez(folder / "reference.npz", **reference)
            names = {r: Path(f).name for r, f in bank_files("b", backend, storage).items()}
            build_s = float("nan")
            if not (folder / names["index"]).exists():  # --keep: built once, measured often
                t = time.perf_counter()
                bank = build_bank(backend, vectors, storage, m, ef_construction, efs[0], 100, -1)
                build_s = time.perf_counter() - t
                if "vectors" in names:
                    bank.save(folder / names["index"], folder / names["vectors"])
                else:
                    bank.save(folder / names["index"])
                del bank
            disk = {r: (folder / f).stat().st_size / 1e6 for r, f in names.items() if r != "labels"}
            for ef in efs:
                for rerank in reranks if storage == "int8" else reranks[:1]:
                    out = subprocess.run(
                        [
                            sys.executable,
                            "-c",
                            CHILD,
                            str(folder),
                            backend,
                            str(ef),
                            names["index"],
                            str(rerank),
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    row = {
                        "n": n,
                        "bank": spec,
                        "M": m,
                        "ef": ef,
                        "rerank": rerank,
                        "build_s": round(build_s, 1),
                        "index_mb": round(disk["index"], 1),
                        "rows_mb": round(disk.get("vectors", 0.0), 1),
                        "exact_fp32_ms_per_query": round(exact_ms, 2),
                    }
                    row |= json.loads(out.stdout.strip().splitlines()[-1])
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    cols = [
        "n",
        "bank",
        "M",
        "ef",
        "rerank",
        "build_s",
        "index_mb",
        "rows_mb",
        "rss_end_mb",
        "rss_peak_mb",
        "p50_ms",
        "p99_ms",
        "recall_at_1",
        "recall_at_9",
        "vote_agreement_k1",
        "vote_agreement_k9",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--banks", default="usearch:int8,usearch:fp16,usearch:fp32,hnswlib:fp32")
    parser.add_argument("--ef", default="128", help="query ef values, comma-separated")
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--rerank", default="64", help="int8: candidates re-ranked, comma-sep.")
    parser.add_argument("--keep", type=Path, default=None, help="build banks here once, reuse")
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--latent", type=int, default=32, help="within-cluster dimension")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    rows = []
    efs = [int(e) for e in args.ef.split(",")]
    for n in (int(s) for s in args.sizes.split(",")):
        rows += bench_size(
            n,
            args.banks.split(","),
            efs,
            args.M,
            args.ef_construction,
            args.queries,
            args.latent,
            [int(r) for r in args.rerank.split(",")],
            args.keep,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nn_bench.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "nn_bench.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
