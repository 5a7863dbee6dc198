"""``ufd-calibrate``: set a method's decision threshold for a target false-positive rate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from ufd.cli.common import Skips, fail, handle_errors, named_paths, run, setup_logging, trust
from ufd.cli.options import (
    BatchSize,
    BundleDir,
    FakeFeatures,
    FakeImages,
    Precision,
    Provider,
    RealFeatures,
    RealImages,
    Threads,
    TrustKeys,
    Verbose,
)

app = typer.Typer(add_completion=False, rich_markup_mode=None)


def _calibratable() -> str:
    from ufd.runtime.registry import registered

    return ", ".join(name for name, cls in registered().items() if cls.calibratable)


@app.command(
    help=(
        "Set a method's decision threshold from held-out REAL images so that the "
        "false-positive rate on reals is --target-fpr (a fixed 0.5 is biased towards "
        "'real' on unseen generators). ufd-detect then uses it by default. With held-out "
        "FAKE images and --target-fnr too, also set an unsure band: 'real' only where at "
        "most that share of fakes would be missed, 'unsure' between the two thresholds. "
        "For realonly, the reals must not be in the real-only bank; its --k is stored as "
        "its default. For nn (open-set attribution), held-out fakes of the bank's sources "
        "set the distance beyond which a fake vote names 'unknown' (--unknown-rate)."
    )
)
@handle_errors
def calibrate(
    bundle: BundleDir,
    real: RealImages = None,
    real_features: RealFeatures = None,
    fake: FakeImages = None,
    fake_features: FakeFeatures = None,
    target_fpr: Annotated[
        float, typer.Option(min=0.0, max=0.999, help="False-positive rate on reals.")
    ] = 0.05,
    target_fnr: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=0.999,
            help="Miss rate allowed on the held-out fakes: sets the unsure band. Without "
            "it, no band (and a band set before is removed).",
        ),
    ] = None,
    unknown_rate: Annotated[
        float,
        typer.Option(
            min=0.0, max=0.999, help="nn: share of known-source fakes allowed to be 'unknown'."
        ),
    ] = 0.05,
    method: Annotated[
        str, typer.Option(help=f"The method to calibrate: {_calibratable()}; nn: its open set.")
    ] = "linear",
    k: Annotated[int, typer.Option("--k", min=1, help="Nearest reals (k-NN methods).")] = 5,
    precision: Precision = None,
    provider: Provider = "auto",
    threads: Threads = None,
    batch_size: BatchSize = None,
    trust_key: TrustKeys = None,
    verbose: Verbose = 0,
) -> None:
    """Calibrate (see the command help)."""
    setup_logging(verbose)
    trust(trust_key)
    from ufd.runtime.building.calibrate import calibrate as calibrate_method
    from ufd.runtime.building.calibrate import calibrate_open_set
    from ufd.runtime.detector import Detector
    from ufd.runtime.features.gather import gather_features, pooled
    from ufd.runtime.methods import ScoreOptions, method_class

    if method == "nn":
        if not (fake or fake_features):
            raise fail("nn calibrates open-set attribution: pass held-out fakes with --fake DIR")
    elif not (real or real_features):
        raise fail("pass held-out real images with --real DIR (or --real-features X.npy)")
    if target_fnr is not None and not (fake or fake_features):
        raise fail("--target-fnr needs held-out fakes: --fake DIR (or --fake-features F.npy)")
    uses_k = method_class(method).uses_k
    detector = Detector.open(bundle, precision=precision, provider=provider, threads=threads)
    dim = detector.bundle.manifest.model.feature_dim

    skips = Skips()

    def features(folders: list[tuple[str, Path]], files: list[tuple[str, Path]]) -> np.ndarray:
        return pooled(gather_features(detector, folders, files, batch_size, skips), dim)

    fakes = features(
        named_paths(fake, "fake", "--fake"), named_paths(fake_features, "fake", "--fake-features")
    )
    if method == "nn":
        manifest = calibrate_open_set(detector, fakes, unknown_rate)
        info = manifest.method_provenance("nn")["open_set"]
        typer.echo(
            f"nn open set: a fake vote farther than {info['unknown_beyond']:.6f} from every "
            f"fake names 'unknown' ({info['achieved_unknown_rate']:.2%} of {len(fakes)} "
            f"held-out fakes, target {unknown_rate:.2%})"
        )
        return
    detector.methods.check((method,), ScoreOptions(k if uses_k else None), need_threshold=False)
    reals = features([("real", p) for p in real or []], [("real", p) for p in real_features or []])
    manifest = calibrate_method(
        detector, method, reals, target_fpr, k, fakes if len(fakes) else None, target_fnr
    )
    info = manifest.methods[method].calibration
    typer.echo(
        f"{method} threshold {info.threshold:.6f}: FPR {info.achieved_fpr:.2%} on "
        f"{info.n_real} reals (target {target_fpr:.2%}); ufd-detect --method {method} uses it "
        "by default"
    )
    if info.real_below is not None:
        typer.echo(
            f"{method} unsure band ({info.real_below:.6f}, {info.threshold:.6f}]: misses "
            f"{info.achieved_fnr:.2%} of {info.n_fake} fakes (target {target_fnr:.2%}); "
            f"labels are now real, unsure or fake"
        )


def main() -> None:
    """Console-script entry point."""
    run(app)


if __name__ == "__main__":
    main()
