"""Where a one-image ``ufd-detect`` spends its time, and its wall time (median of N).

For each bundle: N fresh runs of ``ufd-detect BUNDLE image.jpg --format jsonl``
(integrity checked as always: first run hashes, later runs trust the verified
stamps, see ufd.runtime.bundle.stamps), with ``UFD_VERIFY=full`` for comparison,
and one profiled run that times the steps: imports, opening the bundle (manifest),
hashing, creating the encoder session, the linear head, decoding and the
encoder.

Usage:
    python benchmarks/startup.py [--bundles /tmp/ufd-speed/ViT-B-16-quickgelu/bundle,...]
        [--runs 5]
Writes benchmarks/results/startup.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

PROFILE = """
import json, sys, time
t0 = time.perf_counter()
import ufd.cli.detect  # what the command imports
t_import = time.perf_counter()
from ufd.runtime.methods import open_bundle
from ufd.runtime.providers import start_provider
from ufd.runtime.sessions import EncoderSession, HeadSession
bundle = open_bundle(sys.argv[1]); t_open = time.perf_counter()
provider = start_provider("auto"); t_provider = time.perf_counter()
graph = bundle.manifest.encoder(provider.best_precision(bundle.manifest.precisions))
path = bundle.encoder_path(graph); t_hash = time.perf_counter()
encoder = EncoderSession(path, provider, None, provider.optimization("int8"))
t_session = time.perf_counter()
head = HeadSession(bundle.graph_path(bundle.manifest.methods["linear"].files["graph"]))
t_head = time.perf_counter()
from ufd.runtime.io.decode import decode_image
from ufd.runtime.preprocess import build_preprocessor
x = build_preprocessor(bundle.manifest.preprocess)(decode_image(sys.argv[2]))
t_decode = time.perf_counter()
head(encoder(x[None])); t_encode = time.perf_counter()
print(json.dumps({"imports": t_import - t0, "open_manifest": t_open - t_import,
    "provider_probe": t_provider - t_open, "hash_encoder": t_hash - t_provider,
    "encoder_session": t_session - t_hash, "head": t_head - t_session,
    "decode": t_decode - t_head, "encode_one": t_encode - t_decode}))
"""


def wall(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundles",
        default="/tmp/ufd-speed/ViT-B-16-quickgelu/bundle,/tmp/ufd-speed/ViT-L-14-quickgelu/bundle",
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    image = Path(tempfile.mkdtemp()) / "one.jpg"
    pixels = np.random.default_rng(0).integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image, quality=90)
    cache = tempfile.mkdtemp(prefix="ufd-startup-cache-")
    rows = []
    for bundle in args.bundles.split(","):
        cmd = [sys.executable, "-m", "ufd.cli.detect", bundle, str(image), "--format", "jsonl"]
        env = os.environ | {"UFD_CACHE_DIR": cache}
        first = wall(cmd, env)  # hashes everything once, records stamps
        stamped = [wall(cmd, env) for _ in range(args.runs)]
        full = [wall(cmd, env | {"UFD_VERIFY": "full"}) for _ in range(args.runs)]
        out = subprocess.run(
            [sys.executable, "-c", PROFILE, bundle, str(image)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        steps = json.loads(out.stdout.strip().splitlines()[-1])
        row = {
            "bundle": bundle,
            "first_run_s": first,
            "median_s": float(np.median(stamped)),
            "runs_s": stamped,
            "median_full_hash_s": float(np.median(full)),
            "steps_s": steps,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    header = (
        "| bundle | median wall s (stamps) | median wall s (full hash) | first run s | "
        "imports | hash | session | encode |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["steps_s"]
        lines.append(
            f"| {Path(r['bundle']).parent.name} | {r['median_s']:.2f} | "
            f"{r['median_full_hash_s']:.2f} | {r['first_run_s']:.2f} | {s['imports']:.2f} | "
            f"{s['hash_encoder']:.2f} | {s['encoder_session']:.2f} | {s['encode_one']:.2f} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "startup.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "startup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
