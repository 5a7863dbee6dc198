"""``ufd-bundle``: check, describe and slim a bundle (runtime only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ufd.cli.common import handle_errors, provider_help, run, setup_logging

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Check a copied bundle (verify), see what it holds (info), drop graphs (slim).",
)


@app.command(
    help="Check every file's size and sha256, the manifest, and that every graph loads and "
    "every bank opens. Exit 0 when whole; 2, naming each bad file, when not. With --parity, "
    "also measure every encoder graph on this host against the bundle's fp32 reference and "
    "its tolerance, one line per precision, and say which precision --precision auto takes "
    "here: exit 0 when that one keeps the tolerance, 1 when no graph does."
)
@handle_errors
def verify(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    parity: Annotated[
        bool, typer.Option("--parity", help="Measure every graph on this host (see above).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --parity: print one JSON object.")
    ] = False,
    provider: Annotated[str, typer.Option(help=provider_help())] = "auto",
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
    if not parity:
        typer.echo(f"{bundle}: every file matches its sha256; every graph and bank loads")
        return
    from ufd.runtime.tools.parity_check import check_parity

    verdict = check_parity(bundle, provider)
    if as_json:
        typer.echo(json.dumps(verdict.to_dict(), indent=2))
    else:
        _print_parity(bundle, verdict)
    raise typer.Exit(0 if verdict.ok else 1)


def _print_parity(bundle: Path, verdict) -> None:
    from ufd.runtime.parity import int8_class

    if verdict.note:
        typer.echo(f"note: {verdict.note}")
    for precision, found in verdict.graphs.items():
        state = "ok" if found.ok else "FAILS"
        typer.echo(f"{state:<6} {precision:<14} {found.describe()}")

    where = f"{verdict.provider}, int8: {int8_class()}"
    if verdict.auto is None:
        typer.echo(f"{bundle}: no graph keeps the tolerance on this host ({where})")
    else:
        typer.echo(f"{bundle}: --precision auto takes {verdict.auto} here ({where})")


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
