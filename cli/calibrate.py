"""``ufd-calibrate``: set the decision threshold for a target false-positive rate."""

from __future__ import annotations

import dataclasses
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from tqdm import tqdm

from ufd.cli.common import BATCH_HELP, fail, handle_errors, setup_logging

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(
    help=(
        "Set a method's decision threshold from held-out REAL images so that the "
        "false-positive rate on reals is --target-fpr (a fixed 0.5 is biased towards "
        "'real' on unseen generators). ufd-detect then uses it by default. For realonly, "
        "the reals must not be in the real-only bank."
    )
)
@handle_errors
def calibrate(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    real: Annotated[list[Path], typer.Option(help="Folder of held-out real images.")] = [],  # noqa: B006
    real_features: Annotated[
        list[Path], typer.Option(help="Precomputed real features, .npy (N, D).")
    ] = [],  # noqa: B006
    target_fpr: Annotated[
        float, typer.Option(min=0.0, max=0.999, help="False-positive rate on reals.")
    ] = 0.05,
    method: Annotated[
        str, typer.Option(help="linear (p(fake)), traces (p(fake)) or realonly (distance).")
    ] = "linear",
    k: Annotated[int, typer.Option("--k", min=1, help="Nearest reals (realonly).")] = 5,
    precision: Annotated[str | None, typer.Option(help="Encoder precision.")] = None,
    provider: Annotated[str, typer.Option(help="auto, tensorrt, cuda or cpu.")] = "auto",
    batch_size: Annotated[int | None, typer.Option(min=1, help=BATCH_HELP)] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
) -> None:
    """Calibrate (see the command help)."""
    setup_logging(verbose)
    from ufd.export.bundle_update import write_manifest
    from ufd.export.index_build import encode_items
    from ufd.runtime.detector import Detector
    from ufd.runtime.inputs import expand_inputs, load_feature_file
    from ufd.runtime.manifest import CalibrationInfo
    from ufd.runtime.metrics import threshold_for_fpr

    if method not in ("linear", "traces", "realonly"):
        raise fail(f"unknown --method {method!r}; use linear, traces or realonly")
    if not (real or real_features):
        raise fail("pass held-out real images with --real DIR (or --real-features X.npy)")
    detector = Detector.open(bundle, precision=precision, provider=provider)
    detector.methods.check((method,), k if method == "realonly" else None, need_thresholds=False)
    dim = detector.bundle.manifest.model.feature_dim
    parts = [load_feature_file(f, dim) for f in real_features]
    if real:
        items = list(expand_inputs(real))
        with tqdm(total=len(items), unit="img", file=sys.stderr, desc="encoding reals") as bar:
            skip = lambda p, why: typer.echo(f"skipped {p}: {why}", err=True)  # noqa: E731
            parts.append(encode_items(detector, items, batch_size, skip, bar.update))
    features = np.concatenate(parts)
    if len(features) < 20:
        raise fail(f"only {len(features)} real images: use at least 20 (hundreds are better)")
    scores = _scores(detector, method, features, k)
    threshold, achieved = threshold_for_fpr(scores, target_fpr)
    manifest = detector.bundle.manifest
    info = CalibrationInfo(
        method=method,
        target_fpr=target_fpr,
        achieved_fpr=achieved,
        n_real=len(scores),
        threshold=threshold,
        created_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        k=k if method == "realonly" else None,
    )
    changes: dict = {"calibrations": {**manifest.calibrations, method: info}}
    if method == "linear":
        changes["threshold"] = threshold
    else:
        changes["method_thresholds"] = {**manifest.method_thresholds, method: threshold}
    write_manifest(detector.bundle.root, dataclasses.replace(manifest, **changes))
    typer.echo(
        f"{method} threshold {threshold:.6f}: FPR {achieved:.2%} on {len(scores)} reals "
        f"(target {target_fpr:.2%}); ufd-detect --method {method} uses it by default"
    )


def _scores(detector, method: str, features: np.ndarray, k: int) -> np.ndarray:
    """Higher = more fake, on the scale the method's threshold applies to."""
    from ufd.runtime.records import sigmoid

    raw = detector.methods.raw_scores((method,), features, k, None)[method]
    if method == "realonly":
        return raw  # a distance
    return np.array([sigmoid(float(x)) for x in raw])  # logits -> p(fake)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
