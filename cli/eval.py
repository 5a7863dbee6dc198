"""``ufd-eval``: the paper's evaluation tables for any bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ufd.cli.common import fail, handle_errors, run, setup_logging, trust
from ufd.cli.options import (
    BatchSize,
    BundleDir,
    Fps,
    K,
    MaxFrames,
    Method,
    Precision,
    Provider,
    Threads,
    TrustKeys,
    Verbose,
    VideoRule,
)
from ufd.runtime.transforms import REUPLOAD_NAMES

app = typer.Typer(add_completion=False, rich_markup_mode=None)


def _numbers(text: str | None, kind: type) -> list:
    if not text:
        return []
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise fail(f"cannot read {text!r} as comma-separated numbers") from None


@app.command(
    help=(
        "Evaluate a bundle on test sets laid out as ROOT/<set>/0_real, ROOT/<set>/1_fake "
        "(or ROOT/<set>/<class>/0_real ...). Per set: AP, accuracy (real/fake/all) at the "
        "threshold, oracle best-threshold accuracy, ROC-AUC, TPR at 5 % FPR, counts; a mean "
        "row. A method with an unsure band (ufd-calibrate --target-fnr) adds the share "
        "called unsure; nn on a bank with sources named like the sets adds an attribution "
        "confusion matrix. A set may hold videos (pip install 'ufd[video]'): each counts as "
        "one input, scored from its sampled frames (--fps, --max-frames, --video-rule), and "
        "report.html plots p(generated) over time for it. Writes results.json, table.md and "
        "report.html to --out."
    )
)
@handle_errors
def evaluate(
    bundle: BundleDir,
    root: Annotated[Path, typer.Argument(help="Folder of test sets.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("eval-results"),
    method: Method = "linear",
    k: K = None,
    jpeg: Annotated[
        str | None, typer.Option(help="JPEG qualities to re-compress with, e.g. 95,75,50.")
    ] = None,
    blur: Annotated[str | None, typer.Option(help="Gaussian blur sigmas, e.g. 1,2.")] = None,
    stability: Annotated[
        bool,
        typer.Option(
            "--stability",
            help="Also score every image's re-upload views (" + ", ".join(REUPLOAD_NAMES) + ") "
            "and report per method and set how often the label flips, the mean and p95 of "
            "|Δscore|, and which view flips most.",
        ),
    ] = False,
    max_per_class: Annotated[
        int | None, typer.Option(min=1, help="Sample at most N per class (seeded).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    precision: Precision = None,
    provider: Provider = "auto",
    threads: Threads = None,
    batch_size: BatchSize = None,
    cache: Annotated[
        Path | None,
        typer.Option(help="Feature cache folder (default: $UFD_CACHE_DIR/features)."),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not cache features.")] = False,
    fps: Fps = 1.0,
    max_frames: MaxFrames = 32,
    video_rule: VideoRule = "mean",
    trust_key: TrustKeys = None,
    verbose: Verbose = 0,
) -> None:
    """Evaluate (see the command help)."""
    setup_logging(verbose)
    trust(trust_key)
    from ufd.runtime.cache import cache_dir
    from ufd.runtime.detector import Detector
    from ufd.runtime.evaluation.evaluate import EvalOptions
    from ufd.runtime.evaluation.run import condition_grid, load_sets, run_evaluation, write_reports
    from ufd.runtime.video.frames import VideoOptions
    from ufd.runtime.video.run import VideoRun

    video = VideoRun(VideoOptions(fps, max_frames), video_rule)  # checked before the bundle loads
    detector = Detector.open(bundle, precision=precision, provider=provider, threads=threads)
    methods, _ = detector.plan(method, k)
    sets = load_sets(root, max_per_class, seed)
    if max_per_class is not None:
        typer.echo(f"sampling at most {max_per_class} images per class (seed {seed})", err=True)
    for s in sets:
        typer.echo(f"  {s.name}: {len(s.real)} real, {len(s.fake)} fake", err=True)
    options = EvalOptions(
        methods=methods,
        k=k,
        conditions=condition_grid(_numbers(jpeg, int), _numbers(blur, float)),
        max_per_class=max_per_class,
        seed=seed,
        batch_size=batch_size,
        cache_root=None if no_cache else (cache or cache_dir("features")),
        video=video,
    )
    if stability:
        typer.echo(f"stability: scoring {len(REUPLOAD_NAMES)} re-upload views per image", err=True)
    evaluation = run_evaluation(detector, bundle, sets, options, stability)
    written = write_reports(evaluation, out)
    typer.echo((out / "table.md").read_text(encoding="utf-8"))
    typer.echo(
        f"wrote {out}/{', '.join(written)}; {len(evaluation.results['skipped'])} unreadable "
        "images skipped (listed in results.json)"
    )


def main() -> None:
    """Console-script entry point."""
    run(app)


if __name__ == "__main__":
    main()
