"""Forced exact search (``--exact``) on a big bank: where the vectors come from.

Times ``HnswBank.search(..., exact=True)`` for one batch of queries, four times
in a row, in three set-ups: a bank loaded from its index file with room for a
copy in memory, the same with no room (vectors mapped from the page cache at
each search), and a bank with no file and no room (vectors copied out of
hnswlib at each search, the fallback). The graph is built with small M and
ef_construction: exact search does not use it.

Usage:
    python benchmarks/exact_bench.py [--n 300000] [--dim 768] [--queries 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import ufd.runtime.search.hnsw as nb
from ufd.runtime.search.hnsw import HnswBank


def timed_searches(bank: HnswBank, queries: np.ndarray, repeats: int = 4) -> list[float]:
    """Seconds of each of ``repeats`` exact 9-NN searches of ``queries``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        bank.search(queries, 9, exact=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=8)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    built = HnswBank.build(rng.normal(size=(args.n, args.dim)).astype(np.float32), 8, 32)
    print(f"built {args.n} x {args.dim} in {time.perf_counter() - start:.0f} s")
    queries = rng.normal(size=(args.queries, args.dim)).astype(np.float32)
    free_memory = nb._free_memory_bytes
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bank.bin"
        built.save(path)
        setups = (
            ("index file, copy kept", lambda: HnswBank.load(path, args.dim, 64), free_memory),
            ("index file, no room", lambda: HnswBank.load(path, args.dim, 64), lambda: 1),
            ("no file, no room (get_items)", lambda: built, lambda: 1),
        )
        for label, bank, free in setups:
            nb._free_memory_bytes = free
            times = timed_searches(bank(), queries)
            print(f"{label:30s}", " ".join(f"{t * 1e3:.0f}" for t in times), "ms")
    nb._free_memory_bytes = free_memory


if __name__ == "__main__":
    main()
