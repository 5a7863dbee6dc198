"""``ufd-scan``: score a corpus into a Parquet dataset, locally or on Ray (``ufd[scale]``)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from ufd.cli.common import fail, handle_errors, methods_help, provider_help, setup_logging
from ufd.runtime.io.decode import DEFAULT_MAX_PIXELS

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(
    help=(
        "Scan images into DIR, a Parquet dataset (one row per input, exactly ufd-detect's "
        "record fields; --features adds each image's feature vector). INPUTS are files, "
        "folders, globs or URIs (s3://, gs://... through pyarrow's filesystems); "
        "--from-list reads more from a text file (one per line) or a CSV/Parquet 'path' "
        "column. --engine local uses worker processes here; --engine ray runs Ray Data (a "
        "local Ray instance, or --address CLUSTER). Bad files get an error row; --resume "
        "continues a killed or finished scan without redoing any input."
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
    method: Annotated[str, typer.Option(help=methods_help())] = "linear",
    k: Annotated[int | None, typer.Option("--k", min=1, help="Neighbours (k-NN methods).")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32, fp16 or int8.")] = None,
    provider: Annotated[str, typer.Option(help=provider_help())] = "auto",
    threads: Annotated[
        int | None, typer.Option(min=1, help="onnxruntime threads per worker (default: its CPUs).")
    ] = None,
    features: Annotated[bool, typer.Option(help="Also store each image's feature vector.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue the scan in --out.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Empty --out first.")] = False,
    shard_rows: Annotated[int, typer.Option(min=1, help="Rows per Parquet shard.")] = 1024,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Images per encoder call.")] = None,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Refuse images with more decoded pixels.")
    ] = DEFAULT_MAX_PIXELS,
    max_image_mb: Annotated[
        float, typer.Option(min=0.001, help="Refuse remote objects larger than this (URIs).")
    ] = 256,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="Progress bar (default: TTY).")
    ] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
) -> None:
    """Scan (see the command help)."""
    setup_logging(verbose)
    from tqdm import tqdm

    from ufd.runtime.bundle import Bundle
    from ufd.runtime.methods import MethodSet, ScoreOptions
    from ufd.runtime.providers import PROVIDERS
    from ufd.runtime.scan.dataset import prepare_output, remove_duplicates, scan_settings_record
    from ufd.runtime.scan.engines import RayOptions, run_local, run_ray
    from ufd.runtime.scan.sources import expand_sources, read_list
    from ufd.runtime.scan.stages import ScanSettings

    if not out:
        raise fail("give the output dataset folder with --out DIR")
    if engine not in ("local", "ray"):
        raise fail(f"unknown --engine {engine!r}; use local or ray")
    listed = read_list(from_list) if from_list else []
    if not inputs and not listed:
        raise fail("give images, folders, globs or URIs to scan (or --from-list FILE)")
    opened = Bundle.open(bundle)
    methods = MethodSet(opened, PROVIDERS["cpu"]).resolve(method)
    MethodSet(opened, PROVIDERS["cpu"]).check(methods, ScoreOptions(k), need_threshold=True)
    precision_used = precision or PROVIDERS["cpu"].best_precision(opened.manifest.precisions)
    if threads is None and engine == "local":
        threads = max(1, (os.cpu_count() or 1) // workers)
    settings = ScanSettings(
        bundle=str(bundle.absolute()), method=",".join(methods), k=k, precision=precision,
        provider=provider, threads=threads, features=features, max_pixels=max_pixels,
        max_bytes=int(max_image_mb * 2**20), batch_size=batch_size,
    )  # fmt: skip
    encoder_sha = opened.manifest.files[opened.manifest.encoder(precision_used).file].sha256
    record = scan_settings_record(settings, methods, encoder_sha)
    run, done = prepare_output(out, record, resume, overwrite)
    items, seen = [], set(done)
    for item in expand_sources(inputs or [], listed):
        if item.path not in seen:  # each input once, whatever the inputs repeat
            seen.add(item.path)
            items.append(item)
    typer.echo(f"{len(items)} inputs to scan" + (f" ({len(done)} done before)" if done else ""),
               err=True)  # fmt: skip
    totals = {"rows": 0, "failed": 0, "shards": 0}
    bar = tqdm(total=len(items), unit="img", file=sys.stderr,
               disable=(not progress) if progress is not None else None)  # fmt: skip

    def on_shard(result: dict) -> None:
        totals["rows"] += result["rows"]
        totals["failed"] += result["failed"]
        totals["shards"] += 1
        bar.update(result["rows"])

    started = time.perf_counter()
    with bar:
        if engine == "local":
            run_local(items, settings, out, run, shard_rows, workers, on_shard)
        else:
            options = RayOptions(address, workers, cpus_per_worker, gpus_per_worker,
                                 object_store_mb=object_store_mb)  # fmt: skip
            run_ray(items, settings, out, run, shard_rows, options, on_shard)
    elapsed = time.perf_counter() - started
    duplicates = remove_duplicates(out)
    if duplicates:
        typer.echo(f"removed {duplicates} duplicate rows left by a killed run's workers", err=True)
    scored = totals["rows"] - totals["failed"]
    typer.echo(
        f"{scored} scored, {totals['failed']} failed, {totals['shards']} shards in {out} "
        f"({totals['rows'] / max(elapsed, 1e-9):.1f} images/s)",
        err=True,
    )
    raise typer.Exit(1 if totals["failed"] else 0)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
