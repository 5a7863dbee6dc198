"""``realonly``: distance from real images only (Detecting Generated Images by Real Images Only).

Scores (``config.scorer``), higher = less like the reals:

* ``knn``: mean cosine distance to the k nearest features of a bank of reals
  (``ufd-index --real-only``);
* ``gaussian``: the Mahalanobis distance of a Gaussian in the reals' principal
  subspace plus the residual outside it (:mod:`ufd.runtime.methods.density`; fitted
  by :mod:`ufd.runtime.building.density`);
* ``combined``: the larger z-score of the two.

``ufd-train --method realonly`` fits the density and chooses the scorer on
held-out reals and seen fakes; ``ufd-calibrate --method realonly`` sets the
threshold for a target false-positive rate on held-out reals (and stores the k it
used, the default from then on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ufd.runtime.errors import BundleError
from ufd.runtime.methods.banks import BankConfig
from ufd.runtime.methods.base import Columns, Measured, ScoreOptions, labels
from ufd.runtime.methods.density import GaussianModel, combined
from ufd.runtime.methods.nn import BankMethod
from ufd.runtime.registry import register


@dataclass(frozen=True)
class RealOnlyConfig(BankConfig):
    """The real bank, and how the score is made from it (and from the density file)."""

    scorer: Literal["knn", "gaussian", "combined"] = "knn"
    z: list[float] | None = None
    """``combined``: mean and sd of the k-NN and Gaussian scores on held-out reals."""
    knn_k: int | None = None
    """``combined``: the k its k-NN z-score was measured with."""


@register
class RealOnly(BankMethod):
    """Far from every real image = generated, whatever the generator."""

    name = "realonly"
    summary = "realonly (distance to real features, ufd-index --real-only + ufd-calibrate)"
    fields = ("realonly_score", "realonly_label")
    table_columns = (("realonly_label", "ronly", 6), ("realonly_score", "d_reals", 8))
    config_type = RealOnlyConfig
    default_threshold = None
    missing_hint = "build its bank with ufd-index BUNDLE --real-only --real DIR"

    def load(self) -> None:
        """Load the bank, and the density model when the scorer uses it."""
        super().load()
        self.density = None
        if self.config.scorer != "knn":
            name = self.entry.files.get("density")
            if name is None:
                raise BundleError("the realonly density file is missing; run ufd-train again")
            with np.load(self.bundle.verified_path(name, self.context.verify)) as arrays:
                self.density = GaussianModel.from_arrays(arrays)

    def _density(self) -> GaussianModel:
        """The density model (loaded with the method whenever its scorer uses one)."""
        if self.density is None:
            raise BundleError("the realonly density model is not loaded; run ufd-train again")
        return self.density

    def knn_distances(self, features: np.ndarray, k: int, exact: bool | None) -> np.ndarray:
        """Mean cosine distance to the k nearest reals."""
        bank = self.bank
        _, dist = bank.bank.search(features, k, bank.use_exact(exact))
        mean: np.ndarray = np.asarray(dist, np.float64).mean(axis=1)
        return mean

    def measure(self, features: np.ndarray, options: ScoreOptions) -> Measured:
        """Raw and score: the configured real-only distance."""
        scorer = self.config.scorer
        if scorer == "gaussian":
            score = self._density().score(features)
        elif scorer == "combined":
            k = options.k or self.config.knn_k or self.default_k()
            knn = self.knn_distances(features, k, options.exact)
            score = combined(knn, self._density().score(features), self.config.z)
        else:
            score = self.knn_distances(features, self.k(options), options.exact)
        return Measured(raw=score, score=score)

    def columns(self, measured: Measured, is_fake: np.ndarray) -> Columns:
        """``realonly_score``, ``realonly_label``."""
        return {
            "realonly_score": [float(d) for d in measured.score],
            "realonly_label": labels(is_fake),
        }
