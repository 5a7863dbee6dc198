"""``ufd-detect``: score images with a bundle, here or on a running service. Never imports torch.

The local path loads the bundle (onnxruntime, numpy); ``--server`` (or
``UFD_SERVER``) sends the images to a running ``ufd-serve`` instead and imports
neither, so a caller that runs once per image pays only for the request.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated

import typer

from ufd.cli.common import (
    BATCH_HELP,
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    VIEWS_HELP,
    TrustKeys,
    fail,
    handle_errors,
    methods_help,
    provider_help,
    run,
    setup_logging,
    trust,
)
from ufd.runtime.io.inputs import Skipped, expand_inputs
from ufd.runtime.io.writers import FORMATS, done_paths, format_from_suffix, make_writer
from ufd.runtime.records import Record
from ufd.runtime.tools.detect_run import RunCounts, write_records

DEFAULT_MAX_PIXELS = 64_000_000  # ufd.runtime.io.decode's, without importing Pillow here
LOCAL_ONLY = {
    "precision": None,
    "provider": "auto",
    "threads": None,
    "threshold": None,
    "batch_size": None,
    "decode_workers": None,
    "max_pixels": DEFAULT_MAX_PIXELS,
    "features": None,
    "provenance": False,
    "exact": None,
    "trust_key": [],
}
"""Options a service ignores (it runs its own bundle and graph), with their defaults."""

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(
    help=(
        "Score images with a ufd bundle (or, with --server, on a running ufd-serve: then "
        "every argument is an image): one record per input, in input order: path, the "
        "fields of each --method (linear: logit, prob = p(fake), label; nn: nn_score, "
        "nn_label, nn_dist_real, nn_dist_fake; ...), error. INPUTS are files, directories "
        "(recursive: every image format this install reads) or glob patterns. Files that "
        "cannot be read get an error record; the "
        "run goes on (--strict: stops). Records are flushed per batch; --resume continues a "
        "killed run. " + EXIT_CODES_HELP
    )
)
@handle_errors
def detect(
    bundle: Annotated[
        Path,
        typer.Argument(
            help="Bundle directory made by ufd-export (with --server: the first image)."
        ),
    ],
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
    views: Annotated[int, typer.Option(min=0, help=VIEWS_HELP)] = 0,
    precision: Annotated[
        str | None,
        typer.Option(
            help="fp32, fp16, int8 or int8-portable. Default (auto): the fastest the bundle "
            "has for the provider that keeps the bundle's tolerance on this CPU."
        ),
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
    trust_key: TrustKeys = [],  # noqa: B006
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
) -> None:
    """Run detection (see the command help)."""
    setup_logging(verbose, quiet)
    trust(trust_key)
    if server:
        given = locals()
        local = [name for name, default in LOCAL_ONLY.items() if given[name] != default]
        if local:
            flags = ", ".join("--" + name.replace("_", "-") for name in local)
            raise fail(f"{flags}: only for a local run; the service runs its own bundle")
        settings = Run(
            [str(bundle), *(inputs or [])],
            method,
            k,
            fmt,
            output,
            resume,
            strict,
            progress,
            quiet,
            verbose,
            views,
        )
        raise typer.Exit(_on_server(settings, server, api_key_file))
    settings = Run(
        inputs or [], method, k, fmt, output, resume, strict, progress, quiet, verbose, views
    )
    if features is not None and views:
        raise fail("--views makes views of images: it cannot score --features")
    settings.check(need_inputs=features is None)
    detector, methods, options = _open(locals(), quiet)
    if features is not None:
        _score_feature_file(detector, features, methods, options, settings.fmt, output)
        return
    from ufd.runtime.tools.detect_run import local_batches

    items, skipped, done = settings.items()
    batches = local_batches(detector, items, methods, options, batch_size)
    fields = detector.fields(methods, views)
    where = f"{detector.precision} on {detector.provider}"
    raise typer.Exit(settings.write(batches, lambda records: fields, items, skipped, done, where))


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

    def items(self):
        """(inputs still to score, what folders and globs left out, paths done before)."""
        skipped = Skipped()
        items = list(expand_inputs(self.inputs, skipped))
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
    from ufd.runtime.tools.detect_run import server_batches, server_fields

    settings.check()
    client = Client(server, api_key=_read_key(api_key_file))
    items, skipped, done = settings.items()
    batches = server_batches(client, items, settings.method, settings.k, views=settings.views)
    return settings.write(batches, server_fields, items, skipped, done, server)


def _open(given: dict, quiet: bool):
    """The local detector, and the methods and options of this run (described on stderr)."""
    from ufd.runtime.detector import Detector

    detector = Detector.open(
        given["bundle"],
        precision=given["precision"],
        provider=given["provider"],
        threads=given["threads"],
        threshold=given["threshold"],
        max_pixels=given["max_pixels"],
        decode_workers=given["decode_workers"],
        provenance=given["provenance"],
    )
    methods, options = detector.plan(given["method"], given["k"], given["exact"], given["views"])
    if not quiet:
        for name in methods:
            line = detector.methods.get(name).describe(options)
            if line is not None:
                typer.echo(f"{name}: {line}", err=True)
    return detector, methods, options


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


FAST_VALUES = {
    "--server": "server",
    "--method": "method",
    "--k": "k",
    "--views": "views",
    "--format": "fmt",
    "--output": "output",
    "-o": "output",
    "--api-key-file": "api_key_file",
}
FAST_FLAGS = {"--quiet": "quiet", "-q": "quiet", "--no-progress": "progress", "--strict": "strict"}


def _service_call(argv: list[str]) -> dict | None:
    """A call to a service in the plain form (``--server URL IMAGES``, a few options), parsed.

    typer (with pydantic) takes ~0.2 s to start; a device that calls ufd once per
    image through a service should not pay it. Anything else (help, local runs,
    other options) returns ``None``: typer parses it, as always.
    """
    found: dict = {"server": os.environ.get("UFD_SERVER") or None, "inputs": []}
    args = iter(argv)
    for arg in args:
        name, _, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in FAST_VALUES:
            value = inline or next(args, None)
            if value is None:
                return None
            found[FAST_VALUES[name]] = value
        elif arg in FAST_FLAGS:
            found[FAST_FLAGS[arg]] = arg != "--no-progress"
        elif arg.startswith("-") and arg != "-":
            return None
        else:
            found["inputs"].append(arg)
    if not found["server"] or not found["inputs"]:
        return None
    if "k" in found:
        if not found["k"].isdigit() or int(found["k"]) < 1:
            return None  # typer says what is wrong
        found["k"] = int(found["k"])
    if "views" in found:
        if not found["views"].isdigit():
            return None
        found["views"] = int(found["views"])
    return found


def main() -> None:
    """Console-script entry point (a plain service call skips typer: see :func:`_service_call`)."""
    call = _service_call(sys.argv[1:])
    if call is None:
        run(app)
        return
    from ufd.cli import c_stderr
    from ufd.cli.common import run_quickly

    c_stderr.route()
    settings = Run(
        call["inputs"],
        call.get("method", "linear"),
        call.get("k"),
        call.get("fmt"),
        Path(call["output"]) if "output" in call else None,
        strict=call.get("strict", False),
        progress=False if "progress" in call else None,
        quiet=call.get("quiet", False),
        views=call.get("views", 0),
    )
    key = Path(call["api_key_file"]) if "api_key_file" in call else None
    run_quickly(lambda: _on_server(settings, call["server"], key), settings.quiet)


if __name__ == "__main__":
    main()
