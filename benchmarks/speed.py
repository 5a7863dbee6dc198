"""Speed targets of issue 6, measured with ufd-bench in one run per model.

For each architecture: a seeded random-init checkpoint (real graph, random
weights), a bundle with fp32 + int8 (dynamic) and a random head, a folder of
JPEGs of 512-1024 px (scikit-image photos resized), then ``ufd-bench`` with the
torch fp32 eager baseline on the same images.

Usage:
    python benchmarks/speed.py [--models ViT-B-16-quickgelu,ViT-L-14-quickgelu]
        [--iterations 10] [--rounds 5]
Writes benchmarks/results/speed-<model>/bench.{json,md,png} and speed.md.
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

from ufd.export.models import MODEL_CONFIG_DIR
from ufd.export.samples import source_photos

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


def prepare(model: str, work: Path) -> tuple[Path, Path]:
    """A random checkpoint and a bundle (fp32 + dynamic int8, random head) for ``model``."""
    work.mkdir(parents=True, exist_ok=True)
    checkpoint, head, bundle = work / "ckpt.pt", work / "head.pth", work / "bundle"
    if not checkpoint.exists():
        torch.manual_seed(0)
        clip = open_clip.create_model(model)
        torch.save(clip.state_dict(), checkpoint)
        dim = clip.visual.output_dim
        torch.save({"weight": torch.randn(1, dim) * 0.05, "bias": torch.zeros(1)}, head)
    manifest = bundle / "manifest.json"
    current = manifest.exists() and all(
        g.get("attention") == "fused" or g["role"] != "encoder"
        for g in json.loads(manifest.read_text())["graphs"].values()
    )
    if not current:  # missing, or exported before attention fusion
        subprocess.run(
            [sys.executable, "-m", "ufd.cli.export", "--model", model, "--pretrained",
             str(checkpoint), "--head", str(head), "--precision", "fp32,int8",
             "--out", str(bundle), "--probes", "4", "--force"],
            check=True,
        )  # fmt: skip
    return checkpoint, bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        default="ViT-B-16-quickgelu,ViT-L-14-quickgelu",
        help="open_clip names; -quickgelu is the activation of OpenAI's CLIP, UnivFD's backbone",
    )
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ufd-speed"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    images = jpeg_folder(args.work / "jpegs")
    summary = ["| model | torch fp32 e2e ms | ORT int8 e2e ms | speed-up | int8 % of peak | "
               "int8 peak RSS MB |", "|---|---|---|---|---|---|"]  # fmt: skip
    for model in args.models.split(","):
        checkpoint, bundle = prepare(model, args.work / model)
        out = args.out / f"speed-{model}"
        subprocess.run(
            [sys.executable, "-m", "ufd.cli.bench", str(bundle), "--precision", "fp32,int8",
             "--batch", "1", "--iterations", str(args.iterations), "--rounds", str(args.rounds),
             "--images", str(images),
             "--torch-model", model, "--torch-checkpoint", str(checkpoint), "--out", str(out)],
            check=True,
        )  # fmt: skip
        result = json.loads((out / "bench.json").read_text())
        torch_row = next(r for r in result["configs"] if r["engine"] == "torch")
        int8_row = next(r for r in result["configs"] if r["precision"] == "int8")
        ort_ms = result["e2e"]["int8"]["per_image_ms"]
        summary.append(
            f"| {model} | {torch_row['e2e_per_image_ms']:.0f} | {ort_ms:.0f} | "
            f"{torch_row['e2e_per_image_ms'] / ort_ms:.2f}x | "
            f"{100 * int8_row['fraction_of_peak']:.0f} % | "
            f"{result['e2e']['int8']['peak_rss_mb']:.0f} |"
        )
    (args.out / "speed.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
