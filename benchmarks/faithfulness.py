"""Faithfulness check: ufd-export + ufd-detect vs the official UnivFD pipeline.

The official pipeline is rebuilt independently of ufd's export code:
``PIL.Image.open(p).convert("RGB")`` -> torchvision ``CenterCrop(224), ToTensor,
Normalize(CLIP)`` -> ``open_clip`` CLIP ``encode_image`` -> ``nn.Linear`` with the
head weights -> logit. ufd runs the bundle through its runtime (numpy + ORT).

Usage:
    python benchmarks/faithfulness.py --model ViT-L-14 \\
        --head ../shared/reference/univfd/fc_weights.pth

Without weights to download, a random-init checkpoint of the architecture is
saved locally and passed as ``--pretrained PATH`` (random weights, real graph).
Writes ``benchmarks/results/faithfulness-<model>.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image
from torchvision import transforms

from ufd.export.graph.samples import write_samples
from ufd.export.models import MODEL_CONFIG_DIR
from ufd.runtime import Detector
from ufd.runtime.bundle.manifest import CLIP_MEAN, CLIP_STD

open_clip.add_model_config(MODEL_CONFIG_DIR)


def official_logits(model_name: str, checkpoint: Path, head: Path, paths: list[Path]) -> list:
    """Logits of the official UnivFD test pipeline, one per path (None if unreadable)."""
    model = open_clip.create_model(model_name, pretrained=str(checkpoint)).eval()
    state = torch.load(head, map_location="cpu", weights_only=True)
    fc = torch.nn.Linear(state["weight"].shape[1], 1)
    fc.load_state_dict(state)
    normalize = transforms.Normalize(CLIP_MEAN, CLIP_STD)
    tf = transforms.Compose([transforms.CenterCrop(224), transforms.ToTensor(), normalize])
    out = []
    with torch.no_grad():
        for path in paths:
            try:
                x = tf(Image.open(path).convert("RGB")).unsqueeze(0)
            except OSError:
                out.append(None)
                continue
            out.append(float(fc(model.encode_image(x)).item()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-L-14")
    parser.add_argument("--head", type=Path, required=True, help="official fc_weights.pth")
    parser.add_argument("--precision", default="fp32,int8")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="ufd-faith-"))
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = work / f"{args.model}-random.pt"
    if not checkpoint.exists():
        torch.manual_seed(0)
        torch.save(open_clip.create_model(args.model).state_dict(), checkpoint)
    photos = write_samples(work / "photos")
    bundle = work / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)

    t0 = time.perf_counter()
    cmd = [
        sys.executable,
        "-m",
        "ufd.cli.export",
        "--model",
        args.model,
        "--pretrained",
        str(checkpoint),
        "--head",
        str(args.head),
        "--precision",
        args.precision,
        "--out",
        str(bundle),
    ]
    subprocess.run(cmd, check=True)
    export_s = time.perf_counter() - t0

    reference = official_logits(args.model, checkpoint, args.head, photos)
    result = {"model": args.model, "n_images": len(photos), "export_seconds": round(export_s, 1)}
    result["bundle_mb"] = {
        p.name: round(p.stat().st_size / 1e6, 1) for p in sorted(bundle.iterdir())
    }
    for precision in args.precision.split(","):
        detector = Detector.open(bundle, precision=precision, provider="cpu")
        records = list(detector.score(photos, batch_size=4))
        both = zip(records, reference, strict=True)
        pairs = [(r.logit, ref) for r, ref in both if r.ok and ref is not None]
        errors = np.abs(np.array([a - b for a, b in pairs]))
        agree = np.mean([(a > 0) == (b > 0) for a, b in pairs])
        result[precision] = {
            "scored": len(pairs),
            "failed": [r.path for r in records if not r.ok],
            "max_abs_logit_error": float(errors.max()),
            "mean_abs_logit_error": float(errors.mean()),
            "decision_agreement": float(agree),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"faithfulness-{args.model}.json"
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
