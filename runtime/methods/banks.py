"""A bundle's k-NN bank (``nn``: real + fake, ``realonly``: reals): its contract and loader.

A bank is an index file of its ``backend`` (:mod:`ufd.runtime.search.banks`) and a
labels file (one per vector: 0 real, ``i + 1`` the ``i``-th fake source of
:attr:`BankConfig.sources`). The query ``ef``, the dimension and the space live
in the method's :class:`BankConfig` and are applied at every load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ufd.runtime.bundle import Bundle, MethodEntry
from ufd.runtime.errors import BundleError
from ufd.runtime.search.banks import INDEX_FILES, load_bank
from ufd.runtime.search.neighbours import LabelledBank


@dataclass(frozen=True)
class BankConfig:
    """The runtime contract of a k-NN bank.

    Attributes:
        dim: feature dimension (must equal the encoder's).
        counts: vectors per class, ``{"real": n, "fake": m}``.
        ef: HNSW query-time ef (chosen at build time, see ``ufd-index``).
        exact_below: banks smaller than this are searched exactly by default.
        space: the distance (``cosine``: 1 - cos of L2-normalised features).
    """

    dim: int
    counts: dict[str, int]
    ef: int
    exact_below: int
    space: Literal["cosine"] = "cosine"
    backend: Literal["hnswlib", "usearch"] = "hnswlib"
    """The index library; banks made before schema 4 are hnswlib ones."""
    storage: Literal["fp32", "fp16", "int8"] = "fp32"
    """How the index stores each vector (usearch: fp16 halves the memory; int8 quarters it
    and keeps fp32 rows on disk for re-ranking)."""
    sources: tuple[str, ...] = ("fake",)
    """Names of the fake sources (schema 6): label ``i + 1`` is ``sources[i]``, 0 is real.
    Banks made before attribution have the one source ``fake``."""
    unknown_beyond: float | None = None
    """Open-set attribution (``ufd-calibrate --method nn --fake``): a fake vote whose
    nearest fake is farther than this is from an ``unknown`` source; ``None``: never."""


def bank_files(slot: str, backend: str = "usearch", storage: str = "fp32") -> dict[str, str]:
    """The file roles of a bank stored in folder ``slot`` of a bundle."""
    files = {"index": f"{slot}/{INDEX_FILES[backend]}", "labels": f"{slot}/labels.npy"}
    if backend == "usearch" and storage == "int8":
        files["vectors"] = f"{slot}/vectors.npy"  # fp32 rows re-ranking the int8 graph
    return files


def open_labelled_bank(bundle: Bundle, entry: MethodEntry, verify: bool = True) -> LabelledBank:
    """A method's bank with its labels and ``ef``, checked against the manifest.

    Raises:
        BundleError: a dimension that differs from the encoder's, or a bank
            whose size or labels disagree with the manifest.
    """
    config: BankConfig = entry.config
    feature_dim = bundle.manifest.model.feature_dim
    if config.dim != feature_dim:
        raise BundleError(
            f"the bank holds {config.dim}-d features but the encoder gives {feature_dim}-d; "
            "it was built for another model: rebuild it with ufd-index"
        )
    labels_file, index_file = entry.files["labels"], entry.files["index"]
    try:
        labels = np.load(bundle.verified_path(labels_file, verify), allow_pickle=False)
    except (ValueError, OSError) as e:
        raise BundleError(f"cannot read {labels_file}: {e}; rebuild the index") from e
    path = bundle.verified_path(index_file, verify)
    vectors = entry.files.get("vectors")
    vectors_path = bundle.verified_path(vectors, verify) if vectors else None
    bank = load_bank(config.backend, path, config.dim, config.ef, vectors_path)
    expected = sum(config.counts.values())
    if labels.ndim != 1 or len(labels) != len(bank) or len(bank) != expected:
        raise BundleError(
            f"bank holds {len(bank)} vectors and {labels.shape} labels, the manifest says "
            f"{expected}: rebuild it with ufd-index"
        )
    if int((labels > 0).sum()) != config.counts.get("fake", 0) or (
        len(labels) and int(labels.max()) > len(config.sources)
    ):
        raise BundleError("bank labels disagree with the manifest counts; rebuild the index")
    return LabelledBank(bank, labels, config.exact_below, config.sources, config.unknown_beyond)
