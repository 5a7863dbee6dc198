"""``ufd-bundle``: check, describe and slim a bundle (runtime only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ufd.cli.common import handle_errors, run, setup_logging

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Check a copied bundle (verify), see what it holds (info), drop graphs (slim).",
)


@app.command(
    help="Check every file's size and sha256, the manifest, and that every graph loads and "
    "every bank opens. Exit 0 when whole; 2, naming each bad file, when not."
)
@handle_errors
def verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
) -> None:
    """Verify (see the command help)."""
    setup_logging(verbose)
    from ufd.runtime.tools.bundle_tools import verify as check

    problems = check(bundle)
    for problem in problems:
        typer.echo(f"BAD {problem.file}: {problem.reason}", err=True)
    if problems:
        typer.echo(f"{bundle}: {len(problems)} problem(s)", err=True)
        raise typer.Exit(2)
    typer.echo(f"{bundle}: every file matches its sha256; every graph and bank loads")


@app.command(help="What the bundle holds: model, precisions, methods, sizes, parity figures.")
@handle_errors
def info(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Describe (see the command help)."""
    setup_logging(0)
    from ufd.runtime.tools.bundle_tools import describe

    about = describe(bundle)
    if as_json:
        typer.echo(json.dumps(about, indent=2))
        return
    model = about["model"]
    typer.echo(
        f"{bundle}: {model['name']} ({model['pretrained']}), {model['feature_dim']}-d, "
        f"schema {about['schema_version_on_disk']}, {about['total_mb']:.1f} MB"
    )
    for precision, enc in about["encoders"].items():
        parity = about["parity"].get(precision, {})
        figure = parity.get("max_abs_logit_error")
        extra = f", max |dlogit| vs torch {figure:.2e}" if figure is not None else ""
        typer.echo(f"  encoder {precision}: {enc['mb']:.1f} MB{extra}")
    for name, method in about["methods"].items():
        threshold = method["threshold"]
        calibrated = " (calibrated)" if method["calibration"] else ""
        shown = "default" if threshold is None else f"{threshold:.6g}"
        typer.echo(f"  method {name}: threshold {shown}{calibrated}, {method['mb']:.1f} MB")
    for note in about["notes"]:
        typer.echo(f"  note: {note}")


@app.command(
    help="Drop encoder graphs a device does not need, in place: the manifest is switched "
    "atomically, then the files are removed. Refuses to drop the last encoder."
)
@handle_errors
def slim(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    keep: Annotated[str, typer.Option(help="Precisions to keep, comma-separated.")] = "int8",
) -> None:
    """Slim (see the command help)."""
    setup_logging(0)
    from ufd.runtime.tools.bundle_tools import slim as drop

    manifest, removed = drop(bundle, [p.strip() for p in keep.split(",") if p.strip()])
    typer.echo(
        f"removed {', '.join(removed) or 'nothing'}; {bundle} keeps "
        f"{', '.join(manifest.precisions)}"
    )


def main() -> None:
    """Console-script entry point."""
    run(app)


if __name__ == "__main__":
    main()
