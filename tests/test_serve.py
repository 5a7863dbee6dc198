"""ufd-serve over real HTTP on 127.0.0.1: same records as ufd-detect, every bad input,
limits, auth, backpressure, concurrency, metrics and graceful shutdown."""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import bad_input_corpus, random_image
from serving import Server, get, multipart, post, serving
from typer.testing import CliRunner

from ufd.cli.detect import app as detect_app
from ufd.client import Client, ServiceError
from ufd.runtime import Detector

runner = CliRunner()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("serve-photos")
    sizes = [(300, 260), (120, 90), (640, 480), (224, 224), (1, 300), (500, 231)]
    return [random_image(folder / f"p{i}.png", s, seed=i) for i, s in enumerate(sizes)]


@pytest.fixture(scope="module")
def server(full_bundle: Path):
    with serving(full_bundle, "--method", "linear") as running:
        yield running


def test_records_equal_ufd_detect(server: Server, full_bundle: Path, photos: list[Path]) -> None:
    result = runner.invoke(
        detect_app, [str(full_bundle), *map(str, photos), "--method", "all", "--format", "jsonl"]
    )
    expected = [json.loads(line) for line in result.stdout.splitlines()]
    status, body, _ = post(
        server.url + "/v1/detect",
        multipart([("file", str(p), p.read_bytes()) for p in photos] + [("method", None, b"all")]),
        "multipart/form-data; boundary=ufdtest",
    )
    assert status == 200 and body["records"] == expected  # same fields, order and values
    records = Client(server.url).detect(photos, method="all")
    assert records == list(Detector.open(full_bundle, provider="cpu").score(photos, method="all"))


def test_json_base64_images(server: Server, photos: list[Path]) -> None:
    images = [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in photos]
    status, body, _ = post(
        server.url + "/v1/detect",
        json.dumps({"images": images, "method": "nn", "k": 3}).encode(),
        "application/json",
    )
    assert status == 200
    assert [r["path"] for r in body["records"]] == [p.name for p in photos]
    assert set(body["records"][0]) == {
        "path",
        "nn_score",
        "nn_label",
        "nn_dist_real",
        "nn_dist_fake",
        "nn_source",
        "nn_source_share",
        "error",
    }
    assert {r["nn_score"] * 3 % 1 for r in body["records"]} <= {0.0}  # k=3 vote shares


def test_uploads_are_sniffed_not_judged_by_name(server: Server, photos: list[Path]) -> None:
    data = photos[0].read_bytes()
    parts = [("file", "photo.txt", data), ("file", "notes.png", b"plain text, not a PNG")]
    status, body, _ = post(
        server.url + "/v1/detect", multipart(parts), "multipart/form-data; boundary=ufdtest"
    )
    assert status == 200
    good, bad = body["records"]
    assert good["path"] == "photo.txt" and good["error"] is None and good["prob"] is not None
    assert bad["path"] == "notes.png" and "not a recognised image format" in bad["error"]


def test_every_bad_input_gets_its_error_record(server: Server, full_bundle: Path, tmp_path) -> None:
    root, expect = bad_input_corpus(tmp_path)
    files = sorted(p for p in root.rglob("*") if p.is_file() and "loop" not in p.parts)
    result = runner.invoke(detect_app, [str(full_bundle), *map(str, files), "--format", "jsonl"])
    offline = {json.loads(line)["path"]: json.loads(line) for line in result.stdout.splitlines()}
    records = Client(server.url).detect(files)
    assert len(records) == len(files)
    for record in records:
        assert record.error == offline[record.path]["error"], record.path
        assert record.logit == offline[record.path]["logit"]
    assert sum(r.error is not None for r in records) == sum(e is not None for e in expect.values())
    assert get(server.url + "/healthz")[0] == 200  # still serving


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b'{"images": [{"data": "@@@"}]}', "application/json", 400, "not valid base64"),
        (b'{"images": []}', "application/json", 400, "no images"),
        (b'{"pictures": []}', "application/json", 400, '"images" list'),
        (b'{"images": [{"data": "AAAA"}], "k": 0}', "application/json", 400, "positive integer"),
        (  # the contract's maximum holds when the method asked for (linear) uses no k
            b'{"images": [{"data": "AAAA"}], "k": 166199959124}',
            "application/json",
            400,
            "at most",
        ),
        (
            b'{"images": [{"data": "AAAA"}], "method": "magic"}',
            "application/json",
            400,
            "unknown method 'magic'",
        ),
        (b'{"images": [{"data": "AAAA"}], "k": "3"}', "application/json", 400, "positive integer"),
        (
            multipart([("file", "x.png", b"x"), ("k", None, b"")]),
            "multipart/form-data; boundary=ufdtest",
            400,
            'form field "k" must be a whole number',
        ),
        (
            multipart([("file", "x.png", b"x"), ("views", None, "²".encode())]),
            "multipart/form-data; boundary=ufdtest",
            400,
            'form field "views" must be a whole number',
        ),
        (b"hello", "text/plain", 415, "unsupported content type"),
        (b"hello", None, 415, "unsupported content type"),
        (
            multipart([("photo", "x.png", b"x")]),
            "multipart/form-data; boundary=ufdtest",
            400,
            "unexpected form field 'photo'",
        ),
        (b"--ufdtest\r\nbroken", "multipart/form-data; boundary=ufdtest", 400, "no images"),
        (b"x", "multipart/form-data", 400, "without a boundary"),
    ],
)
def test_malformed_requests_get_a_4xx_that_says_why(
    server: Server, body: bytes, content_type: str | None, status: int, message: str
) -> None:
    got, answer, _ = post(server.url + "/v1/detect", body, content_type)
    assert got == status and message in answer["error"], answer
    assert get(server.url + "/healthz")[0] == 200


def test_unknown_routes_and_verbs_answer_json(server: Server) -> None:
    assert get(server.url + "/nope") == (404, {"error": "Not Found"})
    status, body = get(server.url + "/v1/detect")
    assert status == 405 and "error" in body


def test_info_docs_and_page(server: Server, full_bundle: Path) -> None:
    from ufd.runtime.bundle_ops.parity_check import check_parity

    rule = check_parity(full_bundle, "cpu")  # what auto takes on this host, measured here
    status, info = get(server.url + "/v1/info")
    assert status == 200 and info["precision"] == rule.auto and info["provider"] == "cpu"
    assert set(info["methods"]) == {"linear", "nn", "traces", "realonly", "fused"}
    assert info["methods"]["realonly"]["calibration"]["k"] == 3
    assert info["parity"]["fp32"]["max_abs_logit_error"] <= 1e-4
    spec = get(server.url + "/openapi.json")[1]
    body = spec["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert info["device_parity"]["precision"] == rule.auto and info["device_parity"]["ok"]
    passed_over = [g["precision"] for g in info["device_parity"]["passed_over"]]
    order = [p for p in ("int8", "int8-portable", "fp32", "fp16") if p in rule.graphs]
    assert passed_over == order[: order.index(rule.auto)]
    for docs in ("/docs", "/redoc"):  # every script and style from this service: offline
        status, html = get(server.url + docs)
        assert status == 200 and "/docs-assets/" in html
        assert not re.search(r"(src|href)=['\"]?https?:", html), docs
    assert get(server.url + "/docs-assets/swagger-ui-bundle.js")[0] == 200
    assert get(server.url + "/docs-assets/..%2Fpage.html")[0] == 404
    page = get(server.url + "/")[1]

    assert "<script>" in page and "http" not in page.split("<script>")[1].split("</script>")[0]


def test_cors_is_off_by_default(server: Server) -> None:
    connection = socket.create_connection(("127.0.0.1", server.port))
    connection.sendall(
        b"OPTIONS /v1/detect HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\n"
        b"Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
    )
    answer = connection.recv(65536).decode(errors="replace").lower()
    connection.close()
    assert "access-control-allow-origin" not in answer


def test_metrics(server: Server, photos: list[Path]) -> None:
    Client(server.url).detect([photos[0], b"junk"])
    status, text = get(server.url + "/metrics")
    assert status == 200
    names = [
        "ufd_requests_total",
        "ufd_images_total",
        "ufd_image_errors_total",
        "ufd_request_seconds_bucket",
        "ufd_encoder_batch_size_bucket",
        "ufd_encoder_batch_seconds_bucket",
        "ufd_queue_depth",
        "ufd_ready 1.0",
    ]
    for name in names:
        assert name in text, name
    assert 'ufd_image_errors_total{reason="not a recognised image format"}' in text
    assert 'ufd_requests_total{route="/v1/detect",status="200"}' in text


def test_limits(full_bundle: Path, photos: list[Path]) -> None:
    big = photos[2].read_bytes()  # a 900 kB PNG
    args = ["--max-image-mb", "0.5", "--max-request-mb", "1", "--max-images", "3"]
    with serving(full_bundle, *args) as server:
        url = server.url + "/v1/detect"
        ctype = "multipart/form-data; boundary=ufdtest"
        status, body, _ = post(url, multipart([("file", "big.png", big)]), ctype)
        assert status == 413 and "an image is over the limit" in body["error"]
        four = multipart([("file", f"{i}.png", photos[1].read_bytes()) for i in range(4)])
        status, body, _ = post(url, four, ctype)
        assert status == 413 and "more than 3 images" in body["error"]
        assert _declared_too_large(server.port, (1 << 20) + 1)
        assert _rejected_while_streaming(server.port)


def _declared_too_large(port: int, length: int) -> bool:
    """A body announced over the limit is refused from its headers, before any byte of it."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=20)
    connection.sendall(
        b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
    )
    answer = _read_answer(connection)
    return answer.startswith("HTTP/1.1 413") and "request body is over the limit" in answer


def _read_answer(connection: socket.socket) -> str:
    """An HTTP answer read until its JSON body is complete (or the server closes)."""
    data = b""
    while not data.rstrip().endswith(b"}"):
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    connection.close()
    return data.decode(errors="replace")


def _rejected_while_streaming(port: int) -> bool:
    """Send 600 kB of one image's bytes, chunked, never finishing: 413 must come anyway."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=20)
    connection.sendall(
        b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: multipart/form-data; boundary=ufdtest\r\n\r\n"
    )
    head = b'--ufdtest\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
    chunks = [head] + [b"\0" * 65536] * 10
    for chunk in chunks:
        connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    answer = _read_answer(connection)  # the body was never finished
    return answer.startswith("HTTP/1.1 413") and "an image is over the limit" in answer


def test_api_key(full_bundle: Path, tmp_path: Path, photos: list[Path]) -> None:
    (tmp_path / "key").write_text("s3cret\n")
    with serving(full_bundle, "--api-key-file", str(tmp_path / "key")) as server:
        with pytest.raises(ServiceError) as missing:
            Client(server.url).detect([photos[0]])
        assert missing.value.status == 401 and "Bearer" in missing.value.message
        with pytest.raises(ServiceError) as wrong:
            Client(server.url, api_key="guess").detect([photos[0]])
        assert wrong.value.status == 401
        assert Client(server.url, api_key="s3cret").detect([photos[0]])[0].ok
        assert get(server.url + "/healthz")[0] == get(server.url + "/readyz")[0] == 200
        assert get(server.url + "/metrics")[0] == get(server.url + "/v1/info")[0] == 401
        headers = {"Authorization": "Bearer s3cret"}
        assert get(server.url + "/metrics", headers)[0] == 200


def test_a_full_queue_answers_503_at_once(full_bundle: Path, photos: list[Path]) -> None:
    with serving(full_bundle, "--queue-images", "2") as server:  # 3 images never fit
        status, body, headers = post(
            server.url + "/v1/detect",
            multipart([("file", f"{i}", photos[0].read_bytes()) for i in range(3)]),
            "multipart/form-data; boundary=ufdtest",
        )
        assert status == 503 and headers["Retry-After"] == "1" and "overloaded" in body["error"]
        assert Client(server.url).detect(photos[:2])[1].ok  # what fits is served


def test_concurrent_clients_get_sequential_records(server: Server, photos: list[Path]) -> None:
    client = Client(server.url)
    jobs = [photos[i:] + photos[:i] for i in range(len(photos))] * 3
    sequential = [client.detect(job, method="all") for job in jobs]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda job: client.detect(job, method="all"), jobs))
    assert parallel == sequential


def test_sigterm_answers_every_accepted_request(full_bundle: Path, tmp_path: Path) -> None:
    big = [random_image(tmp_path / f"b{i}.png", (800, 600), seed=i) for i in range(12)]
    # each batch 200 ms longer: the requests are surely in flight when SIGTERM comes
    server = Server(full_bundle, "--decode-workers", "1", faults="slow-batch-ms=200")

    results: list = []

    def call() -> None:
        try:
            results.append(Client(server.url).detect(big, method="all"))
        except ServiceError as e:
            results.append(e)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while "ufd_queue_depth 0.0" in get(server.url + "/metrics")[1]:  # wait until work is in
        assert time.monotonic() < deadline, "no request was ever accepted"
        time.sleep(0.01)
    server.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=120)
    assert server.proc.wait(timeout=60) == 0, server.stderr()
    answered = [r for r in results if isinstance(r, list)]
    refused = [r for r in results if isinstance(r, ServiceError)]
    assert len(results) == 4 and answered  # work in flight at SIGTERM was answered...
    assert all(len(r) == 12 and all(x.ok for x in r) for r in answered)  # ...whole
    assert all(e.status == 0 for e in refused)  # the rest never got in (connection refused)


def test_ready_only_once_loaded_and_warmed(full_bundle: Path, photos: list[Path]) -> None:
    import uvicorn
    from serving import free_port

    from ufd.runtime.serve.app import create_app
    from ufd.runtime.serve.config import ServeConfig

    gate = threading.Event()

    def slow_open() -> Detector:
        gate.wait(30)
        return Detector.open(full_bundle, provider="cpu")

    port = free_port()
    app = create_app(ServeConfig(bundle=full_bundle, port=port), open_detector=slow_open)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="error"))
    thread = threading.Thread(target=server.run)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status, _ = get(url + "/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert status == 200
        status, body = get(url + "/readyz")
        assert status == 503 and "loading" in body["error"]
        with pytest.raises(ServiceError) as early:
            Client(url).detect([photos[0]])
        assert early.value.status == 503
        gate.set()
        while get(url + "/readyz")[0] != 200:
            assert time.monotonic() < deadline + 30
            time.sleep(0.05)
        assert Client(url).detect([photos[0]])[0].ok
    finally:
        gate.set()
        server.should_exit = True
        thread.join(timeout=30)
