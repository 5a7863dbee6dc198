"""ufd-serve against offline ufd-detect on the same JPEGs, in one run.

Per model (random-init checkpoint, fp32 + int8 bundle and 16 JPEGs of 512-1024 px
from benchmarks/speed.py):

1. offline: ``Detector.score`` over the JPEGs in a fresh process, as ufd-detect runs
   them (default batch, no decode threads on the CPU), after start-up: images/s;
   and the encoder's own batch-1 p50 plus the decode+preprocess p50;
2. ``ufd-serve`` (int8, CPU): one idle request at a time (latency vs encoder p50 +
   decode), then 1, 4 and 16 concurrent clients sending one image per request:
   images/s, p50/p99 latency; server RSS sampled every 0.5 s throughout;
3. with ``--rss-requests N`` (first model only): N more single-image requests from
   4 clients, RSS after the first 10 % (warm-up) and at the end.

With ``--v2`` (serve_v2_bench.py): the Open Inference Protocol paths instead (v2 REST
and gRPC, Ray Serve with 1 and 2 replicas) against ufd-serve's JSON at 16 clients.

Usage:
    python benchmarks/serve_bench.py [--models ViT-B-16-quickgelu,ViT-L-14-quickgelu]
        [--rounds-per-client 4] [--rss-requests 5000] [--v2]
Writes benchmarks/results/serve-bench.json and .md (serve-v2-bench.* with --v2).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serving import Server
from speed import jpeg_folder, prepare

from ufd.client import Client

OFFLINE = """
import json, sys, time, numpy as np
from ufd.runtime import Detector
from ufd.runtime.io.inputs import expand_inputs
detector = Detector.open(sys.argv[1], precision="int8", provider="cpu")
items = list(expand_inputs([sys.argv[2]]))
list(detector.score_batches(items[:2]))  # warm-up
start = time.perf_counter()
n = sum(r.ok for b in detector.score_batches(items) for r in b)
elapsed = time.perf_counter() - start
decode, encode = [], []
for item in items:
    t = time.perf_counter(); x = detector.prepare(item.path); decode.append(time.perf_counter() - t)
    t = time.perf_counter(); detector.features(x[None]); encode.append(time.perf_counter() - t)
print(json.dumps({"images": n, "ips": n / elapsed, "decode_p50_ms": 1e3 * np.median(decode),
                  "encoder_p50_ms": 1e3 * np.median(encode)}))
"""


class RssSampler:
    """Samples a process's RSS every ``period`` seconds in a thread."""

    def __init__(self, pid: int, period: float = 0.5) -> None:
        self.process, self.period = psutil.Process(pid), period
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            rss = self.process.memory_info().rss / 2**20
            self.samples.append((round(time.monotonic() - self._start, 1), round(rss, 1)))

    def now(self) -> float:
        return self.process.memory_info().rss / 2**20

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join()
        return self.samples


def load(client: Client, images: list[Path], clients: int, per_client: int) -> dict:
    """``clients`` threads, each sending ``per_client`` passes over ``images``, one per request."""
    latencies: list[float] = []

    def worker(offset: int) -> None:
        for i in range(per_client * len(images)):
            image = images[(i + offset) % len(images)]
            t = time.perf_counter()
            record = client.detect([image])[0]
            latencies.append(time.perf_counter() - t)
            assert record.ok, record.error

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1e3
    p50, p99 = (float(np.percentile(ms, q)) for q in (50, 99))
    return {
        "clients": clients,
        "requests": len(ms),
        "ips": len(ms) / wall,
        "p50_ms": p50,
        "p99_ms": p99,
    }


def bench_model(model: str, work: Path, images: Path, per_client: int, rss_requests: int) -> dict:
    _, bundle = prepare(model, work / model, "fp32,int8", fresh=False)
    jpegs = sorted(images.glob("*.jpg"))
    offline = offline_rate(bundle, images)
    server = Server(bundle, "--precision", "int8")
    sampler = RssSampler(server.proc.pid)
    client = Client(server.url)
    try:
        client.detect(jpegs[:2])  # warm-up
        idle = []
        encoder_before = _encoder_seconds(server.url)
        for image in jpegs:
            t = time.perf_counter()
            client.detect([image])
            idle.append(time.perf_counter() - t)
            time.sleep(0.2)
        encoder_after = _encoder_seconds(server.url)
        in_service = (encoder_after[0] - encoder_before[0]) / (encoder_after[1] - encoder_before[1])
        phases = [load(client, jpegs, c, per_client) for c in (1, 4, 16)]
        rss = {}
        if rss_requests:
            warm = max(1, rss_requests // 10) // 4
            load(client, jpegs, 4, max(1, warm // len(jpegs)))
            rss["after_warmup_mb"] = sampler.now()
            load(client, jpegs, 4, max(1, (rss_requests - 4 * warm) // (4 * len(jpegs))))
            rss["end_mb"] = sampler.now()
            rss["growth"] = rss["end_mb"] / rss["after_warmup_mb"] - 1
            rss["requests"] = rss_requests
    finally:
        samples = sampler.stop()
        server.stop()
    budget = offline["encoder_p50_ms"] * 1.15 + offline["decode_p50_ms"]
    budget_same_minute = in_service * 1e3 * 1.15 + offline["decode_p50_ms"]
    return {
        "model": model,
        "offline": offline,
        "idle_p50_ms": 1e3 * float(np.median(idle)),
        "idle_mean_ms": 1e3 * float(np.mean(idle)),
        "idle_budget_ms": budget,
        "idle_encoder_mean_ms": in_service * 1e3,
        "idle_budget_same_minute_ms": budget_same_minute,
        "phases": phases,
        "rss": rss,
        "rss_samples": samples,
    }


def _encoder_seconds(url: str) -> tuple[float, float]:
    """(sum, count) of the service's encoder batch seconds so far."""
    from serving import get

    text = get(url + "/metrics")[1]
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("ufd_encoder_batch_seconds_sum", "ufd_encoder_batch_seconds_count"):
            values[name] = float(value)
    return values["ufd_encoder_batch_seconds_sum"], values["ufd_encoder_batch_seconds_count"]


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | offline img/s | serve 1 / 4 / 16 clients img/s | 16 vs offline | "
        "p50 / p99 ms at 16 | idle p50 ms | budget (offline encoder) ms | "
        "idle mean ms | budget (its own encoder) ms | server RSS MB (max) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ips = " / ".join(f"{p['ips']:.2f}" for p in r["phases"])
        last = r["phases"][-1]
        lines.append(
            f"| {r['model']} | {r['offline']['ips']:.2f} | {ips} | "
            f"{last['ips'] / r['offline']['ips']:.2f}x | "
            f"{last['p50_ms']:.0f} / {last['p99_ms']:.0f} | "
            f"{r['idle_p50_ms']:.1f} | {r['idle_budget_ms']:.1f} | {r['idle_mean_ms']:.1f} | "
            f"{r['idle_budget_same_minute_ms']:.1f} | {max(s[1] for s in r['rss_samples']):.0f} |"
        )
    for r in rows:
        if r["rss"]:
            lines.append(
                f"\nRSS over {r['rss']['requests']} requests ({r['model']}): "
                f"{r['rss']['after_warmup_mb']:.1f} MB after warm-up, {r['rss']['end_mb']:.1f} MB "
                f"at the end ({100 * r['rss']['growth']:+.2f} %)"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ViT-B-16-quickgelu,ViT-L-14-quickgelu")
    parser.add_argument("--rounds-per-client", type=int, default=2)
    parser.add_argument("--rss-requests", type=int, default=5000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ufd-speed"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--v2", action="store_true", help="The Open Inference Protocol paths.")
    args = parser.parse_args()
    images = jpeg_folder(args.work / "jpegs")
    if args.v2:
        v2(args, images)
        return
    rows = []
    for i, model in enumerate(args.models.split(",")):
        rss = args.rss_requests if i == 0 else 0
        rows.append(bench_model(model, args.work, images, args.rounds_per_client, rss))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve-bench.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = markdown(rows)
    (args.out / "serve-bench.md").write_text(table)
    print(table)


def offline_rate(bundle: Path, images: Path) -> dict:
    """Offline ufd-detect on ``images`` in a fresh process (int8, CPU)."""
    out = subprocess.run(
        [sys.executable, "-c", OFFLINE, str(bundle), str(images)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def v2(args: argparse.Namespace, images: Path) -> None:
    """``--v2``: every Open Inference Protocol path on each model, written and printed."""
    from serve_v2_bench import bench_v2, markdown_v2

    results, tables = [], []
    for model in args.models.split(","):
        _, bundle = prepare(model, args.work / model, "fp32,int8", fresh=False)
        offline = offline_rate(bundle, images)
        rows = bench_v2(bundle, images, offline, args.rounds_per_client)
        results.append({"model": model, "offline": offline, "paths": rows})
        tables.append(markdown_v2(model, offline, rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve-v2-bench.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "serve-v2-bench.md").write_text("\n".join(tables))
    print("\n".join(tables))


if __name__ == "__main__":
    main()
