"""A one-image ``ufd-detect``: wall time and peak RSS, median of N fresh processes.

For each bundle, with one cache folder per configuration:

* ``first``: the first run on this host (hashes the graph, measures its parity on
  the probes, saves this CPU's optimised copy of the graph);
* ``cached``: N later runs (stamps, the cached parity, the optimised copy:
  memory-mapped, pre-packed weights);
* ``no graph cache``: N runs with ``UFD_GRAPH_CACHE=off`` (what runs cost before
  the copies: the graph parsed, optimised and packed at every start);
* ``socket``: N runs of ``ufd-detect --server unix:SOCK image.jpg`` against a
  ``ufd-serve BUNDLE --socket SOCK`` started for it, beside the encoder's own time
  for one image (p50 of 20 calls in one process).

Peak RSS is ``/usr/bin/time``'s maximum resident set. Usage:
    python benchmarks/startup.py --bundles B1,B2 [--runs 5]
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
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image


def one_run(bundle: str, image: Path, env: dict) -> tuple[float, float, str]:
    """(wall s, peak RSS MB, the record) of one ``ufd-detect`` process."""
    cmd = [
        "/usr/bin/time",
        "-f",
        "%e %M",
        sys.executable,
        "-m",
        "ufd.cli.detect",
        bundle,
        str(image),
        "--format",
        "jsonl",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    wall, rss_kb = done.stderr.strip().splitlines()[-1].split()
    return float(wall), float(rss_kb) / 1024, done.stdout.strip()


def runs(bundle: str, image: Path, env: dict, n: int) -> dict:
    found = [one_run(bundle, image, env) for _ in range(n)]
    walls, rss = [w for w, _, _ in found], [r for _, r, _ in found]
    return {
        "median_s": float(np.median(walls)),
        "runs_s": walls,
        "median_rss_mb": float(np.median(rss)),
        "records": sorted({r for _, _, r in found}),
    }


ENCODER_P50 = """
import sys, time, numpy as np
from ufd.runtime import Detector
d = Detector.open(sys.argv[1], provider="cpu")
x = d.prepare(sys.argv[2])[None]
times = []
for _ in range(21):
    t = time.perf_counter(); d.encoder(x); times.append(time.perf_counter() - t)
print(float(np.median(times[1:])))
"""


def socket_runs(bundle: str, image: Path, env: dict, n: int) -> dict:
    """One-image ``ufd-detect --server unix:SOCK`` wall times against a running service."""
    sock = image.parent / "ufd.sock"

    port = 8700 + os.getpid() % 200
    serve = [
        sys.executable,
        "-m",
        "ufd.cli.serve",
        bundle,
        "--socket",
        str(sock),
        "--port",
        str(port),
        "--provider",
        "cpu",
    ]
    server = subprocess.Popen(serve, env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        cmd = [
            "/usr/bin/time",
            "-f",
            "%e",
            sys.executable,
            "-m",
            "ufd.cli.detect",
            "--server",
            f"unix:{sock}",
            str(image),
            "--format",
            "jsonl",
        ]
        walls = []
        for _ in range(n):
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            walls.append(float(done.stderr.strip().splitlines()[-1]))
    finally:
        server.terminate()
        server.wait(timeout=60)
    encoder = subprocess.run(
        [sys.executable, "-c", ENCODER_P50, bundle, str(image)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return {
        "median_s": float(np.median(walls)),
        "runs_s": walls,
        "encoder_p50_s": float(encoder.stdout.strip().splitlines()[-1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", required=True, help="comma-separated bundle folders")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ufd-startup-") as work:
        rows = measure(args.bundles.split(","), Path(work), args.runs)
    write_table(rows, args.out)


def measure(bundles: list[str], work: Path, n: int) -> list[dict]:
    """One row per bundle; each bundle gets its own empty cache under ``work``."""
    image = work / "one.jpg"
    pixels = np.random.default_rng(0).integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image, quality=90)
    rows = []
    for index, bundle in enumerate(bundles):
        cache = work / f"cache-{index}"
        cache.mkdir()
        env = os.environ | {"UFD_CACHE_DIR": str(cache)}
        first_wall, first_rss, _ = one_run(bundle, image, env)
        cached = runs(bundle, image, env, n)
        plain = runs(bundle, image, env | {"UFD_GRAPH_CACHE": "off"}, n)
        row = {
            "bundle": bundle,
            "first_s": first_wall,
            "first_rss_mb": first_rss,
            "cached": cached,
            "no_graph_cache": plain,
            "same_records": cached["records"] == plain["records"],
            "socket": socket_runs(bundle, image, env, n),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def write_table(rows: list[dict], out: Path) -> None:
    """``startup.json`` and the markdown table in ``out``."""
    lines = [
        "| bundle | first run s | median s (graph cache) | median s (no graph cache) | "
        "peak RSS MB (cache / none) | same records | socket median s | encoder p50 s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c, p = r["cached"], r["no_graph_cache"]
        lines.append(
            f"| {r['bundle']} | {r['first_s']:.2f} | {c['median_s']:.2f} | {p['median_s']:.2f} "
            f"| {c['median_rss_mb']:.0f} / {p['median_rss_mb']:.0f} | {r['same_records']} "
            f"| {r['socket']['median_s']:.2f} | {r['socket']['encoder_p50_s']:.3f} |"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "startup.json").write_text(json.dumps(rows, indent=2))
    (out / "startup.md").write_text("\n".join(lines) + "\n")

    print("\n".join(lines))


if __name__ == "__main__":
    main()
