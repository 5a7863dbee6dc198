"""``ufd-bench``: how fast a bundle runs here, and how close to the hardware's limit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ufd.cli.common import handle_errors, setup_logging

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
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    precision: Annotated[str, typer.Option(help="Comma-separated precisions.")] = "fp32,int8",
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1",
    iterations: Annotated[int, typer.Option(min=3, help="Timed runs per configuration.")] = 20,
    images: Annotated[Path | None, typer.Option(help="Folder for end-to-end timing.")] = None,
    torch_model: Annotated[
        str | None, typer.Option(help="open_clip model name for the torch fp32 baseline.")
    ] = None,
    torch_checkpoint: Annotated[
        str, typer.Option(help="Checkpoint of the torch baseline ('none': random).")
    ] = "none",
    threads: Annotated[int | None, typer.Option(min=1, help="onnxruntime threads.")] = None,
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
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
) -> None:
    """Benchmark (see the command help)."""
    setup_logging(verbose)
    from ufd.export.bench import child, count_macs, median_run
    from ufd.runtime.bundle import Bundle
    from ufd.runtime.sessions import resolve_provider

    provider = resolve_provider(provider)
    gpu = provider != "cpu"
    peak_types = ("fp32", "fp16") if gpu else ("fp32", "int8")

    manifest = Bundle.open(bundle).manifest
    precisions = [p for p in precision.split(",") if p]
    batches = [int(b) for b in batch.split(",") if b]
    for p in precisions:
        manifest.encoder(p)  # unknown precision: fail before any timing
    jobs: dict[str, tuple[str, dict]] = {
        f"peak.{d}": ("run_peak", {"dtype": d, "provider": provider}) for d in peak_types
    }
    for p in precisions:
        for b in batches:
            jobs[f"ort.{p}.{b}"] = ("run_ort", {"bundle": str(bundle), "precision": p,
                                               "batch": b, "iterations": iterations,
                                               "threads": threads,
                                               "provider": provider})  # fmt: skip
    if torch_model:
        for b in batches:
            jobs[f"torch.{b}"] = (
                "run_torch",
                {
                    "model": torch_model,
                    "checkpoint": torch_checkpoint,
                    "folder": str(images) if images and b == 1 else None,
                    "batch": b,
                    "iterations": max(3, iterations // 2),
                    "device": "cuda" if gpu else "cpu",
                },
            )
    if images:
        for p in precisions:
            jobs[f"e2e.{p}"] = (
                "run_e2e_ort",
                {
                    "bundle": str(bundle),
                    "precision": p,
                    "folder": str(images),
                    "threads": threads,
                    "provider": provider,
                },
            )
    runs: dict[str, list[dict]] = {key: [] for key in jobs}
    for r in range(rounds):
        for key, (kind, kwargs) in jobs.items():
            typer.echo(f"round {r + 1}/{rounds}: {key}...", err=True)
            runs[key].append(child(kind, **kwargs))

    fp32 = "encoder.fp32" in manifest.graphs
    macs = count_macs(bundle / manifest.graphs["encoder.fp32"].path) if fp32 else None
    peaks = {d: median_run(runs[f"peak.{d}"], "gmacs")["gmacs"] for d in peak_types}
    result: dict = {
        "bundle": str(bundle),
        "model": manifest.model.name,
        "provider": provider,
        "rounds": rounds,
        "matmul_peak_gmacs": peaks,
        "matmul_peak_rounds": {d: [x["gmacs"] for x in runs[f"peak.{d}"]] for d in peaks},
        "encoder_gmacs": macs / 1e9 if macs else None,
        "configs": [],
    }
    for p in precisions:
        size_mb = manifest.files[manifest.encoder(p).path].size / 1e6
        for b in batches:
            row = median_run(runs[f"ort.{p}.{b}"], "p50_ms")
            row |= {"engine": "onnxruntime", "precision": p, "batch": b, "size_mb": size_mb}
            if macs:
                peak = peaks.get(p, peaks["fp32"])
                row["fraction_of_peak"] = macs * b / (row["p50_ms"] / 1e3) / (peak * 1e9)
            result["configs"].append(row)
    for b in batches if torch_model else []:
        metric = "e2e_per_image_ms" if images and b == 1 else "p50_ms"
        row = median_run(runs[f"torch.{b}"], metric)
        torch_precision = "fp16" if gpu else "fp32"
        result["configs"].append(
            row | {"engine": "torch", "precision": torch_precision, "batch": b}
        )
    if images:
        result["e2e"] = {p: median_run(runs[f"e2e.{p}"], "per_image_ms") for p in precisions}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (out / "bench.md").write_text(table)
    plot(result, out / "bench.png")
    typer.echo(table)


def markdown(result: dict) -> str:
    """The bench result as Markdown tables."""
    peaks = result["matmul_peak_gmacs"]
    lines = [
        f"# ufd-bench: {result['model']}",
        "",
        f"MatMul peak here ({result.get('provider', 'cpu')}): "
        + ", ".join(f"{d} {g:.0f} GMAC/s" for d, g in peaks.items())
        + "; "
        f"encoder {result['encoder_gmacs'] or 0:.1f} GMAC per image. Each figure: the "
        f"median of {result.get('rounds', 1)} interleaved rounds, each in a fresh process.",
        "",
        "| engine | precision | batch | start-up s | p50 ms | p90 ms | p99 ms | img/s | "
        "peak RSS MB | size MB | % of peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["configs"]:
        frac = r.get("fraction_of_peak")
        lines.append(
            f"| {r['engine']} | {r['precision']} | {r['batch']} | {r['startup_s']:.2f} | "
            f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['throughput_ips']:.2f} | {r['peak_rss_mb']:.0f} | {r.get('size_mb', 0):.0f} | "
            f"{'' if frac is None else f'{100 * frac:.0f} %'} |"
        )
    if "e2e" in result:
        lines += ["", "| end to end (batch 1, decode included) | ms per image | peak RSS MB |",
                  "|---|---|---|"]  # fmt: skip
        for p, r in result["e2e"].items():
            lines.append(f"| ORT {p} | {r['per_image_ms']:.1f} | {r['peak_rss_mb']:.0f} |")
        for r in result["configs"]:
            if r["engine"] == "torch" and "e2e_per_image_ms" in r:
                lines.append(
                    f"| torch {r['precision']} | {r['e2e_per_image_ms']:.1f} | "
                    f"{r['peak_rss_mb']:.0f} |"
                )
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """p50 latency per configuration as a bar chart (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = result["configs"]
    labels = [f"{r['engine']}\n{r['precision']} b{r['batch']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(5, len(rows) * 1.2), 3.5))
    ax.bar(labels, [r["p50_ms"] / r["batch"] for r in rows])
    ax.set(ylabel="p50 ms per image", title=f"ufd-bench: {result['model']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
