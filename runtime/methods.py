"""The scoring methods a bundle offers, and their per-batch columns.

* ``linear``: UnivFD's linear head (p(fake) = sigmoid(logit)).
* ``nn``: UnivFD's k-NN vote on the labelled bank (``ufd-index``).
* ``traces``: the natural-trace head (``ufd-train --method traces``).
* ``realonly``: mean cosine distance to the k nearest *real* features
  (``ufd-index --real-only``); fake above a threshold calibrated for a
  target false-positive rate (``ufd-calibrate --method realonly``).
* ``fused``: a logistic combination of the others' standardised scores,
  fitted on labelled validation features (``ufd-train --method fused``).

Each component is loaded (and hash-verified) on first use.
"""

from __future__ import annotations

import numpy as np

from ufd.runtime.bundle import Bundle
from ufd.runtime.errors import BundleError
from ufd.runtime.neighbours import LabelledBank
from ufd.runtime.nn_bank import open_labelled_bank
from ufd.runtime.records import METHODS
from ufd.runtime.scoring import (
    Columns,
    fused_columns,
    linear_columns,
    nn_columns,
    realonly_columns,
    traces_columns,
)
from ufd.runtime.sessions import LinearHeadSession


class MethodRunner:
    """Loads what each method needs and scores feature batches with it."""

    def __init__(
        self,
        bundle: Bundle,
        head: LinearHeadSession | None,
        threshold: float,
        verify: bool = True,
        threads: int | None = None,
    ) -> None:
        self.bundle = bundle
        self.head = head
        self.threshold = threshold
        self.verify = verify
        self.threads = threads
        self._nn: LabelledBank | None = None
        self._realonly: LabelledBank | None = None
        self._traces: LinearHeadSession | None = None

    def available(self) -> tuple[str, ...]:
        """Methods this bundle can run, in canonical order."""
        m = self.bundle.manifest
        have = {
            "linear": self.head is not None,
            "nn": m.index is not None,
            "traces": m.traces is not None,
            "realonly": m.realonly is not None and "realonly" in m.method_thresholds,
            "fused": m.fusion is not None,
        }
        return tuple(name for name in METHODS if have[name])

    def resolve(self, method: str) -> tuple[str, ...]:
        """``all`` -> every available method; ``a,b`` -> both (validated)."""
        if method == "all":
            chosen = self.available()
        else:
            chosen = tuple(part.strip() for part in method.split(",") if part.strip())
        unknown = [m for m in chosen if m not in METHODS]
        if unknown or not chosen:
            raise ValueError(f"unknown method {method!r}; use {', '.join(METHODS)} or all")
        return chosen

    def k_for(self, method: str, k: int | None) -> int:
        """The k a method uses: given, else 1 for nn and the calibrated k for realonly."""
        if k is not None:
            return k
        if method == "realonly":
            calibration = self.bundle.manifest.calibrations.get("realonly")
            return calibration.k if calibration and calibration.k else 1
        return 1

    def check(self, methods: tuple[str, ...], k: int | None, need_thresholds: bool = True) -> None:
        """Load every component the methods need, with explanatory errors.

        ``need_thresholds=False`` (for calibration) skips the calibrated thresholds.
        """
        if k is not None and k < 1:
            raise ValueError("k must be at least 1")
        for method in methods:
            k_method = self.k_for(method, k)
            if method == "linear":
                self.linear_head  # noqa: B018 - must exist
            if method in ("nn", "realonly"):
                bank = self.nn_bank if method == "nn" else self.realonly_bank
                if k_method > len(bank.bank):
                    raise ValueError(
                        f"k={k_method} exceeds the {method} bank's {len(bank.bank)} vectors"
                    )
            if method == "traces":
                self.traces_head  # noqa: B018 - loads and verifies
            if method == "realonly" and need_thresholds:
                self.realonly_threshold  # noqa: B018 - must be calibrated
            if method == "fused":
                fusion = self.bundle.manifest.fusion
                if fusion is None:
                    raise BundleError(
                        "no fusion weights: fit them with ufd-train BUNDLE --method fused "
                        "--real VAL_REALS --fake VAL_FAKES"
                    )
                self.check(tuple(fusion.methods), k, need_thresholds=False)

    @property
    def linear_head(self) -> LinearHeadSession:
        """The UnivFD linear head (features -> logit)."""
        if self.head is None:
            raise BundleError(
                "this bundle has no linear head (exported with --head none); "
                "re-export it with --head univfd or --head PATH.pth"
            )
        return self.head

    @property
    def nn_bank(self) -> LabelledBank:
        """The labelled real+fake bank."""
        if self._nn is None:
            self._nn = open_labelled_bank(self.bundle, self.verify, "index")
        return self._nn

    @property
    def realonly_bank(self) -> LabelledBank:
        """The bank of real features."""
        if self._realonly is None:
            self._realonly = open_labelled_bank(self.bundle, self.verify, "realonly")
        return self._realonly

    @property
    def traces_head(self) -> LinearHeadSession:
        """The natural-trace head graph (features -> logit)."""
        if self._traces is None:
            info = self.bundle.manifest.traces
            if info is None:
                raise BundleError(
                    "this bundle has no natural-trace head; train one with "
                    "ufd-train BUNDLE --method traces --real DIR --fake DIR"
                )
            path = self.bundle.verified_path(info.file, self.verify)
            self._traces = LinearHeadSession(path, "cpu", self.threads)
        return self._traces

    @property
    def realonly_threshold(self) -> float:
        """The calibrated real-only threshold."""
        threshold = self.bundle.manifest.method_thresholds.get("realonly")
        if threshold is None:
            raise BundleError(
                "the real-only method needs a threshold: run "
                "ufd-calibrate BUNDLE --method realonly --real HELD_OUT_REALS"
            )
        return threshold

    def columns(
        self, methods: tuple[str, ...], features: np.ndarray, k: int | None, exact: bool | None
    ) -> Columns:
        """Every requested method's record fields for a feature batch."""
        columns: Columns = {}
        for method in methods:
            if method == "linear":
                columns |= linear_columns(self.linear_head(features), self.threshold)
            elif method == "nn":
                columns |= nn_columns(self.nn_bank.vote(features, self.k_for("nn", k), exact))
            elif method == "traces":
                threshold = self.bundle.manifest.method_thresholds.get("traces", 0.5)
                columns |= traces_columns(self.traces_head(features), threshold)
            elif method == "realonly":
                columns |= realonly_columns(
                    self.realonly_distances(features, self.k_for("realonly", k), exact),
                    self.realonly_threshold,
                )
            elif method == "fused":
                threshold = self.bundle.manifest.method_thresholds.get("fused", 0.5)
                columns |= fused_columns(self.fused_logits(features, k, exact), threshold)
        return columns

    def raw_scores(
        self, methods: tuple[str, ...], features: np.ndarray, k: int | None, exact: bool | None
    ) -> dict[str, np.ndarray]:
        """Each method's continuous score (higher = more fake), before any threshold."""
        scores = {}
        for method in methods:
            if method == "linear":
                scores[method] = self.linear_head(features).astype(np.float64)
            elif method == "nn":
                scores[method] = self.nn_bank.vote(features, self.k_for("nn", k), exact).score
            elif method == "traces":
                scores[method] = self.traces_head(features).astype(np.float64)
            elif method == "realonly":
                scores[method] = self.realonly_distances(features, self.k_for("realonly", k), exact)
        return scores

    def fused_logits(self, features: np.ndarray, k: int | None, exact: bool | None) -> np.ndarray:
        """The fitted combination's logits."""
        fusion = self.bundle.manifest.fusion
        raw = self.raw_scores(tuple(fusion.methods), features, k, exact)
        z = np.stack(
            [
                (raw[m] - mu) / sd
                for m, mu, sd in zip(fusion.methods, fusion.means, fusion.stds, strict=True)
            ],
            axis=1,
        )
        return z @ np.asarray(fusion.weights) + fusion.bias

    def realonly_distances(self, features: np.ndarray, k: int, exact: bool | None) -> np.ndarray:
        """Mean cosine distance of each feature to its k nearest reals."""
        bank = self.realonly_bank
        _, dist = bank.bank.search(features, k, bank.use_exact(exact))
        return dist.astype(np.float64).mean(axis=1)
