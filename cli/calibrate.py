"""``ufd-calibrate``: set a method's decision threshold for a target false-positive rate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from tqdm import tqdm

from ufd.cli.common import BATCH_HELP, fail, handle_errors, provider_help, setup_logging

app = typer.Typer(add_completion=False, rich_markup_mode=None)


def _calibratable() -> str:
    from ufd.runtime.methods import REGISTRY

    return ", ".join(name for name, cls in REGISTRY.items() if cls.calibratable)


@app.command(
    help=(
        "Set a method's decision threshold from held-out REAL images so that the "
        "false-positive rate on reals is --target-fpr (a fixed 0.5 is biased towards "
        "'real' on unseen generators). ufd-detect then uses it by default. For realonly, "
        "the reals must not be in the real-only bank; its --k is stored as its default."
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
        str, typer.Option(help=f"The method to calibrate: {_calibratable()}.")
    ] = "linear",
    k: Annotated[int, typer.Option("--k", min=1, help="Nearest reals (k-NN methods).")] = 5,
    precision: Annotated[str | None, typer.Option(help="Encoder precision.")] = None,
    provider: Annotated[str, typer.Option(help=provider_help())] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, help="onnxruntime threads.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help=BATCH_HELP)] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
) -> None:
    """Calibrate (see the command help)."""
    setup_logging(verbose)
    from ufd.runtime.detector import Detector
    from ufd.runtime.io.inputs import expand_inputs, load_feature_file
    from ufd.runtime.methods import ScoreOptions, method_class
    from ufd.runtime.tools.calibrate import calibrate as calibrate_method
    from ufd.runtime.tools.index_build import encode_items

    if not (real or real_features):
        raise fail("pass held-out real images with --real DIR (or --real-features X.npy)")
    uses_k = method_class(method).uses_k
    detector = Detector.open(bundle, precision=precision, provider=provider, threads=threads)
    detector.methods.check((method,), ScoreOptions(k if uses_k else None), need_threshold=False)
    dim = detector.bundle.manifest.model.feature_dim
    parts = [load_feature_file(f, dim) for f in real_features]
    if real:
        items = list(expand_inputs(real))
        with tqdm(total=len(items), unit="img", file=sys.stderr, desc="encoding reals") as bar:
            skip = lambda p, why: typer.echo(f"skipped {p}: {why}", err=True)  # noqa: E731
            parts.append(encode_items(detector, items, batch_size, skip, bar.update))
    manifest = calibrate_method(detector, method, np.concatenate(parts), target_fpr, k)
    info = manifest.methods[method].calibration
    typer.echo(
        f"{method} threshold {info.threshold:.6f}: FPR {info.achieved_fpr:.2%} on "
        f"{info.n_real} reals (target {target_fpr:.2%}); ufd-detect --method {method} uses it "
        "by default"
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
