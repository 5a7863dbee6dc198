"""ufd-scan (local and Ray engines) against ufd-detect on the same JPEGs, in one run.

1. Throughput: ``ufd-detect`` (JSONL to a file), ``ufd-scan --engine local`` and
   ``ufd-scan --engine ray`` (a local Ray instance) on the same N JPEGs of 512-1024
   px with the int8 bundle of ``--model``; wall time of each whole command (start-up
   included) and images/s.
2. Memory (``--features-images M``): ``ufd-scan --engine ray --features`` over M small
   JPEGs with the tiny model (the pipeline's memory does not depend on the encoder's
   size; a big encoder would take hours); the summed RSS of the driver and every Ray
   process, sampled each second: after 10 % of the run and at the end.

Usage:
    python benchmarks/scan_bench.py [--model ViT-B-16-quickgelu] [--images 512]
        [--features-images 100000]
Writes benchmarks/results/scan-bench.json and .md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
from PIL import Image
from speed import jpeg_folder, prepare

PY = [sys.executable, "-m"]


def timed(cmd: list[str], sample: bool = False) -> dict:
    """Run ``cmd``; its wall time and (with ``sample``) the RSS of it and its children."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def watch() -> None:
        root = psutil.Process(proc.pid)
        while not stop.wait(1.0):
            try:
                procs = [root, *root.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in procs if p.is_running())
            except psutil.Error:
                continue
            samples.append((round(time.perf_counter() - start, 1), round(rss / 2**20, 1)))

    watcher = threading.Thread(target=watch, daemon=True)
    if sample:
        watcher.start()
    _, err = proc.communicate()
    stop.set()
    if proc.returncode != 0:  # the benchmark's images are all valid: 1 (some failed) is a failure
        raise RuntimeError(f"{cmd} exited {proc.returncode}: {err[-2000:]}")
    return {"wall_s": time.perf_counter() - start, "rss_samples": samples, "stderr": err[-500:]}


def small_jpegs(folder: Path, count: int) -> Path:
    """``count`` 256 x 256 JPEGs (cheap to decode), made once."""
    folder.mkdir(parents=True, exist_ok=True)
    have = len(list(folder.glob("*.jpg")))
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    for i in range(have, count):
        pixels = np.roll(base, i % 251, axis=i % 2)
        Image.fromarray(pixels).save(folder / f"s{i:06d}.jpg", quality=80)
    return folder


def throughput(bundle: Path, images: Path, work: Path, n: int) -> dict:
    runs = {}
    out = work / "scan-out"
    detect = [
        *PY,
        "ufd.cli.detect",
        str(bundle),
        str(images),
        "-q",
        "--format",
        "jsonl",
        "--output",
        str(work / "detect.jsonl"),
    ]
    scan = [
        *PY,
        "ufd.cli.scan",
        str(bundle),
        str(images),
        "--out",
        str(out),
        "--overwrite",
        "--no-progress",
    ]
    variants = {
        "ufd-detect": detect,
        "scan local (1 worker)": scan,
        "scan local (2 workers)": [*scan, "--workers", "2"],
        "scan ray (1 actor x 1 CPU, 2 threads)": [*scan, "--engine", "ray", "--threads", "2"],
        "scan ray (1 actor x 1 CPU, 1 thread)": [*scan, "--engine", "ray"],
        "scan ray (2 actors x 0.5 CPU, 1 thread)": [
            *scan,
            "--engine",
            "ray",
            "--workers",
            "2",
            "--cpus-per-worker",
            "0.5",
            "--threads",
            "1",
        ],
    }
    for name, cmd in variants.items():
        result = timed(cmd)
        runs[name] = {"wall_s": result["wall_s"], "ips": n / result["wall_s"]}
        print(f"{name}: {runs[name]['ips']:.2f} images/s", flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-16-quickgelu")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--features-images", type=int, default=100_000)
    parser.add_argument("--skip-throughput", action="store_true", help="only the memory part")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ufd-speed"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    report = {"model": args.model, "images": args.images, "throughput": {}}
    if not args.skip_throughput:
        _, bundle = prepare(args.model, args.work / args.model, "fp32,int8", fresh=False)
        images = jpeg_folder(args.work / f"jpegs-{args.images}", count=args.images)
        report["throughput"] = throughput(bundle, images, args.work, args.images)
    if args.features_images:
        _, tiny = prepare("ufd-tiny-vit", args.work / "ufd-tiny-vit", "fp32,int8", fresh=False)
        small = small_jpegs(args.work / "small-jpegs", args.features_images)
        out = args.work / "features-scan"
        shutil.rmtree(out, ignore_errors=True)
        run = timed(
            [
                *PY,
                "ufd.cli.scan",
                str(tiny),
                str(small),
                "--out",
                str(out),
                "--engine",
                "ray",
                "--features",
                "--no-progress",
                "--object-store-mb",
                "512",
            ],
            sample=True,
        )
        written = pq.ParquetDataset(out).read(columns=["path"]).num_rows
        if written != args.features_images:
            raise RuntimeError(f"{written} rows for {args.features_images} images in {out}")
        samples = run["rss_samples"]
        tenth = samples[max(0, len(samples) // 10)][1] if samples else float("nan")
        report["features"] = {
            "images": args.features_images,
            "wall_s": run["wall_s"],
            "ips": args.features_images / run["wall_s"],
            "rss_at_10pct_mb": tenth,
            "rss_end_mb": samples[-1][1] if samples else float("nan"),
            "rss_max_mb": max((s[1] for s in samples), default=float("nan")),
            "rss_samples": samples,
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scan-bench.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = []
    if report["throughput"]:
        lines += [
            f"| {args.model} int8, {args.images} JPEGs | wall s | images/s | vs ufd-detect |",
            "|---|---|---|---|",
        ]
        base = report["throughput"]["ufd-detect"]["ips"]
        for name, r in report["throughput"].items():
            ratio = r["ips"] / base
            lines.append(f"| {name} | {r['wall_s']:.1f} | {r['ips']:.2f} | {ratio:.2f}x |")
    if "features" in report:
        f = report["features"]
        lines.append(
            f"\nFeatures of {f['images']} images (tiny model, ray, --features): "
            f"{f['wall_s']:.0f} s ({f['ips']:.0f} images/s); RSS of all processes "
            f"{f['rss_at_10pct_mb']:.0f} MB at 10 %, {f['rss_end_mb']:.0f} MB at the end, "
            f"{f['rss_max_mb']:.0f} MB at most"
        )
    (args.out / "scan-bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
