"""``ufd-export``: turn a detector's published weights into an ONNX bundle (needs torch)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ufd.cli.common import EXIT_USAGE, fail, handle_errors, run, setup_logging
from ufd.cli.options import Verbose
from ufd.runtime.errors import UsageError

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(
    help=(
        "Export a fake-image detector to an ONNX bundle: its encoder (features) and head "
        "(logit) as graphs, and its official test preprocessing. --list shows the detectors "
        "and the weight files each takes; a detector's own options (e.g. univfd's --resize, "
        "probe's --features) follow the others, and ufd-export --detector NAME --help lists "
        "them. The export checks itself against the torch pipeline on probe images and writes "
        "nothing if fp32 logits differ by more than 1e-4. "
        "Example: ufd-export --out univfd-vitl14 (ViT-L-14, OpenAI weights, official head)."
    ),
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
@handle_errors
def export(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Bundle directory to create.")
    ] = None,
    detector: Annotated[
        str, typer.Option(help="Which detector (see --list): univfd, rine, c2p-clip, ...")
    ] = "univfd",
    list_detectors: Annotated[
        bool, typer.Option("--list", help="List the detectors and the files each takes; exit.")
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(
            help="Backbone: an open_clip model name (ViT-L-14, ViT-B-16, ufd-tiny-vit) or, for "
            "probe, timm:NAME. Default: the detector's own (needed only for probe)."
        ),
    ] = None,
    pretrained: Annotated[
        str | None,
        typer.Option(
            help="Backbone weights: an open_clip tag (openai, ...), a local checkpoint, or "
            "'none' for random weights; c2p-clip and commfor: their release file. Default: "
            "the detector's (see --list)."
        ),
    ] = None,
    head: Annotated[
        str | None,
        typer.Option(
            help="Head weights: univfd: 'univfd' (official, downloaded once), a .pth "
            "{'weight': [1, D], 'bias': [1]} or 'none'; rine: its ckpt/model_*_trainable.pth. "
            "Default: the detector's."
        ),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(
            help="Comma-separated encoder precisions: fp32, fp16 (GPUs), int8 (fastest on "
            "CPUs with AVX-512 VNNI/AMX and on Arm), int8-portable (7-bit weights: the same "
            "answer on every CPU, AVX2-only x86 included)."
        ),
    ] = "fp32,int8,int8-portable",
    probe_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of real images to validate on (default: synthetic probes)."),
    ] = None,
    probes: Annotated[int, typer.Option(min=1, help="Number of probe images.")] = 10,
    quantization: Annotated[
        str,
        typer.Option(
            help="int8 flavour: auto (the detector's: static for convolutional ones such as "
            "aligned, else dynamic), dynamic (int8 MatMuls, activation ranges per call) or "
            "static (QDQ, activation ranges calibrated on --calibration-dir images; "
            "batch-invariant)."
        ),
    ] = "auto",
    optimize: Annotated[
        bool,
        typer.Option(
            "--optimize/--no-optimize",
            help="Save onnxruntime's EXTENDED-level optimised graphs (fp32/int8) in the bundle.",
        ),
    ] = False,
    fuse_attention: Annotated[
        bool,
        typer.Option(
            "--fuse-attention/--no-fuse-attention",
            help="Write each self-attention block as onnxruntime's fused MultiHeadAttention "
            "op and compute only the class token in the last block (faster on CPU and CUDA, "
            "same output). --no-fuse-attention writes the plain graph in standard ONNX ops, "
            "for runtimes without onnxruntime's contrib ops.",
        ),
    ] = True,
    calibration_dir: Annotated[
        Path | None, typer.Option(help="Images to calibrate static int8 on (default: probes).")
    ] = None,
    max_logit_error: Annotated[
        float | None,
        typer.Option(help="Refuse fp16/int8 graphs whose max |Δlogit| vs torch exceeds this."),
    ] = None,
    tolerance_cosine: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Smallest feature cosine to fp32 every graph must keep on a device (checked "
            "where the bundle runs). Default: from the int8-portable graph's error here.",
        ),
    ] = None,
    tolerance_logit: Annotated[
        float | None,
        typer.Option(min=0.0, help="Largest |Δlogit| to fp32 every graph must keep on a device."),
    ] = None,
    threshold: Annotated[
        float, typer.Option(help="Default decision threshold on p(fake) stored in the bundle.")
    ] = 0.5,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    force: Annotated[bool, typer.Option(help="Replace an existing bundle at --out.")] = False,
    verbose: Verbose = 0,
) -> None:
    """Run the export (see the command help)."""
    setup_logging(verbose)
    from ufd.export.detectors import describe_detectors, get_detector

    if list_detectors:
        typer.echo("\n".join(describe_detectors()))
        return
    chosen = get_detector(detector)
    settings = chosen.settings_for(detector_arguments(chosen, ctx.args))
    if out is None:
        raise fail("give --out DIR, the bundle directory to create (or --list)")
    from ufd.export.graph.build import ExportOptions, export_bundle

    options = ExportOptions(
        out=out,
        detector=detector,
        detector_settings=settings,
        model=model,
        pretrained=pretrained,
        head=head,
        precisions=tuple(p.strip() for p in precision.split(",") if p.strip()),
        probe_dir=probe_dir,
        n_probes=probes,
        opset=opset,
        max_logit_error=max_logit_error,
        quantization=quantization,
        optimize=optimize,
        fuse_attention=fuse_attention,
        calibration_dir=calibration_dir,
        threshold=threshold,
        force=force,
        tolerance_cosine=tolerance_cosine,
        tolerance_logit=tolerance_logit,
    )
    steps = iter(range(1, 100))
    manifest = export_bundle(
        options, on_step=lambda text: typer.echo(f"[{next(steps)}] {text}", err=True)
    )
    typer.echo(f"bundle written to {out}")
    for name, entry in manifest.files.items():
        typer.echo(f"  {name:<22} {entry.size / 1e6:9.1f} MB")
    for precision_name, report in manifest.parity.items():
        line = f"  parity {precision_name}: feature cosine >= {report.min_feature_cosine:.6f}"
        if report.max_abs_logit_error is not None:
            line += (
                f", max |Δlogit| {report.max_abs_logit_error:.2e}, "
                f"decision agreement {report.decision_agreement:.1%}"
            )
        typer.echo(line)
    if manifest.probes is not None:
        tolerance = manifest.probes.tolerance
        line = f"  devices measure each graph on {manifest.probes.n_probes} probes: cosine >= "
        line += f"{tolerance.min_feature_cosine}"
        if tolerance.max_abs_logit is not None:
            line += f", |Δlogit| <= {tolerance.max_abs_logit}"
        typer.echo(line)
    for note in manifest.notes:
        typer.echo(f"  note: {note}")


def detector_arguments(detector, args: list[str]) -> dict[str, Any]:
    """The detector's own options in ``args`` (what ufd-export's options left), by name.

    ``--name VALUE``, ``--name=VALUE``; flags ``--name`` / ``--no-name``.

    Raises:
        UsageError: an option neither ufd-export nor the detector takes, or a bad value.
    """
    options = {o.flag: o for o in detector.options}
    found: dict[str, Any] = {}
    words = iter(args)
    for word in words:
        flag, equals, inline = word.partition("=")
        negated = flag.replace("--no-", "--", 1) if flag.startswith("--no-") else None
        option = options.get(flag) or options.get(negated or "")
        if option is None:
            takes = ", ".join(options) or "none"
            raise UsageError(
                f"no such option: {flag} (see ufd-export --help; {detector.name}'s own: {takes})"
            )
        if option.kind is bool:
            found[option.name] = not (negated and option.flag == negated)
            continue
        raw = inline if equals else next(words, None)
        try:
            found[option.name] = option.kind(raw)
        except (TypeError, ValueError):
            raise UsageError(f"{option.flag} needs a value ({option.kind.__name__})") from None
    return found


def detector_help(name: str) -> str:
    """``--detector NAME --help``: the detector's own options."""
    from ufd.export.detectors import get_detector

    detector = get_detector(name)
    lines = [f"\nOptions of --detector {detector.name} ({detector.summary}):"]
    for option in detector.options:
        flag = option.flag + (f"/--no-{option.flag[2:]}" if option.kind is bool else " <value>")
        extra = f" Choices: {', '.join(option.choices)}." if option.choices else ""
        default = f" [default: {option.default}]" if option.default is not None else ""
        lines.append(f"  {flag}\n      {option.help}{extra}{default}")
    if not detector.options:
        lines.append("  none beyond --model, --pretrained and --head")
    return "\n".join(lines)


def main() -> None:
    """Console-script entry point (``--detector NAME --help`` adds the detector's options)."""
    argv = sys.argv[1:]
    if "--help" in argv and "--detector" in argv[:-1]:
        name = argv[argv.index("--detector") + 1]
        try:
            app(["--help"], standalone_mode=False)
            typer.echo(detector_help(name))
        except UsageError as e:
            typer.echo(f"error: {e}", err=True)
            sys.exit(EXIT_USAGE)
        return
    run(app)


if __name__ == "__main__":
    main()
