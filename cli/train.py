"""``ufd-train``: fit the bundle's linear head on frozen features (the paper's recipe)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ufd.cli.common import Skips, fail, handle_errors, named_paths, run, setup_logging, trust
from ufd.cli.options import (
    BundleDir,
    FakeFeatures,
    FakeImages,
    FeaturePrecision,
    Provider,
    RealFeatures,
    RealImages,
    Threads,
    TrustKeys,
    Verbose,
)
from ufd.export.train.trainers import trainers_help

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(
    help=(
        "Fit a head on the frozen features of the bundle's encoder (UnivFD's CLIP, a "
        "probe's backbone, any detector ufd exports) and write it into the bundle. "
        "Recipe (--augment paper), in the bundle's own geometry, sizes and mean/std: resize "
        "(256 for a 224 crop), blur p=0.5 sigma~U[0,3], JPEG p=0.5 q~U[30,100], random crop "
        "(224), flip; a bundle that squashes or cuts the whole image into its own inputs "
        "does so after blur, JPEG and flip (--views augmented copies per image, cached); "
        "--augment reupload adds a platform's re-upload around it (crop 80-100 %, downscale "
        "0.5-1, WebP); AdamW lr 1e-4, batch 256, BCE; early stopping on validation "
        "accuracy, lr/10 on plateau until lr < 1e-6."
    )
)
@handle_errors
def train(
    bundle: BundleDir,
    real: RealImages = None,
    fake: FakeImages = None,
    real_features: RealFeatures = None,
    fake_features: FakeFeatures = None,
    val_real: Annotated[
        list[Path] | None, typer.Option(help="Real validation folder (repeatable).")
    ] = None,
    val_fake: Annotated[
        list[Path] | None, typer.Option(help="Fake validation folder (repeatable).")
    ] = None,
    val_split: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Held-out share without --val-* folders.")
    ] = 0.1,
    method: Annotated[str, typer.Option(help=trainers_help())] = "linear",
    n_traces: Annotated[int, typer.Option(min=1, help="Natural traces (traces).")] = 512,
    epochs: Annotated[int, typer.Option(min=1, help="Maximum epochs.")] = 100,
    batch_size: Annotated[int, typer.Option(min=1, help="Training batch size.")] = 256,
    lr: Annotated[float, typer.Option(help="Initial learning rate.")] = 1e-4,
    augment: Annotated[
        str,
        typer.Option(
            help="Training augmentation: paper (UnivFD's blur+JPEG recipe), reupload (the "
            "paper's plus crop, downscale and WebP, as platforms re-upload: recommended for "
            "deployment, see the README) or none."
        ),
    ] = "paper",
    no_augment: Annotated[
        bool, typer.Option("--no-augment", help="The same as --augment none.")
    ] = False,
    views: Annotated[int, typer.Option(min=1, help="Augmented copies per image.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed (split, augmentation, init, order).")] = 0,
    precision: FeaturePrecision = "fp32",
    provider: Provider = "auto",
    threads: Threads = None,
    encode_batch: Annotated[int, typer.Option(min=1, help="Images per encoder call.")] = 8,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not cache features.")] = False,
    trust_key: TrustKeys = None,
    verbose: Verbose = 0,
) -> None:
    """Train (see the command help)."""
    setup_logging(verbose)
    trust(trust_key)
    from ufd.export.train.augment import AUGMENTATIONS
    from ufd.export.train.trainers import TRAINERS, TrainSettings
    from ufd.export.train.training_data import (
        FeatureGatherer,
        Sources,
        check_both_classes,
        gather,
    )
    from ufd.runtime.cache import cache_dir
    from ufd.runtime.detector import Detector
    from ufd.runtime.io.feature_files import load_feature_file

    if method not in TRAINERS:
        raise fail(f"unknown --method {method!r}; use {', '.join(TRAINERS)}")
    augment = "none" if no_augment else augment
    if augment not in AUGMENTATIONS:
        raise fail(f"unknown --augment {augment!r}; use {', '.join(AUGMENTATIONS)}")
    if not (real or real_features) or not (fake or fake_features):
        raise fail("training needs both classes: --real/--real-features and --fake/--fake-features")
    detector = Detector.open(bundle, precision=precision, provider=provider, threads=threads)
    dim = detector.bundle.manifest.model.feature_dim
    gatherer = FeatureGatherer(
        detector, None if no_cache else cache_dir("features"), encode_batch, Skips()
    )
    fake = [path for _, path in named_paths(fake, "fake", "--fake")]
    fake_features = [path for _, path in named_paths(fake_features, "fake", "--fake-features")]
    sources = {
        name: Sources(folders, [load_feature_file(f, dim) for f in files], val)
        for name, folders, files, val in (
            ("real", real or [], real_features or [], val_real or []),
            ("fake", fake, fake_features, val_fake or []),
        )
    }
    typer.echo("encoding training and validation images (cached)...", err=True)
    data = gather(gatherer, sources["real"], sources["fake"], val_split, augment, views, seed)
    check_both_classes(data)
    settings = TrainSettings(epochs, batch_size, lr, n_traces, augment, views, seed)
    typer.echo(TRAINERS[method](detector, data, settings, _progress))


def _progress(row: dict) -> None:
    line = f"epoch {row['epoch']:3d}  loss {row['loss']:.4f}"
    if "val_acc" in row:
        line += f"  val acc {row['val_acc']:.4f}  lr {row['lr']:.0e}"
    typer.echo(line, err=True)


def main() -> None:
    """Console-script entry point."""
    run(app)


if __name__ == "__main__":
    main()
