"""``serve_bench.py --v2``: the Open Inference Protocol paths against ufd-serve's own.

On one int8 bundle (random-init weights, the 16 JPEGs of 512-1024 px that
serve_bench.py uses), in one run on this machine: offline ``ufd-detect``
images/s, then 16 concurrent clients sending one image per request to

* ``ufd-serve`` (its JSON, ufd.client),
* ``ufd-serve --protocol v2`` over REST (tritonclient.http, base64 BYTES),
* the same over gRPC (tritonclient.grpc, raw BYTES),
* ``--protocol v2 --replicas 1`` and ``--replicas 2`` (Ray Serve on a local Ray; the
  machine's cores shared out with ``--cpus-per-replica``),

each: images/s, the ratio to offline, p50/p99 latency under load, and the p50/p99
of one image at a time (idle). Every answer is checked (no error element).
"""

from __future__ import annotations

import base64
import json
import os
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


def _median_row(runs: list[dict]) -> dict:
    """The run of median images/s, with every run's rate (``ips_runs``) beside it."""
    ordered = sorted(runs, key=lambda r: r["ips"])
    return ordered[len(ordered) // 2] | {"ips_runs": [r["ips"] for r in runs]}


def _interleaved(paths: dict, jpegs: list[Path], per_client: int, rounds: int) -> list[dict]:
    """Every path once per round, in turn, ``rounds`` times: a shared host's drift hits all."""
    runs: dict[str, list[dict]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, send in paths.items():
            runs[name].append(_phase(name, send, jpegs, per_client))
    return [_median_row(r) for r in runs.values()]


def _v2_server(bundle: Path, replicas: int | None = None) -> tuple[Server, int]:
    grpc_port = free_port()
    args = ["--protocol", "v2", "--precision", "int8", "--grpc-port", str(grpc_port)]
    if replicas:  # the machine's cores shared out: each replica runs on its share
        cpus = (os.cpu_count() or 1) / replicas
        args += ["--replicas", str(replicas), "--cpus-per-replica", str(cpus)]
    return Server(bundle, *args, ready_path="/v2/models/ufd/ready"), grpc_port


def bench_v2(
    bundle: Path, images: Path, offline: dict, per_client: int, rounds: int = 3
) -> list[dict]:
    """Every path at 16 clients on ``bundle``; ``offline`` is serve_bench's offline row.

    ufd-serve JSON, v2 REST and v2 gRPC run on two warm servers, interleaved for
    ``rounds`` rounds (median kept); the Ray Serve paths then run one at a time,
    each followed by a ufd-serve JSON round as their reference.
    """
    jpegs = sorted(images.glob("*.jpg"))
    own = Server(bundle, "--precision", "int8")
    try:
        v2, grpc_port = _v2_server(bundle)
        try:
            paths = {
                "ufd-serve JSON": _ufd_json(own.url),
                "v2 REST": _v2("http", v2.url.removeprefix("http://")),
                "v2 gRPC": _v2("grpc", f"127.0.0.1:{grpc_port}"),
            }
            rows = _interleaved(paths, jpegs, per_client, rounds)
        finally:
            v2.stop()
        for replicas in (1, 2):
            ray, _ = _v2_server(bundle, replicas)
            try:
                name = f"v2 REST, {replicas} Ray Serve replica(s)"
                paths = {name: _v2("http", ray.url.removeprefix("http://"))}
                rows += _interleaved(paths, jpegs, per_client, 1)
            finally:
                ray.stop()
                subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"],
                               capture_output=True, check=False)  # fmt: skip
            reference = _phase("ufd-serve JSON", _ufd_json(own.url), jpegs, per_client)
            rows[-1]["json_ips"] = reference["ips"]
    finally:
        own.stop()
    for row in rows:
        row["vs_offline"] = row["ips"] / offline["ips"]
        row.setdefault("json_ips", rows[0]["ips"])
    return rows


def markdown_v2(model: str, offline: dict, rows: list[dict]) -> str:
    lines = [
        f"{model}, int8, offline ufd-detect {offline['ips']:.2f} img/s; 16 clients, one image "
        "per request. JSON, REST and gRPC: median of interleaved rounds (each round's "
        "img/s in brackets); a Ray row is compared with a JSON round run right after it:",
        "",
        "| path | img/s | vs offline | vs ufd-serve JSON | p50 / p99 ms at 16 "
        "| idle p50 / p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        runs = ", ".join(f"{x:.1f}" for x in r["ips_runs"]) if len(r["ips_runs"]) > 1 else ""
        lines.append(
            f"| {r['path']} | {r['ips']:.2f}{f' ({runs})' if runs else ''} | "
            f"{r['vs_offline']:.2f}x | {r['ips'] / r['json_ips']:.2f}x | "
            f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f} | "
            f"{r['idle_p50_ms']:.0f} / {r['idle_p99_ms']:.0f} |"
        )
    return "\n".join(lines) + "\n"
