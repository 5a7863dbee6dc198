"""``ufd-scan``: score a corpus into a Parquet dataset, locally or on Ray (``ufd[scale]``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ufd.cli.common import (
    EXIT_CODES_HELP,
    EXIT_OK,
    EXIT_SOME_FAILED,
    fail,
    handle_errors,
    run,
    setup_logging,
    trust,
)
from ufd.cli.options import (
    PRECISION_NAMES,
    Fps,
    GifAsVideo,
    K,
    Keyframes,
    MaxFrames,
    MaxPixels,
    Method,
    Progress,
    Provider,
    Threads,
    TrustKeys,
    Verbose,
    VideoRule,
    VideoTimeout,
    Views,
)
from ufd.runtime.io.policy import DEFAULT_MAX_PIXELS

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(
    help=(
        "Scan images into DIR, a Parquet dataset (one row per input, exactly ufd-detect's "
        "record fields; --features adds each image's feature vector). INPUTS are files, "
        "folders, globs or URIs (s3://, gs://... through pyarrow's filesystems); "
        "--from-list reads more from a text file (one per line) or a CSV/Parquet 'path' "
        "column. --engine local uses worker processes here; --engine ray runs Ray Data (a "
        "local Ray instance, or --address CLUSTER). Bad files get an error row; --resume "
        "continues a killed or finished scan without redoing any input. " + EXIT_CODES_HELP
    )
)
@handle_errors
def scan(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (on every worker).")],
    inputs: Annotated[list[str] | None, typer.Argument(help="Files, folders, globs, URIs.")] = None,
    out: Annotated[str, typer.Option("--out", "-o", help="Dataset folder or URI.")] = "",
    from_list: Annotated[
        Path | None, typer.Option(help="More inputs: .txt (one per line), .csv/.parquet 'path'.")
    ] = None,
    engine: Annotated[str, typer.Option(help="local (processes here) or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster: auto or ray://host:10001 (ray engine).")
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (local) or scoring actors (ray).")
    ] = 1,
    cpus_per_worker: Annotated[float, typer.Option(min=0.1, help="CPUs per actor (ray).")] = 1.0,
    gpus_per_worker: Annotated[float, typer.Option(min=0, help="GPUs per actor (ray).")] = 0.0,
    object_store_mb: Annotated[
        int | None, typer.Option(min=64, help="Cap on Ray's object store use for this scan.")
    ] = None,
    method: Method = "linear",
    k: K = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help=f"{PRECISION_NAMES}, on every worker. Default (auto): each "
            "worker takes the fastest graph that keeps the bundle's tolerance on its own host "
            "(measured once per host); each row names its graph (graph_precision)."
        ),
    ] = None,
    provider: Provider = "auto",
    threads: Threads = None,
    features: Annotated[bool, typer.Option(help="Also store each image's feature vector.")] = False,
    views: Views = 0,
    resume: Annotated[bool, typer.Option(help="Continue the scan in --out.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Empty --out first.")] = False,
    shard_rows: Annotated[int, typer.Option(min=1, help="Rows per Parquet shard.")] = 1024,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Images per encoder call.")] = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    max_image_mb: Annotated[
        float, typer.Option(min=0.001, help="Refuse remote objects larger than this (URIs).")
    ] = 256,
    progress: Progress = None,
    videos: Annotated[
        bool,
        typer.Option(
            "--videos",
            help="Videos are inputs too (folders take .mp4 .mov .webm .mkv .avi): one row each, "
            "scored from its sampled frames as ufd-detect does, with the video fields "
            "(frames, prob_mean, ..., timeline as JSON text). Needs pip install 'ufd[video]'.",
        ),
    ] = False,
    fps: Fps = 1.0,
    max_frames: MaxFrames = 32,
    keyframes: Keyframes = False,
    video_rule: VideoRule = "mean",
    video_timeout: VideoTimeout = 600.0,
    gif_as_video: GifAsVideo = False,
    trust_key: TrustKeys = None,
    verbose: Verbose = 0,
) -> None:
    """Scan (see the command help)."""
    setup_logging(verbose)
    trust(trust_key)
    from tqdm import tqdm

    from ufd.runtime.scan.engines import RayOptions
    from ufd.runtime.scan.run import plan_scan, run_scan
    from ufd.runtime.scan.sources import read_list
    from ufd.runtime.scan.stages import ScanSettings
    from ufd.runtime.video.frames import VideoOptions
    from ufd.runtime.video.run import VideoRun

    if not out:
        raise fail("give the output dataset folder with --out DIR")
    listed = read_list(from_list) if from_list else []
    if not inputs and not listed:
        raise fail("give images, folders, globs or URIs to scan (or --from-list FILE)")
    settings = ScanSettings(
        bundle=str(bundle.absolute()),
        method=method,
        k=k,
        precision=precision,
        provider=provider,
        threads=threads,
        features=features,
        max_pixels=max_pixels,
        max_bytes=int(max_image_mb * 2**20),
        batch_size=batch_size,
        views=views,
        video=VideoRun(
            VideoOptions(fps, max_frames, keyframes, timeout=video_timeout, max_pixels=max_pixels),
            video_rule,
            gifs=gif_as_video,
        )
        if videos
        else None,
    )
    plan = plan_scan(settings, engine, gpus_per_worker)
    bar = tqdm(
        unit="img", file=sys.stderr, disable=(not progress) if progress is not None else None
    )

    def started(totals) -> None:
        done = f" ({totals.done_before} done before)" if totals.done_before else ""
        typer.echo(f"{totals.inputs} inputs to scan{done}; graph: {totals.graph}", err=True)
        bar.reset(total=totals.inputs)

    ray = RayOptions(
        address, workers, cpus_per_worker, gpus_per_worker, object_store_mb=object_store_mb
    )
    with bar:
        totals = run_scan(
            plan,
            inputs or [],
            listed,
            out,
            engine=engine,
            workers=workers,
            ray=ray,
            shard_rows=shard_rows,
            resume=resume,
            overwrite=overwrite,
            on_start=started,
            on_shard=lambda result: bar.update(result["rows"]),
        )
    if totals.duplicates_removed:
        typer.echo(
            f"removed {totals.duplicates_removed} duplicate rows left by a killed run's workers",
            err=True,
        )
    for line in totals.skipped.lines() if verbose else ():
        typer.echo(line, err=True)
    left_out = f"; {totals.skipped.summary()}" if len(totals.skipped) else ""
    graphs = ", ".join(f"{n} by {p}" for p, n in sorted(totals.graphs.items()))
    typer.echo(
        f"{totals.scored} scored, {totals.failed} failed{left_out}, {totals.shards} shards in "
        f"{out} ({totals.rows / max(totals.seconds, 1e-9):.1f} images/s; rows in the dataset: "
        f"{graphs or 'none scored'})",
        err=True,
    )
    raise typer.Exit(EXIT_SOME_FAILED if totals.failed else EXIT_OK)


def main() -> None:
    """Console-script entry point."""
    run(app)


if __name__ == "__main__":
    main()
