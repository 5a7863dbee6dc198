"""``ufd-demo``: export the official UnivFD model and score sample photos, end to end.

Online it exports ViT-L-14 (OpenAI weights) with the official head. Offline, when
those weights cannot be fetched, it says so loudly and falls back to a tiny
random-init model whose scores mean nothing, so the whole path still runs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from ufd.cli.common import handle_errors, run, setup_logging

app = typer.Typer(add_completion=False, rich_markup_mode=None)

FALLBACK_MODEL = "ufd-tiny-vit"
BANNER = "=" * 78


def _online(host: str = "huggingface.co") -> bool:
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def _say(text: str) -> None:
    typer.echo(text, err=True)


@app.command(
    help="Run export -> detect end to end on sample photos (make demo). Online it exports "
    "ViT-L-14 with OpenAI weights and the official UnivFD head; offline, pass local copies "
    "(--pretrained FILE --head FILE; with make: make demo DEMO_ARGS='--pretrained FILE'), or "
    "it falls back to a tiny random model whose scores mean nothing."
)
@handle_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the bundle, images and results.")] = Path(
        "demo-output"
    ),
    model: Annotated[str, typer.Option(help="open_clip model name.")] = "ViT-L-14",
    pretrained: Annotated[
        str,
        typer.Option(help="Weights: an open_clip tag (openai) or a local checkpoint file."),
    ] = "openai",
    head: Annotated[
        str, typer.Option(help="'univfd' (the official head, downloaded once) or a .pth file.")
    ] = "univfd",
    quick_gelu: Annotated[
        bool | None,
        typer.Option(
            "--quick-gelu/--no-quick-gelu",
            help="Force QuickGELU (OpenAI weights need it; set it for a local OpenAI file).",
        ),
    ] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
) -> None:
    """Run the demo (see the command help)."""
    setup_logging(verbose)
    if not _online():
        # No DNS: let huggingface_hub use its cache only instead of retrying for a minute.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ufd.export.graph.build import ExportOptions, export_bundle
    from ufd.export.graph.samples import write_sample_video, write_samples
    from ufd.runtime.errors import ModelLoadError

    out.mkdir(parents=True, exist_ok=True)
    bundle = out / "bundle"
    _say(f"[demo] exporting {model} ({pretrained} weights) with the {head} head")
    wanted = ExportOptions(
        out=bundle,
        model=model,
        pretrained=pretrained,
        head=head,
        detector_settings={"quick_gelu": quick_gelu},
        force=True,
    )
    try:
        export_bundle(wanted, on_step=lambda s: _say(f"  - {s}"))
        real = True
    except ModelLoadError as e:
        real = False
        _say(f"\n{BANNER}\nOFFLINE FALLBACK: {e}\n")
        _say(
            "With local copies of the weights: ufd-demo --pretrained FILE --quick-gelu "
            "--head fc_weights.pth (make demo DEMO_ARGS='--pretrained FILE --quick-gelu "
            "--head fc_weights.pth').\n"
        )
        _say(
            f"Using a tiny RANDOM-INIT model ({FALLBACK_MODEL}) and a random head instead.\n"
            "ITS SCORES MEAN NOTHING: this run only shows the pipeline working end to end.\n"
            f"{BANNER}\n"
        )
        head = _random_head(out / "random_head.pth")
        options = ExportOptions(
            out=bundle, model=FALLBACK_MODEL, pretrained="none", head=str(head), force=True
        )
        export_bundle(options, on_step=lambda s: _say(f"  - {s}"))

    images = out / "images"
    write_samples(images)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff this is not really a JPEG")
    try:
        write_sample_video(images / "clip.mp4")
    except ImportError:
        _say("[demo] no video in this run: pip install 'ufd[video]' to score videos too")
    results = out / "results.jsonl"
    detect = [sys.executable, "-m", "ufd.cli.detect", str(bundle), str(images)]
    _say(f"\n[demo] $ ufd-detect {bundle} {images} --output {results}")
    run = subprocess.run([*detect, "--output", str(results)], check=False)
    if run.returncode not in (0, 1):
        raise typer.Exit(run.returncode)
    _print_table(results)
    _say(f"\n[demo] records written to {results} (JSON lines)")
    _say("[demo] broken.jpg is there on purpose: bad files get an error record, never a crash")
    _say("[demo] clip.mp4 is a 3-second video: one record, the mean of its sampled frames")
    if not real:
        _say(f"\n{BANNER}\nREMINDER: random-init model, the scores above mean nothing.\n{BANNER}")


def _print_table(results: Path) -> None:
    """Show the JSONL records as ufd-detect's table (detection ran once)."""
    import json

    from ufd.runtime.io.writers import make_writer
    from ufd.runtime.records import Record

    lines = results.read_text(encoding="utf-8").splitlines()
    make_writer("table", sys.stdout).write(Record.from_dict(json.loads(line)) for line in lines)


def _random_head(path: Path) -> Path:
    """A seeded random head in the official file format ({'weight', 'bias'})."""
    import torch

    generator = torch.Generator().manual_seed(0)
    state = {"weight": torch.randn(1, 768, generator=generator) * 0.2, "bias": torch.zeros(1)}
    torch.save(state, path)
    return path


def main() -> None:
    """Console-script entry point."""
    run(app)


if __name__ == "__main__":
    main()
