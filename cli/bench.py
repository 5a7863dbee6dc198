"""``ufd-bench``: how fast a bundle runs here, and how close to the hardware's limit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ufd.cli.common import handle_errors, run, setup_logging, trust
from ufd.cli.options import PRECISION_NAMES, BundleDir, Threads, TrustKeys, Verbose

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command(
    help=(
        "Benchmark a bundle on the CPU: per precision and batch size, start-up time, "
        "p50/p90/p99 latency, throughput, peak RSS (each in its own process), graph size, "
        "and the fraction of this machine's MatMul peak (measured in the same run). With "
        "--images, end to end on a folder (decode included), and torch eager beside it "
        "when --torch-model is given. Writes bench.json, bench.md and bench.png to --out."
    )
)
@handle_errors
def bench(
    bundle: BundleDir,
    precision: Annotated[
        str, typer.Option(help=f"Comma-separated precisions ({PRECISION_NAMES}).")
    ] = "fp32,int8",
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1",
    iterations: Annotated[int, typer.Option(min=3, help="Timed runs per configuration.")] = 20,
    images: Annotated[Path | None, typer.Option(help="Folder for end-to-end timing.")] = None,
    torch_model: Annotated[
        str | None, typer.Option(help="open_clip model name for the torch fp32 baseline.")
    ] = None,
    torch_checkpoint: Annotated[
        str, typer.Option(help="Checkpoint of the torch baseline ('none': random).")
    ] = "none",
    threads: Threads = None,
    provider: Annotated[
        str,
        typer.Option(
            help="cpu, cuda or tensorrt. On a GPU the peaks are fp32/fp16 MatMuls there and "
            "the torch baseline is fp16 eager on CUDA."
        ),
    ] = "cpu",
    rounds: Annotated[
        int,
        typer.Option(
            min=1,
            help="Fresh processes per configuration, interleaved round-robin; each figure is "
            "the round with the median time (small shared CPUs vary a lot between processes).",
        ),
    ] = 3,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("bench-results"),
    trust_key: TrustKeys = None,
    verbose: Verbose = 0,
) -> None:
    """Benchmark (see the command help)."""
    setup_logging(verbose)
    trust(trust_key)
    from ufd.runtime.bench.plan import BenchPlan, markdown, plot
    from ufd.runtime.methods import open_bundle
    from ufd.runtime.providers import start_provider

    manifest = open_bundle(bundle).manifest
    plan = BenchPlan(
        bundle=bundle,
        precisions=[p for p in precision.split(",") if p],
        batches=[int(b) for b in batch.split(",") if b],
        iterations=iterations,
        rounds=rounds,
        provider=start_provider(provider).name,
        threads=threads,
        images=images,
        torch_model=torch_model,
        torch_checkpoint=torch_checkpoint,
    )
    for p in plan.precisions:
        manifest.encoder(p)  # unknown precision: fail before any timing
    result = plan.summarise(plan.run(lambda text: typer.echo(text, err=True)), manifest)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (out / "bench.md").write_text(table)
    plot(result, out / "bench.png")
    typer.echo(table)


def main() -> None:
    """Console-script entry point."""
    run(app)


if __name__ == "__main__":
    main()
