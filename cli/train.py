"""``ufd-train``: fit the bundle's linear head on frozen features (the paper's recipe)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from ufd.cli.common import fail, handle_errors, setup_logging

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(
    help=(
        "Train the UnivFD linear head on frozen CLIP features and write it into the bundle. "
        "Recipe: resize 256, blur p=0.5 sigma~U[0,3], JPEG p=0.5 q~U[30,100], random crop "
        "224, flip (--views augmented copies per image, cached); AdamW lr 1e-4, batch 256, "
        "BCE; early stopping on validation accuracy, lr/10 on plateau until lr < 1e-6."
    )
)
@handle_errors
def train(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    real: Annotated[list[Path], typer.Option(help="Real training images (folder).")] = [],  # noqa: B006
    fake: Annotated[list[Path], typer.Option(help="Fake training images (folder).")] = [],  # noqa: B006
    real_features: Annotated[
        list[Path], typer.Option(help="Precomputed real features .npy (N, D).")
    ] = [],  # noqa: B006
    fake_features: Annotated[
        list[Path], typer.Option(help="Precomputed fake features .npy (N, D).")
    ] = [],  # noqa: B006
    val_real: Annotated[list[Path], typer.Option(help="Real validation folder.")] = [],  # noqa: B006
    val_fake: Annotated[list[Path], typer.Option(help="Fake validation folder.")] = [],  # noqa: B006
    val_split: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Held-out share without --val-* folders.")
    ] = 0.1,
    method: Annotated[
        str,
        typer.Option(
            help="linear (UnivFD head), traces (natural-trace head) or fused (weights "
            "combining the bundle's methods, fitted on these labelled images)."
        ),
    ] = "linear",
    n_traces: Annotated[int, typer.Option(min=1, help="Natural traces (traces).")] = 128,
    epochs: Annotated[int, typer.Option(min=1, help="Maximum epochs.")] = 100,
    batch_size: Annotated[int, typer.Option(min=1, help="Training batch size.")] = 256,
    lr: Annotated[float, typer.Option(help="Initial learning rate.")] = 1e-4,
    augment: Annotated[
        bool, typer.Option("--augment/--no-augment", help="Paper's augmentation.")
    ] = True,
    views: Annotated[int, typer.Option(min=1, help="Augmented copies per image.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed (split, augmentation, init, order).")] = 0,
    precision: Annotated[str, typer.Option(help="Encoder precision for features.")] = "fp32",
    provider: Annotated[str, typer.Option(help="auto, tensorrt, cuda or cpu.")] = "auto",
    encode_batch: Annotated[int, typer.Option(min=1, help="Images per encoder call.")] = 8,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not cache features.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
) -> None:
    """Train (see the command help)."""
    setup_logging(verbose)
    from ufd.export.head_install import install_linear_head
    from ufd.export.heads import cache_dir
    from ufd.export.train import TrainOptions, train_linear_head
    from ufd.export.training_data import FeatureGatherer, Sources, gather
    from ufd.runtime.detector import Detector
    from ufd.runtime.inputs import load_feature_file
    from ufd.runtime.manifest import TrainingSummary

    if method not in ("linear", "traces", "fused"):
        raise fail(f"unknown --method {method!r}; use linear, traces or fused")
    if not (real or real_features) or not (fake or fake_features):
        raise fail("training needs both classes: --real/--real-features and --fake/--fake-features")
    detector = Detector.open(bundle, precision=precision, provider=provider)
    dim = detector.bundle.manifest.model.feature_dim
    gatherer = FeatureGatherer(
        detector,
        None if no_cache else cache_dir() / "features",
        encode_batch,
        lambda path, why: typer.echo(f"skipped {path}: {why}", err=True),
    )
    sources = {
        name: Sources(folders, [load_feature_file(f, dim) for f in files], val)
        for name, folders, files, val in (
            ("real", real, real_features, val_real),
            ("fake", fake, fake_features, val_fake),
        )
    }
    typer.echo("encoding training and validation images (cached)...", err=True)
    data = gather(gatherer, sources["real"], sources["fake"], val_split, augment, views, seed)
    if len(data.val_x) == 0 or len(set(data.val_y.tolist())) < 2:
        raise fail("validation needs both classes: raise --val-split or pass --val-real/--val-fake")
    if method == "traces":
        _train_traces(detector, data, epochs, batch_size, n_traces, seed)
        return
    if method == "fused":
        _fit_fusion(detector, np.concatenate([data.train_x, data.val_x]),
                    np.concatenate([data.train_y, data.val_y]))  # fmt: skip
        return
    options = TrainOptions(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    result = train_linear_head(
        data.train_x,
        data.train_y,
        data.val_x,
        data.val_y,
        options,
        lambda r: typer.echo(
            f"epoch {r['epoch']:3d}  loss {r['loss']:.4f}  val acc {r['val_acc']:.4f}  "
            f"lr {r['lr']:.0e}",
            err=True,
        ),
    )
    summary = TrainingSummary(
        method="linear",
        n_train_real=int((data.train_y == 0).sum()),
        n_train_fake=int((data.train_y == 1).sum()),
        n_val=len(data.val_y),
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        best_val_acc=result.best_val_acc,
        final_lr=result.final_lr,
        augment=augment,
        views=views if augment else 0,
        seed=seed,
        max_abs_logit_error_onnx=0.0,
    )
    manifest = install_linear_head(detector.bundle, result.linear, summary, data.val_x)
    typer.echo(
        f"trained on {summary.n_train_real} real + {summary.n_train_fake} fake features; "
        f"best val acc {result.best_val_acc:.4f} at epoch {result.best_epoch}; "
        f"ONNX head matches torch within {manifest.training.max_abs_logit_error_onnx:.1e}. "
        "Threshold reset to 0.5: run ufd-calibrate next."
    )


def _fit_fusion(detector, features: np.ndarray, labels: np.ndarray) -> None:
    import dataclasses

    from ufd.export.bundle_update import write_manifest
    from ufd.export.fusion import fit_fusion

    methods = tuple(m for m in detector.methods.available() if m != "fused")
    if len(methods) < 2:
        raise fail(f"fusion needs two methods or more; this bundle has {', '.join(methods)}")
    scores = detector.methods.raw_scores(methods, features, None, None)
    fusion = fit_fusion(scores, labels)
    manifest = detector.bundle.manifest
    thresholds = {k: v for k, v in manifest.method_thresholds.items() if k != "fused"}
    write_manifest(
        detector.bundle.root,
        dataclasses.replace(manifest, fusion=fusion, method_thresholds=thresholds),
    )
    weights = ", ".join(
        f"{m} {w:+.2f}" for m, w in zip(fusion.methods, fusion.weights, strict=True)
    )
    typer.echo(
        f"fusion of {', '.join(methods)} fitted on {fusion.n_val} labelled features "
        f"(weights on standardised scores: {weights}); accuracy {fusion.val_acc:.4f}. "
        "Use ufd-detect --method fused. These features should be held out from the banks."
    )


def _train_traces(detector, data, epochs: int, batch_size: int, n_traces: int, seed: int) -> None:
    from ufd.export.head_install import install_traces_head
    from ufd.export.traces import TracesOptions, train_traces_head
    from ufd.runtime.manifest import TracesInfo

    options = TracesOptions(
        epochs=min(epochs, 60), batch_size=batch_size, n_traces=n_traces, seed=seed
    )
    head, val_acc = train_traces_head(
        data.train_x,
        data.train_y,
        data.val_x,
        data.val_y,
        options,
        lambda r: typer.echo(f"epoch {r['epoch']:3d}  loss {r['loss']:.4f}", err=True),
    )
    info = TracesInfo(
        file="",
        n_traces=n_traces,
        tau=options.tau,
        n_train_real=int((data.train_y == 0).sum()),
        n_train_fake=int((data.train_y == 1).sum()),
        n_val=len(data.val_y),
        val_acc=val_acc,
        epochs=options.epochs,
        seed=seed,
        max_abs_logit_error_onnx=0.0,
    )
    manifest = install_traces_head(detector.bundle, head, info, data.val_x)
    typer.echo(
        f"natural-trace head: {n_traces} traces, val acc {val_acc:.4f}; ONNX matches torch "
        f"within {manifest.traces.max_abs_logit_error_onnx:.1e}. Use ufd-detect --method "
        "traces; ufd-calibrate --method traces sets its threshold."
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
