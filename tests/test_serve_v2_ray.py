"""``ufd-serve --protocol v2 --replicas 2`` on a two-node Ray cluster on loopback
(``ray start --head`` plus ``ray start --address``, each node with one CPU and
its own resource): concurrent tritonclient requests reach both replicas and get
``ufd-detect``'s records; killing a replica under load loses no request
silently (each is answered: its records, or a clear error), and the service
recovers."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tritonclient.http as httpclient
from helpers import random_image
from serving import Server, free_port
from test_serve_v2 import MODEL, encoded, offline, rows, same_record
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).with_name("ray"))


def _ray(*args: str, env: dict) -> None:
    result = subprocess.run([RAY, *args], capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node on 127.0.0.1, one CPU each, with Ray's token
    authentication (every process of the test, ufd-serve included, holds the token)."""
    port = free_port()
    settings = {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(name, value)
        env = dict(os.environ)
        common = ["--num-cpus", "1", "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]
        _ray("start", "--head", "--port", str(port), "--include-dashboard", "false",
             "--resources", '{"node_a": 1}', *common, env=env)  # fmt: skip
        try:
            _ray("start", "--address", f"127.0.0.1:{port}", "--resources", '{"node_b": 1}',
                 *common, env=env)  # fmt: skip
            yield f"127.0.0.1:{port}"
        finally:
            subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("ray-photos")
    sizes = [(300, 260), (120, 90), (640, 480), (224, 224)]
    return [random_image(folder / f"p{i}.png", s, seed=i) for i, s in enumerate(sizes)]


@pytest.fixture(scope="module")
def replicas(cluster: str, full_bundle: Path):
    args = ["--protocol", "v2", "--grpc-port", "0", "--replicas", "2", "--ray-address", cluster]
    running = Server(full_bundle, *args, ready_path=f"/v2/models/{MODEL}/ready")
    try:
        yield running
    finally:
        running.stop()


def ask(server: Server, files: list[Path]) -> tuple[list[dict], dict]:
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    image = httpclient.InferInput("image", [len(files)], "BYTES")
    image.set_data_from_numpy(encoded(files, "http"))
    result = client.infer(MODEL, [image], parameters={"method": "all"}, timeout=120)
    names = [o["name"] for o in result.get_response()["outputs"]]
    got = rows({n: result.as_numpy(n) for n in names}, len(files))
    return got, result.get_response().get("parameters", {})


def test_two_replicas_on_two_nodes_answer_with_ufd_detect_records(
    replicas: Server, full_bundle: Path, photos: list[Path]
) -> None:
    expected = offline(full_bundle, photos, "--method", "all")
    requests = [photos[i % 4 : i % 4 + 2] or photos[:1] for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda files: ask(replicas, files), requests))
    seen = set()
    for files, (got, parameters) in zip(requests, answers, strict=True):
        seen.add(parameters["ufd_replica"])
        assert parameters["ufd_precision"]
        for row, path in zip(got, files, strict=True):
            same_record(row, expected[photos.index(path)])
    assert len(seen) == 2, seen  # both replicas answered


def test_a_killed_replica_loses_no_request_silently(
    replicas: Server, full_bundle: Path, photos: list[Path]
) -> None:
    expected = offline(full_bundle, photos, "--method", "all")
    before = {ask(replicas, photos[:1])[1]["ufd_replica"] for _ in range(8)}
    victim = int(sorted(before)[0].rsplit("/", 1)[1])

    def one(index: int) -> str:
        files = photos[index % 4 : index % 4 + 1]
        try:
            got, _ = ask(replicas, files)
        except InferenceServerException as e:
            assert e.status() == "503" and "replica stopped" in e.message(), e.message()
            return "error"
        same_record(got[0], expected[photos.index(files[0])])
        return "answered"

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(one, i) for i in range(30)]
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        outcomes = [f.result(timeout=180) for f in futures]
    assert len(outcomes) == 30 and outcomes.count("answered") > 0
    deadline, restarted = time.monotonic() + 120, False
    while time.monotonic() < deadline and not restarted:  # Ray Serve starts a new replica
        try:
            restarted = ask(replicas, photos[:1])[1]["ufd_replica"] not in before
        except InferenceServerException:
            time.sleep(0.5)
    assert restarted
    got, _ = ask(replicas, photos)
    for row, record in zip(got, expected, strict=True):
        same_record(row, record)
