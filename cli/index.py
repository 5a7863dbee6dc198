"""``ufd-index``: build the nearest-neighbour bank of a bundle (UnivFD "NN")."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import typer

from ufd.cli.common import Skips, fail, handle_errors, named_paths, run, setup_logging, trust
from ufd.cli.options import (
    BatchSize,
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

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(
    help=(
        "Build the bundle's nearest-neighbour bank from folders of real and fake images "
        "(encoded with the bundle's encoder) and/or precomputed .npy features (one row per "
        "image). Name each generator (--fake NAME=DIR) and nn records say which one an "
        "image resembles (nn_source). Features are L2-normalised and indexed with usearch "
        "(cosine). Unreadable images are reported and skipped. Then: ufd-detect BUNDLE "
        "IMAGES --method nn --k 9."
    )
)
@handle_errors
def index(
    bundle: BundleDir,
    real: RealImages = None,
    fake: FakeImages = None,
    real_features: RealFeatures = None,
    fake_features: FakeFeatures = None,
    append: Annotated[bool, typer.Option(help="Add to the existing bank.")] = False,
    real_only: Annotated[
        bool,
        typer.Option(
            help="Build the bank of reals for --method realonly (no fakes needed); "
            "then ufd-calibrate --method realonly on other reals."
        ),
    ] = False,
    m: Annotated[
        int | None,
        typer.Option("--m", min=2, help="HNSW graph degree M (default: 16; 32 from 500k vectors)."),
    ] = None,
    ef_construction: Annotated[int, typer.Option(min=1, help="HNSW build-time ef.")] = 200,
    backend: Annotated[
        str,
        typer.Option(help="usearch (wheels everywhere, fp16/int8, memory-mapped) or hnswlib."),
    ] = "usearch",
    storage: Annotated[
        str | None,
        typer.Option(
            help="fp32, fp16 or int8 (an int8 graph in memory, a quarter of fp32, and fp32 "
            "rows on disk to re-rank its candidates). Default: fp32 below 100k vectors, int8 "
            "from there."
        ),
    ] = None,
    ef: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="HNSW query-time ef (recall vs speed), stored in the bundle. Default: the "
            "smallest of 64..1024 reaching recall@1 >= 0.99 and 99.9 % vote agreement.",
        ),
    ] = None,
    exact_below: Annotated[
        int, typer.Option(min=0, help="Search exactly (numpy) while the bank is smaller.")
    ] = 10_000,
    seed: Annotated[int, typer.Option(help="HNSW random seed.")] = 100,
    precision: FeaturePrecision = "fp32",
    provider: Provider = "auto",
    threads: Threads = None,
    batch_size: BatchSize = None,
    trust_key: TrustKeys = None,
    verbose: Verbose = 0,
) -> None:
    """Build the bank (see the command help)."""
    setup_logging(verbose)
    trust(trust_key)
    from ufd.runtime.building.banks import IndexOptions, build_index
    from ufd.runtime.detector import Detector
    from ufd.runtime.features.gather import gather_features

    if not (real or fake or real_features or fake_features):
        raise fail("nothing to index: pass --real/--fake folders or --real-/--fake-features")
    options = IndexOptions(  # checked before any image is encoded
        m=m,
        ef_construction=ef_construction,
        ef=ef,
        seed=seed,
        exact_below=exact_below,
        backend=backend,
        storage=storage,
    )
    detector = Detector.open(bundle, precision=precision, provider=provider, threads=threads)
    dim = detector.bundle.manifest.model.feature_dim
    skips = Skips()

    def gather(folders, files) -> dict[str, np.ndarray]:
        return gather_features(detector, folders, files, batch_size, skips)

    reals = gather([("real", p) for p in real or []], [("real", p) for p in real_features or []])
    real_bank = reals.get("real", np.zeros((0, dim), np.float32))
    fakes = gather(
        named_paths(fake, "fake", "--fake"), named_paths(fake_features, "fake", "--fake-features")
    )
    method = "realonly" if real_only else "nn"
    manifest = build_index(bundle, real_bank, fakes, options, append, precision, method=method)
    config = manifest.methods[method].config
    built = manifest.method_provenance(method)
    quality = built["quality"]
    typer.echo(
        f"indexed {config.counts['real']} real + {config.counts['fake']} fake features "
        f"({config.dim}-d, {config.backend} {config.storage}) in {built['build_seconds']:.1f} s; "
        f"{len(skips)} images skipped"
    )
    if len(config.sources) > 1 or config.sources != ("fake",):
        counts = built.get("source_counts", {})
        typer.echo("fake sources: " + ", ".join(f"{s} {counts.get(s, 0)}" for s in config.sources))
    if quality["recall_at_1"] is None:
        typer.echo("HNSW not checked against exact search: the bank is too small")
    else:
        typer.echo(
            f"HNSW vs exact on {quality['n_queries']} held-out queries: "
            f"recall@1 {quality['recall_at_1']:.4f}, recall@{quality['k']} "
            f"{quality['recall_at_k']:.4f}, vote agreement k=1 "
            f"{quality['vote_agreement_k1']:.2%}, "
            f"k={quality['k']} {quality['vote_agreement_k']:.2%}"
        )
    search = "exact" if sum(config.counts.values()) < config.exact_below else "HNSW"
    typer.echo(f"ufd-detect will search this bank with {search} search by default")


def main() -> None:
    """Console-script entry point."""
    run(app)


if __name__ == "__main__":
    main()
