"""``ufd-detect``: score images with a bundle, here or on a running service. Never imports torch.

The local path loads the bundle (onnxruntime, numpy); ``--server`` (or
``UFD_SERVER``) sends the images to a running ``ufd-serve`` instead and imports
neither, so a caller that runs once per image pays only for the request.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated

import typer

from ufd.cli.common import (
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    fail,
    handle_errors,
    run,
    setup_logging,
    trust,
)
from ufd.cli.options import (
    BatchSize,
    Fps,
    Frames,
    GifAsVideo,
    K,
    Keyframes,
    MaxFrames,
    MaxPixels,
    Method,
    Precision,
    Progress,
    Provider,
    Quiet,
    Threads,
    TrustKeys,
    Verbose,
    VideoRule,
    VideoTimeout,
    Views,
)
from ufd.runtime.io.inputs import Skipped, expand_inputs
from ufd.runtime.io.policy import DEFAULT_MAX_PIXELS
from ufd.runtime.io.writers import FORMATS, done_paths, format_from_suffix, make_writer
from ufd.runtime.records import Record
from ufd.runtime.runs import RunCounts, write_records

SERVICE_OPTIONS = frozenset(
    {"server", "api_key_file", "method", "k", "views", "fmt", "output", "resume", "strict"}
    | {"progress", "quiet", "verbose"}
)
"""The options a run on a service takes (the service runs its own bundle and graph); the
others are refused with --server. The fast path (:func:`main`) parses only these."""

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(
    help=(
        "Score images with a ufd bundle (or, with --server, on a running ufd-serve: then "
        "every argument is an image): one record per input, in input order: path, the "
        "fields of each --method (linear: logit, prob = p(fake), label; nn: nn_score, "
        "nn_label, nn_dist_real, nn_dist_fake; ...), error. INPUTS are files, directories "
        "(recursive: every image format this install reads, and videos) or glob patterns. "
        "A video (MP4, MOV, WebM, MKV, AVI; pip install 'ufd[video]') gets one record from "
        "its sampled frames (--fps, --max-frames, --video-rule; --frames adds theirs). Files that "
        "cannot be read get an error record; the "
        "run goes on (--strict: stops). Records are flushed per batch; --resume continues a "
        "killed run. " + EXIT_CODES_HELP
    )
)
@handle_errors
def detect(
    ctx: typer.Context,
    bundle: Annotated[
        Path,
        typer.Argument(
            help="Bundle directory made by ufd-export (with --server: the first image)."
        ),
    ],
    inputs: Annotated[
        list[str] | None, typer.Argument(help="Image or video files, directories or globs.")
    ] = None,
    method: Method = "linear",
    features: Annotated[
        Path | None,
        typer.Option(help="Score precomputed features (.npy, one row per image), no encoder."),
    ] = None,
    k: K = None,
    exact: Annotated[
        bool | None,
        typer.Option(
            "--exact/--hnsw",
            help="NN search: exact (brute force) or HNSW. Default: by bank size (shown).",
        ),
    ] = None,
    views: Views = 0,
    precision: Precision = None,
    provider: Provider = "auto",
    threads: Threads = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="linear: fake when p(fake) > threshold. Default: the bundle's."
        ),
    ] = None,
    batch_size: BatchSize = None,
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
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    progress: Progress = None,
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
    fps: Fps = 1.0,
    max_frames: MaxFrames = 32,
    keyframes: Keyframes = False,
    video_rule: VideoRule = "mean",
    frames: Frames = False,
    video_timeout: VideoTimeout = 600.0,
    gif_as_video: GifAsVideo = False,
    server: Annotated[
        str | None,
        typer.Option(
            envvar="UFD_SERVER",
            help="Score on a running ufd-serve instead: http://HOST:PORT or unix:SOCKET "
            "(ufd-serve --socket). The service's bundle and settings apply; an unreachable "
            "service is an error (exit 2), never a silent local run. Also UFD_SERVER "
            "(empty: local).",
        ),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(help="With --server: the service's API key (this file's first line)."),
    ] = None,
    trust_key: TrustKeys = None,
    verbose: Verbose = 0,
    quiet: Quiet = False,
) -> None:
    """Run detection (see the command help)."""
    setup_logging(verbose, quiet)
    trust(trust_key)
    settings = Run(
        inputs=list(inputs or []),
        method=method,
        k=k,
        fmt=fmt,
        output=output,
        resume=resume,
        strict=strict,
        progress=progress,
        quiet=quiet,
        verbose=verbose,
        views=views,
    )
    if server:
        _refuse_local_options(ctx)
        settings.inputs.insert(0, str(bundle))  # every argument is an image
        raise typer.Exit(_on_server(settings, server, api_key_file))
    if features is not None and views:
        raise fail("--views makes views of images: it cannot score --features")
    settings.check(need_inputs=features is None)
    from ufd.runtime.detector import Detector
    from ufd.runtime.video.frames import VideoOptions
    from ufd.runtime.video.run import VideoRun

    video = VideoRun(  # checked before the bundle loads
        VideoOptions(fps, max_frames, keyframes, timeout=video_timeout, max_pixels=max_pixels),
        video_rule,
        frames,
        gifs=gif_as_video,
    )

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
    methods, options = detector.plan(method, k, exact, views)
    if not quiet:
        for name in methods:
            line = detector.methods.get(name).describe(options)
            if line is not None:
                typer.echo(f"{name}: {line}", err=True)
    if features is not None:
        _score_feature_file(detector, features, methods, options, settings.fmt, output)
        return
    from ufd.runtime.runs import local_batches
    from ufd.runtime.video.records import video_fields

    items, skipped, done = settings.items(videos=True)
    batches = local_batches(detector, items, methods, options, batch_size, video)
    fields = detector.fields(methods, views)
    if any(video.claims(item) for item in items):
        fields = (*fields[:-1], *video_fields([detector.methods.get(m) for m in methods]), "error")
    where = f"{detector.precision} on {detector.provider}"
    raise typer.Exit(settings.write(batches, lambda records: fields, items, skipped, done, where))


def _refuse_local_options(ctx: typer.Context | None) -> None:
    """Refuse options a service run cannot honour (given on the command line).

    ``ctx`` is ``None`` on the fast path, which parses only :data:`SERVICE_OPTIONS`.

    Raises:
        typer.Exit: naming them (exit 2).
    """
    if ctx is None:
        return
    given = [
        name
        for name in ctx.params
        if name not in SERVICE_OPTIONS
        and ctx.get_parameter_source(name).name in ("COMMANDLINE", "ENVIRONMENT")
        and name not in ("bundle", "inputs")
    ]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise fail(f"{flags}: only for a local run; the service runs its own bundle")


@dataclass
class Run:
    """What a run writes where: the settings a local run and a service run share."""

    inputs: list[str]
    method: str = "linear"
    k: int | None = None
    fmt: str | None = None
    output: Path | None = None
    resume: bool = False
    strict: bool = False
    progress: bool | None = None
    quiet: bool = False
    verbose: int = 0
    views: int = 0

    def check(self, need_inputs: bool = True) -> None:
        """Refuse a format, an output or inputs that cannot work, before any image is read.

        Raises:
            typer.Exit: with the one-line reason (exit 2).
        """
        self.fmt = self.fmt or format_from_suffix(self.output)
        if self.fmt not in FORMATS:
            raise fail(f"unknown --format {self.fmt!r}; use one of {', '.join(FORMATS)}")
        if self.resume and self.output is None:
            raise fail("--resume needs --output FILE (the file a previous run wrote)")
        if need_inputs and not self.inputs:
            raise fail("give images, folders or globs to score (or --features X.npy)")

    def items(self, videos: bool = False):
        """(inputs still to score, what folders and globs left out, paths done before).

        With ``videos``, folders and globs take video files too.
        """
        skipped = Skipped()
        items = list(expand_inputs(self.inputs, skipped, videos))
        done = done_paths(self.output, self.fmt) if self.resume else set()
        if done:
            if not self.quiet:
                typer.echo(f"resuming: {len(done)} inputs already in {self.output}", err=True)
            items = [item for item in items if item.path not in done]
        return items, skipped, done

    def write(self, batches, fields_of, items, skipped: Skipped, done, where: str) -> int:
        """Write every batch, say how it went; the exit status."""
        counts = _write(
            batches,
            fields_of,
            self.fmt,
            self.output,
            bool(done),
            self.strict,
            self.progress,
            len(items),
        )
        if not self.quiet:
            if counts.stopped_at is not None:
                bad = counts.stopped_at
                typer.echo(f"stopped (--strict) at {bad.path}: {bad.error}", err=True)
            for line in skipped.lines() if self.verbose else ():
                typer.echo(line, err=True)
            left_out = f"; {skipped.summary()}" if len(skipped) else ""
            summary = f"{counts.scored} scored, {counts.failed} failed{left_out} ({where})"
            typer.echo(summary, err=True)
        return EXIT_SOME_FAILED if counts.failed else EXIT_OK


def _on_server(settings: Run, server: str, api_key_file: Path | None) -> int:
    """Score on a running service: the same records, formats and exit codes as a local run."""
    from ufd.client import Client
    from ufd.runtime.runs import server_batches, server_fields

    settings.check()
    client = Client(server, api_key=_read_key(api_key_file))
    items, skipped, done = settings.items()
    batches = server_batches(client, items, settings.method, settings.k, views=settings.views)
    return settings.write(batches, server_fields, items, skipped, done, server)


def _write(
    batches,
    fields_of,
    fmt: str,
    output: Path | None,
    appending: bool,
    strict: bool,
    progress: bool | None,
    total: int,
) -> RunCounts:
    """Write every batch (flushed as it comes); an interrupt says how far it got."""
    counts = RunCounts()
    with _open_output(output, append=appending) as stream:

        def writer_for(records: list[Record]):
            return make_writer(fmt, stream, appending=appending, fields=fields_of(records))

        bar = _progress_bar(progress, total)

        try:
            with bar as shown:
                write_records(batches, writer_for, counts, strict, shown.update)
        except KeyboardInterrupt:
            typer.echo(
                f"interrupted: {counts.scored + counts.failed} records written"
                + (f" to {output}; rerun with --resume to go on" if output else ""),
                err=True,
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
    return counts


def _progress_bar(progress: bool | None, total: int):
    """A progress bar on stderr when asked for (default: on a terminal), else a stand-in."""
    if progress is False or (progress is None and not sys.stderr.isatty()):
        return contextlib.nullcontext(_NoBar())
    from tqdm import tqdm

    return tqdm(total=total, unit="img", file=sys.stderr, leave=False)


class _NoBar:
    def update(self, n: int) -> None:
        """Nothing to show."""


def _read_key(path: Path | None) -> str | None:
    if path is None:
        return None
    from ufd.runtime.serve.config import read_api_key

    return read_api_key(path)


def _score_feature_file(detector, path: Path, methods, options, fmt: str, output) -> None:
    from ufd.runtime.io.feature_files import load_feature_file

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
    """Console-script entry point: a plain service call skips typer (:mod:`ufd.cli.quick`)."""
    from ufd.cli.quick import quick_values

    call = quick_values(detect, sys.argv[1:], SERVICE_OPTIONS)
    if call is None or not call["server"]:
        run(app)
        return
    from ufd.cli import c_stderr
    from ufd.cli.common import run_quickly

    c_stderr.route()
    run_quickly(lambda: detect(ctx=None, **{k: v for k, v in call.items() if k != "ctx"}))


if __name__ == "__main__":
    main()
