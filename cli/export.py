"""``ufd-export``: turn a CLIP checkpoint and a UnivFD head into an ONNX bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ufd.cli.common import fail, handle_errors, run, setup_logging

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(
    help=(
        "Export a fake-image detector to an ONNX bundle: its encoder (features) and head "
        "(logit) as graphs, and its official test preprocessing. --list shows the detectors "
        "(univfd, rine, c2p-clip, commfor, probe) and the weight files each takes. The export "
        "checks itself against the torch pipeline on probe images and writes nothing if fp32 "
        "logits differ by more than 1e-4. "
        "Example: ufd-export --out univfd-vitl14 (ViT-L-14, OpenAI weights, official head)."
    )
)
@handle_errors
def export(
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
    features: Annotated[
        str,
        typer.Option(
            help="probe: cls (the last class token) or blocks (every block's class token, "
            "as RINE takes them)."
        ),
    ] = "cls",
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
    resize: Annotated[
        bool,
        typer.Option(
            "--resize/--no-resize",
            help="univfd: resize the shorter side to 256 before the crop (older pipeline). "
            "Off by default, as in the official test code.",
        ),
    ] = False,
    quick_gelu: Annotated[
        bool | None,
        typer.Option(
            "--quick-gelu/--no-quick-gelu",
            help="Force QuickGELU on/off. Default: from the model name and tag "
            "(OpenAI weights need it; set it for local OpenAI checkpoints).",
        ),
    ] = None,
    quantization: Annotated[
        str,
        typer.Option(
            help="int8 flavour: dynamic (fast on CPU) or static (QDQ, activation ranges "
            "calibrated on --calibration-dir images; batch-invariant)."
        ),
    ] = "dynamic",
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
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
) -> None:
    """Run the export (see the command help)."""
    setup_logging(verbose)
    if list_detectors:
        from ufd.export.detectors import describe_detectors

        typer.echo("\n".join(describe_detectors()))
        return
    if out is None:
        raise fail("give --out DIR, the bundle directory to create (or --list)")
    from ufd.export.graph.build import ExportOptions, export_bundle

    options = ExportOptions(
        out=out,
        detector=detector,
        features=features,
        model=model,
        pretrained=pretrained,
        head=head,
        precisions=tuple(p.strip() for p in precision.split(",") if p.strip()),
        probe_dir=probe_dir,
        n_probes=probes,
        opset=opset,
        quick_gelu=quick_gelu,
        resize=resize,
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


def main() -> None:
    """Console-script entry point."""
    run(app)


if __name__ == "__main__":
    main()
