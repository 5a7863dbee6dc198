"""Speed targets of issue 6, measured with ufd-bench in one run per model.

For each architecture: a seeded random-init checkpoint (real graph, random
weights), a bundle with fp32 + int8 (dynamic) and a random head, a folder of
JPEGs of 512-1024 px (scikit-image photos resized), then ``ufd-bench`` with the
torch fp32 eager baseline on the same images.

Usage:
    python benchmarks/speed.py [--models ViT-B-16-quickgelu,ViT-L-14-quickgelu]
        [--iterations 10] [--rounds 5] [--fresh]
    python benchmarks/speed.py --provider cuda --models ViT-L-14-quickgelu  # on a GPU:
        fp16 vs torch fp16 eager, batch 1 and 64, fraction of the GPU's fp16 peak
Writes benchmarks/results/speed-<model>-<provider>/bench.{json,md,png} and
speed-<provider>.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from ufd.export.graph.samples import source_photos
from ufd.export.models import MODEL_CONFIG_DIR
from ufd.runtime.bundle import Manifest
from ufd.runtime.methods import config_types

open_clip.add_model_config(MODEL_CONFIG_DIR)


def jpeg_folder(folder: Path, count: int = 16) -> Path:
    """``count`` JPEGs whose longer side is 512-1024 px."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = source_photos()
    rng = np.random.default_rng(0)
    for i in range(count):
        _, image = photos[i % len(photos)]
        side = int(rng.integers(512, 1025))
        scale = side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image.resize(size, Image.Resampling.BICUBIC).save(folder / f"img{i:02d}.jpg", quality=90)
    return folder


def prepare(model: str, work: Path, precisions: str, fresh: bool) -> tuple[Path, Path]:
    """A random checkpoint and a bundle (``precisions``, random head) for ``model``."""
    work.mkdir(parents=True, exist_ok=True)
    checkpoint, head, bundle = work / "ckpt.pt", work / "head.pth", work / "bundle"
    if not checkpoint.exists():
        torch.manual_seed(0)
        clip = open_clip.create_model(model)
        torch.save(clip.state_dict(), checkpoint)
        dim = clip.visual.output_dim
        torch.save({"weight": torch.randn(1, dim) * 0.05, "bias": torch.zeros(1)}, head)
    manifest = bundle / "manifest.json"
    have = Manifest.read(manifest, config_types()).precisions if manifest.exists() else []
    current = not fresh and all(p in have for p in precisions.split(","))
    if not current:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ufd.cli.export",
                "--model",
                model,
                "--pretrained",
                str(checkpoint),
                "--head",
                str(head),
                "--precision",
                precisions,
                "--out",
                str(bundle),
                "--probes",
                "4",
                "--force",
            ],
            check=True,
        )
    return checkpoint, bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default="ViT-B-16-quickgelu,ViT-L-14-quickgelu",
        help="open_clip names; -quickgelu is the activation of OpenAI's CLIP, UnivFD's backbone",
    )
    parser.add_argument("--provider", default="cpu", choices=["cpu", "cuda", "tensorrt"])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fresh", action="store_true", help="re-export the bundles")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ufd-speed"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    gpu = args.provider != "cpu"
    fast, batches = ("fp16", "1,64") if gpu else ("int8", "1")
    baseline = "torch fp16" if gpu else "torch fp32"
    images = jpeg_folder(args.work / "jpegs")
    summary = [
        f"| model | {baseline} e2e ms | ORT {fast} e2e ms | speed-up | {fast} % of peak | "
        f"{fast} peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for model in args.models.split(","):
        checkpoint, bundle = prepare(model, args.work / model, f"fp32,{fast}", args.fresh)
        out = args.out / f"speed-{model}-{args.provider}"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ufd.cli.bench",
                str(bundle),
                "--precision",
                f"fp32,{fast}",
                "--batch",
                batches,
                "--iterations",
                str(args.iterations),
                "--rounds",
                str(args.rounds),
                "--provider",
                args.provider,
                "--images",
                str(images),
                "--torch-model",
                model,
                "--torch-checkpoint",
                str(checkpoint),
                "--out",
                str(out),
            ],
            check=True,
        )
        result = json.loads((out / "bench.json").read_text())
        rows = [r for r in result["configs"] if r["batch"] == 1]
        torch_row = next(r for r in rows if r["engine"] == "torch")
        fast_row = next(r for r in rows if r["engine"] == "onnxruntime" and r["precision"] == fast)
        ort_ms = result["e2e"][fast]["per_image_ms"]
        summary.append(
            f"| {model} | {torch_row['e2e_per_image_ms']:.0f} | {ort_ms:.0f} | "
            f"{torch_row['e2e_per_image_ms'] / ort_ms:.2f}x | "
            f"{100 * fast_row['fraction_of_peak']:.0f} % | "
            f"{result['e2e'][fast]['peak_rss_mb']:.0f} |"
        )
    (args.out / f"speed-{args.provider}.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
