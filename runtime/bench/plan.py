"""What ``ufd-bench`` runs, in which order, and how the rounds become one report.

A :class:`BenchPlan` names every job (MatMul peaks, encoder latency per
precision and batch, the torch baseline, end-to-end runs); :meth:`BenchPlan.run`
runs each job ``rounds`` times round-robin in fresh processes (this VM's speed
drifts by minutes, so interleaving spreads the drift over every configuration),
and :meth:`BenchPlan.summarise` keeps, per job, the round with the median time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ufd.runtime.bench.measure import child, count_macs, median_run
from ufd.runtime.bundle import Manifest

Job = tuple[str, dict[str, Any]]


@dataclass
class BenchPlan:
    """One ``ufd-bench`` run: a bundle, its precisions and batches, on one provider."""

    bundle: Path
    precisions: list[str]
    batches: list[int]
    iterations: int = 20
    rounds: int = 3
    provider: str = "cpu"
    threads: int | None = None
    images: Path | None = None
    torch_model: str | None = None
    torch_checkpoint: str = "none"

    @property
    def gpu(self) -> bool:
        """Whether the provider is a GPU one (fp16 peaks, torch fp16 baseline)."""
        return self.provider != "cpu"

    @property
    def peak_types(self) -> tuple[str, str]:
        """The MatMul peaks measured: the precisions that run on the provider."""
        return ("fp32", "fp16") if self.gpu else ("fp32", "int8")

    def jobs(self) -> dict[str, Job]:
        """Every job by key: (the :mod:`ufd.runtime.bench.measure` runner, its arguments)."""
        ort: dict[str, Any] = {
            "bundle": str(self.bundle),
            "threads": self.threads,
            "provider": self.provider,
        }
        jobs: dict[str, Job] = {
            f"peak.{d}": ("run_peak", {"dtype": d, "provider": self.provider})
            for d in self.peak_types
        }
        for p in self.precisions:
            for b in self.batches:
                args = {**ort, "precision": p, "batch": b, "iterations": self.iterations}
                jobs[f"ort.{p}.{b}"] = ("run_ort", args)
        for b in self.batches if self.torch_model else []:
            args = {
                "model": self.torch_model,
                "checkpoint": self.torch_checkpoint,
                "folder": str(self.images) if self.images and b == 1 else None,
                "batch": b,
                "iterations": max(3, self.iterations // 2),
                "device": "cuda" if self.gpu else "cpu",
            }
            jobs[f"torch.{b}"] = ("ufd.export.bench_torch:run_torch", args)
        for p in self.precisions if self.images else []:
            jobs[f"e2e.{p}"] = ("run_e2e_ort", {**ort, "precision": p, "folder": str(self.images)})
        return jobs

    def run(
        self, on_step: Callable[[str], None] = lambda _: None
    ) -> dict[str, list[dict[str, Any]]]:
        """Run every job ``rounds`` times, round-robin, each in a fresh process."""
        jobs = self.jobs()
        runs: dict[str, list[dict[str, Any]]] = {key: [] for key in jobs}
        for r in range(self.rounds):
            for key, (kind, kwargs) in jobs.items():
                on_step(f"round {r + 1}/{self.rounds}: {key}...")
                runs[key].append(child(kind, **kwargs))
        return runs

    def summarise(
        self, runs: dict[str, list[dict[str, Any]]], manifest: Manifest
    ) -> dict[str, Any]:
        """The report: median rounds, MACs and fractions of the measured peaks."""
        fp32 = manifest.encoders.get("fp32")
        macs = count_macs(self.bundle / fp32.file) if fp32 else None
        peaks = {d: median_run(runs[f"peak.{d}"], "gmacs")["gmacs"] for d in self.peak_types}
        result: dict[str, Any] = {
            "bundle": str(self.bundle),
            "model": manifest.model.name,
            "provider": self.provider,
            "rounds": self.rounds,
            "matmul_peak_gmacs": peaks,
            "matmul_peak_rounds": {d: [x["gmacs"] for x in runs[f"peak.{d}"]] for d in peaks},
            "encoder_gmacs": macs / 1e9 if macs else None,
            "configs": [],
        }
        for p in self.precisions:
            size_mb = manifest.files[manifest.encoder(p).file].size / 1e6
            for b in self.batches:
                row = median_run(runs[f"ort.{p}.{b}"], "p50_ms")
                row |= {"engine": "onnxruntime", "precision": p, "batch": b, "size_mb": size_mb}
                if macs:
                    peak = peaks.get(p, peaks["fp32"])
                    row["fraction_of_peak"] = macs * b / (row["p50_ms"] / 1e3) / (peak * 1e9)
                result["configs"].append(row)
        for b in self.batches if self.torch_model else []:
            metric = "e2e_per_image_ms" if self.images and b == 1 else "p50_ms"
            row = median_run(runs[f"torch.{b}"], metric)
            precision = "fp16" if self.gpu else "fp32"
            result["configs"].append(row | {"engine": "torch", "precision": precision, "batch": b})
        if self.images:
            result["e2e"] = {
                p: median_run(runs[f"e2e.{p}"], "per_image_ms") for p in self.precisions
            }
        return result


def markdown(result: dict[str, Any]) -> str:
    """The bench result as Markdown tables."""
    peaks = ", ".join(f"{d} {g:.0f} GMAC/s" for d, g in result["matmul_peak_gmacs"].items())
    lines = [
        f"# ufd-bench: {result['model']}",
        "",
        f"MatMul peak here ({result.get('provider', 'cpu')}): {peaks}; "
        f"encoder {result['encoder_gmacs'] or 0:.3g} GMAC per image. Each figure: the "
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
        lines += [
            "",
            "| end to end (batch 1, decode included) | ms per image | peak RSS MB |",
            "|---|---|---|",
        ]
        for p, r in result["e2e"].items():
            lines.append(f"| ORT {p} | {r['per_image_ms']:.1f} | {r['peak_rss_mb']:.0f} |")
        for r in result["configs"]:
            if r["engine"] == "torch" and "e2e_per_image_ms" in r:
                lines.append(
                    f"| torch {r['precision']} | {r['e2e_per_image_ms']:.1f} | "
                    f"{r['peak_rss_mb']:.0f} |"
                )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
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
