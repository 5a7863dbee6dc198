"""``serve_bench.py --v2``: the Open Inference Protocol paths against ufd-serve's own.

On one int8 bundle (random-init weights, the 16 JPEGs of 512-1024 px that
serve_bench.py uses), in one run on this machine: offline ``ufd-detect``
images/s, then 16 concurrent clients sending one image per request to

* ``ufd-serve`` (its JSON, ufd.client),
* ``ufd-serve --protocol v2`` over REST (tritonclient.http, base64 BYTES),
* the same over gRPC (tritonclient.grpc, raw BYTES),
* ``--protocol v2 --replicas 1`` and ``--replicas 2`` (Ray Serve on a local Ray),

each: images/s, the ratio to offline, p50/p99 latency under load, and the p50/p99
of one image at a time (idle). Every answer is checked (no error element).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from serving import Server, free_port

from ufd.client import Client

CLIENTS = 16


def _timed(send, images: list[Path], clients: int, per_client: int) -> dict:
    latencies: list[float] = []

    def worker(offset: int) -> None:
        call = send()
        for i in range(per_client * len(images)):
            started = time.perf_counter()
            call(images[(i + offset) % len(images)])
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1e3
    return {
        "requests": len(ms),
        "ips": len(ms) / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def _ufd_json(url: str):
    def make():
        client = Client(url)

        def call(image: Path) -> None:
            record = client.detect([image])[0]
            assert record.ok, record.error

        return call

    return make


def _v2(kind: str, address: str):
    def make():
        if kind == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        client = module.InferenceServerClient(address)

        def call(image: Path) -> None:
            data = image.read_bytes()
            tensor = module.InferInput("image", [1], "BYTES")
            element = data if kind == "grpc" else base64.b64encode(data)
            tensor.set_data_from_numpy(np.array([element], dtype=np.object_))
            result = client.infer("ufd", [tensor])
            assert result.as_numpy("error")[0] in (b"", ""), result.as_numpy("error")

        return call

    return make


def _phase(name: str, send, images: list[Path], per_client: int) -> dict:
    call = send()
    for image in images[:2]:
        call(image)  # warm-up
    idle = []
    for image in images:
        started = time.perf_counter()
        call(image)
        idle.append(1e3 * (time.perf_counter() - started))
    row = _timed(send, images, CLIENTS, per_client)
    row |= {"path": name, "idle_p50_ms": float(np.median(idle))}
    row["idle_p99_ms"] = float(np.percentile(idle, 99))
    print(name, json.dumps(row), file=sys.stderr)
    return row


def bench_v2(bundle: Path, images: Path, offline: dict, per_client: int) -> list[dict]:
    """Every path at 16 clients on ``bundle``; ``offline`` is serve_bench's offline row."""
    jpegs = sorted(images.glob("*.jpg"))
    rows = []
    server = Server(bundle, "--precision", "int8")
    try:
        rows.append(_phase("ufd-serve JSON", _ufd_json(server.url), jpegs, per_client))
    finally:
        server.stop()
    for replicas in (None, 1, 2):
        grpc_port = free_port()
        args = ["--protocol", "v2", "--precision", "int8", "--grpc-port", str(grpc_port)]
        if replicas:
            args += ["--replicas", str(replicas)]
        server = Server(bundle, *args, ready_path="/v2/models/ufd/ready")
        address = server.url.removeprefix("http://")
        try:
            suffix = f", {replicas} Ray Serve replica(s)" if replicas else ""
            rows.append(_phase(f"v2 REST{suffix}", _v2("http", address), jpegs, per_client))
            if not replicas:
                grpc = _v2("grpc", f"127.0.0.1:{grpc_port}")
                rows.append(_phase("v2 gRPC", grpc, jpegs, per_client))
        finally:
            server.stop()
            subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"],
                           capture_output=True, check=False)  # fmt: skip
    for row in rows:
        row["vs_offline"] = row["ips"] / offline["ips"]
    return rows


def markdown_v2(model: str, offline: dict, rows: list[dict]) -> str:
    lines = [
        f"{model}, int8, offline ufd-detect {offline['ips']:.2f} img/s; 16 clients, one image "
        "per request:",
        "",
        "| path | img/s | vs offline | vs ufd-serve JSON | p50 / p99 ms at 16 "
        "| idle p50 / p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    base = rows[0]["ips"]
    for r in rows:
        lines.append(
            f"| {r['path']} | {r['ips']:.2f} | {r['vs_offline']:.2f}x | {r['ips'] / base:.2f}x | "
            f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f} | "
            f"{r['idle_p50_ms']:.0f} / {r['idle_p99_ms']:.0f} |"
        )
    return "\n".join(lines) + "\n"
