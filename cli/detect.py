"""``ufd-detect``: score images with a bundle. Runtime only: never imports torch."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import IO, Annotated

import typer
from tqdm import tqdm

from ufd.cli.common import fail, handle_errors, setup_logging
from ufd.runtime.decode import DEFAULT_MAX_PIXELS
from ufd.runtime.detector import DEFAULT_BATCH_SIZE, Detector
from ufd.runtime.inputs import expand_inputs
from ufd.runtime.records import FORMATS, METHODS, make_writer

app = typer.Typer(add_completion=False, rich_markup_mode=None)

EXIT_OK, EXIT_SOME_FAILED = 0, 1


@app.command(
    help=(
        "Score images with a ufd bundle: one record per input (path, logit, prob = p(fake), "
        "label, error; with --method nn: nn_score, nn_label, nn_dist_real, nn_dist_fake), "
        "in input order. INPUTS are files, directories (recursive, image "
        "extensions) or glob patterns. Files that cannot be read get an error record; the "
        "run goes on. Exit status: 0 all inputs scored, 1 some failed, 2 usage or bundle error."
    )
)
@handle_errors
def detect(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory made by ufd-export.")],
    inputs: Annotated[list[str], typer.Argument(help="Image files, directories or globs.")],
    method: Annotated[
        str,
        typer.Option(
            help="linear (UnivFD LC head), nn (k-NN vote on the bank built by ufd-index) "
            "or all (both per image)."
        ),
    ] = "linear",
    k: Annotated[int, typer.Option("--k", min=1, help="Neighbours that vote (nn, all).")] = 1,
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
    provider: Annotated[
        str, typer.Option(help="auto (CUDA if available, else CPU), cuda or cpu.")
    ] = "auto",
    threads: Annotated[
        int | None, typer.Option(min=1, help="onnxruntime intra-op threads.")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Fake when p(fake) > threshold. Default: bundle's."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per encoder call.")] = (
        DEFAULT_BATCH_SIZE
    ),
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
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Refuse images with more decoded pixels than this.")
    ] = DEFAULT_MAX_PIXELS,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar on stderr (default: TTY)."),
    ] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
) -> None:
    """Run detection (see the command help)."""
    setup_logging(verbose, quiet)
    fmt = fmt or _format_from_suffix(output)
    if fmt not in FORMATS:
        raise fail(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
    if method not in METHODS:
        raise fail(f"unknown --method {method!r}; use one of {', '.join(METHODS)}")
    detector = Detector.open(
        bundle,
        precision=precision,
        provider=provider,
        threads=threads,
        threshold=threshold,
        max_pixels=max_pixels,
    )
    if method != "linear":
        bank = detector.nn_bank
        if k > len(bank.bank):
            raise fail(f"--k {k} exceeds the bank's {len(bank.bank)} vectors")
        search = "exact" if bank.use_exact(exact) else f"HNSW (ef={bank.bank.ef})"
        if not quiet:
            typer.echo(f"nn: {k}-NN vote, {search} search over {len(bank.bank)} vectors", err=True)
    items = list(expand_inputs(inputs))
    n_scored = n_failed = 0
    with _open_output(output) as stream:
        writer = make_writer(fmt, stream, method)
        bar = tqdm(
            total=len(items),
            unit="img",
            file=sys.stderr,
            disable=(not progress) if progress is not None else None,
            leave=False,
        )
        with bar:
            for records in detector.score_batches(items, batch_size, method, k, exact):
                writer.write(records)
                ok = sum(r.ok for r in records)
                n_scored += ok
                n_failed += len(records) - ok
                bar.update(len(records))
    if not quiet:
        typer.echo(
            f"{n_scored} scored, {n_failed} failed ({detector.precision} on {detector.provider})",
            err=True,
        )
    raise typer.Exit(EXIT_SOME_FAILED if n_failed else EXIT_OK)


def _format_from_suffix(output: Path | None) -> str:
    if output is not None and output.suffix.lower() in (".jsonl", ".csv"):
        return output.suffix.lower().lstrip(".")
    return "table"


@contextlib.contextmanager
def _open_output(output: Path | None):
    if output is None:
        yield sys.stdout
        return
    try:
        stream: IO[str] = output.open("w", encoding="utf-8", newline="")
    except OSError as e:
        raise fail(f"cannot write --output {output}: {e.strerror}") from None
    with stream:
        yield stream


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
