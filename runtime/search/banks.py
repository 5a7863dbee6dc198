"""Load a bundle's k-NN bank (``nn``: real + fake, ``realonly``: reals), checked.

A bank is an hnswlib index file and a labels file (one per vector: 0 real,
1 fake). hnswlib saves neither its space, its dimension nor its query ``ef``:
they live in the method's :class:`BankConfig` and are applied at every load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ufd.runtime.bundle import Bundle, MethodEntry
from ufd.runtime.errors import BundleError
from ufd.runtime.search.neighbours import HnswBank, LabelledBank


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


def bank_files(slot: str) -> dict[str, str]:
    """The file roles of a bank stored in folder ``slot`` of a bundle."""
    return {"index": f"{slot}/bank.hnsw", "labels": f"{slot}/labels.npy"}


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
    try:
        bank = HnswBank.load(bundle.verified_path(index_file, verify), config.dim, config.ef)
    except RuntimeError as e:
        raise BundleError(f"hnswlib cannot load {index_file}: {e}; rebuild the index") from e
    expected = sum(config.counts.values())
    if labels.ndim != 1 or len(labels) != len(bank) or len(bank) != expected:
        raise BundleError(
            f"bank holds {len(bank)} vectors and {labels.shape} labels, the manifest says "
            f"{expected}: rebuild it with ufd-index"
        )
    if int(labels.sum()) != config.counts.get("fake", 0):
        raise BundleError("bank labels disagree with the manifest counts; rebuild the index")
    return LabelledBank(bank, labels, config.exact_below)
