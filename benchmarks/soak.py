"""ufd-serve under sustained load, and killed under it (127.0.0.1 only).

1. Soak: ``--clients`` threads send requests for ``--minutes``: good images,
   damaged ones, images over ``--max-image-mb``, malformed requests (bad JSON,
   a broken multipart body, a wrong content type). Every request must get an
   answer (a record per image, or a 4xx/503 that says why). Per window
   (``--window`` minutes): requests, p50/p99 latency, statuses; the server's RSS
   every 5 s. Targets: RSS growth after the first window < 5 %; each window's
   p99 within 20 % of the first's; no request unanswered.
2. SIGTERM under load: every request the service accepted is answered.
3. SIGKILL under load, then a restart on the same port serves again.

Usage:
    python benchmarks/soak.py --bundle B [--minutes 30] [--clients 16] [--window 5]
Writes benchmarks/results/soak.json and .md.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from serving import Server, multipart  # noqa: E402

BOUNDARY = "ufdtest"
LOST, EMPTY, REFUSED = -1, -2, -3


def payloads(max_image_mb: float) -> list[tuple[str, str, bytes]]:
    """(kind, content type, body) of every request the clients send."""
    rng = np.random.default_rng(0)

    def jpeg(w: int, h: int) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buffer, "JPEG")
        return buffer.getvalue()

    good = [jpeg(w, h) for w, h in ((320, 240), (640, 480), (224, 224), (1024, 768))]
    form = f"multipart/form-data; boundary={BOUNDARY}"
    big = rng.bytes(int(max_image_mb * 2**20) + 4096)
    kinds = [
        ("good", form, multipart([("file", f"g{i}.jpg", g) for i, g in enumerate(good)])),
        ("good", form, multipart([("file", "one.jpg", good[0])])),
        (
            "damaged",
            form,
            multipart([("file", "cut.jpg", good[1][:500]), ("file", "junk.png", rng.bytes(3000))]),
        ),
        ("oversized", form, multipart([("file", "big.jpg", big)])),
        ("malformed", "application/json", b'{"images": [{"data": "not base64!"}]'),
        ("malformed", form, b"--ufdtest\r\nContent-Disposition: form-data\r\n\r\nxx"),
        ("malformed", "text/plain", b"hello"),
    ]
    return kinds


class Client(threading.Thread):
    """Sends random requests until told to stop; keeps (time, kind, status, seconds)."""

    def __init__(self, port: int, kinds, stop: threading.Event, seed: int) -> None:
        super().__init__(daemon=True)
        self.port, self.kinds, self.stop = port, kinds, stop
        self.random = random.Random(seed)
        self.results: list[tuple[float, str, int, float]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            kind, content_type, body = self.random.choice(self.kinds)
            started = time.monotonic()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                connection.request("POST", "/v1/detect", body, {"Content-Type": content_type})
                response = connection.getresponse()
                answer = response.read()
                status = response.status
                if status == 200 and not json.loads(answer)["records"]:
                    status = EMPTY  # an answer without records: not answered
                connection.close()
            except ConnectionRefusedError:
                status = REFUSED  # never accepted: the service was gone
            except (OSError, http.client.HTTPException, ValueError):
                status = LOST  # accepted (or in flight), never answered
            self.results.append((started, kind, status, time.monotonic() - started))


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def soak(args: argparse.Namespace, kinds) -> dict:
    server = Server(args.bundle, "--max-image-mb", str(args.max_image_mb), "--queue-images", "256")
    stop = threading.Event()
    clients = [Client(server.port, kinds, stop, seed) for seed in range(args.clients)]
    started = time.monotonic()
    for client in clients:
        client.start()
    memory = []
    reported = 0
    while time.monotonic() - started < args.minutes * 60:
        time.sleep(5)
        elapsed = time.monotonic() - started
        memory.append((elapsed, rss_mb(server.proc.pid)))
        if elapsed >= (reported + 1) * args.window * 60:  # progress, once a window
            reported += 1
            done = sum(len(c.results) for c in clients)
            print(
                f"{elapsed / 60:.0f} min: {done} requests, RSS {memory[-1][1]:.0f} MB", flush=True
            )

    stop.set()
    for client in clients:
        client.join(timeout=180)
    server.stop()
    results = sorted(r for c in clients for r in c.results)
    return windows(results, memory, started, args.window * 60)


def windows(results, memory, started: float, width: float) -> dict:
    rows = []
    last = max(t for t, *_ in results) - started
    for start in np.arange(0, last - width + 1e-9, width):  # whole windows only
        inside = [r for r in results if start <= r[0] - started < start + width]
        served = [s for _, kind, _, s in inside if kind == "good"]
        rss = [m for t, m in memory if start <= t < start + width]
        statuses: dict[str, int] = {}
        for _, _, status, _ in inside:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        rows.append(
            {
                "window_min": round(start / 60, 1),
                "requests": len(inside),
                "p50_s": float(np.percentile(served, 50)) if served else None,
                "p99_s": float(np.percentile(served, 99)) if served else None,
                "rss_mb": float(np.median(rss)) if rss else None,
                "statuses": statuses,
            }
        )
    unanswered = sum(1 for r in results if r[2] in (LOST, EMPTY))
    base = rows[0]
    return {
        "windows": rows,
        "requests": len(results),
        "unanswered": unanswered,
        "rss_growth_after_first_window": rows[-1]["rss_mb"] / base["rss_mb"] - 1,
        "worst_p99_vs_first": max(r["p99_s"] for r in rows) / base["p99_s"] - 1,
    }


def under_load_then(signal_to_send: int, args, kinds) -> dict:
    """Load the service, send it a signal; every accepted request must be answered."""
    server = Server(args.bundle, faults="slow-batch-ms=50")
    port = server.port
    stop = threading.Event()
    clients = [Client(port, kinds[:3], stop, seed) for seed in range(args.clients)]
    for client in clients:
        client.start()
    time.sleep(10)
    server.proc.send_signal(signal_to_send)
    code = server.proc.wait(timeout=120)
    stop.set()  # clients stop once the service is gone (their last try is refused)
    for client in clients:
        client.join(timeout=180)
    results = [r for c in clients for r in c.results]
    statuses: dict[str, int] = {}
    for _, _, status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    found = {
        "signal": signal.Signals(signal_to_send).name,
        "exit_code": code,
        "requests": len(results),
        "answered": sum(1 for r in results if r[2] >= 0),
        "lost": statuses.get(str(LOST), 0) + statuses.get(str(EMPTY), 0),
        "refused_after": statuses.get(str(REFUSED), 0),
        "statuses": statuses,
    }

    if signal_to_send == signal.SIGKILL:  # the same port, a new process: serving again?
        again = Server(args.bundle, port=port)
        _, content_type, body = kinds[0]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        connection.request("POST", "/v1/detect", body, {"Content-Type": content_type})
        found["after_restart_status"] = connection.getresponse().status
        again.stop()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--window", type=float, default=5)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-image-mb", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    os.environ.setdefault("UFD_CACHE_DIR", "/tmp/ufd-soak-cache")
    kinds = payloads(args.max_image_mb)
    report = {"soak": soak(args, kinds)}
    report["sigterm"] = under_load_then(signal.SIGTERM, args, kinds)
    report["sigkill"] = under_load_then(signal.SIGKILL, args, kinds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(report, indent=2))
    lines = [
        "| window (min) | requests | p50 s (good) | p99 s (good) | RSS MB | statuses |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["soak"]["windows"]:
        lines.append(
            f"| {r['window_min']} | {r['requests']} | {r['p50_s']:.3f} | "
            f"{r['p99_s']:.3f} | {r['rss_mb']:.0f} | {r['statuses']} |"
        )
    (args.out / "soak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({k: v for k, v in report["soak"].items() if k != "windows"}))
    print(json.dumps(report["sigterm"]), json.dumps(report["sigkill"]))


if __name__ == "__main__":
    main()
