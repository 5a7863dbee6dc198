"""Build a k-NN bank of a bundle (``ufd-index``): ``nn`` (real + fake) or ``realonly``.

Features come from the bundle's own encoder (fp32 by default) or from ``.npy``
files (or ``ufd-scan --features`` datasets) computed elsewhere. They are
L2-normalised and indexed in cosine space (usearch by default; hnswlib on
request), stored as fp32, fp16 or int8 (+ fp32 re-ranking rows), one label per
vector. After building, HNSW is checked against exact fp32 search,
leave-one-out on a sample of the bank (each sampled vector queries the bank,
its own entry removed): recall@1, recall@k and vote agreement go into the
manifest's provenance. Needs no torch.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ufd.runtime.building.bank_quality import (
    AUTO_EF,
    MIN_RECALL_AT_1,
    held_out_order,
    measure_quality,
)
from ufd.runtime.bundle import Manifest, MethodEntry
from ufd.runtime.bundle.update import publish_folder, staged_folder
from ufd.runtime.errors import ExportError
from ufd.runtime.methods import method_class, open_bundle
from ufd.runtime.methods.banks import bank_files, open_labelled_bank
from ufd.runtime.search.banks import build_bank, check_bank_settings
from ufd.runtime.search.base import l2_normalise

logger = logging.getLogger(__name__)

DEFAULT_EXACT_BELOW = 10_000
"""Banks smaller than this are searched exactly by default. Measured with
benchmarks/nn_bench.py on 2 cores: exact p50 ~3 ms at 10k vectors and 14 ms at
100k, while HNSW (M=16, ef=128) answers in 0.5-0.7 ms with >= 99.9 % vote
agreement at both sizes: past ~10k exact search only costs time."""
BANK_FOLDERS = {"nn": "index", "realonly": "realonly"}
"""The bundle folder of each k-NN method's bank."""


@dataclass
class IndexOptions:
    """hnswlib parameters and the build-time quality check."""

    m: int | None = None  # None: default_m(bank size)
    backend: str | None = None  # None: usearch
    storage: str | None = None  # None: default_storage(bank size)
    ef_construction: int = 200
    ef: int | None = None  # None: the smallest of AUTO_EF meeting the quality bar
    seed: int = 100
    exact_below: int = DEFAULT_EXACT_BELOW
    check_queries: int = 500
    check_k: int = 9
    threads: int | None = None  # None: build_threads(bank size)

    def __post_init__(self) -> None:
        check_bank_settings(self.backend, self.storage)


def build_index(
    bundle_dir: Path,
    real: np.ndarray,
    fake: np.ndarray | dict[str, np.ndarray],
    options: IndexOptions,
    append: bool = False,
    encoder_precision: str = "fp32",
    method: str = "nn",
) -> Manifest:
    """Build (or extend) one of the bundle's banks and record it in the manifest.

    Args:
        bundle_dir: the bundle.
        real: real features (N, D).
        fake: fake features (M, D) of source ``fake``, or features per named source
            (generator) for attribution; must be empty for ``realonly``.
        options: hnswlib parameters and the quality check.
        append: add to the method's existing bank.
        encoder_precision: what encoded the features (recorded).
        method: ``nn`` (real + fake, for the vote) or ``realonly`` (reals).

    Raises:
        ExportError: an empty bank, a missing class, or a dimension mismatch.
    """
    bundle = open_bundle(bundle_dir)
    fakes = fake if isinstance(fake, dict) else {"fake": fake}
    fakes = {name: feats for name, feats in fakes.items() if len(feats)}
    if method == "realonly" and fakes:
        raise ExportError("a real-only bank takes real images only: drop --fake")
    dim = bundle.manifest.model.feature_dim
    for name, feats in (("real", real), *fakes.items()):
        if len(feats) and feats.shape[1] != dim:
            raise ExportError(f"{name} features are {feats.shape[1]}-d, the bundle's are {dim}-d")
    started = time.perf_counter()
    previous = bundle.manifest.method(method)
    history = bundle.manifest.method_provenance(method)
    kept = previous.config if append and previous is not None else None
    sources = list(kept.sources) if kept is not None else []
    parts, codes = [real], [np.zeros(len(real), np.uint8)]
    for name, feats in fakes.items():
        sources += [name] if name not in sources else []
        parts.append(feats)
        codes.append(np.full(len(feats), sources.index(name) + 1, np.uint8))
    _check_source_names(sources)
    labels = np.concatenate(codes)
    vectors = l2_normalise(np.concatenate(parts) if len(labels) else np.zeros((0, dim)))
    if kept is not None and previous is not None:  # the stored vectors first (mapped: read-only)
        existing = open_labelled_bank(bundle, previous)
        vectors = np.concatenate([existing.bank.vectors(), vectors])
        labels = np.concatenate([existing.codes.astype(np.uint8), labels])
    (_check_reals if method == "realonly" else _check_classes)(labels)
    backend = options.backend or "usearch"
    storage = options.storage or default_storage(len(vectors))
    m = options.m or (history.get("m") if kept else None) or default_m(len(vectors))
    threads = options.threads if options.threads is not None else build_threads(len(vectors))
    # the quality check's queries are held out of the bank while it is measured
    order, n_held = held_out_order(len(vectors), options.check_queries, options.seed)
    vectors, labels = vectors[order], labels[order]
    indexed = len(vectors) - n_held
    bank = build_bank(
        backend,
        vectors[:indexed],
        storage,
        m,
        options.ef_construction,
        options.ef or AUTO_EF[0],
        options.seed,
        threads,
    )
    efs = AUTO_EF if options.ef is None else (options.ef,)
    ef, quality = measure_quality(
        bank, vectors[:indexed], labels[:indexed], vectors[indexed:], options.check_k, efs
    )
    bank.add(vectors[indexed:], threads)
    build_seconds = time.perf_counter() - started
    if quality.recall_at_1 is not None and quality.recall_at_1 < MIN_RECALL_AT_1:
        logger.warning(
            "HNSW recall@1 is %.3f (< %.2f): raise --ef (query time, no rebuild) or "
            "--ef-construction / --m (rebuild), or search with --exact",
            quality.recall_at_1,
            MIN_RECALL_AT_1,
        )
    folder = BANK_FOLDERS[method]
    counts = {"real": int((labels == 0).sum()), "fake": int((labels > 0).sum())}
    config_type = method_class(method).config_type  # the bank's, or realonly's (scorer: knn)
    config = config_type(
        dim=dim,
        counts=counts,
        ef=ef,
        exact_below=options.exact_below,
        backend=backend,
        storage=storage,
        sources=tuple(sources) or ("fake",),
    )
    entry = MethodEntry(files=bank_files(folder, backend, storage), config=config)
    if previous is not None:  # the threshold stays, as it always did: say it may be stale
        entry = dataclasses.replace(previous, files=entry.files, config=entry.config)
        if previous.calibration is not None:
            logger.warning(
                "the %s threshold was calibrated on the previous bank; run ufd-calibrate "
                "--method %s again on held-out reals",
                method,
                method,
            )
    provenance = {
        "m": m,
        "ef_construction": options.ef_construction,
        "seed": options.seed,
        "build_threads": threads,
        "encoder_precision": encoder_precision,
        "build_seconds": round(build_seconds, 3),
        "quality": asdict(quality),
        "source_counts": {name: int((labels == i + 1).sum()) for i, name in enumerate(sources)},
    }
    with staged_folder(bundle, folder) as staging:
        names = {role: Path(name).name for role, name in entry.files.items()}
        np.save(staging / names["labels"], labels, allow_pickle=False)
        if "vectors" in names:
            bank.save(staging / names["index"], staging / names["vectors"])
        else:
            bank.save(staging / names["index"])
        return publish_folder(
            bundle, folder, staging, lambda mf: mf.with_method(method, entry, provenance)
        )


def default_storage(n_vectors: int) -> str:
    """fp32 below 100k vectors (at most ~300 MB); from there int8 with fp32 re-ranking rows.

    An int8 bank holds a quarter of the vectors in memory and ranks as fp32 does
    (measured with benchmarks/nn_bench.py, benchmarks/RESULTS.md); fp16 graphs
    round distances to ~1e-4 and flip near ties, so they are only an option.
    """
    return "fp32" if n_vectors < INT8_FROM else "int8"


def _check_reals(labels: np.ndarray) -> None:
    if len(labels) == 0:
        raise ExportError("the real-only bank is empty: pass --real DIR or --real-features FILE")


def _check_source_names(sources: list[str]) -> None:
    bad = [s for s in sources if not s or s in ("real", "unknown") or len(s) > 64]
    if bad:
        raise ExportError(
            f"fake source names {bad} are not allowed: use 1-64 characters other than "
            "'real' and 'unknown' (e.g. --fake stylegan=DIR)"
        )
    if len(sources) > 255:
        raise ExportError(f"{len(sources)} fake sources: a bank holds at most 255")


def _check_classes(labels: np.ndarray) -> None:
    n_fake = int((labels > 0).sum())
    n_real = len(labels) - n_fake
    if n_real == 0 or n_fake == 0:
        missing = "real" if n_real == 0 else "fake"
        raise ExportError(
            f"the bank has {n_real} real and {n_fake} fake features: the NN vote needs both. "
            f"Add {missing} images with --{missing} DIR or --{missing}-features FILE.npy"
        )


SERIAL_BUILD_BELOW = 200_000


def build_threads(n_vectors: int) -> int:
    """One thread below 200k vectors (-1, all cores, from there).

    usearch's concurrent ``add`` can leave nodes no search reaches
    (unum-cloud/USearch#735, open): measured here, a 3,000-vector bank built on 2
    threads lost 4-7 nodes per build, on 1 thread none, and 1 thread builds it in
    1.7 s instead of 0.8 s. Serial builds are also reproducible. Larger banks build
    in parallel (1M vectors: ~30 min on 2 cores); the build-time quality check
    measures what orphans cost (recall@1 0.9935 at 1M, benchmarks/RESULTS.md).
    """
    return 1 if n_vectors < SERIAL_BUILD_BELOW else -1


LARGE_BANK = 500_000
INT8_FROM = 100_000


def default_m(n_vectors: int) -> int:
    """HNSW graph degree for a bank: 16, or 32 from 500k vectors.

    Measured (benchmarks/RESULTS.md): at 1M, M=16 reached recall@1 0.99 only at
    47x the exact speed; M=32 gave 0.995 at 57x.
    """
    return 32 if n_vectors >= LARGE_BANK else 16
