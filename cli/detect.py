"""``ufd-detect``: score images with a bundle. Runtime only: never imports torch."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated

import typer
from tqdm import tqdm

from ufd.cli.common import (
    BATCH_HELP,
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    fail,
    handle_errors,
    methods_help,
    provider_help,
    run,
    setup_logging,
)
from ufd.runtime.detector import Detector
from ufd.runtime.io.decode import DEFAULT_MAX_PIXELS
from ufd.runtime.io.inputs import Skipped, expand_inputs, load_feature_file
from ufd.runtime.io.writers import FORMATS, done_paths, format_from_suffix, make_writer
from ufd.runtime.methods import ScoreOptions

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(
    help=(
        "Score images with a ufd bundle: one record per input, in input order: path, the "
        "fields of each --method (linear: logit, prob = p(fake), label; nn: nn_score, "
        "nn_label, nn_dist_real, nn_dist_fake; ...), error. INPUTS are files, directories "
        "(recursive, image "
        "extensions) or glob patterns. Files that cannot be read get an error record; the "
        "run goes on (--strict: stops). Records are flushed per batch; --resume continues a "
        "killed run. " + EXIT_CODES_HELP
    )
)
@handle_errors
def detect(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory made by ufd-export.")],
    inputs: Annotated[
        list[str] | None, typer.Argument(help="Image files, directories or globs.")
    ] = None,
    method: Annotated[str, typer.Option(help=methods_help())] = "linear",
    features: Annotated[
        Path | None,
        typer.Option(help="Score precomputed features (.npy, one row per image), no encoder."),
    ] = None,
    k: Annotated[
        int | None,
        typer.Option(
            "--k", min=1, help="Neighbours: nn vote (default 1), realonly (default: calibrated)."
        ),
    ] = None,
    exact: Annotated[
        bool | None,
        typer.Option(
            "--exact/--hnsw",
            help="NN search: exact (brute force) or HNSW. Default: by bank size (shown).",
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(help="fp32, fp16 or int8. Default: fastest in the bundle for the provider."),
    ] = None,
    provider: Annotated[str, typer.Option(help=provider_help())] = "auto",
    threads: Annotated[
        int | None, typer.Option(min=1, help="onnxruntime intra-op threads (every session).")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="linear: fake when p(fake) > threshold. Default: the bundle's."
        ),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help=BATCH_HELP)] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="table, jsonl or csv. Default: from --output's extension, else table.",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write records here (default stdout).")
    ] = None,
    decode_workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Threads decoding images ahead of the encoder (default: the provider's: "
            "0 on the CPU, 1 on a GPU).",
        ),
    ] = None,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Refuse images with more decoded pixels than this.")
    ] = DEFAULT_MAX_PIXELS,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar on stderr (default: TTY)."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(help="Skip inputs already in --output (jsonl/csv) and append the rest."),
    ] = False,
    strict: Annotated[bool, typer.Option(help="Stop at the first input that fails.")] = False,
    provenance: Annotated[
        bool,
        typer.Option(
            help="Also report what each file says about its origin (C2PA, IPTC/XMP digital "
            "source type, generator metadata) in a 'provenance' field; never changes a score."
        ),
    ] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
) -> None:
    """Run detection (see the command help)."""
    setup_logging(verbose, quiet)
    fmt = fmt or format_from_suffix(output)
    if fmt not in FORMATS:
        raise fail(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
    detector = Detector.open(
        bundle,
        precision=precision,
        provider=provider,
        threads=threads,
        threshold=threshold,
        max_pixels=max_pixels,
        decode_workers=decode_workers,
        provenance=provenance,
    )
    methods, options = detector.plan(method, k, exact)
    if not quiet:
        _describe_search(detector, methods, options)
    if features is not None:
        _score_feature_file(detector, features, methods, options, fmt, output)
        return
    if not inputs:
        raise fail("give images, folders or globs to score (or --features X.npy)")
    skipped = Skipped()
    items = list(expand_inputs(inputs, skipped))
    done: set[str] = set()
    if resume:
        if output is None:
            raise fail("--resume needs --output FILE (the file a previous run wrote)")
        done = done_paths(output, fmt)
        todo = [item for item in items if item.path not in done]
        if not quiet:
            typer.echo(f"resuming: {len(items) - len(todo)} inputs already in {output}", err=True)
        items = todo
    counts = _Counts()
    with _open_output(output, append=bool(done)) as stream:
        writer = make_writer(fmt, stream, methods, appending=bool(done), provenance=provenance)
        bar = tqdm(
            total=len(items),
            unit="img",
            file=sys.stderr,
            disable=(not progress) if progress is not None else None,
            leave=False,
        )
        try:
            with bar:
                for batch in detector.feature_batches(items, batch_size):
                    records = detector.records(*batch, methods, options)
                    if strict and not all(r.ok for r in records):
                        first_bad = next(i for i, r in enumerate(records) if not r.ok)
                        records = records[: first_bad + 1]
                    writer.write(records)
                    counts.add(records)
                    bar.update(len(records))
                    if strict and counts.failed:
                        bad = records[-1]
                        typer.echo(f"stopped (--strict) at {bad.path}: {bad.error}", err=True)
                        break
        except KeyboardInterrupt:
            typer.echo(
                f"interrupted: {counts.scored + counts.failed} records written"
                + (f" to {output}; rerun with --resume to go on" if output else ""),
                err=True,
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
    if not quiet:
        for line in skipped.lines() if verbose else ():
            typer.echo(line, err=True)
        left_out = f"; {skipped.summary()}" if len(skipped) else ""
        typer.echo(
            f"{counts.scored} scored, {counts.failed} failed{left_out} "
            f"({detector.precision} on {detector.provider})",
            err=True,
        )
    raise typer.Exit(EXIT_SOME_FAILED if counts.failed else EXIT_OK)


class _Counts:
    def __init__(self) -> None:
        self.scored = self.failed = 0

    def add(self, records: list) -> None:
        ok = sum(r.ok for r in records)
        self.scored += ok
        self.failed += len(records) - ok


def _describe_search(detector: Detector, methods: tuple[str, ...], options: ScoreOptions) -> None:
    for name in methods:
        line = detector.methods.get(name).describe(options)
        if line is not None:
            typer.echo(f"{name}: {line}", err=True)


def _score_feature_file(
    detector: Detector,
    path: Path,
    methods: tuple[str, ...],
    options: ScoreOptions,
    fmt: str,
    output: Path | None,
) -> None:
    dim = detector.bundle.manifest.model.feature_dim
    rows = load_feature_file(path, dim)
    names = [f"{path}#{i}" for i in range(len(rows))]
    with _open_output(output) as stream:
        writer = make_writer(fmt, stream, methods)
        for start in range(0, len(rows), 4096):
            chunk = slice(start, start + 4096)
            writer.write(detector.feature_records(rows[chunk], names[chunk], methods, options))
    raise typer.Exit(EXIT_OK)


@contextlib.contextmanager
def _open_output(output: Path | None, append: bool = False) -> Iterator[IO[str]]:
    if output is None:
        yield sys.stdout
        return
    try:
        stream: IO[str] = output.open("a" if append else "w", encoding="utf-8", newline="")
    except OSError as e:
        raise fail(f"cannot write --output {output}: {e.strerror}") from None
    with stream:
        yield stream


def main() -> None:
    """Console-script entry point."""
    run(app)


if __name__ == "__main__":
    main()
