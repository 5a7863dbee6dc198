"""``ufd-train``'s trainers by method: fit on gathered features, install, report.

Each trainer takes the open detector, the training and validation features
(:class:`~ufd.export.train.training_data.FeatureSets`) and the settings, puts
its result into the bundle and returns a line for the user. A new trainable
method adds one function here (and its training code in its own module).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ufd.export.train.training_data import FeatureSets
from ufd.runtime.bundle import MethodEntry
from ufd.runtime.bundle.update import write_manifest
from ufd.runtime.detector import Detector
from ufd.runtime.errors import UsageError
from ufd.runtime.methods import ScoreOptions

Progress = Callable[[dict], None]


@dataclass(frozen=True)
class TrainSettings:
    """What ``ufd-train`` was asked for."""

    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-4
    n_traces: int = 512
    augment: str = "paper"
    """``paper``, ``reupload`` or ``none`` (:mod:`ufd.export.train.augment`)."""
    views: int = 1
    seed: int = 0


def _counts(data: FeatureSets) -> dict[str, int]:
    return {
        "n_train_real": int((data.train_y == 0).sum()),
        "n_train_fake": int((data.train_y == 1).sum()),
        "n_val": len(data.val_y),
    }


def train_linear(
    detector: Detector, data: FeatureSets, settings: TrainSettings, progress: Progress
) -> str:
    """The UnivFD linear head, paper recipe (replaces the bundle's head)."""
    from ufd.export.train.head_install import install_head
    from ufd.export.train.linear import TrainingSummary, TrainOptions, train_linear_head

    options = TrainOptions(
        epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr, seed=settings.seed
    )
    result = train_linear_head(
        data.train_x, data.train_y, data.val_x, data.val_y, options, progress
    )
    summary = TrainingSummary(
        method="linear",
        **_counts(data),
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        best_val_acc=result.best_val_acc,
        final_lr=result.final_lr,
        augment=settings.augment,
        views=settings.views if settings.augment != "none" else 0,
        seed=settings.seed,
    )
    manifest = install_head(
        detector.bundle, "linear", result.linear, dataclasses.asdict(summary), data.val_x
    )
    error = manifest.method_provenance("linear")["training"]["max_abs_logit_error_onnx"]
    return (
        f"trained on {summary.n_train_real} real + {summary.n_train_fake} fake features; "
        f"best val acc {result.best_val_acc:.4f} at epoch {result.best_epoch}; "
        f"ONNX head matches torch within {error:.1e}. "
        "Threshold reset to 0.5: run ufd-calibrate next."
    )


def train_traces(
    detector: Detector, data: FeatureSets, settings: TrainSettings, progress: Progress
) -> str:
    """The natural-trace head (replaces the bundle's traces head)."""
    from ufd.export.train.head_install import install_head
    from ufd.export.train.traces import TracesOptions, train_traces_head

    options = TracesOptions(
        epochs=min(settings.epochs, 60),
        batch_size=settings.batch_size,
        n_traces=settings.n_traces,
        seed=settings.seed,
    )
    head, val_acc = train_traces_head(
        data.train_x, data.train_y, data.val_x, data.val_y, options, progress
    )
    training = {
        "method": "traces",
        "n_traces": options.n_traces,
        "tau": options.tau,
        **_counts(data),
        "val_acc": val_acc,
        "epochs": options.epochs,
        "seed": settings.seed,
    }
    manifest = install_head(detector.bundle, "traces", head, training, data.val_x)
    error = manifest.method_provenance("traces")["training"]["max_abs_logit_error_onnx"]
    return (
        f"natural-trace head: {options.n_traces} traces, val acc {val_acc:.4f}; ONNX matches "
        f"torch within {error:.1e}. Use ufd-detect --method traces; ufd-calibrate --method "
        "traces sets its threshold."
    )


def train_fused(
    detector: Detector, data: FeatureSets, settings: TrainSettings, progress: Progress
) -> str:
    """Weights combining the bundle's other methods, fitted on these labelled features."""
    from ufd.export.train.fusion import fit_fusion

    features = np.concatenate([data.train_x, data.val_x])
    labels = np.concatenate([data.train_y, data.val_y])
    methods = tuple(m for m in detector.methods.available() if m != "fused")
    if len(methods) < 2:
        raise UsageError(f"fusion needs two methods or more; this bundle has {', '.join(methods)}")
    measured = detector.methods.measure(methods, features, ScoreOptions())
    config, provenance = fit_fusion({m: measured[m].raw for m in methods}, labels)
    manifest = detector.bundle.manifest.with_method("fused", MethodEntry(config=config), provenance)
    write_manifest(detector.bundle.root, manifest)
    weights = ", ".join(
        f"{m} {w:+.2f}" for m, w in zip(config.methods, config.weights, strict=True)
    )
    return (
        f"fusion of {', '.join(methods)} fitted on {provenance['n_val']} labelled features "
        f"(weights on standardised scores: {weights}); accuracy {provenance['val_acc']:.4f}. "
        "Use ufd-detect --method fused. These features should be held out from the banks."
    )


def train_realonly(
    detector: Detector, data: FeatureSets, settings: TrainSettings, progress: Progress
) -> str:
    """The real-only density of the bank's reals, and a scorer chosen on these features.

    The given reals and fakes are all validation (held out from the bank): the
    k-NN distance, Gaussians of several subspace sizes and their combination are
    compared by average precision, and the best is kept.
    """
    from ufd.runtime.building.density import choose

    method = detector.methods.get("realonly")
    k = method.default_k()
    features = np.concatenate([data.train_x, data.val_x])
    labels = np.concatenate([data.train_y, data.val_y]) > 0.5
    choice = choose(
        method.bank.bank.vectors(),
        features[~labels],
        features[labels],
        lambda x: method.knn_distances(x, k, None),
    )
    manifest = detector.bundle.manifest
    entry = manifest.methods["realonly"]
    config = dataclasses.replace(
        entry.config, scorer=choice.scorer, z=list(choice.z) if choice.z else None, knn_k=k
    )
    files = {r: f for r, f in entry.files.items() if r != "density"}
    provenance = {
        **manifest.method_provenance("realonly"),
        "density": {
            "validation_ap": choice.validation_ap,
            "n_real": int((~labels).sum()),
            "n_fake": int(labels.sum()),
            "subspace": None if choice.model is None else len(choice.model.variances),
        },
    }
    from ufd.runtime.bundle.update import publish_file

    def change(m):
        return m.with_method("realonly", MethodEntry(files, None, None, config), provenance)

    if choice.model is None:
        write_manifest(detector.bundle.root, change(manifest))
    else:
        name = "realonly/density.npz"
        np.savez(detector.bundle.root / name, **choice.model.arrays())
        files["density"] = name
        publish_file(detector.bundle, name, None, change)
    aps = ", ".join(f"{k} {v:.3f}" for k, v in choice.validation_ap.items())
    return (
        f"realonly scorer: {choice.scorer} (validation AP: {aps}). Its threshold was reset: "
        "run ufd-calibrate --method realonly on held-out reals next."
    )


TRAINERS: dict[str, Callable[[Detector, FeatureSets, TrainSettings, Progress], str]] = {
    "linear": train_linear,
    "traces": train_traces,
    "realonly": train_realonly,
    "fused": train_fused,
}
"""``ufd-train --method`` choices; the first line of each docstring is its ``--help``."""


def trainers_help() -> str:
    """``--method`` help: each trainer's name and what it fits."""
    lines = {name: fn.__doc__.splitlines()[0].rstrip(".") for name, fn in TRAINERS.items()}
    return "; ".join(f"{name}: {line[0].lower()}{line[1:]}" for name, line in lines.items()) + "."
