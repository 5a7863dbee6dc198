"""Speed of every detector: ufd's graphs against the official torch code, in one run.

    python benchmarks/detectors_speed.py --work /tmp/ufd-detectors [--skip-export]
    python benchmarks/detectors_speed.py --work /tmp/ufd-detectors --fullres

``--fullres``: today's detectors (DDA, AlignedForensics, B-Free, SPAI;
:mod:`fullres_models`), end to end on a 1 MP and a 4 MP JPEG (decode, units,
encoder, aggregator, head): ms per image (median of ``--runs`` after one warm-up)
and the peak RSS, each configuration (ufd int8, ufd fp32, official torch fp32)
in its own fresh process, in one run. Writes ``detectors_fullres.json``.

Architecture-sized random-init weights in each detector's official file format
(as tests/official_detectors.py writes them): UnivFD and RINE on CLIP
ViT-L/14, C2P-CLIP on a ViT-L/14 ``CLIPModel``, Community Forensics on a
ViT-S/16 at 384 px. Each is exported (fp32 and int8), then measured on one
1024x768 JPEG:

* encoder ms per image (batch 1, median of ``--runs``) for int8 and fp32;
* one-image wall: ``python -m ufd.cli.detect BUNDLE one.jpg`` in a fresh
  process (median of 3; the saved-graph cache warm);
* the official torch pipeline's ms per image (batch 1, fp32, the same threads).

Prints a Markdown table and writes ``detectors_speed.json`` to ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from official_detectors import (
    C2P_TRANSFORM,
    RINE_TRANSFORM,
    OfficialC2PClip,
    OfficialRine,
    OfficialViTClassifier,
    clip_config,
    commfor_transform,
)

from ufd.export.graph.build import ExportOptions, export_bundle
from ufd.runtime import Detector


def _official_models(work: Path) -> dict:
    """Each detector's official model (random init) and the files ufd exports it from."""
    import open_clip
    from torchvision import transforms

    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-L-14-quickgelu").eval()
    clip_file = work / "vitl14_openai_layout.pt"
    if not clip_file.exists():
        torch.save(clip.state_dict(), clip_file)
    head = torch.nn.Linear(768, 1).eval()
    head_file = work / "univfd_head.pth"
    torch.save(head.state_dict(), head_file)
    univfd = torch.nn.Sequential(clip.visual, head).eval()
    rine = OfficialRine(clip.visual, nproj=2, proj_dim=1024).eval()  # the 4-class shape
    rine_file = work / "model_4class_trainable.pth"
    torch.save(rine.trainable_state(), rine_file)
    c2p = OfficialC2PClip(clip_config(width=1024, layers=24, heads=16, patch=14)).eval()
    c2p_file = work / "C2P_CLIP_release_random.pth"
    if not c2p_file.exists():
        torch.save(c2p.state_dict(), c2p_file)
    commfor = OfficialViTClassifier("vit_small_patch16_384", 384).eval()
    commfor_file = work / "commfor_384.pth"
    torch.save({"model": commfor.state_dict()}, commfor_file)
    univfd_transform = transforms.Compose(RINE_TRANSFORM.transforms)  # centre crop, CLIP norm
    model = {"quick_gelu": True, "model": "ViT-L-14-quickgelu", "pretrained": str(clip_file)}
    return {
        "univfd": (univfd, univfd_transform, {**model, "head": str(head_file)}),
        "rine": (rine, RINE_TRANSFORM, {**model, "head": str(rine_file)}),
        "c2p-clip": (c2p, C2P_TRANSFORM, {"pretrained": str(c2p_file)}),
        "commfor": (commfor, commfor_transform(384), {"pretrained": str(commfor_file)}),
    }


def _ms_per_image(run, runs: int) -> float:
    run()  # warm up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def _wall(bundle: Path, image: Path) -> float:
    command = [sys.executable, "-m", "ufd.cli.detect", str(bundle), str(image), "-q"]
    subprocess.run(command, check=True, capture_output=True)  # fills the graph cache
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    """Export, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--export-only", action="store_true", help="Export, measure nothing.")
    parser.add_argument("--only", default="univfd,rine,c2p-clip,commfor")
    parser.add_argument("--fullres", action="store_true", help="Today's detectors, 1 and 4 MP.")
    parser.add_argument(
        "--fresh", action="store_true", help="--fullres: measure every row again (else resume)."
    )
    parser.add_argument("--child", nargs=3, metavar=("DETECTOR", "IMAGE", "ENGINE"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.child or args.fullres:
        from fullres_speed import child, fullres

        (child if args.child else fullres)(args)
        return
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    image = args.work / "one.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)).save(image)
    rows = {}
    for name, (official, transform, files) in _official_models(args.work).items():
        if name not in args.only.split(","):
            continue
        bundle = args.work / name
        if not args.skip_export or not bundle.exists():
            started = time.perf_counter()
            export_bundle(
                ExportOptions(
                    out=bundle, detector=name, precisions=("fp32", "int8"), force=True, **files
                )
            )
            print(f"{name}: exported in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        if args.export_only:
            continue
        with Image.open(image) as img:
            x = transform(img.convert("RGB")).unsqueeze(0)
        with torch.no_grad():
            torch_ms = _ms_per_image(lambda m=official, x=x: m(x), args.runs)
        row = {"official_torch_fp32_ms": torch_ms}
        for precision in ("int8", "fp32"):
            detector = Detector.open(bundle, precision=precision, provider="cpu")
            pixels = detector.prepare(image)[None]
            row[f"encoder_{precision}_ms"] = _ms_per_image(
                lambda d=detector, p=pixels: d.features(p), args.runs
            )
        row["one_image_wall_s"] = _wall(bundle, image)
        rows[name] = row
        print(name, json.dumps(row), file=sys.stderr)
    (args.work / "detectors_speed.json").write_text(json.dumps(rows, indent=2) + "\n")
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "",
    )
    print(f"{cpu}, {threads} threads\n")
    print(
        "| detector | encoder int8 ms/img | encoder fp32 ms/img | official torch fp32 ms/img "
        "| one-image wall s |"
    )
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['encoder_int8_ms']:.0f} | {row['encoder_fp32_ms']:.0f} | "
            f"{row['official_torch_fp32_ms']:.0f} | {row['one_image_wall_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
