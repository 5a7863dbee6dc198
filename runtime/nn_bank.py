"""Load a bundle's nearest-neighbour bank, checking it against the manifest."""

from __future__ import annotations

import logging

import numpy as np

from ufd.runtime.bundle import Bundle
from ufd.runtime.errors import BundleError
from ufd.runtime.neighbours import HnswBank, LabelledBank

logger = logging.getLogger(__name__)

INDEX_DIR = "index"
INDEX_FILE = f"{INDEX_DIR}/bank.hnsw"
LABELS_FILE = f"{INDEX_DIR}/labels.npy"
SLOTS = {
    "index": "ufd-index BUNDLE --real DIR --fake DIR",
    "realonly": "ufd-index BUNDLE --real-only --real DIR",
}


def slot_files(slot: str) -> tuple[str, str]:
    """(index file, labels file) of a bank slot (``index`` or ``realonly``)."""
    return f"{slot}/bank.hnsw", f"{slot}/labels.npy"


def open_labelled_bank(bundle: Bundle, verify: bool = True, slot: str = "index") -> LabelledBank:
    """A bundle's bank (``index``: real+fake, ``realonly``: reals) with its labels and ``ef``.

    Raises:
        BundleError: no such bank, a dimension that differs from the encoder's,
            or a bank whose size or labels disagree with the manifest.
    """
    info = getattr(bundle.manifest, slot)
    if info is None:
        raise BundleError(f"bundle {bundle.root} has no {slot} bank; build one with {SLOTS[slot]}")
    feature_dim = bundle.manifest.model.feature_dim
    if info.dim != feature_dim:
        raise BundleError(
            f"the index holds {info.dim}-d features but the encoder gives {feature_dim}-d; "
            "it was built for another model: rebuild it with ufd-index"
        )
    labels_path = bundle.verified_path(info.labels_file, verify)
    try:
        labels = np.load(labels_path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise BundleError(f"cannot read {info.labels_file}: {e}; rebuild the index") from e
    try:
        bank = HnswBank.load(bundle.verified_path(info.file, verify), info.dim, info.ef)
    except RuntimeError as e:
        raise BundleError(f"hnswlib cannot load {info.file}: {e}; rebuild the index") from e
    expected = sum(info.counts.values())
    if labels.ndim != 1 or len(labels) != len(bank) or len(bank) != expected:
        raise BundleError(
            f"index holds {len(bank)} vectors and {labels.shape} labels, the manifest says "
            f"{expected}: rebuild it with ufd-index"
        )
    if int(labels.sum()) != info.counts.get("fake", 0):
        raise BundleError("index labels disagree with the manifest counts; rebuild the index")
    return LabelledBank(bank, labels, info.exact_below)
